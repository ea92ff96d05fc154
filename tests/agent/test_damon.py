"""DAMON through its sysfs files, on a fixture tree: what the agent writes, reads, and leaves behind."""

from __future__ import annotations

import pytest
from llamas_agent.damon import ULONG_MAX, DamonUnavailable, monitor
from llamas_agent.gather import gather_state


def test_monitor_configures_reads_and_turns_off(tree, admin):
    regions = monitor(tree, [300], seconds=0)
    assert regions == {"300": [{"start": 0x5000, "end": 0x9000, "nr_accesses": 15, "age": 1},
                               {"start": 0x1000, "end": 0x5000, "nr_accesses": 2, "age": 7}]}
    ctx = admin / "0/contexts/0"
    assert (ctx / "operations").read_text() == "vaddr"
    assert (ctx / "targets/0/pid_target").read_text() == "300"
    assert (ctx / "schemes/0/action").read_text() == "stat"
    assert (ctx / "schemes/0/access_pattern/sz/max").read_text() == str(ULONG_MAX)
    assert (admin / "0/state").read_text() == "off"
    assert (admin / "nr_kdamonds").read_text() == "0"


def test_gather_watches_the_pids_it_is_given(tree, admin):
    damon = gather_state(tree, damon_seconds=0.2, agent_pid=999, damon_pids=[300])["damon"]
    assert damon["error"] is None and list(damon["regions"]) == ["300"]
    assert (admin / "0/contexts/0/targets/0/pid_target").read_text() == "300"


def test_damon_in_use_by_someone_else_is_left_alone(tree, admin):
    (admin / "nr_kdamonds").write_text("1\n")
    with pytest.raises(DamonUnavailable, match="already in use"):
        monitor(tree, [300], seconds=0)
    assert not (admin / "0/contexts/nr_contexts").exists()


def test_gather_reports_why_damon_gave_nothing(tree):
    damon = gather_state(tree, damon_seconds=0.5, agent_pid=999)["damon"]
    assert damon == {"seconds": 0.5, "error": "DAMON sysfs interface not found", "regions": {}}
