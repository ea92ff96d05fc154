"""Rich tables of validation results, for terminals and `nox -s testbed`."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from .validate import Report


def _fmt(value) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value) if value else "-"
    return "-" if value is None else str(value)


def checks_table(report: Report) -> Table:
    verdict = "[green]ok[/green]" if report.ok else "[red]FAILED[/red]"
    table = Table(title=f"{report.topology}: {verdict} ({report.accel}, SSH after {report.boot_seconds:.1f} s)")
    for column in ("check", "topology file", "guest", ""):
        table.add_column(column)
    for c in report.checks:
        mark = "[green]✓[/green]" if c.ok else "[red]✗[/red]"
        table.add_row(c.name, _fmt(c.expected), _fmt(c.observed), mark)
    return table


def summary_table(reports: list[Report]) -> Table:
    table = Table(title="testbed validate")
    for column in ("topology", "result", "accel", "boot s", "checks", "failed"):
        table.add_column(column)
    for r in reports:
        failed = [c.name for c in r.checks if not c.ok]
        table.add_row(r.topology, "[green]ok[/green]" if r.ok else "[red]FAILED[/red]", r.accel,
                      f"{r.boot_seconds:.1f}", str(len(r.checks)), ", ".join(failed) or "-")
    return table


def print_reports(console: Console, reports: list[Report]) -> None:
    for r in reports:
        console.print(checks_table(r))
    if len(reports) > 1:
        console.print(summary_table(reports))
