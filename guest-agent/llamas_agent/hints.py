"""The hint schema (version 1) and its structural validation, by hand: the guest has no jsonschema.

The same rules are published as JSON Schema in guest-agent/schema/hints-v1.schema.json
for the host; tests/agent/test_hint_schema.py keeps the two in agreement.
This module checks shape only; whether a hint fits the running machine
(pids, nodes, free memory, ranges) is checked by validate.py.
"""

from . import HINTS_SCHEMA_VERSION
from .knobs import KNOB_NAMES, NUMA_BALANCING_MODES, THP_MODES, WEIGHT_MAX, WEIGHT_MIN
from .strict import SchemaError, each, load_strict

MAX_DOCUMENT_BYTES = 64 * 1024
MAX_HINTS = 64
MAX_NODE = 1023
MAX_LIST = 64
MAX_RANGE_BYTES = 1 << 30  # one move_range locates each page: bounded work and memory
POLICY_MODES = ("bind", "preferred", "interleave", "weighted_interleave")
KINDS = ("migrate_pages", "move_range", "set_policy", "set_knob", "set_affinity", "set_sched")
SCHED_POLICIES = ("normal", "batch", "idle")  # never a real-time class: a spinning RT task can hang the guest
NICE_MIN, NICE_MAX = -20, 19
COMMON = {"kind", "id", "reason"}
FIELDS = {
    "migrate_pages": ({"pid", "from_nodes", "to_nodes"}, set()),
    "move_range": ({"pid", "start", "length", "to_node"}, set()),
    "set_policy": ({"mode", "nodes"}, {"pid", "launch", "weights"}),
    "set_knob": ({"knob", "value"}, set()),
    "set_affinity": ({"pid", "cpus"}, set()),
    "set_sched": ({"pid"}, {"nice", "policy"}),
}
LAUNCH_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def parse_document(raw):
    """Bytes -> validated dict, or SchemaError naming the first problem.

    A key given twice in one object is refused (strict.py): the host and the
    guest must never read one document two ways.
    """
    return load_strict(raw, MAX_DOCUMENT_BYTES, check_document)


def check_document(doc):
    """Raise SchemaError unless `doc` fits the hint schema."""
    if not isinstance(doc, dict):
        raise SchemaError("document must be a JSON object")
    extra = set(doc) - {"schema_version", "hints", "source"}
    if extra:
        raise SchemaError(f"unknown top-level field(s): {sorted(extra)}")
    version = doc.get("schema_version")
    if type(version) is not int or version != HINTS_SCHEMA_VERSION:
        raise SchemaError(f"schema_version must be {HINTS_SCHEMA_VERSION}, got {version!r}")
    if "source" in doc:
        _string(doc["source"], "source", 200)
    hints = doc.get("hints")
    if not isinstance(hints, list):
        raise SchemaError("hints must be a list")
    if len(hints) > MAX_HINTS:
        raise SchemaError(f"{len(hints)} hints, more than the {MAX_HINTS} allowed")
    each(hints, "hints", check_hint)


def check_hint(hint):
    """Raise SchemaError unless one hint fits its kind's shape."""
    if not isinstance(hint, dict):
        raise SchemaError("a hint must be an object")
    kind = hint.get("kind")
    if kind not in KINDS:
        raise SchemaError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    required, optional = FIELDS[kind]
    missing = required - set(hint)
    if missing:
        raise SchemaError(f"{kind}: missing field(s) {sorted(missing)}")
    extra = set(hint) - required - optional - COMMON
    if extra:
        raise SchemaError(f"{kind}: unknown field(s) {sorted(extra)}")
    if "id" in hint:
        _string(hint["id"], "id", 64)
    if "reason" in hint:
        _string(hint["reason"], "reason", 1000)
    _CHECKS[kind](hint)


def _string(value, name, limit):
    if not isinstance(value, str) or len(value) > limit:
        raise SchemaError(f"{name} must be a string of at most {limit} characters")


def _int(value, name, lo, hi):
    if type(value) is not int or not lo <= value <= hi:
        raise SchemaError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")


def _nodes(value, name, min_items=1):
    if not isinstance(value, list) or not min_items <= len(value) <= MAX_LIST:
        raise SchemaError(f"{name} must be a list of {min_items}..{MAX_LIST} node ids")
    for n in value:
        _int(n, f"{name} entry", 0, MAX_NODE)
    if len(set(value)) != len(value):
        raise SchemaError(f"{name} has duplicates")


def _pid(hint):
    _int(hint["pid"], "pid", 1, 4194304)  # PID_MAX_LIMIT on 64-bit


def _migrate(hint):
    _pid(hint)
    _nodes(hint["from_nodes"], "from_nodes")
    _nodes(hint["to_nodes"], "to_nodes")


def _move_range(hint):
    _pid(hint)
    _int(hint["start"], "start", 0, (1 << 64) - 1)
    _int(hint["length"], "length", 1, MAX_RANGE_BYTES)
    _int(hint["to_node"], "to_node", 0, MAX_NODE)


def _set_policy(hint):
    if ("pid" in hint) == ("launch" in hint):
        raise SchemaError("set_policy needs exactly one target: pid or launch")
    if "pid" in hint:
        _pid(hint)
    else:
        launch = hint["launch"]
        if not isinstance(launch, str) or not 1 <= len(launch) <= 64 or not set(launch) <= LAUNCH_CHARS:
            raise SchemaError("launch must be 1..64 characters of [A-Za-z0-9._-]")
    if hint["mode"] not in POLICY_MODES:
        raise SchemaError(f"mode must be one of {list(POLICY_MODES)}, got {hint['mode']!r}")
    _nodes(hint["nodes"], "nodes")
    if "weights" in hint:
        if hint["mode"] != "weighted_interleave":
            raise SchemaError("weights only go with mode weighted_interleave")
        _weights(hint["weights"])


def _weights(value):
    if not isinstance(value, dict) or not 1 <= len(value) <= MAX_LIST:
        raise SchemaError(f"weights must be an object of 1..{MAX_LIST} {{node: weight}}")
    for key, weight in value.items():
        if not (key.isascii() and key.isdigit()) or len(key) > 4 or (len(key) > 1 and key[0] == "0"):
            raise SchemaError(f"weights key {key!r} is not a node id")
        _int(weight, f"weights[{key}]", WEIGHT_MIN, WEIGHT_MAX)


def _set_knob(hint):
    knob, value = hint["knob"], hint["value"]
    if knob not in KNOB_NAMES:
        raise SchemaError(f"knob must be one of {list(KNOB_NAMES)}, got {knob!r}")
    if knob == "numa_balancing" and not (type(value) is int and value in NUMA_BALANCING_MODES):
        raise SchemaError(f"numa_balancing value must be one of {list(NUMA_BALANCING_MODES)}, got {value!r}")
    if knob == "demotion_enabled" and type(value) is not bool:
        raise SchemaError(f"demotion_enabled value must be true or false, got {value!r}")
    if knob == "thp_enabled" and value not in THP_MODES:
        raise SchemaError(f"thp_enabled value must be one of {list(THP_MODES)}, got {value!r}")
    if knob == "weighted_interleave":
        _weights(value)


def _set_affinity(hint):
    _pid(hint)
    cpus = hint["cpus"]
    if not isinstance(cpus, list) or not 1 <= len(cpus) <= 1024:
        raise SchemaError("cpus must be a list of 1..1024 CPU ids")
    for c in cpus:
        _int(c, "cpus entry", 0, 8191)
    if len(set(cpus)) != len(cpus):
        raise SchemaError("cpus has duplicates")


def _set_sched(hint):
    _pid(hint)
    if "nice" not in hint and "policy" not in hint:
        raise SchemaError("set_sched needs nice, policy or both")
    if "nice" in hint:
        _int(hint["nice"], "nice", NICE_MIN, NICE_MAX)
    if "policy" in hint and hint["policy"] not in SCHED_POLICIES:
        raise SchemaError(f"policy must be one of {list(SCHED_POLICIES)}, got {hint['policy']!r}")


_CHECKS = {"migrate_pages": _migrate, "move_range": _move_range, "set_policy": _set_policy,
           "set_knob": _set_knob, "set_affinity": _set_affinity, "set_sched": _set_sched}
