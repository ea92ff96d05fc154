"""Typed results of an evaluation: one `Run` per matrix cell, written to results.json and results.csv.

results.json is the process boundary (`json_schema()` describes it);
results.csv holds the same runs flattened, one row each, for spreadsheets:
figures as `figure.NAME`, the plugin's counters as `counters.NODE.FIELD`
(node -1: addresses outside every node's range), durations as
`duration.NAME`, the kernel's counters over the timed phase as
`vmstat.NAME`, `kthread_cpu_s.KIND` and `vcpu_ran_s.VCPU`, an enforcing policy's daemon as
`enforcer.FIGURE`, each node's huge pages as the timed phase began as `huge_mib.NODE`, and a
time-based run's series as
one JSON cell, `series`.  Both files are rewritten atomically after every run, so an
interrupted evaluation keeps every finished run.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..files import write_atomic
from ..latency.control import Counters
from .series import Series

SCHEMA_VERSION = 12  # 2: interrupted, series, vmstat, kthread_cpu_s; 3: vcpu_ran_s; 4: host, attempts; 5: enforcer;
# 6: series.census; 7: fast_free_mib; 8: fast_yielded_mib; 9: huge_mib; 10: credited_ns; 11: touch_vmstat;
# 12: counters_window
JSON_NAME, CSV_NAME = "results.json", "results.csv"
_BASE_COLUMNS = ("topology", "workload", "policy", "repeat", "seed", "ok", "error", "interrupted", "primary",
                 "hints_applied", "hints_rejected", "advice_error", "slept_ns", "credited_ns", "started_at", "host",
                 "attempts", "fast_free_mib", "fast_yielded_mib", "counters_window")


class NodeCounters(BaseModel):
    """The latency plugin's counters for one node over one run (see testbed.latency.control)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    accesses: int = 0
    reads: int = 0
    writes: int = 0
    misses: int = 0
    read_misses: int = 0
    write_misses: int = 0
    streamed: int = 0  # misses served as a sequential stream (at bandwidth, see the plugin)
    delay_ns: int = 0


class Run(BaseModel):
    """One run: which cell, what it measured, which node served it, what the advice did, how long it took."""

    model_config = ConfigDict(extra="forbid")
    topology: str
    workload: str
    policy: str
    repeat: int = Field(ge=0)
    seed: int
    ok: bool = True
    error: str | None = None
    interrupted: bool = Field(default=False, description="cut short by Ctrl-C or SIGTERM: neither a result nor a "
                              "failure (summaries leave it out)")
    primary: str = Field(default="ops_per_s", description="the headline figure's name")
    also: list[str] = Field(default_factory=list, description="figures summarized beside the headline one")
    figures: dict[str, float] = Field(default_factory=dict)
    counters: dict[int, NodeCounters] = Field(default_factory=dict, description="per node; -1 = outside")
    counters_window: Literal["loop", "gate-to-exit"] | None = Field(
        default=None, description="what the counters, slept_ns, credited_ns and vcpu_ran_s span: 'loop', the "
        "workload's timed loop between its phase marks (plugin.c); 'gate-to-exit', a workload that marks "
        "nothing: from its gate until the read after it exited (its exit and the harness's commands too)")
    slept_ns: int = Field(default=0, description="the latency plugin's sleeps over the timed phase, every vCPU's")
    credited_ns: int = Field(default=0, description="host-CPU waits of the vCPU threads the plugin counted "
                             "against the owed delay in place of sleeping (a loaded host): felt, like the sleeps")
    hints_applied: int = 0
    hints_rejected: int = 0
    advice_error: str | None = Field(default=None, description="the advisor gave no usable answer, so the run "
                                     "went on with nothing applied; why")
    rejections: list[str] = Field(default_factory=list, description="why each rejected hint was refused, "
                                  "and by whom (advisor or agent)")
    durations: dict[str, float] = Field(default_factory=dict, description="seconds per phase")
    started_at: str = ""
    host: str = Field(default="", description="where it ran: the host name (and the Ray node, on a cluster)")
    attempts: int = Field(default=1, ge=1, description="workers that started it: more than 1 when a worker "
                          "died under it and it was run again")
    series: Series | None = Field(default=None, description="a time-based run's progress and per-node misses "
                                  "over its timed phase")
    vmstat: dict[str, int] = Field(default_factory=dict, description="/proc/vmstat's NUMA, promotion, "
                                   "demotion and migration counters: their change over the timed phase")
    touch_vmstat: dict[str, int] = Field(default_factory=dict, description="the same counters' change over "
                                         "the workload's start (allocation and first touch, delays off) until "
                                         "it reported ready: what reclaim took meanwhile, and so gave back to "
                                         "the touch, decides how much of a buffer's tail lands on the fast node")
    kthread_cpu_s: dict[str, float] = Field(default_factory=dict, description="CPU seconds of the kernel's "
                                            "policy threads (kdamond, kswapd) over the timed phase")
    vcpu_ran_s: dict[int, float] = Field(default_factory=dict, description="host seconds of the timed phase "
                                         "by vCPU (one runs at a time; rough: by the vCPU that translated the code)")
    enforcer: dict[str, float] = Field(default_factory=dict, description="an enforcing policy's daemon over "
                                       "the timed phase: rounds, moved_mib, no_room_mib (its last round), "
                                       "cpu_s, cpu_percent (its mean share of one vCPU) and "
                                       "steady_cpu_percent (the median share of its rounds that moved nothing)")
    fast_free_mib: int | None = Field(default=None, description="the fastest node's free memory (MiB) as the "
                                      "run's set-up began, after a squeezed node was settled again")
    fast_yielded_mib: int | None = Field(default=None, description="held memory the squeeze gave back after "
                                         "the first touch, to bring a zone of the fast node to its high "
                                         "watermark (squeeze.Squeeze.yield_to_high)")
    hopeless_nodes: dict[str, list[int]] = Field(default_factory=dict, description="nodes kswapd had given "
                                                 "up on (node_unreclaimable), at the timed phase's start and end")
    huge_mib: dict[int, int] = Field(default_factory=dict, description="transparent huge pages mapped by "
                                     "processes (AnonHugePages), MiB per node, as the timed phase began: where "
                                     "first touch left them (reclaim ages each as one folio)")

    @property
    def value(self) -> float | None:
        """The headline figure, None when the run failed or lacks it."""
        return self.figures.get(self.primary) if self.ok else None

    def set_counters(self, counters: Counters, window: Literal["loop", "gate-to-exit"]) -> None:
        """Take the per-node counters and sleep total from a plugin snapshot spanning `window`."""
        self.counters_window = window
        self.counters = {node: NodeCounters(**fields) for node, fields in counters.nodes.items()}
        self.slept_ns, self.credited_ns = counters.slept_ns, counters.credited_ns
        self.vcpu_ran_s = {v: round(ns / 1e9, 3) for v, ns in sorted(counters.ran_ns.items())}

    def others_share(self) -> float | None:
        """Share of the host core the vCPUs other than the busiest (the workload's) held in the timed
        phase: time a machine with as many cores would have run beside the workload, not instead of it."""
        total = sum(self.vcpu_ran_s.values())
        return (total - max(self.vcpu_ran_s.values())) / total if total else None

    def node_share(self, field: str = "misses") -> dict[int, float]:
        """Share of `field` (misses: memory traffic; accesses: all) served by each node, outside excluded."""
        counts = {n: getattr(c, field) for n, c in self.counters.items() if n >= 0}
        total = sum(counts.values())
        return {n: v / total for n, v in sorted(counts.items())} if total else {}


    def hot_placed(self, node: int) -> float | None:
        """Share of the workload's hot set on `node` at its last census (None without a census)."""
        return self.series.final_placed(node) if self.series is not None else None

    def fast_share(self, node: int) -> float | None:
        """Share of the misses that `node` served: in the steady state for a time-based run, else over the run."""
        if self.series is not None and self.series.misses:
            return self.series.steady_share(node)
        return self.node_share().get(node)


class Results(BaseModel):
    """The results.json document."""

    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION
    runs: list[Run] = Field(default_factory=list)


def json_schema() -> dict:
    """JSON schema of results.json."""
    return Results.model_json_schema()


# ---- CSV ------------------------------------------------------------------


def _columns(runs: list[Run]) -> list[str]:
    figures = sorted({k for r in runs for k in r.figures})
    nodes = sorted({n for r in runs for n in r.counters})
    durations = sorted({k for r in runs for k in r.durations})
    vmstat = sorted({k for r in runs for k in r.vmstat})
    touch = sorted({k for r in runs for k in r.touch_vmstat})
    threads = sorted({k for r in runs for k in r.kthread_cpu_s})
    vcpus = sorted({v for r in runs for v in r.vcpu_ran_s})
    enforcer = sorted({k for r in runs for k in r.enforcer})
    rejections = max((len(r.rejections) for r in runs), default=0)
    return [*_BASE_COLUMNS, *(f"figure.{k}" for k in figures),
            *(f"counters.{n}.{f}" for n in nodes for f in NodeCounters.model_fields),
            *(f"duration.{k}" for k in durations), *(f"vmstat.{k}" for k in vmstat),
            *(f"touch_vmstat.{k}" for k in touch),
            *(f"kthread_cpu_s.{k}" for k in threads), *(f"vcpu_ran_s.{v}" for v in vcpus),
            *(f"enforcer.{k}" for k in enforcer),
            *(f"rejection.{i}" for i in range(rejections)),
            *(f"hopeless_nodes.{k}" for k in ("start", "end") if any(k in r.hopeless_nodes for r in runs)),
            *(f"huge_mib.{n}" for n in sorted({n for r in runs for n in r.huge_mib})),
            *(["series"] if any(r.series for r in runs) else [])]


def _row(run: Run) -> dict[str, str]:
    row = {c: "" if getattr(run, c) is None else str(getattr(run, c)) for c in _BASE_COLUMNS}
    row |= {f"figure.{k}": repr(v) for k, v in run.figures.items()}
    row |= {f"counters.{n}.{f}": str(v) for n, c in run.counters.items() for f, v in c.model_dump().items()}
    row |= {f"duration.{k}": repr(v) for k, v in run.durations.items()}
    row |= {f"vmstat.{k}": str(v) for k, v in run.vmstat.items()}
    row |= {f"touch_vmstat.{k}": str(v) for k, v in run.touch_vmstat.items()}
    row |= {f"kthread_cpu_s.{k}": repr(v) for k, v in run.kthread_cpu_s.items()}
    row |= {f"vcpu_ran_s.{v}": repr(s) for v, s in run.vcpu_ran_s.items()}
    row |= {f"enforcer.{k}": repr(v) for k, v in run.enforcer.items()}
    row |= {f"rejection.{i}": why for i, why in enumerate(run.rejections)}
    row |= {f"hopeless_nodes.{k}": json.dumps(v) for k, v in run.hopeless_nodes.items()}
    row |= {f"huge_mib.{n}": str(mib) for n, mib in run.huge_mib.items()}
    if run.series is not None:
        row["series"] = run.series.model_dump_json()
    return row


def to_csv(runs: list[Run]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_columns(runs), lineterminator="\n")
    writer.writeheader()
    writer.writerows(_row(r) for r in runs)
    return out.getvalue()


def _from_row(row: dict[str, str]) -> Run:
    data: dict = {"figures": {}, "counters": {}, "durations": {}, "rejections": [], "vmstat": {}, "touch_vmstat": {},
                  "kthread_cpu_s": {}, "vcpu_ran_s": {}, "enforcer": {}, "hopeless_nodes": {}, "huge_mib": {}}
    for column, cell in row.items():
        if cell == "":
            continue
        kind, _, rest = column.partition(".")
        if kind == "figure":
            data["figures"][rest] = float(cell)
        elif kind == "duration":
            data["durations"][rest] = float(cell)
        elif kind == "counters":
            node, _, field = rest.rpartition(".")
            data["counters"].setdefault(int(node), {})[field] = int(cell)
        elif kind == "rejection":
            data["rejections"].append(cell)  # columns come in index order
        elif kind in ("vmstat", "touch_vmstat"):
            data[kind][rest] = int(cell)
        elif kind == "kthread_cpu_s":
            data["kthread_cpu_s"][rest] = float(cell)
        elif kind == "vcpu_ran_s":
            data["vcpu_ran_s"][int(rest)] = float(cell)
        elif kind == "enforcer":
            data["enforcer"][rest] = float(cell)
        elif kind == "hopeless_nodes":
            data["hopeless_nodes"][rest] = json.loads(cell)
        elif kind == "huge_mib":
            data["huge_mib"][int(rest)] = int(cell)
        elif column == "series":
            data["series"] = Series.model_validate_json(cell)
        else:
            data[column] = cell == "True" if column in ("ok", "interrupted") else cell
    return Run.model_validate(data)


def from_csv(text: str) -> list[Run]:
    return [_from_row(row) for row in csv.DictReader(io.StringIO(text))]


# ---- files ----------------------------------------------------------------


def write(directory: Path, runs: list[Run]) -> None:
    """Write results.json and results.csv into `directory` (created if missing)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(directory / JSON_NAME, Results(runs=runs).model_dump_json(indent=2) + "\n")
    write_atomic(directory / CSV_NAME, to_csv(runs))


def read(path: Path) -> list[Run]:
    """Runs from a results.json or results.csv file, or from the results.json in a directory."""
    path = Path(path)
    if path.is_dir():
        path = path / JSON_NAME
    text = path.read_text()
    if path.suffix == ".csv":
        return from_csv(text)
    document = Results.model_validate(json.loads(text))
    if document.schema_version > SCHEMA_VERSION:  # older versions lack only newer fields
        raise ValueError(f"{path}: schema_version {document.schema_version}, this testbed reads "
                         f"{SCHEMA_VERSION} and older")
    return document.runs
