"""The typed host side of `llamas-agent gather`: the guest's memory state, schema version 1."""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, ValidationError

from .guest_view import GuestMachine

SCHEMA_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Knobs(_Model):
    """Tiering knobs; None where the guest kernel lacks one."""

    numa_balancing: int | None
    demotion_enabled: bool | None
    thp_enabled: str | None
    weighted_interleave: dict[str, int]


class Process(_Model):
    """A user process; `name` and `cmdline` are untrusted text, bounded and escaped by the agent."""

    pid: int
    ppid: int
    name: str
    cmdline: str
    state: str
    threads: int
    rss_kib: int
    rss_kib_by_node: dict[str, int]
    mempolicy: str | None
    cpus_allowed: list[int]
    mems_allowed: list[int]
    cpu_seconds: float
    # Where and how it runs (absent from states gathered before they were added):
    cpu_percent: float | None = None  # of one CPU, over the agent's short sampling window
    last_cpu: int | None = None
    nice: int = 0
    sched_policy: str = "normal"


class DamonRegion(_Model):
    start: int
    end: int
    nr_accesses: int
    age: int


class Damon(_Model):
    seconds: float
    error: str | None
    regions: dict[str, list[DamonRegion] | None]


class GuestState(GuestMachine):
    """The machine view (`llamas-agent machine`) plus what changes as the guest runs."""

    agent_pid: int
    knobs: Knobs
    vmstat: dict[str, int]
    processes: list[Process]
    damon: Damon | None
    gather_seconds: float

    def process(self, pid: int) -> Process | None:
        return next((p for p in self.processes if p.pid == pid), None)


class StateError(RuntimeError):
    """The agent's `gather` output did not fit the schema."""


def parse(text: str) -> GuestState:
    """Parse and check `llamas-agent gather` output."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(f"llamas-agent gather printed invalid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        version = data.get("schema_version") if isinstance(data, dict) else None
        raise StateError(f"llamas-agent gather schema_version {version!r}, host expects {SCHEMA_VERSION}")
    try:
        return GuestState.model_validate(data)
    except ValidationError as exc:
        raise StateError(f"llamas-agent gather output does not fit the schema: {exc}") from None
