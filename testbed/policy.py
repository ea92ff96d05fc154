"""The typed host side of placement policies (schema placement-policy-v1) that `llamas-agent enforce` keeps true.

The published JSON Schema (guest-agent/schema/placement-policy-v1.schema.json)
is what an LLM server can be constrained with; these models are what host code
builds and checks policies with.  tests/agent/test_policy_schema.py keeps both
in agreement with the guest's hand-written validator (guest-agent/llamas_agent/policy.py).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationError,
    model_validator,
)

from .hints import DuplicateKey, loads_unique
from .topology import _format_error

SCHEMA = "placement-policy-v1"
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "guest-agent" / "schema" / f"{SCHEMA}.schema.json"
MAX_POLICY_BYTES = 16 * 1024

NodeId = Annotated[StrictInt, Field(ge=0, le=1023)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


class PolicyError(ValueError):
    """A policy that cannot be enforced; the message names the file, the field and the value."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(_Strict):
    """A class of memory; every field given must hold (no field: all memory)."""

    heat: Literal["hot", "warm", "cold"] | None = None
    write: Literal["write-heavy", "read-mostly", "untouched"] | None = None
    launch: Name | None = None
    min_region_mib: Annotated[StrictInt, Field(ge=1, le=1 << 20)] | None = None

    def covers(self, later: Match) -> bool:
        """True when every region `later` matches is matched by this one too (so `later` never fires)."""
        mine, theirs = self.model_dump(exclude_none=True), later.model_dump(exclude_none=True)
        for key, value in mine.items():
            if key not in theirs or (theirs[key] < value if key == "min_region_mib" else theirs[key] != value):
                return False
        return True


class Rule(_Strict):
    """Memory of this class goes to the first of these nodes that has room."""

    id: Annotated[str, Field(max_length=64)] | None = None
    match: Match
    nodes: Annotated[list[NodeId], Field(min_length=1, max_length=64)]

    @model_validator(mode="after")
    def _distinct(self):
        if len(set(self.nodes)) != len(self.nodes):
            raise ValueError("nodes has duplicates")
        return self


class Limits(_Strict):
    """What the daemon must respect: free memory per node, bandwidth, its interval."""

    keep_free_mib: Annotated[dict[Annotated[str, Field(pattern=r"^(0|[1-9][0-9]{0,3})$")],
                                  Annotated[StrictInt, Field(ge=0, le=1 << 20)]], Field(max_length=64)] = {}
    bandwidth_mib_s: Annotated[StrictInt, Field(ge=1, le=65536)]
    interval_s: Annotated[StrictInt | StrictFloat, Field(ge=1, le=3600)]


class PlacementPolicy(_Strict):
    """A standing placement policy: ordered rules and limits; nodes and classes, never pids."""

    schema_: Literal["placement-policy-v1"] = Field(SCHEMA, alias="schema")
    name: Name | None = None
    description: Annotated[str, Field(max_length=2000)] | None = None
    limits: Limits
    rules: Annotated[list[Rule], Field(min_length=1, max_length=32)]

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _reachable(self):
        for j, rule in enumerate(self.rules):
            for i in range(j):
                if self.rules[i].match.covers(rule.match):
                    raise ValueError(
                        f"rules[{j}] can never apply: rules[{i}] (match {self.rules[i].match.model_dump(exclude_none=True)}) "
                        f"takes every region rules[{j}] (match {rule.match.model_dump(exclude_none=True)}) would")
        return self

    def named_nodes(self) -> set[int]:
        """Every node the policy names, in rules and limits."""
        return {n for r in self.rules for n in r.nodes} | {int(k) for k in self.limits.keep_free_mib}

    def to_json(self) -> str:
        return json.dumps(self.model_dump(by_alias=True, exclude_none=True))


def parse(text: str | bytes, source: str = "<policy>") -> PlacementPolicy:
    """Check a policy as the guest does (size, repeated keys, shape); PolicyError names source, field and value."""
    size = len(text.encode() if isinstance(text, str) else text)
    if size > MAX_POLICY_BYTES:
        raise PolicyError(f"{source}: document is {size} bytes, more than the {MAX_POLICY_BYTES} allowed")
    try:
        data = loads_unique(text)
    except DuplicateKey as exc:
        raise PolicyError(f"{source}: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise PolicyError(f"{source}: malformed JSON: {exc}") from None
    try:
        return PlacementPolicy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError("\n".join(_format_error(source, e) for e in exc.errors())) from None


def load(path: str | Path) -> PlacementPolicy:
    """Read and check one policy file."""
    try:
        return parse(Path(path).read_bytes(), str(path))
    except FileNotFoundError:
        raise PolicyError(f"{path}: no such policy file") from None


def check_nodes(policy: PlacementPolicy, node_ids: set[int], source: str = "<policy>") -> None:
    """Refuse a policy that names a node the machine lacks (a topology's or a guest's node ids)."""
    missing = sorted(policy.named_nodes() - set(node_ids))
    if missing:
        raise PolicyError(f"{source}: names node(s) {missing} that the machine lacks (nodes: {sorted(node_ids)})")


@cache
def json_schema() -> dict:
    """The published JSON Schema of placement policies."""
    return json.loads(SCHEMA_PATH.read_text())
