"""What the model may answer: a schema built per request, and the checks on what it did answer.

The published hint schema (testbed/hints.py) allows any pid and node.  A model
asked about one process will happily invent pids 1, 2, 3, ... (observed with
the 270M default), so each request carries a schema whose pids, nodes and CPUs
are enums of the ones this state has: a server with grammar-constrained
decoding cannot produce anything else.  Servers that do not constrain can, so
the answer is checked twice:

1. `parse_answer`: JSON (a key given twice is refused, as the guest refuses it)
   and the hint schema, with a reason per hint.  A failure here is the model's
   to repair (the error goes back to it once).
2. `check_facts`: every pid, node, CPU and knob must exist in the state, and a
   hint must do something.  Hints that fail are dropped, with the reason kept,
   never repaired: a model steered by guest text must not get a second try.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import TypeAdapter, ValidationError

from .hints import (
    MAX_RANGE_BYTES,
    DuplicateKey,
    Hint,
    MigratePages,
    MoveRange,
    SetAffinity,
    SetKnob,
    SetPolicy,
    SetSched,
    loads_unique,
)
from .state import GuestState

MAX_HINTS = 8
REASON_MAX_CHARS = 300
KNOB_VALUES = {
    "numa_balancing": {"type": "integer", "enum": [0, 1, 2, 3]},
    "demotion_enabled": {"type": "boolean"},
    "thp_enabled": {"type": "string", "enum": ["always", "madvise", "never"]},
}
_HINT = TypeAdapter(Hint)


class AnswerInvalid(ValueError):
    """The model's text is not a hint list; the message is written for the model to read."""


@dataclass(frozen=True)
class Dropped:
    """A well-formed hint that does not fit this machine, and why."""

    hint: dict
    why: str

    def to_json(self) -> dict:
        return {"hint": self.hint, "why": self.why}


def _pids(state: GuestState) -> list[int]:
    """The pids a hint may name: not init nor the agent, which the agent always refuses.

    Left in, pid 1 was the 270M model's answer to every evaluation state.
    """
    return sorted(p.pid for p in state.processes if p.pid not in (1, state.agent_pid))


def _memory_nodes(state: GuestState) -> list[int]:
    return sorted(n.id for n in state.nodes if n.mem_total_kib > 0)


def _cpus(state: GuestState) -> list[int]:
    return sorted(c for n in state.nodes for c in n.cpus)


def _knobs(state: GuestState) -> list[str]:
    present = state.knobs.model_dump()
    return [k for k in KNOB_VALUES if present.get(k) is not None]


def _range_starts(state: GuestState) -> list[int]:
    if state.damon is None:
        return []
    return sorted({r.start for regions in state.damon.regions.values() if regions for r in regions})


def _object(kind: str, fields: dict) -> dict:
    """One hint kind; `reason` right after the target so the model states it before the action."""
    properties = {"kind": {"const": kind}, **fields}
    return {"type": "object", "additionalProperties": False,
            "required": list(properties), "properties": properties}


def response_schema(state: GuestState) -> dict:
    """The JSON Schema of one answer for this state: {"hints": [...]} with real ids as enums."""
    reason = {"type": "string", "minLength": 1, "maxLength": REASON_MAX_CHARS}
    nodes = _memory_nodes(state)
    node_list = {"type": "array", "items": {"type": "integer", "enum": nodes},
                 "minItems": 1, "maxItems": len(nodes), "uniqueItems": True}
    kinds = []
    pids = _pids(state)
    if pids:
        pid = {"type": "integer", "enum": pids}
        kinds.append(_object("migrate_pages", {"pid": pid, "reason": reason,
                                               "from_nodes": node_list, "to_nodes": node_list}))
        kinds.append(_object("set_affinity", {"pid": pid, "reason": reason, "cpus": {
            "type": "array", "items": {"type": "integer", "enum": _cpus(state)},
            "minItems": 1, "uniqueItems": True}}))
        kinds.append(_object("set_sched", {"pid": pid, "reason": reason,
                                           "nice": {"type": "integer", "minimum": -20, "maximum": 19},
                                           "policy": {"enum": ["normal", "batch", "idle"]}}))
        starts = _range_starts(state)
        if starts:
            kinds.append(_object("move_range", {"pid": pid, "reason": reason,
                                                "start": {"type": "integer", "enum": starts},
                                                "length": {"type": "integer", "minimum": 4096,
                                                           "maximum": MAX_RANGE_BYTES},
                                                "to_node": {"type": "integer", "enum": nodes}}))
    for knob in _knobs(state):
        kinds.append(_object("set_knob", {"knob": {"const": knob}, "reason": reason,
                                          "value": KNOB_VALUES[knob]}))
    hints = {"type": "array", "maxItems": MAX_HINTS, "items": {"anyOf": kinds}} if kinds else \
        {"type": "array", "maxItems": 0}
    return {"type": "object", "additionalProperties": False, "required": ["hints"],
            "properties": {"hints": hints}}


def parse_answer(text: str | None) -> list:
    """The model's text as typed hints; AnswerInvalid says what is wrong, for the model to fix."""
    if not text or not text.strip():
        raise AnswerInvalid("the answer was empty; reply with a JSON object {\"hints\": [...]}")
    try:
        data = loads_unique(text)
    except json.JSONDecodeError as exc:
        raise AnswerInvalid(f"the answer is not valid JSON ({exc.msg} at line {exc.lineno} "
                            f"column {exc.colno})") from None
    except DuplicateKey as exc:
        raise AnswerInvalid(f"the answer is ambiguous: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("hints"), list):
        raise AnswerInvalid('the answer must be a JSON object with a list under "hints"')
    if len(data["hints"]) > MAX_HINTS:
        raise AnswerInvalid(f"the answer has {len(data['hints'])} hints; give at most {MAX_HINTS}")
    return [_parse_hint(i, item) for i, item in enumerate(data["hints"])]


def _parse_hint(index: int, item) -> object:
    try:
        hint = _HINT.validate_python(item)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'hint'}: {e['msg']}"
                             for e in exc.errors()[:5])
        raise AnswerInvalid(f"hints[{index}] does not fit the hint schema: {problems}") from None
    if not (hint.reason or "").strip():
        raise AnswerInvalid(f'hints[{index}] has no "reason"; every hint needs one short reason')
    return hint


def check_facts(state: GuestState, hints: list) -> tuple[list, list[Dropped]]:
    """Split hints into those that fit this machine and those dropped, with why."""
    kept, dropped = [], []
    for hint in hints:
        why = _misfit(state, hint)
        if why:
            dropped.append(Dropped(hint.dump(), why))
        else:
            kept.append(hint)
    return kept, dropped


def _misfit(state: GuestState, hint) -> str | None:
    """Why `hint` cannot apply to `state`, or None."""
    nodes, pids = set(_memory_nodes(state)), set(_pids(state))
    pid = getattr(hint, "pid", None)
    if pid == 1:
        return "pid 1 is init, which the agent never changes"
    if pid is not None and pid not in pids:
        return f"pid {pid} is not a process in the state"
    named = _nodes_named(hint)
    if named - nodes:
        return f"node(s) {sorted(named - nodes)} do not exist or have no memory (nodes: {sorted(nodes)})"
    if isinstance(hint, MigratePages):
        return _migrate_misfit(state, hint)
    if isinstance(hint, SetAffinity) and set(hint.cpus) - set(_cpus(state)):
        return f"CPU(s) {sorted(set(hint.cpus) - set(_cpus(state)))} do not exist"
    if isinstance(hint, SetSched) and _same_sched(state.process(hint.pid), hint):
        return f"pid {hint.pid} already runs at that nice level and class: the hint changes nothing"
    if isinstance(hint, SetKnob) and hint.knob not in _knobs(state) and hint.knob != "weighted_interleave":
        return f"the guest kernel has no knob {hint.knob}"
    if isinstance(hint, SetPolicy) and hint.pid is not None:
        return "set_policy cannot target a running pid (the kernel sets only the caller's policy)"
    return None


def _same_sched(proc, hint: SetSched) -> bool:
    return (hint.nice is None or hint.nice == proc.nice) and (hint.policy is None or hint.policy == proc.sched_policy)


def _nodes_named(hint) -> set[int]:
    if isinstance(hint, MigratePages):
        return set(hint.from_nodes) | set(hint.to_nodes)
    if isinstance(hint, MoveRange):
        return {hint.to_node}
    if isinstance(hint, SetPolicy):
        return set(hint.nodes)
    return set()


def _migrate_misfit(state: GuestState, hint: MigratePages) -> str | None:
    if set(hint.from_nodes) == set(hint.to_nodes):
        return "from_nodes and to_nodes are the same: the hint moves nothing"
    proc = state.process(hint.pid)
    resident = sum(proc.rss_kib_by_node.get(str(n), 0) for n in hint.from_nodes)
    if resident == 0:
        return f"pid {hint.pid} has no pages on node(s) {list(hint.from_nodes)}"
    return None
