"""`apply`: parse, validate every hint, then apply the valid ones and measure what they did.

Order of work: the document is checked whole (size, JSON, schema) and then
every hint is checked against the machine; only after all checks does
anything change.  A rejected hint is reported with its reason and changes
nothing; the others still apply.  Each change is recorded for undo before
the next one, and every hint's outcome goes to the audit log.
"""

import errno
import hashlib
import os
import time

from . import HINTS_SCHEMA_VERSION
from .audit import Records
from .hints import SchemaError, parse_document
from .knobs import gather_knobs, write_knob
from .processes import node_usage_kib
from .syscalls import migrate_pages, move_pages
from .validate import LOCATE_BATCH, PAGE, Context, Rejected, check

BUSY_RETRIES = 3  # further tries for pages the kernel found busy
BUSY_WAIT_S = 0.02


def apply_document(raw, tree, records=None, dry_run=False, agent_pids=None):
    """Bytes of a hint document -> result dict (never raises for bad input)."""
    records = records or Records()
    digest = hashlib.sha256(raw).hexdigest()
    result = {"schema_version": HINTS_SCHEMA_VERSION, "dry_run": dry_run, "accepted": False,
              "error": None, "results": []}
    try:
        doc = parse_document(raw)
    except SchemaError as exc:
        result["error"] = str(exc)
        records.audit(action="apply", dry_run=dry_run, document_sha256=digest, document_bytes=len(raw),
                      status="rejected_document", reason=str(exc))
        return result
    result["accepted"] = True
    ctx = Context(tree, agent_pids)
    plans = [_validate(ctx, hint) for hint in doc["hints"]]
    for index, (hint, (plan, why)) in enumerate(zip(doc["hints"], plans, strict=True)):
        outcome = _outcome(tree, records, hint, plan, why, dry_run)
        outcome = {"index": index, "id": hint.get("id"), "kind": hint["kind"], **outcome}
        result["results"].append(outcome)
        records.audit(action="apply", dry_run=dry_run, document_sha256=digest, hint=hint, **{
            k: outcome[k] for k in ("index", "status", "reason", "effect")})
    return result


def _validate(ctx, hint):
    try:
        return check(ctx, hint), None
    except Rejected as exc:
        return None, str(exc)


def _outcome(tree, records, hint, plan, why, dry_run):
    if why is not None:
        return {"status": "rejected", "reason": why, "effect": None}
    if dry_run:
        return {"status": "would_apply", "reason": None, "effect": _dry_effect(plan)}
    try:
        return {"status": "applied", "reason": None, "effect": _APPLY[hint["kind"]](tree, records, hint, plan)}
    except OSError as exc:
        return {"status": "failed", "reason": f"{exc.strerror or exc}", "effect": None}


def _dry_effect(plan):
    if "addresses" in plan:
        return {"pages": len(plan["addresses"])}
    if "before_kib" in plan:
        return {"need_kib": plan["need_kib"], "before_kib_by_node": _kib_by_node(plan["before_kib"])}
    return plan


def _kib_by_node(usage):
    return {str(n): kib for n, kib in sorted((usage or {}).items())}


def _apply_migrate(tree, records, hint, plan):
    pid = hint["pid"]
    not_moved = migrate_pages(pid, hint["from_nodes"], hint["to_nodes"])
    after = node_usage_kib(tree, pid) or {}
    before = plan["before_kib"]
    nodes = sorted(set(before) | set(after))
    # Page moves are not undone: moving back is itself a hint with its own checks.
    return {"pages_not_moved": not_moved,
            "before_kib_by_node": _kib_by_node(before), "after_kib_by_node": _kib_by_node(after),
            "moved_kib": {str(n): after.get(n, 0) - before.get(n, 0) for n in nodes}}


def _apply_move_range(tree, records, hint, plan):
    return move_located(hint["pid"], plan["addresses"], plan["before"], hint["to_node"])


def move_located(pid, addresses, before, node):
    """Move pid's pages at `addresses` (on nodes `before`, as located) to `node`, in bounded batches;
    report what moved from where, what was already there, absent or failed (by errno name)."""
    after = _move_batches(pid, addresses, node)
    for _ in range(BUSY_RETRIES):
        busy = [i for i, a in enumerate(after) if a == -errno.EBUSY]
        if not busy:
            break
        # EBUSY is a page someone else holds for a moment (kswapd, DAMON, a migration in flight): try it again
        time.sleep(BUSY_WAIT_S)
        for i, a in zip(busy, _move_batches(pid, [addresses[i] for i in busy], node), strict=True):
            after[i] = a
    moved, failed, absent = {}, {}, 0
    for b, a in zip(before, after, strict=True):
        if b < 0:
            absent += 1  # not resident: nothing to move, it will fault in by policy
        elif a == node and b != node:
            moved[str(b)] = moved.get(str(b), 0) + 1
        elif a < 0:
            name = errno.errorcode.get(-a, str(-a))
            failed[name] = failed.get(name, 0) + 1
    return {"pages": len(addresses), "page_bytes": PAGE, "moved_pages_from_node": moved,
            "to_node": node, "already_there": sum(1 for b in before if b == node),
            "not_resident": absent, "failed": failed}


def _move_batches(pid, addresses, node):
    after = []
    for i in range(0, len(addresses), LOCATE_BATCH):
        after.extend(move_pages(pid, addresses[i:i + LOCATE_BATCH], node))
    return after


def _apply_knob(tree, records, hint, plan):
    knob, value = hint["knob"], hint["value"]
    previous = gather_knobs(tree)[knob]
    if knob == "weighted_interleave":
        previous = {k: previous[k] for k in value}
    records.push_undo({"type": "knob", "knob": knob, "previous": previous})
    write_knob(tree, knob, value)
    return {"knob": knob, "previous": previous, "now": gather_knobs(tree)[knob]}


def _apply_affinity(tree, records, hint, plan):
    pid, cpus = hint["pid"], set(hint["cpus"])
    tids = _tids(tree, pid)
    previous = {str(t): sorted(os.sched_getaffinity(t)) for t in tids}
    records.push_undo({"type": "affinity", "pid": pid, "previous": previous})
    # sched_setaffinity acts on one thread: every thread of the process gets the set.
    for t in tids:
        os.sched_setaffinity(t, cpus)
    return {"threads": len(tids), "previous": previous.get(str(pid)), "now": sorted(os.sched_getaffinity(pid))}


SCHED_POLICY = {"normal": os.SCHED_OTHER, "batch": os.SCHED_BATCH, "idle": os.SCHED_IDLE}
POLICY_NAME = {v: k for k, v in SCHED_POLICY.items()}


def sched_of(tid):
    """[nice, policy name] of one thread."""
    return [os.getpriority(os.PRIO_PROCESS, tid), POLICY_NAME.get(os.sched_getscheduler(tid), "other")]


def set_sched(tid, nice=None, policy=None):
    """Nice level and scheduling class of one thread (on Linux both act per thread)."""
    if policy is not None:
        os.sched_setscheduler(tid, SCHED_POLICY[policy], os.sched_param(0))
    if nice is not None:
        os.setpriority(os.PRIO_PROCESS, tid, nice)


def _apply_sched(tree, records, hint, plan):
    pid = hint["pid"]
    tids = _tids(tree, pid)
    previous = {str(t): sched_of(t) for t in tids}
    records.push_undo({"type": "sched", "pid": pid, "previous": previous})
    for t in tids:
        set_sched(t, hint.get("nice"), hint.get("policy"))
    nice, policy = sched_of(pid)
    return {"threads": len(tids), "previous": previous.get(str(pid)), "now": {"nice": nice, "policy": policy}}


def _tids(tree, pid):
    names = [int(n) for n in os.listdir(tree.path("proc", str(pid), "task")) if n.isdigit()]
    return sorted(names) or [pid]


def _apply_policy(tree, records, hint, plan):
    launches = records.load(records.launch_path, {})
    name = hint["launch"]
    policy = {"mode": hint["mode"], "nodes": hint["nodes"]}
    effect = {"launch": name, "policy": policy, "previous": launches.get(name)}
    if hint.get("weights"):
        effect["weights"] = _apply_knob(tree, records, {"knob": "weighted_interleave", "value": hint["weights"]}, {})
    records.push_undo({"type": "launch", "name": name, "previous": launches.get(name)})
    launches[name] = policy
    records.save(records.launch_path, launches)
    return effect


_APPLY = {"migrate_pages": _apply_migrate, "move_range": _apply_move_range, "set_knob": _apply_knob,
          "set_affinity": _apply_affinity, "set_policy": _apply_policy, "set_sched": _apply_sched}

