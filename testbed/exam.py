"""The hint exam: scenarios with decisions any good advisor must make, and their scoring.

A scenario (benchmarks/exam/scenarios/*.toml) names a machine from
topologies/, the administrator's notes on the workloads, and a compact state
(free memory per node, processes with their resident memory per node) that is
expanded into the same `GuestState` that `llamas-agent gather` produces.  Its
decisions are checks on the hints that survive validation, each with the
reason it follows from first principles.  Each scenario also carries a
reference answer that makes every decision, so the exam is known passable.

Decision checks:
- moves PID NODE: a hint moves some of PID's pages to NODE;
- never_moves PID NODE: no hint moves PID's pages to NODE;
- pins PID CPUS: a hint pins PID to a subset of CPUS;
- never_pins PID: no hint changes PID's CPUs;
- deprioritizes PID: a hint raises PID's nice level above 0 or puts it in the batch or idle class;
- never_deprioritizes PID: no hint does that to PID;
- leaves_alone PID: no hint names PID;
- sets_knob KNOB VALUE: a hint sets KNOB to VALUE;
- any OF: at least one of the listed checks holds.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pydantic import TypeAdapter, ValidationError

from .guest_view import CxlView, GuestNode
from .hints import Hint, MigratePages, MoveRange, SetAffinity, SetKnob, SetSched
from .state import SCHEMA_VERSION, GuestState, Knobs, Process
from .topology import Topology, load, resolve

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "benchmarks" / "exam" / "scenarios"
CHECKS = ("moves", "never_moves", "pins", "never_pins", "deprioritizes", "never_deprioritizes", "leaves_alone",
          "sets_knob", "any")
AGENT_PID = 90
_HINTS = TypeAdapter(list[Hint])
T = TypeVar("T")


class ScenarioError(ValueError):
    """A scenario file is wrong; the message names the file, the field and the value."""


@dataclass(frozen=True)
class Decision:
    check: str
    why: str
    args: dict

    def holds(self, hints: list) -> bool:
        """Whether `hints` make this decision."""
        a = self.args
        if self.check == "moves":
            return any(a["node"] in _targets(h, a["pid"]) for h in hints)
        if self.check == "never_moves":
            return not any(a["node"] in _targets(h, a["pid"]) for h in hints)
        if self.check == "pins":
            return any(isinstance(h, SetAffinity) and h.pid == a["pid"] and set(h.cpus) <= set(a["cpus"])
                       for h in hints)
        if self.check == "never_pins":
            return not any(isinstance(h, SetAffinity) and h.pid == a["pid"] for h in hints)
        if self.check == "deprioritizes":
            return any(_lowers(h, a["pid"]) for h in hints)
        if self.check == "never_deprioritizes":
            return not any(_lowers(h, a["pid"]) for h in hints)
        if self.check == "leaves_alone":
            return not any(getattr(h, "pid", None) == a["pid"] for h in hints)
        if self.check == "sets_knob":
            return any(isinstance(h, SetKnob) and h.knob == a["knob"] and h.value == a["value"] for h in hints)
        return any(d.holds(hints) for d in a["of"])

    def describe(self) -> str:
        a = self.args
        if self.check == "any":
            return " or ".join(d.describe() for d in a["of"])
        return f"{self.check} " + " ".join(f"{k}={v}" for k, v in a.items())


@dataclass(frozen=True)
class ScenarioBase:
    """What every exam's scenario has: its name, title, machine, the notes on it and its decisions."""

    name: str
    title: str
    machine: str
    topology: Topology
    notes: str | None
    decisions: list


@dataclass(frozen=True)
class Scenario(ScenarioBase):
    decisions: list[Decision]
    state: GuestState
    reference: list


def _targets(hint, pid: int) -> set[int]:
    """The nodes that `hint` moves `pid`'s pages to."""
    if isinstance(hint, MigratePages) and hint.pid == pid:
        return set(hint.to_nodes)
    if isinstance(hint, MoveRange) and hint.pid == pid:
        return {hint.to_node}
    return set()


def _lowers(hint, pid: int) -> bool:
    """Whether `hint` gives `pid` less CPU than a default process (scenario processes start at nice 0, normal)."""
    return isinstance(hint, SetSched) and hint.pid == pid and (
        (hint.nice or 0) > 0 or hint.policy in ("batch", "idle"))


def _need(data: dict, key: str, kind: type, where: str):
    value = data.get(key)
    if not isinstance(value, kind):
        raise ScenarioError(f"{where}: field {key!r} must be {kind.__name__}, got {value!r}")
    return value


def _decision(data: dict, where: str) -> Decision:
    check = data.get("check")
    if check not in CHECKS:
        raise ScenarioError(f"{where}: field 'check' is {check!r}; expected one of {', '.join(CHECKS)}")
    why = data.get("why", "")
    if check == "any":
        options = _need(data, "of", list, where)
        return Decision(check, why, {"of": [_decision({**o, "why": why}, f"{where}.of[{i}]")
                                            for i, o in enumerate(options)]})
    needs = {"moves": ("pid", "node"), "never_moves": ("pid", "node"), "pins": ("pid", "cpus"),
             "never_pins": ("pid",), "deprioritizes": ("pid",), "never_deprioritizes": ("pid",),
             "leaves_alone": ("pid",), "sets_knob": ("knob", "value")}[check]
    missing = [k for k in needs if k not in data]
    if missing:
        raise ScenarioError(f"{where}: check {check!r} needs field(s) {', '.join(missing)}")
    if not why and where.count(".of[") == 0:
        raise ScenarioError(f"{where}: field 'why' is empty; every decision says why")
    return Decision(check, why, {k: data[k] for k in needs})


def _process(data: dict, topo: Topology, where: str) -> Process:
    rss = {str(k): int(v) * 1024 for k, v in _need(data, "rss_mib", dict, where).items()}
    all_cpus = sorted(c for n in topo.nodes for c in n.cpus)
    return Process(pid=_need(data, "pid", int, where), ppid=1, name=_need(data, "name", str, where),
                   cmdline=data.get("cmdline", data["name"]), state=data.get("state", "S"),
                   threads=data.get("threads", 1), rss_kib=sum(rss.values()), rss_kib_by_node=rss,
                   mempolicy=data.get("mempolicy", "default"), cpus_allowed=data.get("cpus", all_cpus),
                   mems_allowed=[n.id for n in topo.nodes], cpu_seconds=float(data.get("cpu_seconds", 1.0)),
                   cpu_percent=data.get("cpu_percent"), last_cpu=data.get("last_cpu"), nice=data.get("nice", 0),
                   sched_policy=data.get("sched_policy", "normal"))


def build_state(topo: Topology, data: dict, where: str) -> GuestState:
    """The GuestState a gather on `topo` would report, from a scenario's compact state."""
    free = {int(k): v for k, v in _need(data, "free_mib", dict, where).items()}
    unknown = set(free) - {n.id for n in topo.nodes}
    if unknown:
        raise ScenarioError(f"{where}: free_mib names node(s) {sorted(unknown)} that {topo.name} lacks")
    nodes = [GuestNode(id=n.id, cpus=n.cpus, mem_total_kib=n.size_mib * 1024,
                       mem_free_kib=free.get(n.id, n.size_mib) * 1024,
                       distances=list(topo.distances[i]) if topo.distances else [],
                       access0=None, memory_tier=None) for i, n in enumerate(topo.nodes)]
    knobs = {"numa_balancing": 0, "demotion_enabled": False, "thp_enabled": "madvise",
             "weighted_interleave": {}, **data.get("knobs", {})}
    procs = [_process(p, topo, f"{where}: processes[{i}]") for i, p in enumerate(data.get("processes", []))]
    return GuestState(schema_version=SCHEMA_VERSION, kernel="6.12.57+deb13-amd64", agent_pid=AGENT_PID,
                      nodes=nodes, cxl=CxlView(memdevs=[], regions=[], dax=[]), knobs=Knobs(**knobs),
                      vmstat={}, processes=procs, damon=None, gather_seconds=0.2)


def load_scenario(path: Path) -> Scenario:
    """One scenario file, checked: its machine exists and its decisions are well formed."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    machine = _need(data, "machine", str, str(path))
    topo = load(resolve(machine))
    state = build_state(topo, data, str(path))
    decisions = [_decision(d, f"{path}: decisions[{i}]") for i, d in enumerate(data.get("decisions", []))]
    if not decisions:
        raise ScenarioError(f"{path}: field 'decisions' is empty; a scenario needs at least one")
    try:
        reference = _HINTS.validate_python(data.get("reference", []))
    except ValidationError as exc:
        raise ScenarioError(f"{path}: field 'reference' does not fit the hint schema: {exc}") from None
    return Scenario(name=path.stem, title=data.get("title", path.stem), machine=machine, topology=topo,
                    notes=data.get("notes"), decisions=decisions, state=state, reference=reference)


def load_dir(directory: Path, loader: Callable[[Path], T], only: list[str] | None = None) -> list[T]:
    """`loader` applied to each *.toml in `directory`, sorted by name; with `only`, just the stems it names."""
    paths = sorted(directory.glob("*.toml"))
    if only:
        paths = [p for p in paths if p.stem in only]
    return [loader(p) for p in paths]


def load_all(directory: Path = SCENARIO_DIR, only: list[str] | None = None) -> list[Scenario]:
    return load_dir(directory, load_scenario, only)


@dataclass(frozen=True)
class Score:
    passed: int
    total: int
    failed: list[str]


def score(scenario: Scenario, hints: list) -> Score:
    """How many of the scenario's decisions `hints` make, and which they miss."""
    failed = [d.describe() for d in scenario.decisions if not d.holds(hints)]
    return Score(len(scenario.decisions) - len(failed), len(scenario.decisions), failed)
