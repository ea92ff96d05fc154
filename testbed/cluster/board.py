"""The driver's live display: all runs, and per host the runs done, running and failed."""

from __future__ import annotations

from collections import Counter
from typing import Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)


class Board:
    """One rich progress display: a bar for the matrix, a line per host as hosts appear."""

    def __init__(self, console: Console, total: int, done: int):
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        self.progress = Progress(*columns, console=console, transient=False)
        self.all = self.progress.add_task("all runs", total=total, completed=done)
        self.hosts: dict[str, int] = {}
        self.done: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.running: Counter[str] = Counter()

    def __enter__(self) -> Self:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def _show(self, host: str) -> None:
        if host not in self.hosts:
            self.hosts[host] = self.progress.add_task("", total=None)
        self.progress.update(self.hosts[host], completed=self.done[host] + self.failed[host],
                             description=f"{host}: {self.done[host]} done, {self.running[host]} running, "
                                         f"{self.failed[host]} failed")

    def started(self, host: str) -> None:
        self.running[host] += 1
        self._show(host)

    def stopped(self, host: str) -> None:
        self.running[host] = max(0, self.running[host] - 1)
        self._show(host)

    def finished(self, host: str, ok: bool) -> None:
        (self.done if ok else self.failed)[host] += 1
        self.progress.advance(self.all)
        self._show(host)
