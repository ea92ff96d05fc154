"""The placement policy (schema placement-policy-v1): shape checks by hand, then checks against the machine.

A policy is what `llamas-agent enforce` keeps true, round after round: ordered
rules that map a class of memory (access heat, write intensity, the owning
process's launch name, the region's size) to an ordered node preference, and
limits (free memory to keep per node, migration bandwidth, interval).  Rules
name nodes and classes, never pids: one policy serves any workload on a machine.

The same rules are published as JSON Schema in
guest-agent/schema/placement-policy-v1.schema.json and typed on the host in
testbed/policy.py; tests/agent/test_policy_schema.py keeps the three in agreement.
"""

from .hints import LAUNCH_CHARS, MAX_NODE, _int, _nodes, _string
from .strict import SchemaError, each, load_strict

SCHEMA = "placement-policy-v1"
MAX_POLICY_BYTES = 16 * 1024
MAX_RULES = 32
HEATS = ("hot", "warm", "cold")
WRITES = ("write-heavy", "read-mostly", "untouched")
MATCH_FIELDS = ("heat", "write", "launch", "min_region_mib")
TOP_FIELDS = {"schema", "name", "description", "limits", "rules"}
LIMIT_FIELDS = {"keep_free_mib", "bandwidth_mib_s", "interval_s"}
RULE_FIELDS = {"id", "match", "nodes"}
MAX_KEEP_FREE_MIB = 1 << 20          # 1 TiB: larger is a typo, not a wish
MAX_BANDWIDTH_MIB_S = 65536
INTERVAL_S = (1, 3600)               # below a second the daemon's own CPU use dominates
MAX_REGION_MIB = 1 << 20


def parse_policy(raw):
    """Bytes -> validated policy dict, or SchemaError naming the field and the value."""
    return load_strict(raw, MAX_POLICY_BYTES, check_policy)


def check_policy(doc):
    """Raise SchemaError unless `doc` fits placement-policy-v1 (shape only; nodes are checked by check_machine)."""
    if not isinstance(doc, dict):
        raise SchemaError("policy must be a JSON object")
    _only(doc, TOP_FIELDS, "the top-level object", required={"schema", "limits", "rules"})
    if doc["schema"] != SCHEMA:
        raise SchemaError(f"schema must be {SCHEMA!r}, got {doc['schema']!r}")
    if "name" in doc and not _launch_like(doc["name"]):
        raise SchemaError(f"name must be 1..64 characters of [A-Za-z0-9._-], got {doc['name']!r}")
    if "description" in doc:
        _string(doc["description"], "description", 2000)
    _limits(doc["limits"])
    rules = doc["rules"]
    if not isinstance(rules, list) or not 1 <= len(rules) <= MAX_RULES:
        raise SchemaError(f"rules must be a list of 1..{MAX_RULES} rules")
    each(rules, "rules", _rule)
    _unreachable(rules)


def _only(obj, allowed, where, required=()):
    if not isinstance(obj, dict):
        raise SchemaError(f"{where} must be an object")
    extra = set(obj) - allowed
    if extra:
        raise SchemaError(f"unknown field(s) {sorted(extra)} in {where}")
    missing = set(required) - set(obj)
    if missing:
        raise SchemaError(f"missing field(s) {sorted(missing)} in {where}")


def _launch_like(value):
    return isinstance(value, str) and 1 <= len(value) <= 64 and set(value) <= LAUNCH_CHARS


def _limits(limits):
    _only(limits, LIMIT_FIELDS, "limits", required={"bandwidth_mib_s", "interval_s"})
    _int(limits["bandwidth_mib_s"], "limits.bandwidth_mib_s", 1, MAX_BANDWIDTH_MIB_S)
    interval = limits["interval_s"]
    if type(interval) not in (int, float) or not INTERVAL_S[0] <= interval <= INTERVAL_S[1]:
        raise SchemaError(f"limits.interval_s must be a number in {INTERVAL_S[0]}..{INTERVAL_S[1]}, got {interval!r}")
    keep = limits.get("keep_free_mib", {})
    if not isinstance(keep, dict) or len(keep) > 64:
        raise SchemaError("limits.keep_free_mib must be an object of at most 64 {node: MiB}")
    for key, mib in keep.items():
        if not (key.isascii() and key.isdigit()) or len(key) > 4 or (len(key) > 1 and key[0] == "0"):
            raise SchemaError(f"limits.keep_free_mib key {key!r} is not a node id")
        _int(int(key), "limits.keep_free_mib node", 0, MAX_NODE)
        _int(mib, f"limits.keep_free_mib[{key}]", 0, MAX_KEEP_FREE_MIB)


def _rule(rule):
    _only(rule, RULE_FIELDS, "the rule", required={"match", "nodes"})
    if "id" in rule:
        _string(rule["id"], "id", 64)
    match = rule["match"]
    _only(match, set(MATCH_FIELDS), "match")
    if "heat" in match and match["heat"] not in HEATS:
        raise SchemaError(f"match.heat must be one of {list(HEATS)}, got {match['heat']!r}")
    if "write" in match and match["write"] not in WRITES:
        raise SchemaError(f"match.write must be one of {list(WRITES)}, got {match['write']!r}")
    if "launch" in match and not _launch_like(match["launch"]):
        raise SchemaError(f"match.launch must be 1..64 characters of [A-Za-z0-9._-], got {match['launch']!r}")
    if "min_region_mib" in match:
        _int(match["min_region_mib"], "match.min_region_mib", 1, MAX_REGION_MIB)
    _nodes(rule["nodes"], "nodes")


def covers(earlier, later):
    """True when every region `later` matches is matched by `earlier` too (so `later` never fires)."""
    for key, value in earlier.items():
        if key not in later:
            return False
        if key == "min_region_mib" and later[key] < value:
            return False
        if key != "min_region_mib" and later[key] != value:
            return False
    return True


def _unreachable(rules):
    """Refuse a rule that an earlier one always takes first: the policy's author meant something else."""
    for j, rule in enumerate(rules):
        for i in range(j):
            if covers(rules[i]["match"], rule["match"]):
                raise SchemaError(f"rules[{j}] can never apply: rules[{i}] (match {rules[i]['match']}) "
                                  f"takes every region rules[{j}] (match {rule['match']}) would")


def check_machine(doc, nodes):
    """Raise SchemaError unless every node the policy names exists with memory, and what it keeps free fits.

    `nodes` is machine.gather_nodes()'s list.
    """
    by_id = {n["id"]: n for n in nodes}
    named = [(f"rules[{i}].nodes", n) for i, r in enumerate(doc["rules"]) for n in r["nodes"]]
    named += [(f"limits.keep_free_mib[{k}]", int(k)) for k in doc["limits"].get("keep_free_mib", {})]
    for where, n in named:
        if n not in by_id:
            raise SchemaError(f"{where}: node {n} does not exist (nodes: {sorted(by_id)})")
        if by_id[n]["mem_total_kib"] <= 0:
            raise SchemaError(f"{where}: node {n} has no memory")
    for key, mib in doc["limits"].get("keep_free_mib", {}).items():
        total_mib = by_id[int(key)]["mem_total_kib"] // 1024
        if mib >= total_mib:
            raise SchemaError(f"limits.keep_free_mib[{key}]: {mib} MiB is not less than node {key}'s "
                              f"{total_mib} MiB")
