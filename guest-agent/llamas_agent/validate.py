"""Checking each (well-formed) hint against the running machine before anything changes.

A hint passes only if applying it cannot reach beyond what it names: a live
user process that is neither pid 1 nor the agent, nodes that exist and have
memory, a move that leaves a margin of free memory on the target, an address
range inside the process's own mappings, CPUs that are online, a knob
value this kernel accepts, and no slowing down of a protected process
(protected.py: sshd, the agent's ancestors, the administrator's list).
"""

import os

from .knobs import check_value, gather_knobs
from .machine import gather_nodes, held_back_kib
from .processes import is_kernel_thread, node_usage_kib, parse_maps
from .protected import (
    admin_names,
    affinity_slowdown,
    ancestors,
    sched_slowdown,
    why_protected,
)
from .syscalls import move_pages
from .sysfs import parse_cpulist

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# Keep this much of a target node free after a move: the largest of a floor, a share of
# the node, and what its zones hold back (zoneinfo.py), so that no move wakes kswapd.
MARGIN_FLOOR_KIB = 32 * 1024
MARGIN_FRACTION = 0.05
LOCATE_BATCH = 16384


class Rejected(ValueError):
    """The hint does not fit the machine; the message says why."""


class Context:
    """What validation reads once per document: nodes, online CPUs, the agent's pid, its ancestors
    and the administrator's protected names."""

    def __init__(self, tree, agent_pids=None):
        self.tree = tree
        held_back = held_back_kib(tree)
        self.nodes = {n["id"]: {**n, "held_back_kib": held_back.get(n["id"], 0)} for n in gather_nodes(tree)}
        self.online_cpus = set(parse_cpulist(tree.read("sys/devices/system/cpu/online", default="")))
        self.agent_pids = set(agent_pids if agent_pids is not None else (os.getpid(),))
        self.ancestors = ancestors(tree, self.agent_pids)
        self.protected_names = admin_names(tree)


def margin_kib(node):
    """Free memory a move must leave on `node`: never less than its zones hold back under their
    high watermarks, where a move would find the node's kswapd woken and nothing cold to take."""
    return max(MARGIN_FLOOR_KIB, int(node["mem_total_kib"] * MARGIN_FRACTION), node.get("held_back_kib", 0))


def check(ctx, hint):
    """Return a plan (dict of facts apply needs) or raise Rejected."""
    kind = hint["kind"]
    if "pid" in hint:
        _check_pid(ctx, hint["pid"])
    return _KINDS[kind](ctx, hint)


def _check_pid(ctx, pid):
    if pid == 1:
        raise Rejected("pid 1 (init) is never a target")
    if pid in ctx.agent_pids:
        raise Rejected(f"pid {pid} is the agent itself")
    kthread = is_kernel_thread(ctx.tree, pid)
    if kthread is None:
        raise Rejected(f"no process with pid {pid}")
    if kthread:
        raise Rejected(f"pid {pid} is a kernel thread")


def _check_memory_nodes(ctx, nodes, what):
    for n in nodes:
        if n not in ctx.nodes:
            raise Rejected(f"{what}: node {n} does not exist (nodes: {sorted(ctx.nodes)})")
        if ctx.nodes[n]["mem_total_kib"] <= 0:
            raise Rejected(f"{what}: node {n} has no memory")


def _check_fits(ctx, need_kib, to_nodes):
    """The move must fit in the target nodes' free memory, less their margins."""
    room = sum(max(0, ctx.nodes[n]["mem_free_kib"] - margin_kib(ctx.nodes[n])) for n in to_nodes)
    if need_kib > room:
        raise Rejected(f"move of {need_kib} KiB does not fit: nodes {sorted(to_nodes)} have {room} KiB "
                       f"free beyond their safety margin")


def _book(ctx, freed_kib, taken_kib):
    """Account a validated move in the snapshot, so later hints of the same document see it.

    This lets one document first make room on a node and then fill it ("demote the
    cold, then promote the hot"), while every check still happens before any change.
    """
    for n, kib in freed_kib.items():
        if n in ctx.nodes:
            ctx.nodes[n]["mem_free_kib"] += kib
    for n, kib in taken_kib.items():
        ctx.nodes[n]["mem_free_kib"] -= kib


def _spread(ctx, need_kib, to_nodes):
    """Where `need_kib` lands across `to_nodes`: the roomiest first (the worst case is any split that fits)."""
    taken = {}
    for n in sorted(to_nodes, key=lambda n: -ctx.nodes[n]["mem_free_kib"]):
        room = max(0, ctx.nodes[n]["mem_free_kib"] - margin_kib(ctx.nodes[n]))
        taken[n] = min(room, need_kib - sum(taken.values()))
    return taken


def _migrate(ctx, hint):
    src, dst = hint["from_nodes"], hint["to_nodes"]
    _check_memory_nodes(ctx, src, "from_nodes")
    _check_memory_nodes(ctx, dst, "to_nodes")
    if set(src) & set(dst):
        raise Rejected("from_nodes and to_nodes overlap")
    usage = node_usage_kib(ctx.tree, hint["pid"]) or {}
    need = sum(usage.get(n, 0) for n in src)
    _check_fits(ctx, need, dst)
    _book(ctx, {n: usage.get(n, 0) for n in src}, _spread(ctx, need, dst))
    return {"need_kib": need, "before_kib": usage}


def _covered(maps, start, end):
    """True when [start, end) lies inside the union of the mappings."""
    pos = start
    for lo, hi, _, _ in sorted(maps):
        if lo <= pos < hi:
            pos = hi
            if pos >= end:
                return True
    return False


def page_addresses(start, length):
    """Page-aligned addresses covering [start, start+length)."""
    first = start - start % PAGE
    return list(range(first, start + length, PAGE))


def locate(pid, addresses):
    """Node (or -errno) of each page, in batches so one call stays bounded."""
    out = []
    for i in range(0, len(addresses), LOCATE_BATCH):
        out.extend(move_pages(pid, addresses[i:i + LOCATE_BATCH]))
    return out


def _move_range(ctx, hint):
    pid, start, length, node = hint["pid"], hint["start"], hint["length"], hint["to_node"]
    _check_memory_nodes(ctx, [node], "to_node")
    maps = parse_maps(ctx.tree.read("proc", str(pid), "maps", default="") or "")
    if not _covered(maps, start, start + length):
        raise Rejected(f"range 0x{start:x}+0x{length:x} is not inside pid {pid}'s mappings (/proc/{pid}/maps)")
    addresses = page_addresses(start, length)
    try:
        where = locate(pid, addresses)
    except OSError as exc:
        raise Rejected(f"cannot locate pages of pid {pid}: {exc}") from None
    elsewhere = [w for w in where if w >= 0 and w != node]
    _check_fits(ctx, len(elsewhere) * PAGE // 1024, [node])
    freed = {}
    for w in elsewhere:
        freed[w] = freed.get(w, 0) + PAGE // 1024
    _book(ctx, freed, {node: len(elsewhere) * PAGE // 1024})
    return {"addresses": addresses, "before": where}


def _set_policy(ctx, hint):
    _check_memory_nodes(ctx, hint["nodes"], "nodes")
    if "pid" in hint:
        # No system call sets another task's policy (set_mempolicy and mbind act
        # on the caller); refusing is more honest than approximating it.
        raise Rejected("the kernel offers no interface to set another process's policy for new memory; "
                       "target a launch name and start the program with `llamas-agent run --as NAME -- CMD`, "
                       "or use migrate_pages for memory it already has")
    weights = hint.get("weights")
    if weights:
        why = check_value(ctx.tree, "weighted_interleave", weights, set(ctx.nodes))
        if why:
            raise Rejected(why)
    return {}


def _set_knob(ctx, hint):
    why = check_value(ctx.tree, hint["knob"], hint["value"], set(ctx.nodes))
    if why:
        raise Rejected(why)
    return {"previous": gather_knobs(ctx.tree)[hint["knob"]], "value": hint["value"]}


def _check_not_slowed(ctx, pid, slowdown):
    """Refuse a hint that would slow down a protected process; `slowdown()` names what would, or None.

    `slowdown` is called for protected processes only, so most targets cost no further reads.
    """
    name, why = why_protected(ctx, pid)
    what = slowdown() if why else None
    if what:
        raise Rejected(f"pid {pid} ({name}) is protected ({why}): {what} would slow it down; "
                       "only changes that do not slow it, and page moves, are allowed")


def _set_affinity(ctx, hint):
    offline = sorted(set(hint["cpus"]) - ctx.online_cpus)
    if offline:
        raise Rejected(f"CPU(s) {offline} are not online (online: {sorted(ctx.online_cpus)})")
    _check_not_slowed(ctx, hint["pid"], lambda: affinity_slowdown(ctx.tree, hint["pid"], hint["cpus"],
                                                                   ctx.online_cpus))
    return {}


def _set_sched(ctx, hint):
    # Nice and the non-real-time classes cannot hang the guest; they can starve its control path.
    _check_not_slowed(ctx, hint["pid"], lambda: sched_slowdown(ctx.tree, hint["pid"], hint.get("nice"),
                                                                hint.get("policy")))
    return {}


_KINDS = {"migrate_pages": _migrate, "move_range": _move_range, "set_policy": _set_policy,
          "set_knob": _set_knob, "set_affinity": _set_affinity, "set_sched": _set_sched}
