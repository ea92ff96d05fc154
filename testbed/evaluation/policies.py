"""The policies an evaluation compares, one small class each.

A policy may put a prefix before the workload's command line (how it is
started), act once at the gate (set-up done, timed phase not begun), act
again every few seconds during the timed phase, report what it did once the
timed phase is over, and clean up after the run.
Everything it changes through the agent is undone by the runner's
`llamas-agent undo` between runs; what it changes by itself (DAMON) it
undoes in `cleanup`.
"""

from __future__ import annotations

import shlex
import statistics
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Self

from .. import agent
from .. import policy as placement
from ..advisor import Advice, Advisor, PolicyAdvice
from ..hints import (
    MAX_RANGE_BYTES,
    HintDocument,
    MigratePages,
    MoveRange,
    SetAffinity,
    SetKnob,
)
from ..llm_client import LLMAnswerError
from ..ssh import GuestShell
from ..topology import Topology
from . import guest_process, hotmap, matrix, timescale
from .manifest import LlmExchange

HOTMAP_PATH = "/tmp/llamas-hot.txt"
GRANULE = 4096          # the skewed kernel's hot-map granule (one page)
ROOM_MARGIN = 96 << 20  # cold bytes moved off the fast node beyond the hot set's size (its free-page reserve)
DAMON_ADMIN = "/sys/kernel/mm/damon/admin/kdamonds"
ADVICE_ERROR_CHARS = 2000
REJECTION_CHARS = 500    # per rejected hint's reason


class PolicyError(RuntimeError):
    """A policy cannot act as it should (the run records this as its error)."""


@dataclass
class Context:
    """What a policy may use for one run."""

    shell: GuestShell
    topology: Topology
    proc: guest_process.GuestProcess
    fast_node: int
    slow_node: int
    workload: str
    repeat: int
    hotmap: str | None = None                         # the program's hot map in the guest, if it wrote one
    roles: dict[str, list[int]] | None = None         # {"latency": pids, "batch": pids}, if the program names them
    notes: str | None = None                          # the administrator's notes on the workload, for the advisor
    # Stops the guest while the advisor thinks: a local model shares the host's cores with the
    # emulator, and its thinking time is not the guest's (the guest's clock stops too).
    paused: Callable[[], AbstractContextManager] = nullcontext
    advisor: Callable[[], Advisor] | None = None      # built on first use (may start a local server)
    time_scale: float = 1.0                           # the kernel's policy clocks run this many times slower
    exchanges: list[LlmExchange] = field(default_factory=list)

    def record_exchange(self, advice: Advice | PolicyAdvice) -> None:
        """Keep an advisor answer's digests (model, prompt, answer, cache hit) for the manifest."""
        self.exchanges.append(LlmExchange(topology=self.topology.name, workload=self.workload, repeat=self.repeat,
                                          model=advice.model, prompt_digest=advice.prompt_digest,
                                          answer_digest=advice.answer_digest, cached=advice.cached))


@dataclass
class Outcome:
    """What an action did: hints applied and rejected (or failed)."""

    applied: int = 0
    rejected: int = 0
    advice_error: str | None = None  # the advisor answered nothing usable; nothing was applied
    rejections: list[str] = field(default_factory=list)  # why, one line per rejected hint
    enforcer: dict[str, float] = field(default_factory=dict)  # what an enforcing daemon did (Enforced.after)

    def add(self, result: agent.ApplyResult) -> Outcome:
        """Count one agent answer; a refused document counts every hint as rejected."""
        for r in result.results:
            if r.status == "applied":
                self.applied += 1
            else:
                self.reject(f"agent: {r.kind} {r.status}: {r.reason}")
        if not result.accepted and not result.results:
            self.reject(f"agent: document refused: {result.error}")
        return self

    def reject(self, why: str) -> Outcome:
        self.rejected += 1
        self.rejections.append(why[:REJECTION_CHARS])
        return self

    def __iadd__(self, other: Outcome) -> Self:
        self.applied += other.applied
        self.rejected += other.rejected
        self.advice_error = other.advice_error or self.advice_error
        self.rejections += other.rejections
        self.enforcer = other.enforcer or self.enforcer
        return self


class Policy:
    """First touch, nothing done: the baseline. Subclasses override what they change."""

    name = "default"
    every_s: float = 0  # > 0: `revisit` runs this often during the timed phase

    def prefix(self) -> list[str]:
        return []

    def prepare(self, ctx: Context) -> Outcome:
        return Outcome()

    def revisit(self, ctx: Context) -> Outcome:
        return Outcome()

    def after(self, ctx: Context) -> Outcome:
        """What the policy did during the timed phase (called once it is over)."""
        return Outcome()

    def cleanup(self, ctx: Context) -> None:
        pass


class Interleave(Policy):
    """Pages spread round-robin over every node from the start (numactl --interleave=all)."""

    name = "interleave"

    def prefix(self) -> list[str]:
        return ["numactl", "--interleave=all"]


class KernelTiering(Policy):
    """NUMA balancing in tiering mode (hot pages promoted) with demotion on, set through the agent."""

    name = "kernel-tiering"

    def prepare(self, ctx: Context) -> Outcome:
        document = HintDocument(source="kernel-tiering", hints=[
            SetKnob(knob="numa_balancing", value=2), SetKnob(knob="demotion_enabled", value=True)])
        outcome = Outcome().add(agent.apply(ctx.shell, document))
        if outcome.rejected:
            raise PolicyError(f"the agent did not set the tiering knobs: {agent.audit_log(ctx.shell)[-2:]}")
        return outcome


def node_span(shell: GuestShell, node: int) -> tuple[int, int]:
    """Physical [start, end) of a node's memory blocks (DAMON's paddr region for it)."""
    out = shell.run(f"cat /sys/devices/system/memory/block_size_bytes; "
                    f"ls /sys/devices/system/node/node{int(node)}/ | sed -n 's/^memory\\([0-9]*\\)$/\\1/p'").stdout
    size, *blocks = out.split()
    if not blocks:
        raise PolicyError(f"node {node} has no memory blocks in sysfs")
    block = int(size, 16)
    ids = sorted(int(b) for b in blocks)
    return ids[0] * block, (ids[-1] + 1) * block


def damos_script(regions: list[tuple[str, int, int, int]], quota_mib: int = 256, time_scale: float = 1.0) -> str:
    """Shell lines that start one paddr kdamond per (action, start, end, target node) with a DAMOS scheme.

    migrate_hot matches regions accessed at all in an aggregation interval;
    migrate_cold matches regions idle for ten intervals (a second, unscaled).
    No `young` page filter: under one TCG thread its per-page recheck cost kdamond more
    than the migrations it saved (README, "Fair baselines").
    Its clocks run `time_scale` times slower (see timescale.py).
    """
    clocks = timescale.damon_intervals(time_scale)
    lines = ["set -e", f"cd {DAMON_ADMIN}", f"echo {len(regions)} > nr_kdamonds"]
    for i, (action, start, end, target) in enumerate(regions):
        ctx, scheme = f"{i}/contexts/0", f"{i}/contexts/0/schemes/0"
        hot = action == "migrate_hot"
        lines += [f"echo 1 > {i}/contexts/nr_contexts", f"echo paddr > {ctx}/operations",
                  f"echo {clocks['sample_us']} > {ctx}/monitoring_attrs/intervals/sample_us",
                  f"echo {clocks['aggr_us']} > {ctx}/monitoring_attrs/intervals/aggr_us",
                  f"echo {clocks['update_us']} > {ctx}/monitoring_attrs/intervals/update_us",
                  f"echo 1 > {ctx}/targets/nr_targets", f"echo 1 > {ctx}/targets/0/regions/nr_regions",
                  f"echo {start} > {ctx}/targets/0/regions/0/start", f"echo {end} > {ctx}/targets/0/regions/0/end",
                  f"echo 1 > {ctx}/schemes/nr_schemes", f"echo {action} > {scheme}/action",
                  f"echo {target} > {scheme}/target_nid",
                  f"echo 4096 > {scheme}/access_pattern/sz/min",
                  f"echo {2**64 - 1} > {scheme}/access_pattern/sz/max",
                  f"echo {1 if hot else 0} > {scheme}/access_pattern/nr_accesses/min",
                  f"echo {2**32 - 1 if hot else 0} > {scheme}/access_pattern/nr_accesses/max",
                  f"echo {0 if hot else 10} > {scheme}/access_pattern/age/min",
                  f"echo {2**32 - 1} > {scheme}/access_pattern/age/max",
                  f"echo {quota_mib << 20} > {scheme}/quotas/bytes",
                  f"echo {clocks['reset_interval_ms']} > {scheme}/quotas/reset_interval_ms"]
    lines += [f"echo on > {i}/state" for i in range(len(regions))]
    return "\n".join(lines)


def stop_damon(shell: GuestShell) -> None:
    """Turn every kdamond off and remove them (what `damos_script` started)."""
    shell.run(f"cd {DAMON_ADMIN} && for s in */state; do echo off > $s 2>/dev/null; done; "
              "echo 0 > nr_kdamonds", check=False)


class Damon(Policy):
    """DAMON-based tiering (kernel 6.11+): promote hot slow-node regions, demote cold fast-node ones (DAMOS)."""

    name = "damon"

    def prepare(self, ctx: Context) -> Outcome:
        busy = ctx.shell.run(f"cat {DAMON_ADMIN}/nr_kdamonds", check=False)
        if not busy.ok:
            raise PolicyError(f"no DAMON sysfs interface in the guest ({busy.stderr.strip()})")
        if busy.stdout.strip() != "0":
            raise PolicyError(f"DAMON is already in use (nr_kdamonds={busy.stdout.strip()})")
        fast, slow = node_span(ctx.shell, ctx.fast_node), node_span(ctx.shell, ctx.slow_node)
        script = damos_script([("migrate_hot", *slow, ctx.fast_node), ("migrate_cold", *fast, ctx.slow_node)],
                              time_scale=ctx.time_scale)
        result = ctx.shell.run(f"sh -c {shlex.quote(script)}", check=False)
        if not result.ok:
            self.cleanup(ctx)
            raise PolicyError(f"the guest kernel refused the DAMOS set-up: {result.stderr.strip()[-300:]}")
        return Outcome(applied=2)

    def cleanup(self, ctx: Context) -> None:
        stop_damon(ctx.shell)


class Llm(Policy):
    """The advisor's hints for the gathered state, applied by the agent (once, or every `every_s`)."""

    name = "llm"

    def __init__(self, every_s: float = 0, damon_s: float | None = None):
        self.every_s, self.damon_s = every_s, damon_s

    def prepare(self, ctx: Context) -> Outcome:
        if ctx.advisor is None:
            raise PolicyError("the llm policy needs an advisor")
        state = agent.gather(ctx.shell, damon_seconds=self.damon_s,
                             damon_pids=[ctx.proc.pid] if self.damon_s else None)
        try:
            with ctx.paused():
                advice = ctx.advisor().advise(ctx.topology, state, notes=ctx.notes)
        except LLMAnswerError as exc:
            # Nonsense even after the repair round: the agent in service would apply nothing and
            # leave the machine as it is, so the run goes on and measures exactly that.
            return Outcome(advice_error=str(exc)[:ADVICE_ERROR_CHARS]).reject("advisor: no usable answer")
        ctx.record_exchange(advice)
        outcome = Outcome()
        for dropped in advice.dropped:
            outcome.reject(f"advisor: {dropped.hint.get('kind', '?')} dropped: {dropped.why}")
        if advice.hints:
            outcome.add(agent.apply(ctx.shell, advice.document()))
        return outcome

    revisit = prepare


class Enforced(Policy):
    """A placement policy (placement-policy-v1) that `llamas-agent enforce` keeps true for the workload's
    process through the timed phase: like the kernel's tiering, it acts on what it measures as the
    workload runs (at the gate the workload has not yet read or written anything)."""

    daemon: agent.Enforcer | None = None

    def placement(self, ctx: Context) -> placement.PlacementPolicy | Outcome:
        """The policy to enforce, or an Outcome saying why there is none."""
        raise NotImplementedError

    def prepare(self, ctx: Context) -> Outcome:
        got = self.placement(ctx)
        if isinstance(got, Outcome):
            return got
        try:
            placement.check_nodes(got, {n.id for n in ctx.topology.nodes}, self.name)
            paced = timescale.placement_limits(got, ctx.time_scale)
            self.daemon = agent.start_enforce(ctx.shell, paced.to_json(), pids=[ctx.proc.pid])
        except (placement.PolicyError, agent.EnforceRefused) as exc:
            raise PolicyError(f"{self.name}: {exc}") from None
        return Outcome(applied=1)

    def after(self, ctx: Context) -> Outcome:
        rounds = agent.enforce_rounds(ctx.shell, self.daemon) if self.daemon else []
        return Outcome(enforcer=enforcer_summary(rounds))


def enforcer_summary(rounds: list[dict]) -> dict[str, float]:
    """A daemon's rounds in a few figures: how many, what they moved and found no room for, its CPU, and
    how much memory it found write-heavy and read-mostly while the workload ran (to hold against where the
    workload wrote and read: the plugin's per-node counters).

    The classes are those of the last round whose whole interval the workload ran through: the last but
    one that found its memory touched, since a later round found it still running. The last such round's
    interval may hold the workload's end (its loop done, the process not yet gone): on a CI host one found
    24 MiB of a 64 MiB log written and the rest read-mostly, where a whole interval of its writes
    (73,000 a second over 32 chunks) marks a chunk's quarter of pages within 65 ms."""
    if not rounds:
        return {"rounds": 0}
    shares = [r["cpu_percent"] for r in rounds if r.get("cpu_percent") is not None]
    # not a round after the workload's exit, nor one it exited during (its pagemap gone: no classes)
    measured = [r for r in rounds if r.get("processes") and r.get("bytes_by_class")]
    last = measured[-1] if measured else rounds[-1]
    touched = [r for r in measured if _touched(r)]
    ran_through = touched[-2] if len(touched) >= 2 else last

    def mib(write: str) -> float:
        return round(_class_bytes(ran_through, lambda key: key.endswith("/" + write)) / 2**20, 1)

    # keeping a placed policy true: the rounds that found nothing to move (the 5 % goal is theirs)
    steady = [r["cpu_percent"] for r in rounds if r.get("cpu_percent") is not None and not r["moved_bytes"]]
    return {"rounds": len(rounds), "moved_mib": round(sum(r["moved_bytes"] for r in rounds) / 2**20, 1),
            "no_room_mib": round(last["no_room_bytes"] / 2**20, 1),
            "cpu_s": round(sum(r["cpu_seconds"] for r in rounds), 2),
            "cpu_percent": round(sum(shares) / len(shares), 1) if shares else 0.0,
            **({"steady_cpu_percent": round(statistics.median(steady), 2)} if steady else {}),
            "write_heavy_mib": mib("write-heavy"), "read_mostly_mib": mib("read-mostly")}


def _class_bytes(record: dict, wanted: Callable[[str], bool]) -> int:
    """Bytes a round found in the classes ("heat/write") that `wanted` picks, summed over the nodes."""
    return sum(sum(per_node.values()) for key, per_node in record.get("bytes_by_class", {}).items() if wanted(key))


def _touched(record: dict) -> bool:
    """Whether a round found any of the workload's memory written or accessed in its interval."""
    return _class_bytes(record, lambda key: not key.endswith("/untouched")) > 0


class Rules(Enforced):
    """A hand-written placement policy from benchmarks/policies/NAME.json, enforced."""

    def __init__(self, name: str):
        self.name, self.file = matrix.RULES + name, matrix.rules_file(name)

    def placement(self, ctx: Context) -> placement.PlacementPolicy:
        return placement.load(self.file)


class LlmPolicy(Enforced):
    """The advisor's standing policy for the machine, written from its description alone, enforced."""

    name = "llm-policy"

    def placement(self, ctx: Context) -> placement.PlacementPolicy | Outcome:
        if ctx.advisor is None:
            raise PolicyError("the llm-policy policy needs an advisor")
        try:
            with ctx.paused():
                advice = ctx.advisor().advise_policy(ctx.topology, ctx.notes)
        except LLMAnswerError as exc:  # as for `llm`: nothing usable, nothing enforced, the run goes on
            return Outcome(advice_error=str(exc)[:ADVICE_ERROR_CHARS]).reject("advisor: no usable policy")
        ctx.record_exchange(advice)
        return advice.policy


def oracle_moves(pid: int, hot: list[tuple[int, int]], mapping: tuple[int, int], fast: int, slow: int,
                 margin: int = ROOM_MARGIN) -> list[MoveRange]:
    """Cold pages off the fast node (from the mapping's start, as many as the hot set plus a margin), then the hot set onto it.

    First touch fills the fast node from the buffer's start, so its first cold
    bytes are what holds the room the hot set needs. One document suffices:
    the agent books each accepted move before checking the next one.
    """
    start, end = mapping
    room = sum(length for _, length in hot) + margin
    cold, cursor = [], start
    for h_start, h_len in sorted(hot) + [(end, 0)]:
        take = min(h_start - cursor, room)
        if take > 0:
            cold.append((cursor, take))
            room -= take
        cursor = h_start + h_len
    pieces = [(s, n, slow) for s, n in cold] + [(s, n, fast) for s, n in hot]
    return [MoveRange(pid=pid, start=s + off, length=min(MAX_RANGE_BYTES, n - off), to_node=node)
            for s, n, node in pieces for off in range(0, n, MAX_RANGE_BYTES)]


def mapping_of(maps: str, address: int) -> tuple[int, int]:
    """The [start, end) of the /proc/PID/maps line holding `address`."""
    for line in maps.splitlines():
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        if lo <= address < hi:
            return lo, hi
    raise PolicyError(f"address 0x{address:x} is in no mapping of the process")


def core_placement(topology: Topology, roles: dict[str, list[int]]) -> list[SetAffinity]:
    """Latency-critical processes on the fastest cores, batch work on the rest (all cores if they are alike)."""
    fast = topology.fastest_cpus()
    slow = [c for c in topology.cpu_speeds() if c not in fast] or fast
    return ([SetAffinity(pid=pid, cpus=fast) for pid in roles["latency"]]
            + [SetAffinity(pid=pid, cpus=slow) for pid in roles["batch"]])


def memory_placement(roles: dict[str, list[int]], fast: int, slow: int) -> list[MigratePages]:
    """The batch work's pages off the fast node, then the latency-critical processes' onto it (the agent
    books each move before checking the next, so the first makes room for the second); none where the
    two nodes are one."""
    if fast == slow:
        return []
    return ([MigratePages(pid=pid, from_nodes=[fast], to_nodes=[slow]) for pid in roles["batch"]]
            + [MigratePages(pid=pid, from_nodes=[slow], to_nodes=[fast]) for pid in roles["latency"]])


class Oracle(Policy):
    """Ground truth placed as it should be: the program's named latency-critical processes on the fastest
    cores, with their memory on the fastest node, and its batch work on the other cores; or else its hot map
    moved onto the fastest node. `oracle-cores` and `oracle-memory` make one half each (where a workload
    names roles), so a gain can be split between the scheduling and the placement."""

    name = "oracle"
    cores, memory = True, True

    def prepare(self, ctx: Context) -> Outcome:
        if ctx.roles is not None:
            hints = [*(core_placement(ctx.topology, ctx.roles) if self.cores else []),
                     *(memory_placement(ctx.roles, ctx.fast_node, ctx.slow_node) if self.memory else [])]
            return Outcome().add(agent.apply(ctx.shell, HintDocument(source=self.name, hints=hints)))
        if not self.memory:
            raise PolicyError(f"workload {ctx.workload} names no roles, which {self.name} needs")
        if ctx.hotmap is None:
            raise PolicyError(f"workload {ctx.workload} writes no hot map and names no roles, one of which "
                              f"the {self.name} needs")
        hot = hotmap.ranges(hotmap.parse(ctx.shell.run(f"cat {ctx.hotmap}").stdout), GRANULE)
        if not hot:
            raise PolicyError(f"the hot map {ctx.hotmap} is empty")
        maps = ctx.shell.run(f"cat /proc/{ctx.proc.pid}/maps").stdout
        mapping = mapping_of(maps, hot[0][0])
        moves = oracle_moves(ctx.proc.pid, hot, mapping, ctx.fast_node, ctx.slow_node)
        return Outcome().add(agent.apply(ctx.shell, HintDocument(source=self.name, hints=moves)))


class OracleCores(Oracle):
    """The oracle's core placement alone: memory stays where first touch put it."""

    name = "oracle-cores"
    memory = False


class OracleMemory(Oracle):
    """The oracle's memory placement alone: the scheduler keeps placing the processes."""

    name = "oracle-memory"
    cores = False


def make(name: str, every_s: float = 0, damon_s: float | None = None) -> Policy:
    """The policy called `name` (one of matrix.POLICIES, or rules:NAME)."""
    if name == "llm":
        return Llm(every_s, damon_s)
    if name.startswith(matrix.RULES):
        return Rules(name[len(matrix.RULES):])
    classes = {c.name: c for c in (Policy, Interleave, KernelTiering, Damon, LlmPolicy, Oracle, OracleCores,
                                   OracleMemory)}
    if name not in classes:
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(sorted([*classes, 'llm', 'rules:NAME']))}")
    return classes[name]()
