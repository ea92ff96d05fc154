"""Asking the model for a standing placement policy: the machine's description and facts in, a
placement-policy-v1 document out, checked against the machine (no live state, no pids).

A policy is asked for once per machine description, not per snapshot: the prompt holds
only the administrator's description, the topology file's facts and optional notes, so
the answer cache (keyed by model, messages, schema and parameters) serves every later
run on that machine.
"""

from __future__ import annotations

import copy
import json

from . import policy as policy_mod
from .advice_schema import AnswerInvalid
from .hints import DuplicateKey
from .llm_client import light_schema
from .prompt import Prompt, estimate_tokens, machine_facts
from .topology import Topology

SYSTEM = """You are the memory-placement module of an operating system. The administrator describes the \
machine's memory devices in plain language. You answer with ONE standing placement policy as a JSON object, \
and nothing else. An agent inside the machine enforces it every few seconds, for whatever runs there.

The policy: {"schema": "placement-policy-v1", "name": "<short-name>", "description": "<why, in one or two \
sentences>", "limits": {"keep_free_mib": {"<node>": MiB}, "bandwidth_mib_s": N, "interval_s": S}, \
"rules": [{"id": "<short-name>", "match": {...}, "nodes": [<first choice>, <second choice>, ...]}, ...]}

A rule's "match" names a class of memory the agent measures each interval, with any of:
- "write": "write-heavy" (a quarter or more of its pages written), "read-mostly" (accessed, written less), \
"untouched" (neither written nor accessed);
- "heat": "hot" (half or more of its pages accessed), "warm" (some), "cold" (none);
- "min_region_mib": N (only memory in mappings of at least N MiB).
The first rule that matches a region decides; a rule that an earlier rule always matches first is an error. \
Memory goes to the first listed node with room, else the next.

Rules:
- Use only the node ids listed in the facts. Name no processes and no pids.
- Think about reads and writes separately: memory that is slow to write must not hold write-heavy data.
- Keep some memory free on the fast node (keep_free_mib) and move at a modest bandwidth (8 to 256 MiB/s); \
interval_s between 1 and 60."""


def build_prompt(topo: Topology, notes: str | None = None) -> Prompt:
    """The chat messages asking for a policy for `topo`: its description and facts, never live state."""
    parts = [f"## The machine, as the administrator describes it\n{topo.description.strip()}",
             f"## Facts from the machine's topology file\n{machine_facts(topo)}"]
    if notes:
        parts.append(f"## The administrator's notes on the workloads\n{notes.strip()}")
    parts.append("Answer with the JSON policy object now.")
    user = "\n\n".join(parts)
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
    return Prompt(messages, [], estimate_tokens(SYSTEM + user))


def memory_nodes(topo: Topology) -> list[int]:
    """The nodes a policy may name: those the topology gives memory."""
    return [n.id for n in topo.nodes if n.size_mib > 0]


def response_schema(topo: Topology) -> dict:
    """The published policy schema, with node ids limited to this machine's (a constrained model cannot
    name a node the machine lacks) and without the length and range bounds that llama.cpp unrolls into
    a grammar (its server crashed on them): `parser` checks those on every answer."""
    schema = copy.deepcopy(policy_mod.json_schema())
    nodes = memory_nodes(topo)
    schema["$defs"]["rule"]["properties"]["nodes"]["items"] = {"enum": nodes}
    schema["properties"]["limits"]["properties"]["keep_free_mib"]["propertyNames"] = {
        "enum": [str(n) for n in nodes]}
    return light_schema(schema)


def parser(topo: Topology):
    """`parse(text)` -> PlacementPolicy for `topo`, or AnswerInvalid written for the model to read."""
    nodes = set(memory_nodes(topo))

    def parse(text: str | None) -> policy_mod.PlacementPolicy:
        if not text or not text.strip():
            raise AnswerInvalid("the answer was empty; reply with the JSON policy object")
        try:
            policy = policy_mod.parse(text, "the answer")
            policy_mod.check_nodes(policy, nodes, "the answer")
        except (policy_mod.PolicyError, DuplicateKey) as exc:
            raise AnswerInvalid(str(exc)) from None
        return policy

    return parse


def summary(policy: policy_mod.PlacementPolicy) -> list[str]:
    """One line per rule and one for the limits, for people."""
    lines = [f"rule {r.id or i}: {json.dumps(r.match.model_dump(exclude_none=True))} -> nodes {r.nodes}"
             for i, r in enumerate(policy.rules)]
    limits = policy.limits
    lines.append(f"limits: keep free {limits.keep_free_mib or '{}'} MiB, {limits.bandwidth_mib_s} MiB/s, "
                 f"every {limits.interval_s} s")
    return lines
