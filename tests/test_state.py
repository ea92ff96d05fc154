"""The host's typed view of `llamas-agent gather`: bad output is refused with what is wrong."""

from __future__ import annotations

import json

import pytest

from testbed.state import StateError, parse

MINIMAL = {
    "schema_version": 1, "kernel": "6.12", "agent_pid": 10, "nodes": [],
    "cxl": {"memdevs": [], "regions": [], "dax": []},
    "knobs": {"numa_balancing": None, "demotion_enabled": None, "thp_enabled": None, "weighted_interleave": {}},
    "vmstat": {}, "processes": [], "damon": None, "gather_seconds": 0.1,
}


def test_a_minimal_document_parses():
    state = parse(json.dumps(MINIMAL))
    assert state.agent_pid == 10 and state.process(1) is None and state.node(0) is None


@pytest.mark.parametrize("text, phrase", [
    ("not json", "invalid JSON"),
    (json.dumps({**MINIMAL, "schema_version": 2}), "schema_version 2, host expects 1"),
    (json.dumps([1]), "schema_version None"),
    (json.dumps({**MINIMAL, "surprise": 1}), "surprise"),
    (json.dumps({**MINIMAL, "processes": [{"pid": 1}]}), "processes.0.name"),
])
def test_bad_output_names_the_problem(text, phrase):
    with pytest.raises(StateError, match=phrase):
        parse(text)
