"""What each MCP tool does to the machine, as plain blocking methods with typed results.

`Toolbox` holds one session: the machine, its budget, the workloads run so
far.  Every change to the guest goes through the guest agent (`llamas-agent
apply`, which validates each hint against the running machine, and `undo`);
workloads start under `llamas-agent run --as NAME`, so a `set_policy` hint for
launch NAME shapes the next run.  A refusal or failure raises `ToolFailure`
with a message meant for the agent; nothing here prints a traceback.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .. import agent, prompt
from ..evaluation import guest_process
from ..evaluation import workload as _workload
from ..evaluation.results import NodeCounters
from ..evaluation.runner import BASELINE_KNOBS
from ..hints import HintDocument
from ..state import GuestState
from ..topology import CoreGroup, HmatEntry, Node
from .budget import Budget, BudgetLeft
from .machine import Machine

MAX_DAMON_S = 30.0
LEFTOVER_STOP_S = 30


class ToolFailure(RuntimeError):
    """A tool refused or failed; the message is what the agent reads."""


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MachineDescription(_Out):
    """The machine as its administrator describes it, its topology file's facts, and the session's terms."""

    topology: str
    description: str = Field(description="the administrator's plain-language account of the devices")
    facts: str = Field(description="the topology file's figures, one line per node")
    nodes: list[Node]
    hmat: list[HmatEntry]
    distances: list[list[int]] | None
    cores: list[CoreGroup]
    cpu_speeds: dict[str, float] = Field(description="vCPU -> speed relative to a full-speed core")
    latency: str = Field(description="'emulated': slow nodes feel slow (the plugin counts per-node traffic); "
                         "'advertised': HMAT figures only, every node as fast as the host")
    fast_node: int
    fast_node_held_mib: int = Field(description="memory of the fast node held as free huge pages, out of reach")
    baseline_knobs: dict[str, str] = Field(description="set at boot, before any hint")
    launch_policies: str = Field(description="how a set_policy hint reaches a workload")
    budget: BudgetLeft


class ApplyOutcome(_Out):
    """The guest agent's answer to one hint document."""

    dry_run: bool
    accepted: bool = Field(description="false: the agent refused the whole document (see error)")
    applied: int = Field(description="hints applied (or, in a dry run, that would apply)")
    rejected: int
    error: str | None = Field(description="why the document or some of its hints were refused")
    results: list[agent.HintResult]
    budget: BudgetLeft


class UndoOutcome(_Out):
    """What `llamas-agent undo` restored (page moves are not undone: moving pages back is a new hint)."""

    undone: list[dict[str, Any]]
    budget: BudgetLeft


class WorkloadInfo(_Out):
    name: str
    description: str
    primary: str = Field(description="the headline figure")
    higher_is_better: bool
    also: list[str]
    params: dict[str, int | float | str] = Field(description="parameters and their defaults")
    timeout_s: float
    notes: str | None = Field(description="the administrator's notes on this workload")


class WorkloadList(_Out):
    workloads: list[WorkloadInfo]
    launch_policies: str


class WorkloadRun(_Out):
    """One run of a workload: its figures and, in emulated mode, which node served its timed phase."""

    workload: str
    params: dict[str, int | float | str]
    seed: int
    launch: str = Field(description="the launch name it ran under (set_policy hints with this launch apply)")
    primary: str
    higher_is_better: bool
    value: float = Field(description="the primary figure")
    figures: dict[str, float]
    counters: dict[str, NodeCounters] | None = Field(
        description="the latency plugin's counters per node for the timed phase ('-1': outside every node): "
                    "its loop alone for a workload that marks it (the skewed kernel does), else from its gate "
                    "to its exit; null when the latency is not emulated")
    miss_share: dict[str, float] | None = Field(description="share of the timed phase's cache misses per node")
    setup_seconds: float
    timed_seconds: float
    budget: BudgetLeft


class CounterSnapshot(_Out):
    """The latency plugin's counters since their last reset (every run_workload resets them at its timed phase)."""

    nodes: dict[str, NodeCounters]
    miss_share: dict[str, float]
    slept_ns: int
    reset_after_read: bool


LAUNCH_NOTE = ("run_workload starts a workload as `llamas-agent run --as NAME` (NAME: the workload's name), "
               "so a set_policy hint with launch=NAME sets the memory policy of its next runs; undo clears it.")


def miss_share(nodes: dict[str, NodeCounters]) -> dict[str, float]:
    misses = {n: c.misses for n, c in nodes.items() if int(n) >= 0}
    total = sum(misses.values())
    return {n: round(v / total, 4) for n, v in sorted(misses.items())} if total else {}


class Toolbox:
    """One session's tools on one machine."""

    def __init__(self, machine: Machine, budget: Budget):
        self.machine, self.budget = machine, budget
        self._installed: set[str] = set()
        self._runs = 0

    # ---- looking ---------------------------------------------------------

    def describe_machine(self) -> MachineDescription:
        topo, m = self.machine.topology, self.machine
        return MachineDescription(
            topology=topo.name, description=topo.description.strip(), facts=prompt.machine_facts(topo),
            nodes=topo.nodes, hmat=topo.hmat, distances=topo.distances, cores=topo.cores,
            cpu_speeds={str(c): s for c, s in topo.cpu_speeds().items()}, latency=m.latency,
            fast_node=m.fast_node, fast_node_held_mib=m.held_mib, baseline_knobs=dict(BASELINE_KNOBS),
            launch_policies=LAUNCH_NOTE, budget=self.budget.left())

    def gather_state(self, damon_seconds: float | None = None, damon_pids: list[int] | None = None) -> GuestState:
        if damon_seconds:
            if not 0 < damon_seconds <= MAX_DAMON_S:
                raise ToolFailure(f"damon_seconds={damon_seconds:g}: give 0 < seconds <= {MAX_DAMON_S:g}")
            self.budget.reserve(damon_seconds, "gather_state with DAMON")
        started = time.monotonic()
        try:
            return agent.gather(self.machine.shell, damon_seconds=damon_seconds or None, damon_pids=damon_pids)
        finally:
            if damon_seconds:
                self.budget.charge(time.monotonic() - started)

    def list_workloads(self) -> WorkloadList:
        infos = []
        for name in _workload.available():
            w = _workload.load(_workload.resolve(name))
            infos.append(WorkloadInfo(name=w.name, description=w.description, primary=w.primary,
                                      higher_is_better=w.higher_is_better, also=w.also, params=w.params,
                                      timeout_s=w.timeout_s, notes=w.notes.strip() if w.notes else None))
        return WorkloadList(workloads=infos, launch_policies=LAUNCH_NOTE)

    def read_counters(self, reset: bool = False) -> CounterSnapshot:
        control = self.machine.control
        if control is None:
            raise ToolFailure("no counters: the latency plugin runs only in emulated mode "
                              "(start the server with --latency emulated)")
        snap = control.read()
        if reset:
            control.reset()
        nodes = {str(n): NodeCounters(**c) for n, c in snap.nodes.items()}
        return CounterSnapshot(nodes=nodes, miss_share=miss_share(nodes), slept_ns=snap.slept_ns,
                               reset_after_read=reset)

    # ---- acting ----------------------------------------------------------

    def apply_hints(self, document: HintDocument, dry_run: bool = False) -> ApplyOutcome:
        if not dry_run:
            self.budget.action()
        result = agent.apply(self.machine.shell, document, dry_run=dry_run)
        ok = ("applied", "would_apply")
        refused = [r for r in result.results if r.status not in ok]
        error = None
        if not result.accepted:
            error = f"the agent refused the document: {result.error}"
        elif refused:
            error = f"{len(refused)} of {len(result.results)} hints refused: " + "; ".join(
                f"#{r.index} {r.kind} {r.status}: {r.reason}" for r in refused)
        return ApplyOutcome(dry_run=dry_run, accepted=result.accepted,
                            applied=sum(r.status in ok for r in result.results), rejected=len(refused),
                            error=error, results=result.results, budget=self.budget.left())

    def undo(self) -> UndoOutcome:
        return UndoOutcome(undone=agent.undo(self.machine.shell).get("undone", []), budget=self.budget.left())

    # ---- measuring -------------------------------------------------------

    def workload(self, name: str) -> _workload.Workload:
        if name not in _workload.available():
            raise ToolFailure(f"no workload {name!r}; the workloads are: {', '.join(_workload.available())}")
        return _workload.load(_workload.resolve(name))

    def run_workload(self, name: str, params: dict[str, int | float | str] | None = None,
                     time_limit_s: float = 300.0, seed: int = 1) -> WorkloadRun:
        """Set-up with the delays off, then the timed phase with them on, as an evaluation run does."""
        w = self.workload(name)
        if time_limit_s <= 0:
            raise ToolFailure(f"time_limit_s={time_limit_s:g}: give a positive number of seconds")
        try:
            w.argv(seed, params)  # unknown parameters are refused before anything starts
        except _workload.WorkloadError as exc:
            raise ToolFailure(str(exc)) from None
        self.budget.reserve(time_limit_s, f"run_workload {name}")
        m = self.machine
        if name not in self._installed:
            w.install(m.shell)
            self._installed.add(name)
        self._runs += 1
        proc = guest_process.GuestProcess(m.shell, f"mcp-{name}-{self._runs}")
        command = w.command(seed, prefix=["llamas-agent", "run", "--as", name, "--"], params=params, wait=proc.gate)
        started = time.monotonic()
        try:
            m.delays_off()
            guest_process.start(proc, command, gated=True, timeout=time_limit_s)
            gate = time.monotonic()
            m.delays_on()
            output = guest_process.release_and_finish(proc, max(1.0, time_limit_s - (gate - started)))
            done = time.monotonic()
            snap = m.control.timed()[0] if m.control is not None else None  # the loop alone, where marked
            figures = w.parse(output)
        except (guest_process.GuestProcessError, _workload.WorkloadError) as exc:
            raise ToolFailure(f"run_workload {name}: {exc}") from None
        finally:
            self._leftovers(proc)
            self.budget.charge(time.monotonic() - started)
        nodes = {str(n): NodeCounters(**c) for n, c in snap.nodes.items()} if snap else None
        return WorkloadRun(workload=name, params={**w.params, **(params or {})}, seed=seed, launch=name,
                           primary=w.primary, higher_is_better=w.higher_is_better, value=figures[w.primary],
                           figures=figures, counters=nodes, miss_share=miss_share(nodes) if nodes else None,
                           setup_seconds=round(gate - started, 3), timed_seconds=round(done - gate, 3),
                           budget=self.budget.left())

    def _leftovers(self, proc: guest_process.GuestProcess) -> None:
        """No process of the run is left, and the delays are off again."""
        try:
            if proc.group is not None and guest_process.alive(proc):
                guest_process.stop(proc, LEFTOVER_STOP_S)
        finally:
            self.machine.delays_off()
