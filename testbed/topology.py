"""Machines as data: the schema of `topologies/*.toml` and its loader.

A topology is everything the testbed needs to build one emulated machine and
to check that the guest kernel sees it: NUMA nodes (size, CPUs, kind of
memory, how QEMU backs them), the SLIT distance matrix, HMAT latency and
bandwidth per initiator/target pair, and the administrator's plain-language
description that the advisor hands to an LLM.  Adding a machine is adding a
file; nothing here knows about particular machines.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

TOPOLOGY_DIR = Path(__file__).resolve().parent.parent / "topologies"

# CXL host-managed decoders commit in 256 MiB units; a region must be a multiple.
CXL_GRANULE_MIB = 256
LOCAL_DISTANCE = 10

_SIZE_RE = re.compile(r"^(\d+)\s*([MG])$")


class TopologyError(ValueError):
    """A topology file that cannot describe a machine; the message names file, field and value."""


class NodeKind(StrEnum):
    DRAM = "dram"
    HBM = "hbm"
    CXL = "cxl"
    NVM = "nvm"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Node(_Strict):
    """One NUMA node as the guest kernel should see it."""

    id: int = Field(ge=0, le=63)
    kind: NodeKind
    size: str = Field(description="memory size, binary units: '512M', '2G'")
    cpus: list[int] = Field(default_factory=list, description="vCPU indexes on this node")
    backing: Literal["ram", "cxl-type3"] = Field(
        default="ram",
        description="'ram': a plain NUMA node in SRAT; 'cxl-type3': an emulated CXL "
        "type-3 volatile memory device that the testbed turns into a node in the guest",
    )
    tier: int | None = Field(
        default=None, ge=0, description="expected memory tier rank, 0 = fastest; nodes of equal rank share a tier"
    )

    @field_validator("size")
    @classmethod
    def _size_format(cls, value: str) -> str:
        match = _SIZE_RE.match(value.strip())
        if not match or int(match.group(1)) == 0:
            raise ValueError(f"{value!r} is not a size like '512M' or '2G'")
        return value.strip()

    @field_validator("cpus")
    @classmethod
    def _cpus_unique(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value) or any(c < 0 for c in value):
            raise ValueError(f"{value} must list distinct non-negative vCPU indexes")
        return sorted(value)

    @property
    def size_mib(self) -> int:
        number, unit = _SIZE_RE.match(self.size).groups()
        return int(number) * (1024 if unit == "G" else 1)

    @property
    def is_cxl_device(self) -> bool:
        return self.backing == "cxl-type3"


class HmatEntry(_Strict):
    """HMAT performance of memory node `target` as seen from CPUs of node `initiator`."""

    initiator: int = Field(ge=0)
    target: int = Field(ge=0)
    read_latency_ns: int = Field(gt=0)
    write_latency_ns: int = Field(gt=0)
    read_bandwidth_mbps: int = Field(gt=0, description="MB/s, as Linux reports it")
    write_bandwidth_mbps: int = Field(gt=0, description="MB/s, as Linux reports it")


class CoreGroup(_Strict):
    """vCPUs of one kind of core and their speed relative to the emulator's (1.0 = full speed)."""

    cpus: list[int] = Field(min_length=1, description="vCPU indexes of this kind of core")
    kind: str = Field(pattern=r"^[a-z][a-z0-9-]*$", description="e.g. 'performance', 'efficiency'")
    speed: float = Field(gt=0, le=1, description="instruction rate relative to a full-speed core, "
                         "emulated by the latency plugin in emulated mode")


class Topology(_Strict):
    """A whole machine. Build with `load()`, which adds the file name to every error."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = Field(min_length=40, description="the administrator's account, read by the LLM")
    sources: list[str] = Field(default_factory=list, description="where the figures come from")
    nodes: list[Node] = Field(min_length=1)
    distances: list[list[int]] | None = Field(
        default=None, description="SLIT matrix over all nodes; default 10 local, 20 remote"
    )
    hmat: list[HmatEntry] = Field(default_factory=list)
    cores: list[CoreGroup] = Field(default_factory=list, description="core kinds and speeds; unlisted vCPUs run at 1.0")

    @model_validator(mode="after")
    def _consistent(self) -> Topology:
        self._check_nodes()
        self._check_cpus()
        self._check_distances()
        self._check_hmat()
        self._check_cores()
        return self

    def _check_nodes(self) -> None:
        ids = [n.id for n in self.nodes]
        if ids != list(range(len(ids))):
            raise ValueError(f"nodes[].id must be 0, 1, ... in order, got {ids}")
        seen_device = False
        for i, node in enumerate(self.nodes):
            if node.is_cxl_device:
                seen_device = True
                if node.cpus:
                    raise ValueError(f"nodes[{i}].cpus={node.cpus}: a cxl-type3 node has no CPUs")
                if node.size_mib % CXL_GRANULE_MIB:
                    raise ValueError(
                        f"nodes[{i}].size={node.size!r}: a cxl-type3 node must be a multiple of {CXL_GRANULE_MIB}M"
                    )
            elif seen_device:
                # Linux numbers CXL window nodes after every SRAT node.
                raise ValueError(f"nodes[{i}].backing='ram' after a cxl-type3 node: "
                                 "cxl-type3 nodes must come after all ram-backed nodes")

    def _check_cpus(self) -> None:
        if not self.nodes[0].cpus:
            raise ValueError("nodes[0].cpus is empty: node 0 must hold CPUs (the boot CPU lives there)")
        cpus = sorted(c for n in self.nodes for c in n.cpus)
        if cpus != list(range(len(cpus))):
            raise ValueError(f"nodes[].cpus must cover vCPUs 0..N-1 exactly once, got {cpus}")

    def _check_distances(self) -> None:
        if self.distances is None:
            return
        n = len(self.nodes)
        if len(self.distances) != n or any(len(row) != n for row in self.distances):
            raise ValueError(f"distances must be a {n}x{n} matrix (one row and column per node)")
        for i, row in enumerate(self.distances):
            for j, value in enumerate(row):
                if i == j and value != LOCAL_DISTANCE:
                    raise ValueError(f"distances[{i}][{j}]={value}: a node's distance to itself is {LOCAL_DISTANCE}")
                if i != j and not LOCAL_DISTANCE < value <= 254:
                    raise ValueError(f"distances[{i}][{j}]={value}: remote distances lie in 11..254")
                device = self.nodes[i].is_cxl_device or self.nodes[j].is_cxl_device
                if i != j and device and value != 20:
                    raise ValueError(f"distances[{i}][{j}]={value}: SLIT does not cover cxl-type3 nodes; "
                                     "Linux reports the default remote distance 20")
                if value != self.distances[j][i]:
                    raise ValueError(
                        f"distances[{i}][{j}]={value} but distances[{j}][{i}]={self.distances[j][i]}: "
                        "the matrix must be symmetric"
                    )

    def _check_hmat(self) -> None:
        pairs = set()
        for k, entry in enumerate(self.hmat):
            for field in ("initiator", "target"):
                node_id = getattr(entry, field)
                if node_id >= len(self.nodes):
                    raise ValueError(f"hmat[{k}].{field}={node_id}: no such node (nodes are 0..{len(self.nodes) - 1})")
            if not self.nodes[entry.initiator].cpus:
                raise ValueError(f"hmat[{k}].initiator={entry.initiator}: an initiator must be a node with CPUs")
            if self.nodes[entry.target].is_cxl_device:
                raise ValueError(
                    f"hmat[{k}].target={entry.target}: a cxl-type3 node's performance comes from the "
                    "device (CDAT), not from HMAT"
                )
            if (entry.initiator, entry.target) in pairs:
                raise ValueError(f"hmat[{k}]: initiator {entry.initiator} -> target {entry.target} given twice")
            pairs.add((entry.initiator, entry.target))
        if not self.hmat:
            return
        for node in self.ram_nodes:
            if not any(e.target == node.id for e in self.hmat):
                raise ValueError(f"hmat: node {node.id} has no entry; with HMAT every ram-backed node needs one")
            if node.cpus and (node.id, node.id) not in pairs:
                raise ValueError(f"hmat: node {node.id} has CPUs but no entry for itself "
                                 f"(initiator = {node.id}, target = {node.id})")

    def _check_cores(self) -> None:
        seen: dict[int, int] = {}
        for k, group in enumerate(self.cores):
            for cpu in group.cpus:
                if cpu >= self.cpu_count:
                    raise ValueError(f"cores[{k}].cpus: vCPU {cpu} does not exist (vCPUs are 0..{self.cpu_count - 1})")
                if cpu in seen:
                    raise ValueError(f"cores[{k}].cpus: vCPU {cpu} is already in cores[{seen[cpu]}]")
                seen[cpu] = k

    # ---- derived views -------------------------------------------------

    def cpu_speeds(self) -> dict[int, float]:
        """{vCPU: relative speed} for every vCPU (1.0 where no core group names it)."""
        speeds = dict.fromkeys(range(self.cpu_count), 1.0)
        for group in self.cores:
            speeds.update(dict.fromkeys(group.cpus, group.speed))
        return speeds

    @property
    def heterogeneous_cores(self) -> bool:
        """Some vCPU runs slower than another: only the emulated mode can make that felt."""
        return len(set(self.cpu_speeds().values())) > 1

    def fastest_cpus(self) -> list[int]:
        speeds = self.cpu_speeds()
        top = max(speeds.values())
        return [c for c, s in speeds.items() if s == top]

    @property
    def ram_nodes(self) -> list[Node]:
        return [n for n in self.nodes if not n.is_cxl_device]

    @property
    def cxl_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.is_cxl_device]

    @property
    def cpu_count(self) -> int:
        return sum(len(n.cpus) for n in self.nodes)

    def distance(self, a: int, b: int) -> int:
        if self.distances is not None:
            return self.distances[a][b]
        return LOCAL_DISTANCE if a == b else 20

    def initiator_of(self, node: Node) -> int:
        """The CPU node closest to `node` by HMAT read latency (itself if it has CPUs)."""
        if node.cpus:
            return node.id
        entries = [e for e in self.hmat if e.target == node.id]
        if not entries:
            return min((n for n in self.nodes if n.cpus), key=lambda n: self.distance(n.id, node.id)).id
        return min(entries, key=lambda e: e.read_latency_ns).initiator

    def best_hmat(self, node: Node) -> HmatEntry | None:
        """The entry Linux reports as the node's access0 class: from its nearest initiator."""
        return self._hmat_entry(self.initiator_of(node), node)

    def hmat_from(self, initiator: int, node: Node) -> HmatEntry | None:
        """`node`'s entry as seen from CPUs of node `initiator`; the nearest initiator's where the file
        gives none for that pair (what a machine that knows nothing more would show)."""
        return self._hmat_entry(initiator, node) or self.best_hmat(node)

    def _hmat_entry(self, initiator: int, node: Node) -> HmatEntry | None:
        """The file's entry for exactly this (initiator, target) pair, if it has one."""
        return next((e for e in self.hmat if e.target == node.id and e.initiator == initiator), None)

    @property
    def initiators_differ(self) -> bool:
        """Some node is felt slower from one CPU node than from another (a two-socket machine's remote
        figures): only a TCG thread per vCPU can make that felt (the latency plugin, initiators)."""
        for node in self.nodes:
            figures = {(e.read_latency_ns, e.write_latency_ns) for e in self.hmat if e.target == node.id}
            if len(figures) > 1:
                return True
        return False


def _format_error(path: Path, error: dict) -> str:
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
    message = error["msg"].removeprefix("Value error, ")
    if not loc:
        return f"{path}: {message}"
    return f"{path}: {loc}: {message} (got {error.get('input')!r})"


def load(path: str | Path) -> Topology:
    """Parse and validate one topology file; raise TopologyError naming file, field and value."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise TopologyError(f"{path}: no such topology file") from None
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError(f"{path}: not valid TOML: {exc}") from None
    data.setdefault("name", path.stem)
    if data["name"] != path.stem:
        raise TopologyError(f"{path}: name: {data['name']!r} must match the file name {path.stem!r}")
    try:
        return Topology.model_validate(data)
    except ValidationError as exc:
        raise TopologyError("\n".join(_format_error(path, e) for e in exc.errors())) from None


def resolve(name_or_path: str) -> Path:
    """Map 'dram-cxl' or 'topologies/dram-cxl.toml' or any path to a topology file."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.exists():
        return candidate
    return TOPOLOGY_DIR / f"{name_or_path}.toml"


def available() -> list[str]:
    """Names of the topologies shipped in `topologies/`."""
    return sorted(p.stem for p in TOPOLOGY_DIR.glob("*.toml"))


def digest(path: str | Path) -> str:
    """Content digest of a topology file, recorded in results to tie them to the machine."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
