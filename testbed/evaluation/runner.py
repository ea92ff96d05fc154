"""Run a matrix: one boot per topology, every (repeat, workload, policy) in it, results written after each run.

Per run: the workload sets up with the latency delays off (first touch at
TCG speed), stops at its gate, the policy acts on its pid, then the delays
go on, the plugin's counters are zeroed and the timed phase runs. Between
runs the agent undoes what was applied and leftovers are stopped. An
interrupt (Ctrl-C, SIGTERM) leaves every finished run, the summary, the plots
and the manifest written, and the QEMU process shut down.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from .. import agent
from ..advisor import Advisor, AnswerCache
from ..image import GuestImage
from ..latency import calibrate
from ..latency.emulated import Delays, EmulatedMachine
from ..latency.felt import fit
from ..llm_client import Endpoint
from ..process import check_stop, signals_deferred
from ..ssh import GuestShell
from ..topology import Topology
from . import (
    guest_process,
    kernel_counters,
    manifest,
    plots,
    policies,
    reclaim,
    results,
    resume,
    squeeze,
    summary,
    timescale,
)
from .matrix import Matrix, RunKey
from .sampler import Sampler
from .series import Series
from .workload import Workload, census, ticks
from .workload import roles as workload_roles

log = logging.getLogger(__name__)
LEFTOVER_STOP_S = 30
STEADY = "steady_ops_per_s"  # a time-based run's headline: operations per second after the warm-up
# Every run starts from first touch alone. Debian's kernel boots with NUMA balancing in mode 1,
# whose hint faults tripled the memory accesses per operation of a policy-less run here;
# only the policies that ask for it (kernel-tiering, or advice) turn it on, and undo turns it off.
# The per-CPU free lists at their smallest: see squeeze.PCP_HIGH_FRACTION.
BASELINE_KNOBS = {"/proc/sys/kernel/numa_balancing": "0", "/sys/kernel/mm/numa/demotion_enabled": "false",
                  squeeze.PCP_HIGH_FRACTION_PATH: squeeze.PCP_HIGH_FRACTION}


def set_baseline_knobs(shell: GuestShell) -> dict[str, str]:
    """Write BASELINE_KNOBS in the guest (before any squeeze or policy); return them, as the manifest keeps them."""
    shell.run(" && ".join(f"echo {value} > {path}" for path, value in BASELINE_KNOBS.items()))
    return dict(BASELINE_KNOBS)


@dataclass
class Settings:
    """How to run: where to write, whom to ask for advice."""

    out: Path
    endpoint: Endpoint | None = None
    refresh: bool = False
    answers: AnswerCache | None = None


@dataclass
class Evaluation:
    """The state of one evaluation: its runs so far and its manifest."""

    matrix: Matrix
    settings: Settings
    manifest: manifest.Manifest
    console: Console
    runs: list[results.Run] = field(default_factory=list)
    fast_nodes: dict[str, int] = field(default_factory=dict)
    cut: results.Run | None = None  # the run an interrupt cut short, if one did
    host: str = field(default_factory=socket.gethostname)  # recorded in each run
    _advisor: Advisor | None = None

    def advisor(self) -> Advisor:
        if self._advisor is None:
            self._advisor = Advisor(self.settings.endpoint, cache=self.settings.answers, refresh=self.settings.refresh)
            self.manifest.llm_endpoint = self.settings.endpoint.base_url if self.settings.endpoint else "local"
        return self._advisor

    def close(self) -> None:
        if self._advisor is not None:
            self._advisor.close()

    def missing(self) -> list[RunKey]:
        """The matrix's cells not yet among the runs (all of them, unless --resume kept some)."""
        done = {resume.key_of(r) for r in self.runs}
        return [k for k in self.matrix.runs() if k not in done]

    def record(self, run: results.Run) -> None:
        """Keep a finished (or cut) run: results files rewritten at once, a line on the console."""
        self.runs.append(run)
        results.write(self.settings.out, self.runs)
        log.info("run %d of %s written", len(self.runs), run.topology)  # test_signals_vm keys on this line
        _say(self.console, run)

    def write(self) -> list[summary.Row]:
        """Write results, summary, plots and manifest as they stand."""
        out = self.settings.out
        results.write(out, self.runs)
        rows = summary.summarize(self.runs, fast_nodes=self.fast_nodes)
        summary.write(out, rows)
        if rows:
            plots.write(out, rows, self.runs, self.fast_nodes)
        manifest.write(out, self.manifest)
        return rows


def fastest_nodes(topo: Topology) -> list[int]:
    """Memory nodes, fastest first (HMAT read latency; nodes without it last, by id)."""
    targets = calibrate.targets(topo) if any(topo.best_hmat(n) for n in topo.nodes) else {}
    nodes = [n.id for n in topo.nodes if n.size_mib > 0]
    return sorted(nodes, key=lambda n: (targets.get(n, (float("inf"),))[0], n))


def run_matrix(evaluation: Evaluation, image: GuestImage) -> list[summary.Row]:
    """Run every cell of the matrix; return the summary rows (everything is written even when interrupted)."""
    keys = evaluation.missing()
    try:
        with _progress(evaluation) as (progress, total):
            for name, group in itertools.groupby(keys, key=lambda k: k.topology):
                group = list(group)
                task = progress.add_task(f"{name}: booting", total=len(group))

                def starting(key: RunKey, name=name, task=task) -> None:
                    progress.update(task, description=f"{name}: {key.workload} {key.policy} #{key.repeat}")

                for run in topology_runs(evaluation, image, name, group, starting):
                    evaluation.record(run)
                    progress.advance(task)
                    progress.advance(total)
                progress.update(task, description=f"{name}: done")
    finally:
        with signals_deferred():  # a second Ctrl-C must not cut the finished runs' files short
            if evaluation.cut is not None:  # an interrupted run is kept too, marked as such
                evaluation.record(evaluation.cut)
            evaluation.close()
            rows = evaluation.write()
    return rows


@contextlib.contextmanager
def _progress(evaluation: Evaluation) -> Iterator[tuple[Progress, object]]:
    """A live display with an "all runs" bar, the runs --resume kept counted as done."""
    cells = len(evaluation.matrix.runs())
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=evaluation.console, transient=False) as progress:
        yield progress, progress.add_task("all runs", total=cells, completed=cells - len(evaluation.missing()))


@dataclass(frozen=True)
class Bench:
    """One booted topology as its runs see it."""

    machine: EmulatedMachine
    fast: int               # the fastest memory node
    slow: int               # the next one
    delays: Delays          # felt in the timed phase
    zero: Delays            # everywhere else
    time_scale: float = 1.0  # the kernel's policy clocks run this many times slower
    held: squeeze.Squeeze | None = None  # the fast node's squeeze, settled again before each run


def _time_scale(evaluation: Evaluation, machine: EmulatedMachine, k: float | None) -> float:
    """Resolve the matrix's time scale and slow NUMA balancing's clocks by it, recorded in the manifest."""
    factor = timescale.resolve(evaluation.matrix.time_scale, k)
    record = {"requested": evaluation.matrix.time_scale, "factor": factor}
    if factor != 1:
        record["knobs"] = timescale.numa_balancing(machine.vm.shell, factor)
    evaluation.manifest.plugin.setdefault(machine.topology.name, {})["time_scale"] = record
    return factor


def _tlb_reach(evaluation: Evaluation, machine: EmulatedMachine, time_scale: float) -> None:
    """Start tlb-reach at the matrix's period, in the modelled machine's ms (host ms = that x the time scale).

    On the modelled clock, like the DAMON and NUMA balancing clocks it serves: a flush per
    sample interval costs the same share of the workload's progress on any host. Started
    after the calibration and the trim, which are made without it (README, "Accessed bits").
    """
    modelled = evaluation.matrix.tlb_reach_ms
    host_ms = round(modelled * time_scale)
    machine.vm.set_tlb_reach(host_ms)
    evaluation.manifest.plugin.setdefault(machine.topology.name, {})["tlb_reach"] = {
        "modelled_ms": modelled, "host_ms": host_ms}


def topology_runs(evaluation: Evaluation, image: GuestImage, name: str, keys: list[RunKey],
                  starting: Callable[[RunKey], None] = lambda key: None) -> Iterator[results.Run]:
    """Boot topology `name` once and measure each of `keys` in it, yielding each run as it finishes.

    A run an interrupt cuts short is left in `evaluation.cut` (marked interrupted, by
    `measured_run`) before the interrupt goes on; the guest is shut down either way.
    """
    topo = evaluation.matrix.topology(name)
    order = fastest_nodes(topo)
    fast, slow = order[0], order[1] if len(order) > 1 else order[0]
    evaluation.fast_nodes[name] = fast
    mttcg = evaluation.matrix.tcg_threads == "multi"
    # calibrated and trimmed without tlb-reach (_tlb_reach), under the matrix's threading
    with EmulatedMachine(topo, image, mttcg=mttcg) as machine:
        shell = machine.vm.shell
        felt = fit(machine, memory=evaluation.matrix.latency == "emulated", min_k=evaluation.matrix.min_k)
        record = evaluation.manifest.plugin[name] = felt.record  # the topology's plugin record, afresh
        # what the machine ran: cores of different speed need a TCG thread per vCPU whatever the matrix says
        record["tcg_threads"] = "multi" if machine.mttcg else "single"
        record["baseline_knobs"] = set_baseline_knobs(shell)
        bench = Bench(machine, fast, slow, felt.delays, {n: (0, 0) for n in felt.delays},
                      _time_scale(evaluation, machine, felt.k))
        _tlb_reach(evaluation, machine, bench.time_scale)
        held = None
        if evaluation.matrix.fast_node_free_mib:
            held = squeeze.squeeze(shell, fast, evaluation.matrix.fast_node_free_mib)
        record["fast_node_held_mib"] = held.held_mib if held else 0
        bench = replace(bench, held=held)
        installed: set[str] = set()
        try:
            for key in keys:
                check_stop()  # between runs
                starting(key)
                if key.workload not in installed:
                    evaluation.matrix.workload(key.workload).install(shell)
                    installed.add(key.workload)
                yield measured_run(evaluation, bench, key)
        finally:
            if held is not None:
                with contextlib.suppress(Exception):
                    held.release()


def _say(console: Console, run: results.Run) -> None:
    share = run.node_share()
    where = f" on {run.host}" if run.host and run.host != socket.gethostname() else ""  # a cluster's worker
    if run.ok:
        console.print(f"  {run.topology} {run.workload} {run.policy} #{run.repeat}{where}: {run.primary}="
                      f"{run.value:,.0f} hints={run.hints_applied}/{run.hints_applied + run.hints_rejected} "
                      f"node share={ {n: round(v, 3) for n, v in share.items()} }"
                      f"{' (no usable advice: nothing applied)' if run.advice_error else ''}", highlight=False)
    else:
        console.print(f"  [red]{run.topology} {run.workload} {run.policy} #{run.repeat}{where} failed:[/red] "
                      f"{(run.error or '').splitlines()[0][:200]}", highlight=False)


@contextlib.contextmanager
def _phase(run: results.Run, name: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        run.durations[name] = round(time.monotonic() - started, 3)


def new_run(matrix: Matrix, key: RunKey) -> results.Run:
    """The record of one run, before it starts; a time-based run's headline is its steady state."""
    workload = matrix.workload(key.workload)
    primary, also = workload.primary, workload.also
    if matrix.duration_s is not None:
        primary, also = STEADY, [workload.primary, *workload.also]
    return results.Run(topology=key.topology, workload=key.workload, policy=key.policy, repeat=key.repeat,
                       seed=key.seed, primary=primary, also=also,
                       started_at=datetime.now(UTC).isoformat(timespec="seconds"))


def measured_run(evaluation: Evaluation, bench: Bench, key: RunKey) -> results.Run:
    """The run of `key`, measured; one an exception ends is left in `evaluation.cut` before the exception goes on.

    An interrupt (Ctrl-C, SIGTERM) marks the run interrupted wherever it landed, its first lines
    included (a signal sent just after the last run was written lands there: test_signals_vm);
    any other exception escaped run_one's accounting (a bug) and is kept as the run's error.
    """
    run = new_run(evaluation.matrix, key)
    run.host = evaluation.host
    try:
        run_one(evaluation, bench, key, run)
    except BaseException as exc:
        if not isinstance(exc, Exception):  # neither a result nor a failure: --resume runs it again
            run.ok, run.interrupted = False, True
            run.error = f"interrupted: {type(exc).__name__} {exc}".strip()
        elif run.ok:
            run.ok, run.error = False, f"{type(exc).__name__}: {exc}"[:4000]
        evaluation.cut = run
        raise
    return run


def run_one(evaluation: Evaluation, bench: Bench, key: RunKey, run: results.Run) -> None:
    """Measure one run into `run`: a failure is recorded in it (ok=False, error); an interrupt is raised."""
    matrix, shell = evaluation.matrix, bench.machine.vm.shell
    workload = matrix.workload(key.workload)
    policy = policies.make(key.policy, matrix.llm.every_s, matrix.llm.damon_s)
    tag = re.sub(r"[^A-Za-z0-9._-]", "_", f"{key.workload}-{key.policy}-{key.repeat}")  # rules:NAME has a colon
    proc = guest_process.GuestProcess(shell, tag)
    ctx = policies.Context(shell, bench.machine.topology, proc, bench.fast, bench.slow, key.workload, key.repeat,
                           hotmap=policies.HOTMAP_PATH if workload.hotmap_arg else None,
                           advisor=evaluation.advisor, exchanges=evaluation.manifest.llm, notes=workload.notes,
                           paused=bench.machine.vm.monitor.paused, time_scale=bench.time_scale)
    outcome = policies.Outcome()
    try:
        _measure(bench, matrix, workload, key, run, policy, ctx, outcome)
    except Exception as exc:  # noqa: BLE001 - any failure of one run is that run's result
        check_stop()  # unless an interrupt caused it (a layer below swallowed the signal)
        run.ok, run.error = False, f"{type(exc).__name__}: {exc}"[:4000]
    finally:
        run.hints_applied, run.hints_rejected = outcome.applied, outcome.rejected
        run.advice_error, run.rejections = outcome.advice_error, outcome.rejections
        run.enforcer = outcome.enforcer
        with _phase(run, "reset"):
            _reset(bench.machine, policy, ctx, bench.zero)


def _measure(bench: Bench, matrix: Matrix, workload: Workload, key: RunKey, run: results.Run,
             policy: policies.Policy, ctx: policies.Context, outcome: policies.Outcome) -> None:
    """Set-up with the delays off, the policy at the gate, then the timed phase with the delays on."""
    machine, proc = bench.machine, ctx.proc
    phases = matrix.host_phases(bench.time_scale)
    machine.set_delays(bench.zero)  # set-up at TCG speed: only the timed phase feels the latency
    with _phase(run, "setup"):
        run.fast_free_mib = (bench.held.settle(matrix.fast_node_free_mib) if bench.held is not None
                             else squeeze.node_free_mib(ctx.shell, bench.fast))
        command = workload.command(key.seed, prefix=policy.prefix(), params=matrix.params_of(key.workload),
                                   wait=proc.gate, hotmap=ctx.hotmap, seconds=phases and phases[1],
                                   tick_ms=matrix.tick_ms)
        touch_before = kernel_counters.snapshot(ctx.shell)
        guest_process.start(proc, command, gated=True, timeout=workload.timeout_s)
        run.touch_vmstat = kernel_counters.delta(touch_before, kernel_counters.snapshot(ctx.shell))[0]
        if workload.roles:
            ctx.roles = _roles(workload, proc)
        if bench.held is not None:
            run.fast_yielded_mib = bench.held.yield_to_high()
    with _phase(run, "policy"):
        outcome += policy.prepare(ctx)
    before = kernel_counters.snapshot(ctx.shell)
    machine.set_delays(bench.delays)
    # Every timed phase starts from an empty cache model: one that followed set-up straight
    # away would still hold the lines set-up wrote last (dram-nvm's hot tail), and would start
    # warmer than one after a policy that ran guest work (the agent's gather) in between.
    machine.control.flush()
    machine.control.reset()
    with _phase(run, "timed"), Sampler(machine.control, matrix.tick_ms / 1000) as sampler:
        log.info("%s %s #%d: timed phase", key.workload, key.policy, key.repeat)
        if policy.every_s:  # its revisits work in the guest while the loop runs anyway
            guest_process.release(proc)
            outcome += _revisits(policy, ctx, workload.timeout_s)
            output = guest_process.finish(proc, workload.timeout_s)
        else:
            output = guest_process.release_and_finish(proc, workload.timeout_s)
    run.set_counters(*machine.control.timed())  # a workload that marks its loop: the loop alone, not its exit
    outcome += policy.after(ctx)
    after = kernel_counters.snapshot(ctx.shell)
    run.vmstat, run.kthread_cpu_s = kernel_counters.delta(before, after)
    run.hopeless_nodes = {"start": list(before.hopeless), "end": list(after.hopeless)}
    run.huge_mib = {node: kib // 1024 for node, kib in before.huge_kib.items()}  # at the end the workload is gone
    run.figures = workload.parse(output)
    if matrix.duration_s is not None:
        run.series = Series(tick_s=matrix.tick_ms / 1000, warmup_s=matrix.host_phases(bench.time_scale)[0],
                            ops=ticks(output), misses=sampler.points, census=census(output))
        steady = run.series.steady_rate()
        if steady is None:
            raise guest_process.GuestProcessError(f"{proc.tag} printed no progress past the warm-up "
                                                  f"({len(run.series.ops)} ticks):\n{output[-1000:]}")
        run.figures[STEADY] = steady


def _roles(workload, proc: guest_process.GuestProcess) -> dict[str, list[int]]:
    named = workload_roles(proc.output())
    if named is None:
        raise guest_process.GuestProcessError(f"workload {workload.name} was ready without its roles line:\n"
                                              f"{proc.output()[-1000:]}")
    return named


def _revisits(policy: policies.Policy, ctx: policies.Context, timeout: float) -> policies.Outcome:
    """Call the policy every `every_s` (set: a one-shot policy never comes here) while the timed phase runs."""
    outcome = policies.Outcome()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(policy.every_s)
        if ctx.proc.exit_status() is not None:
            break
        outcome += policy.revisit(ctx)
    return outcome


def _reset(machine: EmulatedMachine, policy: policies.Policy, ctx: policies.Context, zero: Delays) -> None:
    """Leave the guest as the next run expects it: no leftovers, nothing applied, delays off."""
    shell = machine.vm.shell
    with contextlib.suppress(Exception):
        if ctx.proc.group is not None and guest_process.alive(ctx.proc):
            guest_process.stop(ctx.proc, LEFTOVER_STOP_S)
    with contextlib.suppress(Exception):
        policy.cleanup(ctx)
    with contextlib.suppress(Exception):
        agent.undo(shell)
    with contextlib.suppress(Exception):
        machine.set_delays(zero)
    with contextlib.suppress(Exception):  # the next run records any node still hopeless at its start
        reclaim.revive(shell, machine.topology)
