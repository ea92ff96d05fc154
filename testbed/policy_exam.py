"""The policy exam: which class of memory a standing placement policy sends where, on each kind of machine.

A scenario (benchmarks/exam/policies/*.toml) names a machine from topologies/,
optional notes from the administrator, and decisions about classes of memory
(access heat and write intensity, as the agent measures them, and optionally a
region size), each with the reason it follows from the device description.
Each scenario carries a reference policy that makes every decision, so the exam
is known passable. A policy sends a class to the first node of the first rule
that matches it (as the agent's planner does); a class no rule matches stays
where it is.

Decision checks:
- prefers CLASS NODE: memory of CLASS goes to NODE first;
- avoids CLASS NODE: memory of CLASS is not sent to NODE first (no rule takes it, or one names another node first);
- any OF: at least one of the listed checks holds.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from . import policy as placement
from .exam import ScenarioBase, ScenarioError, Score, load_dir
from .topology import load, resolve

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "benchmarks" / "exam" / "policies"
CHECKS = ("prefers", "avoids", "any")
HEATS, WRITES = ("hot", "warm", "cold"), ("write-heavy", "read-mostly", "untouched")
DEFAULT_REGION_MIB = 64  # a class without a size is memory in a mapping this large


@dataclass(frozen=True)
class MemoryClass:
    """Memory as the agent classifies it each interval."""

    heat: str
    write: str
    region_mib: int = DEFAULT_REGION_MIB

    def __str__(self) -> str:
        return f"{self.heat}/{self.write}" + (f" in {self.region_mib} MiB" if self.region_mib != DEFAULT_REGION_MIB
                                              else "")


def first_choice(policy: placement.PlacementPolicy | None, cls: MemoryClass) -> int | None:
    """The node `policy` sends memory of `cls` to first, or None where no rule takes it (no policy: none)."""
    for rule in policy.rules if policy else []:
        m = rule.match
        if (m.heat not in (None, cls.heat) or m.write not in (None, cls.write) or m.launch is not None
                or (m.min_region_mib or 0) > cls.region_mib):
            continue  # a rule naming a process never takes an exam's class: it names none
        return rule.nodes[0]
    return None


@dataclass(frozen=True)
class Decision:
    check: str
    why: str
    cls: MemoryClass | None = None
    node: int | None = None
    of: tuple[Decision, ...] = ()

    def holds(self, policy: placement.PlacementPolicy | None) -> bool:
        """Whether `policy` (None: no policy at all) makes this decision."""
        if self.check == "prefers":
            return first_choice(policy, self.cls) == self.node
        if self.check == "avoids":
            return first_choice(policy, self.cls) != self.node
        return any(d.holds(policy) for d in self.of)

    def describe(self) -> str:
        if self.check == "any":
            return " or ".join(d.describe() for d in self.of)
        return f"{self.check} {self.cls} -> node {self.node}"


@dataclass(frozen=True)
class Scenario(ScenarioBase):
    decisions: list[Decision]
    reference: placement.PlacementPolicy


def score(scenario: Scenario, policy: placement.PlacementPolicy | None) -> Score:
    """How many of the scenario's decisions `policy` makes, and which it misses."""
    failed = [d.describe() for d in scenario.decisions if not d.holds(policy)]
    return Score(len(scenario.decisions) - len(failed), len(scenario.decisions), failed)


def _class(data: object, where: str) -> MemoryClass:
    if not isinstance(data, dict) or set(data) - {"heat", "write", "region_mib"}:
        raise ScenarioError(f"{where}: field 'class' must be {{heat, write[, region_mib]}}, got {data!r}")
    if data.get("heat") not in HEATS or data.get("write") not in WRITES:
        raise ScenarioError(f"{where}: field 'class' needs heat in {list(HEATS)} and write in {list(WRITES)}, "
                            f"got {data!r}")
    region = data.get("region_mib", DEFAULT_REGION_MIB)
    if not isinstance(region, int) or region < 1:
        raise ScenarioError(f"{where}: field 'class.region_mib' must be a whole number of MiB, got {region!r}")
    return MemoryClass(data["heat"], data["write"], region)


def _decision(data: dict, nodes: set[int], where: str, why: str | None = None) -> Decision:
    check = data.get("check")
    if check not in CHECKS:
        raise ScenarioError(f"{where}: field 'check' is {check!r}; expected one of {', '.join(CHECKS)}")
    why = data.get("why", "") if why is None else why
    if not why:
        raise ScenarioError(f"{where}: field 'why' is empty; every decision says why")
    if check == "any":
        options = data.get("of")
        if not isinstance(options, list) or not options:
            raise ScenarioError(f"{where}: check 'any' needs a non-empty list 'of', got {options!r}")
        return Decision(check, why, of=tuple(_decision(o, nodes, f"{where}.of[{i}]", why)
                                             for i, o in enumerate(options)))
    node = data.get("node")
    if node not in nodes:
        raise ScenarioError(f"{where}: field 'node' is {node!r}; the machine's memory nodes are {sorted(nodes)}")
    return Decision(check, why, _class(data.get("class"), where), node)


def load_scenario(path: Path) -> Scenario:
    """One scenario file, checked: its machine exists, its decisions are well formed, its reference fits."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    machine = data.get("machine")
    if not isinstance(machine, str):
        raise ScenarioError(f"{path}: field 'machine' must name a topology, got {machine!r}")
    topo = load(resolve(machine))
    nodes = {n.id for n in topo.nodes if n.size_mib > 0}
    decisions = [_decision(d, nodes, f"{path}: decisions[{i}]") for i, d in enumerate(data.get("decisions", []))]
    if not decisions:
        raise ScenarioError(f"{path}: field 'decisions' is empty; a scenario needs at least one")
    try:
        reference = placement.parse(data.get("reference", ""), f"{path}: reference")
        placement.check_nodes(reference, nodes, f"{path}: reference")
    except placement.PolicyError as exc:
        raise ScenarioError(str(exc)) from None
    return Scenario(name=path.stem, title=data.get("title", path.stem), machine=machine, topology=topo,
                    notes=data.get("notes"), decisions=decisions, reference=reference)


def load_all(directory: Path = SCENARIO_DIR, only: list[str] | None = None) -> list[Scenario]:
    return load_dir(directory, load_scenario, only)
