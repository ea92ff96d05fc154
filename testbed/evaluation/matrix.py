"""Evaluation matrices as data: `benchmarks/matrices/*.toml` -> the ordered list of runs.

A matrix names topologies, workloads (with optional parameter overrides),
policies, repeats, the latency mode and seeds.  Every name is checked when
the file loads (topologies and workloads are loaded and validated too), so a
typo never costs a boot; errors name file, field and value.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from .. import policy as _placement
from .. import topology as _topology
from . import datafile
from . import workload as _workload

MATRIX_DIR = Path(__file__).resolve().parent.parent.parent / "benchmarks" / "matrices"
RULES_DIR = MATRIX_DIR.parent / "policies"

POLICIES: tuple[str, ...] = ("default", "interleave", "kernel-tiering", "damon", "llm", "llm-policy", "oracle",
                              "oracle-cores", "oracle-memory")  # the oracle's two halves apart (ablations)
RULES = "rules:"  # rules:NAME enforces the placement policy benchmarks/policies/NAME.json
LatencyMode = Literal["advertised", "emulated"]
_RULES_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


def _known_policy(name: str) -> str:
    if name not in POLICIES and not (name.startswith(RULES) and _RULES_NAME.fullmatch(name[len(RULES):])):
        raise ValueError(f"unknown policy: want one of {', '.join(POLICIES)}, or {RULES}NAME for "
                         f"{RULES_DIR.name}/NAME.json (NAME: a-z, 0-9, -)")
    return name


PolicyName = Annotated[str, AfterValidator(_known_policy)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkloadRef(_Strict):
    """A workload by name, with parameters that override its file's defaults."""

    name: str
    params: dict[str, _workload.Param] = Field(default_factory=dict)


class LlmOptions(_Strict):
    """How the `llm` policy asks: once before the timed phase (every_s = 0) or every N seconds during it."""

    every_s: float = Field(default=0, ge=0)
    damon_s: float | None = Field(default=None, gt=0, description="let DAMON watch this long before gathering")


@dataclass(frozen=True, order=True)
class RunKey:
    """One cell of the matrix: what one run measures."""

    topology: str
    repeat: int
    workload: str
    policy: str
    seed: int


class Matrix(_Strict):
    """A whole evaluation. Build with `load()` or `from_text()`, which check names against the files."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = ""
    topologies: list[str] = Field(min_length=1)
    workloads: list[str | WorkloadRef] = Field(min_length=1)
    policies: list[PolicyName] = Field(min_length=1, description=f"each one of {', '.join(POLICIES)}, or "
                                f"{RULES}NAME: the placement policy {RULES_DIR.name}/NAME.json, enforced")
    repeats: int = Field(default=3, ge=1, le=100)
    latency: LatencyMode = "emulated"
    seed: int = Field(default=1, ge=0, description="repeat r runs with seed + r unless `seeds` is given")
    seeds: list[int] | None = Field(default=None, description="one seed per repeat")
    fast_node_free_mib: int | None = Field(
        default=None, gt=0, description="fill the fastest node so only this much stays free: a small "
        "working set then exceeds it (keeps TCG runs short)")
    llm: LlmOptions = Field(default_factory=LlmOptions)
    duration_s: float | None = Field(
        default=None, gt=0, description="a time-based timed phase: measure this long after the warm-up "
        "(None: the workload's own count of operations)")
    warmup_s: float = Field(default=0, ge=0, description="seconds of the timed phase given to reactive policies "
                            "to converge; the steady state is measured after it")
    tick_ms: int = Field(default=250, ge=50, le=10000, description="progress and counter sampling interval")
    phase_clock: Literal["host", "model"] = Field(
        default="host", description="whose seconds warmup_s and duration_s count: the host's, or the modelled "
        "machine's ('model': times the time scale on the host, so a slower host, with a larger k, runs longer "
        "and every host gives the policies the same modelled time)")
    time_scale: Literal["auto"] | float = Field(
        default=1.0, description="run the kernel's policy clocks (NUMA balancing scans, DAMON intervals) this "
        "many times slower, as the emulated machine is; 'auto': the latency calibration's k; 1: as booted")
    min_k: float = Field(
        default=0, ge=0, le=200, description="a floor on k, the factor by which the emulated machine is slower "
        "than the one it models (0: the least the latency calibration allows); at or above TCG's slowdown of "
        "the kernel's own work (nox -s bench-tcg-speed), kernel work costs no more modelled time than the "
        "workload's memory accesses")
    tlb_reach_ms: int = Field(
        default=0, ge=0, le=1000, description="flush every vCPU's TLB this often, in the modelled machine's ms "
        "(times the time scale on the host), so that the guest's accessed bits see accesses as on hardware "
        "(testbed/tlb_reach.py; 0: off)")
    tcg_threads: Literal["single", "multi"] = Field(
        default="single", description="'multi': a TCG thread per vCPU (MTTCG), so kernel threads (kdamond, "
        "kswapd, hint faults) run beside the workload as on hardware; the latency plugin arms after boot "
        "(testbed/latency/plugin.c)")
    _text: str = PrivateAttr(default="")
    _origin: str = PrivateAttr(default="")

    @field_validator("workloads")
    @classmethod
    def _as_refs(cls, value: list[str | WorkloadRef]) -> list[WorkloadRef]:
        return [WorkloadRef(name=v) if isinstance(v, str) else v for v in value]

    @model_validator(mode="after")
    def _consistent(self) -> Matrix:
        for field, names in (("topologies", self.topologies), ("policies", self.policies),
                             ("workloads", [w.name for w in self.workloads])):
            for i, name in enumerate(names):
                if name in names[:i]:
                    raise ValueError(f"{field}[{i}]={name!r} is listed twice")
        if self.phase_clock == "model" and self.duration_s is None:
            raise ValueError("phase_clock='model' needs a time-based run: set duration_s")
        if self.warmup_s and self.duration_s is None:
            raise ValueError(f"warmup_s={self.warmup_s} needs a time-based run: set duration_s too")
        if self.min_k and self.latency != "emulated":
            raise ValueError(f"min_k={self.min_k:g} needs latency='emulated': only felt latency has a k")
        if not isinstance(self.time_scale, str) and not 0 < self.time_scale <= 1000:
            raise ValueError(f"time_scale={self.time_scale}: want 'auto' or a number in (0, 1000]")
        if self.seeds is not None and len(self.seeds) != self.repeats:
            raise ValueError(f"seeds={self.seeds} has {len(self.seeds)} entries but repeats={self.repeats}")
        return self

    # ---- derived ---------------------------------------------------------

    @property
    def text(self) -> str:
        """The TOML this matrix was read from (kept for manifests and --rerun)."""
        return self._text

    @property
    def origin(self) -> str:
        return self._origin

    @property
    def digest(self) -> str:
        """sha256 of the text: what a manifest records, and what --resume compares."""
        return hashlib.sha256(self._text.encode()).hexdigest()

    @property
    def timed_s(self) -> float | None:
        """The whole time-based timed phase (warm-up and steady state), or None for counted runs."""
        return None if self.duration_s is None else self.warmup_s + self.duration_s

    def host_phases(self, time_scale: float) -> tuple[float, float] | None:
        """(warm-up, whole timed phase) in host seconds at this time scale, or None for counted runs."""
        if self.duration_s is None:
            return None
        factor = time_scale if self.phase_clock == "model" else 1
        return self.warmup_s * factor, self.timed_s * factor

    def seed_of(self, repeat: int) -> int:
        return self.seeds[repeat] if self.seeds is not None else self.seed + repeat

    def workload(self, name: str) -> _workload.Workload:
        return _workload.load(_workload.resolve(name))

    def params_of(self, name: str) -> dict[str, _workload.Param]:
        return next(w.params for w in self.workloads if w.name == name)

    def topology(self, name: str) -> _topology.Topology:
        return _topology.load(_topology.resolve(name))

    def rules(self) -> list[str]:
        """The names of the `rules:NAME` policies, without the prefix."""
        return [p[len(RULES):] for p in self.policies if p.startswith(RULES)]

    def runs(self) -> list[RunKey]:
        """Every run in order: per topology (one boot), per repeat, per workload, every policy in turn.

        Policies alternate inside a repeat, and share its seed, so slow drift of
        the host hits them alike and each repeat is a paired comparison.
        """
        return [RunKey(t, r, w.name, p, self.seed_of(r))
                for t in self.topologies for r in range(self.repeats) for w in self.workloads for p in self.policies]


def rules_file(name: str) -> Path:
    """Where policy `rules:NAME` is kept."""
    return RULES_DIR / f"{name}.json"


def _check_files(origin: str, matrix: Matrix) -> None:
    """Load every topology, workload and placement policy the matrix names; raise naming the field on the
    first failure."""
    rules = {}
    for name in matrix.rules():
        i = matrix.policies.index(RULES + name)
        try:
            rules[name] = _placement.load(rules_file(name))
        except _placement.PolicyError as exc:
            raise datafile.DataFileError(f"{origin}: policies[{i}]: {RULES + name!r}: {exc}") from None
    for i, name in enumerate(matrix.topologies):
        try:
            topo = matrix.topology(name)
        except _topology.TopologyError as exc:
            raise datafile.DataFileError(f"{origin}: topologies[{i}]: {name!r}: {exc}") from None
        for rule_name, placement in rules.items():
            try:
                _placement.check_nodes(placement, {n.id for n in topo.nodes}, str(rules_file(rule_name)))
            except _placement.PolicyError as exc:
                raise datafile.DataFileError(f"{origin}: topologies[{i}]: {name!r} cannot run "
                                             f"{RULES + rule_name!r}: {exc}") from None
        if matrix.latency == "emulated" and not any(topo.best_hmat(n) for n in topo.nodes):
            raise datafile.DataFileError(f"{origin}: topologies[{i}]: {name!r} has no HMAT latencies, which "
                                         "latency = 'emulated' needs (or set latency = 'advertised')")
    for i, ref in enumerate(matrix.workloads):
        try:
            loaded = matrix.workload(ref.name)
        except datafile.DataFileError as exc:
            raise datafile.DataFileError(f"{origin}: workloads[{i}]: {ref.name!r}: {exc}") from None
        for oracle in ("oracle", "oracle-memory"):
            if oracle in matrix.policies and loaded.hotmap_arg is None and not loaded.roles:
                raise datafile.DataFileError(
                    f"{origin}: workloads[{i}]: {ref.name!r} writes no hot map and names no roles, one of which "
                    f"policy {oracle!r} needs (drop it from policies, or run this workload in a matrix of its own)")
        if "oracle-cores" in matrix.policies and not loaded.roles:
            raise datafile.DataFileError(
                f"{origin}: workloads[{i}]: {ref.name!r} names no roles, which policy 'oracle-cores' needs (it "
                "places processes by role; drop it from policies, or run this workload in a matrix of its own)")
        if matrix.duration_s is not None and not loaded.duration_args:
            raise datafile.DataFileError(
                f"{origin}: workloads[{i}]: {ref.name!r} cannot run for a time (its file has no duration_args), "
                f"which duration_s={matrix.duration_s} needs")
        for key in ref.params:
            if key not in loaded.params:
                raise datafile.DataFileError(
                    f"{origin}: workloads[{i}].params.{key}: workload {ref.name!r} has no such parameter "
                    f"(got {ref.params[key]!r}; parameters: {', '.join(sorted(loaded.params))})")


def from_text(text: str, origin: str | Path, name: str | None = None) -> Matrix:
    """A matrix from TOML text; `origin` (its file, or a manifest) names it in errors.

    The name defaults to `name`, else to the stem of a .toml origin (which it must then match).
    """
    origin = Path(origin)
    data = datafile.parse(text, origin)
    if name is not None:
        data.setdefault("name", name)
    elif origin.suffix == ".toml":
        data = datafile.named(origin, data)
    matrix = datafile.validate(origin, Matrix, data)
    _check_files(str(origin), matrix)
    matrix._text, matrix._origin = text, str(origin)
    return matrix


def resolve(name_or_path: str) -> Path:
    """Map 'default' or a path to a matrix file."""
    return datafile.resolve(name_or_path, MATRIX_DIR)


def available() -> list[str]:
    """Names of the shipped matrices."""
    return datafile.available(MATRIX_DIR)


def load(path: str | Path) -> Matrix:
    """Parse and validate a matrix file and everything it names."""
    path = Path(path)
    return from_text(datafile.read_text(path, "matrix"), path)
