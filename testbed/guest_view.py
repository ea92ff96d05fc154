"""The machine as the guest kernel sees it: the typed host side of `llamas-agent machine`."""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, ValidationError

from .ssh import GuestShell

SCHEMA_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Access(_Model):
    """HMAT access class 0 of a node: ns and MB/s from its nearest initiator."""

    read_latency: int | None
    write_latency: int | None
    read_bandwidth: int | None
    write_bandwidth: int | None
    initiators: list[int]


class GuestNode(_Model):
    id: int
    cpus: list[int]
    mem_total_kib: int
    mem_free_kib: int
    distances: list[int]
    access0: Access | None
    memory_tier: int | None

    @property
    def mem_total_mib(self) -> int:
        return self.mem_total_kib // 1024


class CxlMemdev(_Model):
    name: str
    ram_size: int


class CxlRegion(_Model):
    name: str
    size: int
    mode: str | None
    committed: bool


class DaxDevice(_Model):
    name: str
    target_node: int | None
    size: int
    system_ram: bool


class CxlView(_Model):
    memdevs: list[CxlMemdev]
    regions: list[CxlRegion]
    dax: list[DaxDevice]


class GuestMachine(_Model):
    schema_version: int
    kernel: str | None
    nodes: list[GuestNode]
    cxl: CxlView

    def node(self, node_id: int) -> GuestNode | None:
        return next((n for n in self.nodes if n.id == node_id), None)


class GuestViewError(RuntimeError):
    """The agent's answer did not fit the schema."""


def parse(text: str) -> GuestMachine:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GuestViewError(f"llamas-agent machine printed invalid JSON: {exc}") from None
    if data.get("schema_version") != SCHEMA_VERSION:
        raise GuestViewError(f"llamas-agent machine schema_version {data.get('schema_version')!r}, "
                             f"host expects {SCHEMA_VERSION}")
    try:
        return GuestMachine.model_validate(data)
    except ValidationError as exc:
        raise GuestViewError(f"llamas-agent machine output does not fit the schema: {exc}") from None


def read(shell: GuestShell) -> GuestMachine:
    """Ask the agent in the guest for the machine view."""
    return parse(shell.run("llamas-agent machine", timeout=60).stdout)
