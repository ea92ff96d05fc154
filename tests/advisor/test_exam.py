"""The hint exam's scenarios and scoring: passable, discriminating, and strict about its files."""

from __future__ import annotations

import pytest

from testbed import advice_schema, exam
from testbed.hints import MigratePages, SetAffinity


@pytest.fixture(scope="module")
def scenarios():
    return exam.load_all()


def test_at_least_twenty_scenarios_over_four_kinds_of_machine(scenarios):
    assert len(scenarios) >= 20
    assert len({s.machine for s in scenarios}) >= 4
    assert all(d.why for s in scenarios for d in s.decisions)


def test_every_reference_answer_makes_every_decision_and_fits_the_machine(scenarios):
    for s in scenarios:
        assert exam.score(s, s.reference).failed == [], s.name
        _, dropped = advice_schema.check_facts(s.state, s.reference)
        assert dropped == [], s.name


def test_doing_nothing_fails_every_decision_that_asks_for_action(scenarios):
    acting = {"moves", "pins", "sets_knob", "any"}
    for s in scenarios:
        result = exam.score(s, [])
        asked = [d for d in s.decisions if d.check in acting]
        assert result.passed == len(s.decisions) - len(asked), s.name
    assert sum(exam.score(s, []).passed for s in scenarios) < sum(len(s.decisions) for s in scenarios)


def test_wrong_move_fails_the_never_decision(scenario):
    s = scenario("nvm-02-cold-cache-under-pressure")
    wrong = [MigratePages(pid=520, from_nodes=[0], to_nodes=[1], reason="r")]
    result = exam.score(s, wrong)
    assert result.passed == 0 and result.failed == ["moves pid=611 node=1", "never_moves pid=520 node=1"]


def test_any_accepts_either_remedy(scenario):
    s = scenario("socket-01-remote-memory")
    assert exam.score(s, [SetAffinity(pid=3101, cpus=[0, 1], reason="r")]).passed == 1
    assert exam.score(s, [SetAffinity(pid=3101, cpus=[1, 2], reason="r")]).passed == 0


def test_state_follows_the_topology(scenario):
    s = scenario("hbm-04-hbm-too-small-for-both")
    assert [(n.id, n.mem_total_kib // 1024, n.mem_free_kib // 1024) for n in s.state.nodes] == \
        [(0, 1024, 150), (1, 512, 500), (2, 1024, 1000)]
    assert s.state.process(2401).rss_kib_by_node == {"0": 410 * 1024}


@pytest.mark.parametrize("text, message", [
    ('machine = "dram-cxl"\nfree_mib = { 0 = 1 }\n', "field 'decisions' is empty"),
    ('machine = "dram-cxl"\nfree_mib = { 9 = 1 }\n', "free_mib names node(s) [9] that dram-cxl lacks"),
    ('machine = "dram-cxl"\nfree_mib = { 0 = 1 }\n[[decisions]]\ncheck = "teleports"\n',
     "decisions[0]: field 'check' is 'teleports'"),
    ('machine = "dram-cxl"\nfree_mib = { 0 = 1 }\n[[decisions]]\ncheck = "moves"\npid = 1\nwhy = "w"\n',
     "check 'moves' needs field(s) node"),
    ('machine = "dram-cxl"\nfree_mib = { 0 = 1 }\n[[decisions]]\ncheck = "leaves_alone"\npid = 1\n',
     "field 'why' is empty"),
    ('machine = 3\n', "field 'machine' must be str, got 3"),
])
def test_bad_scenario_names_file_and_field(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(exam.ScenarioError) as caught:
        exam.load_scenario(path)
    assert str(path) in str(caught.value) and message in str(caught.value)
