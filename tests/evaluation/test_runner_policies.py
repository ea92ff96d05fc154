"""Policies without a guest: the oracle's moves, DAMOS set-up lines, prefixes, counting the agent's answers."""

from __future__ import annotations

import contextlib
import json
import types

import pytest

from testbed import agent
from testbed.advice_schema import Dropped
from testbed.advisor import Advice
from testbed.agent import ApplyResult, HintResult
from testbed.evaluation import matrix, policies
from testbed.hints import MAX_RANGE_BYTES, SetAffinity
from testbed.llm_client import LLMAnswerError

MIB = 1 << 20
BUF = 0x7F0000000000


def test_oracle_makes_room_from_the_start_then_moves_the_hot_tail_to_the_fast_node():
    hot = [(BUF + 512 * MIB, 128 * MIB)]
    moves = policies.oracle_moves(42, hot, (BUF, BUF + 640 * MIB), fast=0, slow=1, margin=96 * MIB)
    assert [(m.start, m.length, m.to_node) for m in moves] == [
        (BUF, 224 * MIB, 1),                  # room: the hot set's size plus the margin, from the start
        (BUF + 512 * MIB, 128 * MIB, 0)]      # then the hot set itself
    assert all(m.pid == 42 for m in moves)


def test_oracle_room_skips_hot_ranges_in_the_middle_and_stops_at_the_needed_size():
    hot = [(BUF + 10 * MIB, 5 * MIB), (BUF + 30 * MIB, 5 * MIB)]
    moves = policies.oracle_moves(7, hot, (BUF, BUF + 100 * MIB), fast=2, slow=3, margin=4 * MIB)
    cold = [(m.start - BUF, m.length) for m in moves if m.to_node == 3]
    assert cold == [(0, 10 * MIB), (15 * MIB, 4 * MIB)]  # 14 MiB of room, hot granules never demoted
    assert [(m.start - BUF, m.to_node) for m in moves if m.to_node == 2] == [(10 * MIB, 2), (30 * MIB, 2)]


def test_oracle_splits_ranges_longer_than_the_agent_accepts():
    hot = [(BUF, MAX_RANGE_BYTES + MIB)]
    moves = policies.oracle_moves(7, hot, (BUF, BUF + MAX_RANGE_BYTES + MIB), fast=0, slow=1, margin=0)
    assert [(m.start - BUF, m.length) for m in moves] == [(0, MAX_RANGE_BYTES), (MAX_RANGE_BYTES, MIB)]


def test_mapping_of_finds_the_line_holding_an_address():
    maps = ("55d0c0000000-55d0c0001000 r-xp 00000000 fe:01 123 /usr/local/bin/skewed_access\n"
            "7f0000000000-7f0028000000 rw-p 00000000 00:00 0\n")
    assert policies.mapping_of(maps, BUF + 5) == (BUF, BUF + 640 * MIB)
    with pytest.raises(policies.PolicyError, match="0x1000 is in no mapping"):
        policies.mapping_of(maps, 0x1000)


def test_damos_script_promotes_from_the_slow_span_and_demotes_from_the_fast_span():
    script = policies.damos_script([("migrate_hot", 4 << 30, 6 << 30, 0), ("migrate_cold", 0, 2 << 30, 1)])
    lines = script.splitlines()
    assert lines[:3] == ["set -e", f"cd {policies.DAMON_ADMIN}", "echo 2 > nr_kdamonds"]
    assert "echo migrate_hot > 0/contexts/0/schemes/0/action" in lines
    assert "echo 0 > 0/contexts/0/schemes/0/target_nid" in lines
    assert f"echo {4 << 30} > 0/contexts/0/targets/0/regions/0/start" in lines
    assert "echo migrate_cold > 1/contexts/0/schemes/0/action" in lines
    assert "echo 1 > 1/contexts/0/schemes/0/target_nid" in lines
    assert "echo 0 > 1/contexts/0/schemes/0/access_pattern/nr_accesses/max" in lines  # cold: never accessed
    assert "echo 1 > 0/contexts/0/schemes/0/access_pattern/nr_accesses/min" in lines  # hot: accessed at all
    assert lines[-2:] == ["echo on > 0/state", "echo on > 1/state"]  # started only once fully set up


def test_every_matrix_policy_has_a_class_with_its_name():
    for name in matrix.POLICIES:
        assert policies.make(name).name == name
    assert policies.make("interleave").prefix() == ["numactl", "--interleave=all"]
    assert policies.make("default").prefix() == []
    assert policies.make("llm", every_s=5).every_s == 5
    with pytest.raises(ValueError, match="unknown policy 'first-touch'"):
        policies.make("first-touch")
    rules = policies.make("rules:write-aware")
    assert rules.name == "rules:write-aware" and rules.file == matrix.RULES_DIR / "write-aware.json"


def test_a_shipped_rules_policy_is_read_from_its_file(load_topology):
    ctx = policies.Context(shell="shell", topology=load_topology("dram-nvm"), proc=None, fast_node=0, slow_node=1,
                           workload="w", repeat=0)
    written = policies.make("rules:write-aware").placement(ctx)
    assert [r.id for r in written.rules] == ["writes-to-dram", "reads-to-nvm"]
    assert [r.match.write for r in written.rules] == ["write-heavy", "read-mostly"]
    heat = policies.make("rules:heat-only").placement(ctx)
    assert all(r.match.write is None for r in heat.rules)  # blind to writes, by design


def _round(moved: int, no_room: int, cpu_s: float, percent: float | None) -> dict:
    return {"action": "enforce_round", "moved_bytes": moved, "no_room_bytes": no_room, "cpu_seconds": cpu_s,
            "cpu_percent": percent, "processes": [120], "bytes_by_class": {"hot/write-heavy": {"0": 60 << 20, "1": 4 << 20},
                                                       "warm/read-mostly": {"1": 96 << 20},
                                                       "cold/untouched": {"0": 8 << 20}}}


def test_the_enforcers_rounds_are_summed_and_its_cpu_share_averaged():
    rounds = [_round(300 << 20, 64 << 20, 2.5, 20.0), _round(100 << 20, 0, 1.5, None), _round(0, 0, 1.0, 10.0)]
    assert policies.enforcer_summary(rounds) == {"rounds": 3, "moved_mib": 400.0, "no_room_mib": 0.0,
                                                 "cpu_s": 5.0, "cpu_percent": 15.0, "steady_cpu_percent": 10.0,
                                                 "write_heavy_mib": 64.0, "read_mostly_mib": 96.0}
    assert "steady_cpu_percent" not in policies.enforcer_summary(rounds[:2])  # every round moved pages
    exited = {**_round(0, 0, 0.5, 5.0), "processes": [], "bytes_by_class": {}}  # a round after the workload
    assert policies.enforcer_summary([*rounds, exited])["write_heavy_mib"] == 64.0
    exiting = {**exited, "processes": [120]}  # measured while it exited: in scope, no pages left
    assert policies.enforcer_summary([*rounds, exiting])["write_heavy_mib"] == 64.0
    # A last round whose interval held the workload's end: the classes are the round's before it, which a
    # later round found the workload still running after. Rounds before the workload started are untouched.
    ending = {**_round(0, 0, 0.5, 5.0), "bytes_by_class": {"hot/write-heavy": {"0": 24 << 20},
                                                          "warm/read-mostly": {"0": 40 << 20, "1": 96 << 20}}}
    gated = {**_round(0, 0, 0.5, 5.0), "bytes_by_class": {"cold/untouched": {"0": 160 << 20}}}
    assert policies.enforcer_summary([gated, *rounds, ending, exiting])["write_heavy_mib"] == 64.0
    assert policies.enforcer_summary([gated, ending])["write_heavy_mib"] == 24.0  # no round to prefer
    assert policies.enforcer_summary([gated, gated])["write_heavy_mib"] == 0.0
    assert policies.enforcer_summary([]) == {"rounds": 0}  # it started, and never finished a round
    total = policies.Outcome(applied=1)
    total += policies.Outcome(enforcer={"rounds": 2})
    assert (total.applied, total.enforcer) == (1, {"rounds": 2})


def _result(*statuses: str, accepted: bool = True) -> ApplyResult:
    return ApplyResult(schema_version=1, dry_run=False, accepted=accepted, error=None if accepted else "bad",
                       results=[HintResult(index=i, id=None, kind="move_range", status=s, reason=None, effect=None)
                                for i, s in enumerate(statuses)])


def test_outcome_counts_applied_and_everything_else_as_rejected():
    outcome = policies.Outcome().add(_result("applied", "rejected", "failed", "applied"))
    assert (outcome.applied, outcome.rejected) == (2, 2)
    outcome += policies.Outcome().add(_result(accepted=False))  # a refused document with no per-hint results
    assert (outcome.applied, outcome.rejected) == (2, 3)


def test_core_oracle_puts_latency_critical_on_the_fastest_cores_and_batch_on_the_rest(load_topology):
    hints = policies.core_placement(load_topology("hybrid-cores"), {"latency": [10, 11], "batch": [20]})
    assert [(h.pid, h.cpus) for h in hints] == [(10, [0, 1]), (11, [0, 1]), (20, [2, 3])]


def test_on_uniform_cores_the_core_oracle_lets_everything_run_anywhere(load_topology):
    hints = policies.core_placement(load_topology("dram-cxl"), {"latency": [10], "batch": [20]})
    assert [(h.pid, h.cpus) for h in hints] == [(10, [0, 1]), (20, [0, 1])]


def test_memory_oracle_makes_room_with_the_batch_then_moves_the_latency_critical_pages_onto_the_fast_node():
    hints = policies.memory_placement({"latency": [10, 11], "batch": [20]}, fast=0, slow=1)
    assert [(h.kind, h.pid, h.from_nodes, h.to_nodes) for h in hints] == [
        ("migrate_pages", 20, [0], [1]), ("migrate_pages", 10, [1], [0]), ("migrate_pages", 11, [1], [0])]
    assert policies.memory_placement({"latency": [10], "batch": [20]}, fast=0, slow=0) == []


@pytest.mark.parametrize("name, kinds", [
    ("oracle", ["set_affinity", "set_affinity", "migrate_pages", "migrate_pages"]),
    ("oracle-cores", ["set_affinity", "set_affinity"]),
    ("oracle-memory", ["migrate_pages", "migrate_pages"]),
])
def test_each_half_of_the_oracle_sends_only_its_own_hints(monkeypatch, load_topology, name, kinds):
    sent = []
    monkeypatch.setattr(agent, "apply", lambda shell, document: sent.append(document) or _result("applied"))
    ctx = policies.Context(shell=None, topology=load_topology("hybrid-tiered"), proc=None, fast_node=0, slow_node=1,
                           workload="mixed", repeat=0, roles={"latency": [10], "batch": [20]})
    policies.make(name).prepare(ctx)
    assert [h.kind for h in sent[0].hints] == kinds and sent[0].source == name


def test_the_core_oracle_refuses_a_workload_without_roles(load_topology):
    ctx = policies.Context(shell=None, topology=load_topology("dram-nvm"), proc=None, fast_node=0, slow_node=1,
                           workload="skewed-read", repeat=0, hotmap="/tmp/hot")
    with pytest.raises(policies.PolicyError, match="names no roles, which oracle-cores needs"):
        policies.make("oracle-cores").prepare(ctx)


class _Nonsense:
    """An advisor whose model gave no valid answer even after the repair round."""

    def advise(self, topology, state, notes=None):
        raise LLMAnswerError("model m gave no valid answer after one repair round: to_nodes has duplicates")


def test_llm_policy_with_no_usable_advice_applies_nothing_and_says_why(monkeypatch, load_topology):
    gathered, pauses = [], []
    monkeypatch.setattr(agent, "gather", lambda shell, **kw: gathered.append(shell) or "state")
    monkeypatch.setattr(agent, "apply", lambda *a, **kw: pytest.fail("nothing may be applied"))

    @contextlib.contextmanager
    def paused():
        pauses.append("stop")
        try:
            yield
        finally:
            pauses.append("cont")

    ctx = policies.Context(shell="shell", topology=load_topology("dram-nvm"), proc=None, fast_node=0, slow_node=1,
                           workload="w", repeat=0, paused=paused, advisor=_Nonsense)
    outcome = policies.make("llm").prepare(ctx)
    assert (outcome.applied, outcome.rejected) == (0, 1)
    assert "to_nodes has duplicates" in outcome.advice_error
    assert outcome.rejections == ["advisor: no usable answer"]
    assert gathered == ["shell"] and pauses == ["stop", "cont"]  # the guest runs again after the failed advice
    total = policies.Outcome(applied=2)
    total += outcome
    assert (total.applied, total.rejected, total.advice_error) == (2, 1, outcome.advice_error)
    assert total.rejections == outcome.rejections


def test_every_rejected_hint_keeps_its_reason_and_who_refused_it():
    answer = ApplyResult(schema_version=1, dry_run=False, accepted=True, error=None, results=[
        HintResult(index=0, id=None, kind="migrate_pages", status="applied", reason=None, effect={}),
        HintResult(index=1, id="h2", kind="set_affinity", status="rejected", reason="CPU 9 does not exist",
                         effect=None)])
    refused = ApplyResult(schema_version=1, dry_run=False, accepted=False, error="schema_version 7", results=[])
    outcome = policies.Outcome().add(answer).add(refused)
    assert (outcome.applied, outcome.rejected) == (1, 2)
    assert outcome.rejections == ["agent: set_affinity rejected: CPU 9 does not exist",
                                  "agent: document refused: schema_version 7"]
    assert len(policies.Outcome().reject("x" * 10_000).rejections[0]) == policies.REJECTION_CHARS


class _HalfRight:
    """An advisor whose model gave one hint that fits the machine and one that does not."""

    def advise(self, topology, state, notes=None):
        return Advice(model="m", prompt_digest="p", answer_digest="a", cached=False, repaired=False,
                      hints=[SetAffinity(pid=42, cpus=[9])],
                      dropped=[Dropped({"kind": "migrate_pages", "pid": 42}, "node 7 does not exist")])


def test_llm_policy_records_why_the_advisor_dropped_and_the_agent_refused(monkeypatch, load_topology):
    monkeypatch.setattr(agent, "gather", lambda shell, **kw: "state")
    applied = []

    def apply(shell, document):
        applied.append(document)
        return ApplyResult(schema_version=1, dry_run=False, accepted=True, error=None, results=[
            HintResult(index=0, id=None, kind="set_affinity", status="rejected", reason="CPU 9 is not online",
                             effect=None)])

    monkeypatch.setattr(agent, "apply", apply)
    ctx = policies.Context(shell="shell", topology=load_topology("hybrid-cores"), proc=None, fast_node=0,
                           slow_node=1, workload="w", repeat=0, advisor=_HalfRight)
    outcome = policies.make("llm").prepare(ctx)
    assert len(applied) == 1 and [h.kind for h in applied[0].hints] == ["set_affinity"]
    assert (outcome.applied, outcome.rejected, outcome.advice_error) == (0, 2, None)
    assert outcome.rejections == ["advisor: migrate_pages dropped: node 7 does not exist",
                                  "agent: set_affinity rejected: CPU 9 is not online"]
    [exchange] = ctx.exchanges  # the manifest keeps what was asked and answered
    assert (exchange.topology, exchange.workload, exchange.model) == ("hybrid-cores", "w", "m")
    assert (exchange.prompt_digest, exchange.answer_digest, exchange.cached) == ("p", "a", False)


def test_a_policy_the_agent_refuses_fails_the_run_with_the_agents_reason(fake_shell, monkeypatch, load_topology):
    refused = json.dumps({"action": "enforce", "status": "rejected", "reason": "rules[0].nodes: node 1 has no memory"})
    shell = fake_shell({"cat /var/log/llamas-agent/audit.jsonl": "3", "setsid llamas-agent enforce": "4242",
                        "tail -n +4 ": refused + "\n"})
    monkeypatch.setattr(agent, "upload_text", lambda *a: None)
    proc = types.SimpleNamespace(pid=77)
    ctx = policies.Context(shell=shell, topology=load_topology("dram-nvm"), proc=proc, fast_node=0, slow_node=1,
                           workload="w", repeat=0)
    with pytest.raises(policies.PolicyError, match="rules:write-aware: the agent refused the policy: rules.0..nodes"):
        policies.make("rules:write-aware").prepare(ctx)
    (started,) = [c for c in shell.commands if c.startswith("setsid")]
    assert "--pids 77 " in started  # the workload's process only


def test_an_enforcing_policy_reports_the_rounds_of_its_own_daemon(fake_shell, monkeypatch, load_topology):
    mine = [json.dumps(_round(64 << 20, 0, 1.0, 12.0)), json.dumps({"action": "enforce", "status": "started"})]
    shell = fake_shell({"tail -n +11 ": "\n".join(reversed(mine)) + "\n"})
    ctx = policies.Context(shell=shell, topology=load_topology("dram-nvm"), proc=None, fast_node=0, slow_node=1,
                           workload="w", repeat=0)
    rules = policies.make("rules:write-aware")
    assert rules.after(ctx).enforcer == {"rounds": 0}  # never started: nothing to report
    rules.daemon = agent.Enforcer(pid=4242, audit_from=10)
    assert rules.after(ctx).enforcer["moved_mib"] == 64.0
