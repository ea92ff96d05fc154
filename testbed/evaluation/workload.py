"""Workloads as data: `benchmarks/workloads/*.toml` -> the guest command line and the parsed figures.

A workload file names its program (a C source built static on the host and
copied in, a script copied in as it is, or an executable already in the image), its arguments with
`{placeholders}`, default parameters, and the adapter that turns its output
into figures.  Adding a workload is a file (plus an adapter for a new output
format), not harness code.

Placeholders: every key of `params`, and the runner's own `{seed}`; the
optional `wait_arg` and `hotmap_arg` templates take `{path}`, and
`duration_args` (for a time-based timed phase) take `{seconds}` and
`{tick_ms}`: such a program runs that long and prints `tick t=SECONDS ops=TOTAL`
every tick, its progress over time.  A program
given `wait_arg` prints `ready pid=N` after setting up its memory and waits
for the file to appear before its timed phase, so the harness can advise or
place pages between the two.  A program whose file sets `roles` also prints,
before that, `roles latency=PID,... batch=PID,...`: which of its processes
answer requests and which are batch work (what the scheduling oracle places).
"""

from __future__ import annotations

import hashlib
import re
import shlex
import string
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from .. import guest_binary
from ..ssh import GuestShell
from . import datafile
from .adapters import ADAPTERS, AdapterError

WORKLOAD_DIR = Path(__file__).resolve().parent.parent.parent / "benchmarks" / "workloads"
GUEST_BIN = "/usr/local/bin"
RUNNER_KEYS = frozenset({"seed"})
Param = int | float | str

READY_RE = re.compile(r"^ready pid=(\d+)$", re.MULTILINE)
TICK_RE = re.compile(r"^tick t=(\d+(?:\.\d+)?) ops=(\d+)$", re.MULTILINE)
DURATION_KEYS = frozenset({"seconds", "tick_ms"})
FIXED_LAYOUT = ("setarch", "-R")  # util-linux's, in every guest: no address-space randomisation
CENSUS_RE = re.compile(r"^census t=(\d+(?:\.\d+)?) hot=([\d:,]*) cold=([\d:,]*)(?: log=([\d:,]*))? ms=\d+(?:\.\d+)?$",
                       re.MULTILINE)
ROLES_RE = re.compile(r"^roles latency=(\d+(?:,\d+)*) batch=(\d+(?:,\d+)*)$", re.MULTILINE)


class WorkloadError(ValueError):
    """A workload file that cannot run, or output it cannot read."""


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


class Workload(BaseModel):
    """One workload file. Build with `load()`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = Field(min_length=10)
    source: str | None = Field(default=None, description="a C source (built) or a script (copied), relative to the workload file's folder")
    executable: str | None = Field(default=None, description="a program already in the guest image")
    args: list[str] = Field(default_factory=list)
    params: dict[str, Param] = Field(default_factory=dict, description="defaults; a matrix may override them")
    adapter: str = "keyvalue"
    primary: str = Field(description="the headline figure, e.g. ops_per_s")
    higher_is_better: bool = True
    timeout_s: float = Field(default=1800, gt=0)
    wait_arg: str | None = Field(default=None, description="e.g. 'wait={path}'")
    hotmap_arg: str | None = Field(default=None, description="e.g. 'hotmap={path}'")
    duration_args: list[str] = Field(default_factory=list, description="e.g. ['seconds={seconds}', "
                                     "'tick_ms={tick_ms}']: run for a time, printing progress ticks")
    helpers: list[str] = Field(default_factory=list, description="more programs (C or scripts) the program runs, "
                               "installed beside it")
    roles: bool = Field(default=False, description="the program prints `roles latency=... batch=...` before ready")
    notes: str | None = Field(default=None, description="the administrator's notes on this workload, for the advisor")
    also: list[str] = Field(default_factory=list, description="figures summarized beside the primary one")
    _folder: Path = PrivateAttr(default=WORKLOAD_DIR)  # where `source` is relative to

    @model_validator(mode="after")
    def _consistent(self) -> Workload:
        if (self.source is None) == (self.executable is None):
            raise ValueError("give exactly one of source (a C file or script) and executable (a guest program), "
                             f"got source={self.source!r}, executable={self.executable!r}")
        if self.adapter not in ADAPTERS:
            raise ValueError(f"adapter {self.adapter!r} is unknown; known: {', '.join(sorted(ADAPTERS))}")
        for key, value in self.params.items():
            if key in RUNNER_KEYS:
                raise ValueError(f"params.{key}={value!r}: {key!r} is set by the runner, not by the workload")
        for i, arg in enumerate(self.args):
            unknown = _placeholders(arg) - set(self.params) - RUNNER_KEYS
            if unknown:
                raise ValueError(f"args[{i}]={arg!r}: placeholder {{{min(unknown)}}} is neither "
                                 f"in params nor one of {sorted(RUNNER_KEYS)}")
        for i, arg in enumerate(self.duration_args):
            if not _placeholders(arg) or not _placeholders(arg) <= DURATION_KEYS:
                raise ValueError(f"duration_args[{i}]={arg!r} must hold {{seconds}} or {{tick_ms}} and nothing else")
        for field in ("wait_arg", "hotmap_arg"):
            value = getattr(self, field)
            if value is not None and _placeholders(value) != {"path"}:
                raise ValueError(f"{field}={value!r} must hold exactly the placeholder {{path}}")
        return self

    # ---- the guest side --------------------------------------------------

    def source_path(self) -> Path | None:
        return self._folder / self.source if self.source else None

    def helper_paths(self) -> list[Path]:
        return [self._folder / h for h in self.helpers]

    def guest_program(self) -> str:
        """Where the program lives in the guest."""
        return f"{GUEST_BIN}/{Path(self.source).stem}" if self.source else self.executable

    def install(self, shell: GuestShell) -> str:
        """Build (C) or copy (script) the workload's program into the guest (no-op for an image program);
        return its guest path."""
        for helper in self.helper_paths():
            guest_binary.install(shell, helper, f"{GUEST_BIN}/{helper.stem}")
        if self.source:
            guest_binary.install(shell, self.source_path(), self.guest_program())
        return self.guest_program()

    def argv(self, seed: int, params: dict[str, Param] | None = None, wait: str | None = None,
             hotmap: str | None = None, seconds: float | None = None, tick_ms: int = 250) -> list[str]:
        """The guest command line; `params` override the file's defaults (unknown keys are refused);
        with `seconds`, a time-based timed phase that ticks every `tick_ms`."""
        unknown = set(params or {}) - set(self.params)
        if unknown:
            raise WorkloadError(f"workload {self.name}: no parameter {min(unknown)!r} "
                                f"(parameters: {', '.join(sorted(self.params)) or 'none'})")
        values = {**self.params, **(params or {}), "seed": seed}
        argv = [self.guest_program(), *(arg.format(**values) for arg in self.args)]
        for template, path in ((self.wait_arg, wait), (self.hotmap_arg, hotmap)):
            if path is not None:
                if template is None:
                    raise WorkloadError(f"workload {self.name}: the program cannot take {path!r} (no such *_arg)")
                argv.append(template.format(path=path))
        if seconds is not None:
            if not self.duration_args:
                raise WorkloadError(f"workload {self.name}: cannot run for a time (no duration_args)")
            argv += [arg.format(seconds=f"{seconds:g}", tick_ms=tick_ms) for arg in self.duration_args]
        return argv

    def command(self, seed: int, prefix: list[str] = (), **kwargs) -> str:
        """`argv()` as one shell-quoted line, after `prefix` (e.g. numactl options), with the address space fixed.

        `setarch -R` turns address-space randomisation off for the program and what it
        starts, so every run of a seed lays its memory out alike. Where memory goes can
        depend on the address: interleaving takes each huge page's node from its virtual
        address, and a randomised base put the Zipf head on DRAM in some runs and on
        NVM in others (README, "Evaluation").
        """
        return shlex.join([*FIXED_LAYOUT, *prefix, *self.argv(seed, **kwargs)])

    # ---- the output side -------------------------------------------------

    def parse(self, output: str) -> dict[str, float]:
        """The figures in the program's output; raise WorkloadError without the primary figure."""
        try:
            figures = ADAPTERS[self.adapter](output)
        except AdapterError as exc:
            raise WorkloadError(f"workload {self.name}: {exc}") from None
        if self.primary not in figures:
            raise WorkloadError(f"workload {self.name}: the output has no {self.primary!r} figure "
                                f"(got {', '.join(sorted(figures))})")
        return figures

    def digest(self) -> str:
        """Digest of the workload's definition and its program source: recorded in manifests."""
        h = hashlib.sha256(self.model_dump_json().encode())
        for path in ([self.source_path()] if self.source else []) + self.helper_paths():
            h.update(path.read_bytes())
        return h.hexdigest()


def ready_pid(output: str) -> int | None:
    """The pid from a waiting program's `ready pid=N` line, or None before it prints it."""
    match = READY_RE.search(output)
    return int(match.group(1)) if match else None


def ticks(output: str) -> list[tuple[float, int]]:
    """The progress ticks of a time-based run: (seconds since its timed phase began, operations so far)."""
    return [(float(t), int(ops)) for t, ops in TICK_RE.findall(output)]


def census(output: str) -> list[tuple[float, dict[str, dict[int, int]]]]:
    """A program's census lines: (seconds, {"hot": {node: pages}, "cold": {node: pages}}), sampled pages;
    with "log" too where the program has a log (hot-table).

    A census the kernel refused (`hot=error:E`) is left out rather than read as no pages anywhere.
    """
    def nodes(text: str) -> dict[int, int]:
        return {int(node): int(pages) for node, pages in (item.split(":") for item in text.split(",") if item)}

    found = CENSUS_RE.findall(output)
    return [(float(t), {"hot": nodes(hot), "cold": nodes(cold)} | ({"log": nodes(log)} if log else {}))
            for t, hot, cold, log in found]


def roles(output: str) -> dict[str, list[int]] | None:
    """{"latency": [pids], "batch": [pids]} from a program's `roles` line, or None before it prints one."""
    match = ROLES_RE.search(output)
    if not match:
        return None
    return {"latency": [int(p) for p in match.group(1).split(",")],
            "batch": [int(p) for p in match.group(2).split(",")]}


def resolve(name_or_path: str) -> Path:
    """Map 'skewed-read' or a path to a workload file."""
    return datafile.resolve(name_or_path, WORKLOAD_DIR)


def available() -> list[str]:
    """Names of the shipped workloads."""
    return datafile.available(WORKLOAD_DIR)


def load(path: str | Path) -> Workload:
    """Parse and validate one workload file; errors name file, field and value."""
    path = Path(path)
    data = datafile.named(path, datafile.read(path, "workload"))
    workload = datafile.validate(path, Workload, data)
    workload._folder = path.resolve().parent
    if workload.source and not workload.source_path().is_file():
        raise datafile.DataFileError(f"{path}: source: no such file {workload.source_path()} "
                                     f"(got {workload.source!r})")
    for i, helper in enumerate(workload.helper_paths()):
        if not helper.is_file():
            raise datafile.DataFileError(f"{path}: helpers[{i}]: no such file {helper} (got {workload.helpers[i]!r})")
    return workload
