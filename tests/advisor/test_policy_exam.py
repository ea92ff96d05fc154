"""The policy exam's scenarios and scoring: passable, discriminating, and strict about its files."""

from __future__ import annotations

import json

import pytest

from testbed import policy as placement
from testbed import policy_exam as pe

REF = '{"schema": "placement-policy-v1", "limits": {"bandwidth_mib_s": 8, "interval_s": 2}, ' \
      '"rules": [{"match": {"heat": "cold"}, "nodes": [1, 0]}]}'


@pytest.fixture(scope="module")
def scenarios():
    return {s.name: s for s in pe.load_all()}


def _policy(*rules: tuple[dict, list[int]]) -> placement.PlacementPolicy:
    return placement.parse(json.dumps({"schema": "placement-policy-v1",
                                       "limits": {"bandwidth_mib_s": 8, "interval_s": 2},
                                       "rules": [{"match": m, "nodes": n} for m, n in rules]}))


def test_at_least_ten_scenarios_over_four_kinds_of_machine(scenarios):
    assert len(scenarios) >= 10
    assert len({s.machine for s in scenarios.values()}) >= 4
    assert {"dram-nvm", "dram-cxl", "hbm-dram-cxl"} <= {s.machine for s in scenarios.values()}
    assert all(d.why for s in scenarios.values() for d in s.decisions)


def test_every_reference_policy_makes_every_decision(scenarios):
    for s in scenarios.values():
        assert pe.score(s, s.reference).failed == [], s.name


def test_no_policy_makes_only_the_decisions_that_ask_to_avoid(scenarios):
    for s in scenarios.values():
        floor = pe.score(s, None)
        assert floor.passed < floor.total, s.name  # every scenario asks for some placement
        assert all(d.holds(None) for d in s.decisions if d.check == "avoids")
    total = sum(len(s.decisions) for s in scenarios.values())
    assert sum(pe.score(s, None).passed for s in scenarios.values()) < total / 2


def test_the_first_matching_rule_decides_as_in_the_agents_planner():
    hot, big = pe.MemoryClass("hot", "write-heavy"), pe.MemoryClass("hot", "read-mostly", region_mib=2048)
    policy = _policy(({"heat": "hot", "min_region_mib": 1024}, [0, 1]), ({"write": "write-heavy"}, [1]),
                     ({"heat": "hot"}, [2, 0]))
    assert pe.first_choice(policy, big) == 0
    assert pe.first_choice(policy, hot) == 1  # the size rule passes a 64 MiB class on to the next
    assert pe.first_choice(policy, pe.MemoryClass("cold", "untouched")) is None  # stays where it is
    assert pe.first_choice(_policy(({"launch": "redis"}, [0]),), hot) is None  # names a process: never here


def test_a_heat_only_policy_fails_the_write_decisions_on_nvm(scenarios):
    s = scenarios["nvm-02-read-mostly-to-nvm"]
    heat_only = placement.load("benchmarks/policies/heat-only.json")
    result = pe.score(s, heat_only)
    assert result.failed == ["prefers warm/read-mostly -> node 1"]
    assert pe.score(s, placement.load("benchmarks/policies/write-aware.json")).failed == []


def test_any_accepts_either_choice(scenarios):
    s = scenarios["cxl-02-warm-stays"]
    (either,) = [d for d in s.decisions if d.check == "any"]
    assert either.holds(_policy(({"heat": "warm"}, [1, 0]),))
    assert either.holds(None)  # left where it is
    assert not either.holds(_policy(({"heat": "warm"}, [0, 1]),))


@pytest.mark.parametrize("text, message", [
    (f"machine = 'dram-cxl'\nreference = '{REF}'\n", "field 'decisions' is empty"),
    ("machine = 3\n", "field 'machine' must name a topology, got 3"),
    (f"machine = 'dram-cxl'\nreference = '{REF}'\n[[decisions]]\ncheck = 'teleports'\n",
     "decisions[0]: field 'check' is 'teleports'"),
    ((f"machine = 'dram-cxl'\nreference = '{REF}'\n[[decisions]]\ncheck = 'prefers'\nnode = 0\nwhy = 'w'\n"
     "class = { heat = 'lukewarm', write = 'untouched' }\n"), "heat in ['hot', 'warm', 'cold']"),
    ((f"machine = 'dram-cxl'\nreference = '{REF}'\n[[decisions]]\ncheck = 'prefers'\nnode = 5\nwhy = 'w'\n"
     "class = { heat = 'hot', write = 'untouched' }\n"), "field 'node' is 5; the machine's memory nodes are [0, 1]"),
    (("machine = 'dram-cxl'\nreference = '{}'\n[[decisions]]\ncheck = 'prefers'\nnode = 0\nwhy = 'w'\n"
     "class = { heat = 'hot', write = 'untouched' }\n"), "reference: rules: Field required"),
    ((f"machine = 'dram-cxl'\nreference = '{REF.replace('[1, 0]', '[7]')}'\n[[decisions]]\ncheck = 'avoids'\n"
     "node = 0\nwhy = 'w'\nclass = { heat = 'hot', write = 'untouched' }\n"), "names node(s) [7]"),
    ((f"machine = 'dram-cxl'\nreference = '{REF}'\n[[decisions]]\ncheck = 'avoids'\nnode = 0\n"
     "class = { heat = 'hot', write = 'untouched' }\n"), "field 'why' is empty"),
])
def test_bad_scenario_names_file_and_field(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(pe.ScenarioError) as caught:
        pe.load_scenario(path)
    assert str(path) in str(caught.value) and message in str(caught.value), caught.value
