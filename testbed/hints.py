"""The typed host side of the hint schema (version 1) that `llamas-agent apply` accepts.

The published JSON Schema (guest-agent/schema/hints-v1.schema.json) is what an
LLM server is constrained with; these models are what host code builds hints
with.  tests/agent/test_hint_schema.py keeps both in agreement with the
guest's own hand-written validator.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    model_validator,
)

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "guest-agent" / "schema" / "hints-v1.schema.json"
MAX_DOCUMENT_BYTES = 64 * 1024
MAX_RANGE_BYTES = 2**30   # the guest locates every page of a move_range: bounded work

NodeId = Annotated[StrictInt, Field(ge=0, le=1023)]
Pid = Annotated[StrictInt, Field(ge=1, le=4194304)]
NodeList = Annotated[list[NodeId], Field(min_length=1, max_length=64)]
Weights = Annotated[dict[Annotated[str, Field(pattern=r"^(0|[1-9][0-9]{0,3})$")],
                         Annotated[StrictInt, Field(ge=1, le=255)]], Field(min_length=1, max_length=64)]


class _Hint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: Annotated[str, Field(max_length=64)] | None = None
    reason: Annotated[str, Field(max_length=1000)] | None = None

    def dump(self) -> dict:
        return self.model_dump(exclude_none=True)


def _unique(values: list, name: str) -> None:
    if len(set(values)) != len(values):
        raise ValueError(f"{name} has duplicates")


class MigratePages(_Hint):
    """Move a process's pages from some nodes to others (migrate_pages(2))."""

    kind: Literal["migrate_pages"] = "migrate_pages"
    pid: Pid
    from_nodes: NodeList
    to_nodes: NodeList

    @model_validator(mode="after")
    def _distinct(self):
        _unique(self.from_nodes, "from_nodes")
        _unique(self.to_nodes, "to_nodes")
        return self


class MoveRange(_Hint):
    """Move the pages of one address range of a process to a node (move_pages(2))."""

    kind: Literal["move_range"] = "move_range"
    pid: Pid
    start: Annotated[StrictInt, Field(ge=0, le=2**64 - 1)]
    length: Annotated[StrictInt, Field(ge=1, le=MAX_RANGE_BYTES)]
    to_node: NodeId


class SetPolicy(_Hint):
    """Policy for new memory: of a program started by `llamas-agent run --as LAUNCH`, or of a pid
    (which the guest refuses: the kernel has no call that sets another task's policy)."""

    kind: Literal["set_policy"] = "set_policy"
    pid: Pid | None = None
    launch: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")] | None = None
    mode: Literal["bind", "preferred", "interleave", "weighted_interleave"]
    nodes: NodeList
    weights: Weights | None = None

    @model_validator(mode="after")
    def _target(self):
        if (self.pid is None) == (self.launch is None):
            raise ValueError("set_policy needs exactly one target: pid or launch")
        if self.weights is not None and self.mode != "weighted_interleave":
            raise ValueError("weights only go with mode weighted_interleave")
        _unique(self.nodes, "nodes")
        return self


class SetKnob(_Hint):
    """Set a tiering knob to a value the kernel accepts."""

    kind: Literal["set_knob"] = "set_knob"
    knob: Literal["numa_balancing", "demotion_enabled", "thp_enabled", "weighted_interleave"]
    value: StrictInt | StrictBool | str | Weights

    @model_validator(mode="after")
    def _value_fits(self):
        v = self.value
        ok = {
            "numa_balancing": lambda: type(v) is int and v in (0, 1, 2, 3),
            "demotion_enabled": lambda: type(v) is bool,
            "thp_enabled": lambda: v in ("always", "madvise", "never"),
            "weighted_interleave": lambda: isinstance(v, dict),
        }[self.knob]()
        if not ok:
            raise ValueError(f"value {v!r} does not fit knob {self.knob}")
        return self


class SetAffinity(_Hint):
    """Pin every thread of a process to a set of CPUs (sched_setaffinity(2))."""

    kind: Literal["set_affinity"] = "set_affinity"
    pid: Pid
    cpus: Annotated[list[Annotated[StrictInt, Field(ge=0, le=8191)]], Field(min_length=1, max_length=1024)]

    @model_validator(mode="after")
    def _distinct(self):
        _unique(self.cpus, "cpus")
        return self


class SetSched(_Hint):
    """A process's nice level and/or scheduling class, every thread (setpriority(2), sched_setscheduler(2)).
    No real-time class: a spinning real-time task can hang the guest."""

    kind: Literal["set_sched"] = "set_sched"
    pid: Pid
    nice: Annotated[StrictInt, Field(ge=-20, le=19)] | None = None
    policy: Literal["normal", "batch", "idle"] | None = None

    @model_validator(mode="after")
    def _something(self):
        if self.nice is None and self.policy is None:
            raise ValueError("set_sched needs nice, policy or both")
        return self


Hint = Annotated[MigratePages | MoveRange | SetPolicy | SetKnob | SetAffinity | SetSched, Field(discriminator="kind")]


class HintDocument(BaseModel):
    """What `llamas-agent apply` reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: Literal[1] = SCHEMA_VERSION
    source: Annotated[str, Field(max_length=200)] | None = None
    hints: Annotated[list[Hint], Field(max_length=64)]

    @classmethod
    def from_json(cls, text: str | bytes) -> HintDocument:
        """Parse and check a document as the guest does: a repeated key is a DuplicateKey, not the last value."""
        return cls.model_validate(loads_unique(text))

    def to_json(self) -> str:
        data = {"schema_version": self.schema_version, "hints": [h.dump() for h in self.hints]}
        if self.source is not None:
            data["source"] = self.source
        return json.dumps(data)


class DuplicateKey(ValueError):
    """A JSON object names one key twice; the message says which key and where."""


class _Repeated(dict):
    """An object that names `key` twice, kept until the walk below can say where it stands."""

    def __init__(self, pairs: list[tuple[str, Any]], key: str):
        super().__init__(pairs)
        self.key = key


def _object(pairs: list[tuple[str, Any]]) -> dict:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return _Repeated(pairs, key)
        seen.add(key)
    return dict(pairs)


def loads_unique(text: str | bytes) -> Any:
    """json.loads that refuses a key given twice in one object (DuplicateKey), as the guest agent does.

    Parsers disagree on which of two values wins (Python's keeps the last, others
    the first): a document that the host and the guest could read two ways is
    refused.  Malformed JSON raises json.JSONDecodeError as json.loads does.
    """
    doc = json.loads(text, object_pairs_hook=_object)
    todo = [("", doc)]
    while todo:  # depth-first in document order, without recursion: the sender chooses the nesting
        where, value = todo.pop()
        if isinstance(value, _Repeated):
            raise DuplicateKey(f"duplicate key {value.key[:64]!r} in {where[:200] or 'the top-level object'}: "
                               "each key may appear once (JSON parsers disagree on which value wins)")
        if isinstance(value, dict):
            todo.extend((f"{where}.{k}" if where else k, v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            todo.extend((f"{where}[{i}]", v) for i, v in reversed(list(enumerate(value))))
    return doc


@cache
def json_schema() -> dict:
    """The published JSON Schema of hint documents."""
    return json.loads(SCHEMA_PATH.read_text())
