"""The driver: a matrix's cells spread over Ray workers, runs written as they come back, nothing lost.

The unit of work is a group: some of one topology's cells, run in one boot. Each
topology's cells are dealt round-robin into as many groups as the cluster has
workers (a topology boots once per group, not once per run; every group gets a
mix of policies and repeats). A group whose worker dies (a killed process, a
lost node) is submitted again with its unfinished cells, preferring another
node; the cell the worker was running counts an attempt, and a cell that has
failed MAX_ATTEMPTS times is recorded as failed with its error while the matrix
goes on. Finished runs came back one by one, so none is lost or run twice.
Ctrl-C cancels every group (each worker cuts its run and shuts its guest down),
records the cut runs as interrupted, and writes everything, as a serial run does.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..evaluation import manifest, results, resume, runner, summary
from ..evaluation.matrix import RunKey
from ..process import check_stop, signals_deferred
from . import connect, work
from .board import Board

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 2      # a cell starts at most twice: once, and once more after a worker died under it
CANCEL_WAIT_S = 120   # for the workers to cut their runs and shut their guests down after Ctrl-C
POLL_S = 0.5          # how often the driver looks for a stop request while it waits


@dataclass
class Group:
    """Some of one topology's cells, for one worker to run in one boot."""

    keys: list[RunKey]                    # unfinished, in order: keys[0] runs first
    attempts: dict[RunKey, int] = field(default_factory=dict)
    host: str = ""                        # where it runs now ("" until the worker says)
    node_id: str = ""


def groups(keys: list[RunKey], workers: int) -> list[Group]:
    """Each topology's cells dealt round-robin into at most `workers` groups."""
    out = []
    for _, cells in itertools.groupby(keys, key=lambda k: k.topology):
        cells = list(cells)
        n = max(1, min(workers, len(cells)))
        out += [Group(keys=cells[i::n]) for i in range(n)]
    return out


class Driver:
    """Submits the groups and turns what the workers report into the evaluation's runs and manifest."""

    def __init__(self, evaluation: runner.Evaluation, work_fn: Callable | None = None):
        import ray

        self.ray, self.evaluation = ray, evaluation
        self.remote = ray.remote(num_cpus=1, max_retries=0)(work_fn or work.run_group)
        self.inflight: dict[Any, Group] = {}
        self.board: Board | None = None
        answers = evaluation.settings.answers
        self.args = (evaluation.settings.endpoint, str(answers.root) if answers else None)

    def submit(self, group: Group, avoid: str = "") -> None:
        """Queue `group` on Ray (which holds it until a worker's CPU is free), on another node than `avoid`."""
        options = {}
        others = [n for n in connect.alive_nodes() if n != avoid] if avoid else []
        if others:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(others[0], soft=True)
        gen = self.remote.options(**options).remote(self.evaluation.matrix, list(group.keys), *self.args)
        group.host, group.node_id = "", ""
        self.inflight[gen] = group

    def step(self) -> None:
        """Take every report that is ready (waiting at most POLL_S)."""
        ready, _ = self.ray.wait(list(self.inflight), num_returns=1, timeout=POLL_S)
        for gen in ready:
            self.take(gen)

    def _next(self, gen):
        """`gen`'s next report, or None at its end; a group that ended or whose worker died
        (RayError, raised on) leaves `inflight`."""
        try:
            event = self.ray.get(next(gen))
        except StopIteration:
            event = None
        except self.ray.exceptions.RayError:
            del self.inflight[gen]
            raise
        if event is None:
            del self.inflight[gen]
        return event

    def take(self, gen) -> None:
        """One report of `gen`'s group, or its end, or its worker's failure."""
        group = self.inflight[gen]
        try:
            event = self._next(gen)
        except self.ray.exceptions.RayError as exc:
            self._stopped(group)
            self.failed(group, exc)
            return
        if event is None:
            self._stopped(group)
        elif isinstance(event, work.Started):
            group.host, group.node_id = event.host, event.node_id
            self.board.started(event.host)
        elif isinstance(event, work.Prepared):
            self.prepared(event)
        elif isinstance(event, work.Finished):
            self.finished(group, event)

    def prepared(self, event: work.Prepared) -> None:
        """Record a host's facts once, and warn where it differs from the driver's checkout."""
        man = self.evaluation.manifest
        if event.host in man.hosts:
            return
        man.hosts[event.host] = dict(event.record, plugin={})
        for name in ("testbed_commit", "qemu_version", "kernel_version", "image_digest"):
            theirs, ours = event.record.get(name), getattr(man, name)
            if theirs is not None and theirs != ours:
                self.evaluation.console.print(f"  [yellow]warning:[/yellow] {event.host} has {name} {theirs!r}, "
                                              f"the driver {ours!r}", highlight=False)

    def _stopped(self, group: Group) -> None:
        if group.host:
            self.board.stopped(group.host)

    def finished(self, group: Group, event: work.Finished) -> None:
        run = results.Run.model_validate(event.run)
        key = resume.key_of(run)
        group.keys.remove(key)  # the worker reports its keys in order; by key all the same
        run.attempts = group.attempts.get(key, 1)
        man = self.evaluation.manifest
        if event.plugin:
            man.hosts.setdefault(run.host, {"plugin": {}}).setdefault("plugin", {})[run.topology] = event.plugin
            man.plugin.setdefault(run.topology, event.plugin)
        man.llm += [manifest.LlmExchange(**x) for x in event.llm]
        self.evaluation.record(run)
        self.board.finished(run.host, run.ok)

    def failed(self, group: Group, exc: Exception) -> None:
        """The worker died (or the group raised): count an attempt of the cell it held, go on with the rest."""
        if not group.keys:
            return
        key = group.keys[0]
        tries = group.attempts.get(key, 1)
        where = group.host or "a worker that had not started"
        why = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        self.evaluation.console.print(f"  [yellow]{key.topology} {key.workload} {key.policy} #{key.repeat}: "
                                      f"attempt {tries} lost on {where}[/yellow] ({why[:200]})", highlight=False)
        if tries >= MAX_ATTEMPTS:
            run = runner.new_run(self.evaluation.matrix, key)
            run.ok, run.attempts, run.host = False, tries, group.host
            run.error = f"failed on {tries} workers, last on {where}: {why}"[:4000]
            group.keys.pop(0)
            self.evaluation.record(run)
            self.board.finished(group.host or "?", False)
        else:
            group.attempts[key] = tries + 1
        if group.keys:
            self.submit(group, avoid=group.node_id)

    def cancel(self) -> None:
        """Ctrl-C: every group cancelled, the runs that finish meanwhile kept, the cut ones marked."""
        for gen in list(self.inflight):
            self.ray.cancel(gen)
        deadline = time.monotonic() + CANCEL_WAIT_S
        while self.inflight and time.monotonic() < deadline:
            ready, _ = self.ray.wait(list(self.inflight), num_returns=1, timeout=POLL_S)
            for gen in ready:
                group = self.inflight[gen]
                try:
                    event = self._next(gen)
                except self.ray.exceptions.RayError:
                    event = None
                if gen not in self.inflight:
                    self._cut(group)
                elif isinstance(event, work.Finished):
                    self.finished(group, event)
        for gen, group in list(self.inflight.items()):  # still not ended: force it (its guest dies with it)
            self.ray.cancel(gen, force=True)
            self._cut(group)
        self.inflight.clear()

    def _cut(self, group: Group) -> None:
        if group.host and group.keys:
            run = runner.new_run(self.evaluation.matrix, group.keys[0])
            run.ok, run.interrupted, run.host = False, True, group.host
            run.attempts = group.attempts.get(group.keys[0], 1)
            run.error = "interrupted: the driver was stopped"
            self.evaluation.record(run)


def run_matrix(evaluation: runner.Evaluation, cluster: connect.Cluster,
               work_fn: Callable | None = None) -> list[summary.Row]:
    """Run the matrix's missing cells on the cluster; return the summary rows (written even when interrupted)."""
    for name in evaluation.matrix.topologies:
        evaluation.fast_nodes[name] = runner.fastest_nodes(evaluation.matrix.topology(name))[0]
    keys = evaluation.missing()
    driver = Driver(evaluation, work_fn)
    cells = len(evaluation.matrix.runs())
    try:
        with Board(evaluation.console, cells, cells - len(keys)) as driver.board:
            for group in groups(keys, cluster.workers):
                driver.submit(group)
            try:
                while driver.inflight:
                    check_stop()
                    driver.step()
            except BaseException:
                with signals_deferred():
                    driver.cancel()
                raise
    finally:
        with signals_deferred():
            evaluation.close()
            rows = evaluation.write()
    return rows
