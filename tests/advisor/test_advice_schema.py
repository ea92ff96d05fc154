"""The per-request answer schema, answer parsing, and the fact check that drops misfit hints."""

from __future__ import annotations

import json

import pytest

from testbed import advice_schema
from testbed.advice_schema import AnswerInvalid
from testbed.hints import MigratePages, SetAffinity, SetKnob, SetPolicy


def _enums(schema: dict) -> dict:
    kinds = {k["properties"]["kind"]["const"]: k["properties"] for k in schema["properties"]["hints"]["items"]["anyOf"]}
    return kinds


def test_schema_lists_only_this_states_pids_nodes_and_cpus(scenario):
    s = scenario("hbm-02-matmul-vs-pointer-chase")
    kinds = _enums(advice_schema.response_schema(s.state))
    assert set(kinds) == {"migrate_pages", "set_affinity", "set_sched", "set_knob"}
    assert kinds["migrate_pages"]["pid"]["enum"] == kinds["set_sched"]["pid"]["enum"] == [2210, 2230]
    assert kinds["set_sched"]["policy"]["enum"] == ["normal", "batch", "idle"]
    assert kinds["migrate_pages"]["to_nodes"]["items"]["enum"] == [0, 1, 2]
    assert kinds["set_affinity"]["cpus"]["items"]["enum"] == [0, 1]
    assert list(kinds["migrate_pages"]) == ["kind", "pid", "reason", "from_nodes", "to_nodes"]


def test_schema_without_processes_allows_only_knobs(scenario):
    s = scenario("cxl-04-no-pressure")
    state = s.state.model_copy(update={"processes": []})
    assert set(_enums(advice_schema.response_schema(state))) == {"set_knob"}


def test_parse_answer_errors_speak_to_the_model():
    with pytest.raises(AnswerInvalid, match="empty"):
        advice_schema.parse_answer("  ")
    with pytest.raises(AnswerInvalid, match="line 1 column"):
        advice_schema.parse_answer("{")
    with pytest.raises(AnswerInvalid, match="at most 8"):
        knob = {"kind": "set_knob", "knob": "numa_balancing", "value": 1, "reason": "r"}
        advice_schema.parse_answer(json.dumps({"hints": [knob] * 9}))
    with pytest.raises(AnswerInvalid, match=r"hints\[0\] does not fit"):
        advice_schema.parse_answer('{"hints": [{"kind": "delete_everything", "reason": "r"}]}')


def test_check_facts_keeps_fitting_hints_and_drops_invented_ones(scenario):
    s = scenario("nvm-01-write-heavy-spilled")
    good = MigratePages(pid=412, from_nodes=[1], to_nodes=[0], reason="write-heavy")
    invented_pid = MigratePages(pid=3, from_nodes=[1], to_nodes=[0], reason="r")
    missing_node = MigratePages(pid=412, from_nodes=[1], to_nodes=[7], reason="r")
    no_pages = MigratePages(pid=300, from_nodes=[1], to_nodes=[0], reason="r")
    same = MigratePages(pid=412, from_nodes=[0], to_nodes=[0], reason="r")
    bad_cpu = SetAffinity(pid=412, cpus=[5], reason="r")
    running_policy = SetPolicy(pid=412, mode="bind", nodes=[0], reason="r")
    knob = SetKnob(knob="demotion_enabled", value=True, reason="r")
    kept, dropped = advice_schema.check_facts(
        s.state, [good, invented_pid, missing_node, no_pages, same, bad_cpu, running_policy, knob])
    assert kept == [good, knob]
    whys = [d.why for d in dropped]
    assert whys == ["pid 3 is not a process in the state",
                    "node(s) [7] do not exist or have no memory (nodes: [0, 1])",
                    "pid 300 has no pages on node(s) [1]",
                    "from_nodes and to_nodes are the same: the hint moves nothing",
                    "CPU(s) [5] do not exist",
                    "set_policy cannot target a running pid (the kernel sets only the caller's policy)"]
    assert dropped[0].to_json()["hint"]["pid"] == 3


def test_neither_the_agent_nor_init_is_a_target(scenario):
    s = scenario("nvm-01-write-heavy-spilled")
    state = s.state.model_copy(update={"processes": [*s.state.processes,
                                                     s.state.processes[0].model_copy(update={"pid": 1})]})
    kinds = _enums(advice_schema.response_schema(state))
    assert {state.agent_pid, 1}.isdisjoint(kinds["migrate_pages"]["pid"]["enum"])
    hints, dropped = advice_schema.check_facts(
        state, [MigratePages(pid=1, from_nodes=[0], to_nodes=[1], reason="r")])
    assert hints == [] and dropped[0].why == "pid 1 is init, which the agent never changes"
