"""`apply` and `undo` on a fixture tree (knobs are plain files there), and on this host's own kernel for
the calls that act on a process: only on a child this test starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from llamas_agent import knobs as KNOBS
from llamas_agent.apply import apply_document
from llamas_agent.cli import (
    APPLY_DOCUMENT_REJECTED,
    APPLY_OK,
    APPLY_SOME_REJECTED,
    main,
)
from llamas_agent.knobs import gather_knobs
from llamas_agent.launch import resolve_policy
from llamas_agent.sysfs import Tree
from llamas_agent.undo import undo

from .fixture_tree import AGENT_DIR

KNOB_HINTS = [
    {"kind": "set_knob", "knob": "numa_balancing", "value": 2},
    {"kind": "set_knob", "knob": "demotion_enabled", "value": True},
    {"kind": "set_knob", "knob": "thp_enabled", "value": "never"},
    {"kind": "set_knob", "knob": "weighted_interleave", "value": {"1": 4}},
]
ORIGINAL_KNOBS = {"numa_balancing": 0, "demotion_enabled": False, "thp_enabled": "madvise",
                  "weighted_interleave": {"0": 1, "1": 1}}


def raw(*hints) -> bytes:
    return json.dumps({"schema_version": 1, "hints": list(hints)}).encode()


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def audit_lines(records) -> list[dict]:
    with open(records.audit_path) as f:
        return [json.loads(line) for line in f]


def knob_files(root: Path) -> list[str]:
    """What the agent wrote (a plain file does not reformat THP's "[madvise]" like the kernel does)."""
    names = [KNOBS.NUMA_BALANCING, KNOBS.DEMOTION, KNOBS.THP_ENABLED, f"{KNOBS.WI_DIR}/node0", f"{KNOBS.WI_DIR}/node1"]
    return [(root / name).read_text().strip() for name in names]


def test_knobs_are_set_reported_and_undone(guest_root, tree, records):
    result = apply_document(raw(*KNOB_HINTS), tree, records, agent_pids=[999])
    assert [r["status"] for r in result["results"]] == ["applied"] * 4
    assert result["results"][0]["effect"] == {"knob": "numa_balancing", "previous": 0, "now": 2}
    assert result["results"][3]["effect"]["previous"] == {"1": 1}
    assert knob_files(guest_root) == ["2", "true", "never", "1", "4"]
    report = undo(tree, records)
    assert [u["status"] for u in report["undone"]] == ["restored"] * 4
    assert [u["entry"]["knob"] for u in report["undone"]] == [h["knob"] for h in reversed(KNOB_HINTS)]
    assert knob_files(guest_root) == ["0", "false", "madvise", "1", "1"]
    assert undo(tree, records) == {"undone": []}, "the record is cleared once undone"
    actions = [(e["action"], e["status"]) for e in audit_lines(records)]
    assert actions == [("apply", "applied")] * 4 + [("undo", "restored")] * 4


def test_undo_restores_the_oldest_value_after_two_changes(tree, records):
    apply_document(raw({"kind": "set_knob", "knob": "numa_balancing", "value": 1}), tree, records, agent_pids=[999])
    apply_document(raw({"kind": "set_knob", "knob": "numa_balancing", "value": 3}), tree, records, agent_pids=[999])
    undo(tree, records)
    assert gather_knobs(tree)["numa_balancing"] == 0


def test_dry_run_changes_nothing(guest_root, tree, records):
    before = snapshot(guest_root)
    result = apply_document(raw(*KNOB_HINTS), tree, records, dry_run=True, agent_pids=[999])
    assert [r["status"] for r in result["results"]] == ["would_apply"] * 4
    assert result["results"][2]["effect"] == {"previous": "madvise", "value": "never"}
    assert snapshot(guest_root) == before
    assert not os.path.exists(records.undo_path)


@pytest.mark.parametrize("document, phrase", [
    (b"{not json", "malformed JSON"),
    (json.dumps({"schema_version": 2, "hints": KNOB_HINTS}).encode(), "schema_version must be 1, got 2"),
    (raw(*KNOB_HINTS, {"kind": "set_knob", "knob": "numa_balancing", "value": 7}), "hints[4]: numa_balancing value"),
    (b" " * (64 * 1024 + 1), "more than the 65536 allowed"),
])
def test_a_rejected_document_changes_nothing_and_is_logged(guest_root, tree, records, document, phrase):
    before = snapshot(guest_root)
    result = apply_document(document, tree, records, agent_pids=[999])
    assert not result["accepted"] and phrase in result["error"] and result["results"] == []
    assert snapshot(guest_root) == before, "one bad hint must stop the whole document"
    (entry,) = audit_lines(records)
    assert entry["status"] == "rejected_document" and phrase in entry["reason"]
    assert entry["document_bytes"] == len(document) and len(entry["document_sha256"]) == 64


def test_rejected_hints_do_not_stop_the_valid_ones(tree, records):
    result = apply_document(raw({"kind": "migrate_pages", "pid": 1, "from_nodes": [0], "to_nodes": [1]},
                                KNOB_HINTS[0]), tree, records, agent_pids=[999])
    assert [(r["status"], r["reason"]) for r in result["results"]] == [
        ("rejected", "pid 1 (init) is never a target"), ("applied", None)]
    assert audit_lines(records)[0]["hint"]["pid"] == 1


def test_launch_policies_are_stored_used_and_undone(tree, records):
    result = apply_document(raw({"kind": "set_policy", "launch": "bench", "mode": "weighted_interleave",
                                 "nodes": [0, 1], "weights": {"0": 3, "1": 1}}), tree, records, agent_pids=[999])
    assert result["results"][0]["status"] == "applied"
    assert resolve_policy(records, "bench", None, []) == ("weighted_interleave", [0, 1])
    assert gather_knobs(tree)["weighted_interleave"] == {"0": 3, "1": 1}
    undo(tree, records)
    assert resolve_policy(records, "bench", None, []) == (None, [])
    assert gather_knobs(tree)["weighted_interleave"] == ORIGINAL_KNOBS["weighted_interleave"]


def test_cli_exit_status_says_how_it_went(guest_root, tmp_path, capsys):
    dirs = ["--root", str(guest_root), "--log-dir", str(tmp_path / "log"), "--state-dir", str(tmp_path / "st")]
    hints = tmp_path / "hints.json"
    cases = [(raw(KNOB_HINTS[0]), APPLY_OK), (b"[", APPLY_DOCUMENT_REJECTED),
             (raw(KNOB_HINTS[1], {"kind": "set_affinity", "pid": 2, "cpus": [0]}), APPLY_SOME_REJECTED)]
    for document, status in cases:
        hints.write_bytes(document)
        assert main([*dirs, "apply", str(hints)]) == status
        assert json.loads(capsys.readouterr().out)["schema_version"] == 1
    assert main([*dirs, "apply", str(tmp_path / "missing.json")]) == APPLY_DOCUMENT_REJECTED
    assert "cannot read" in json.loads(capsys.readouterr().out)["error"]


# ---- the real kernel of this host, acting only on a child of this test ----------------


@pytest.fixture
def child():
    proc = subprocess.Popen(["sleep", "60"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_affinity_is_set_on_a_live_process_and_undone(child, records):
    cpus = sorted(os.sched_getaffinity(child))
    result = apply_document(raw({"kind": "set_affinity", "pid": child, "cpus": [cpus[-1]]}), Tree("/"), records)
    assert result["results"][0]["status"] == "applied", result
    assert os.sched_getaffinity(child) == {cpus[-1]}
    assert result["results"][0]["effect"]["previous"] == cpus
    undo(Tree("/"), records)
    assert sorted(os.sched_getaffinity(child)) == cpus


def test_nice_and_class_are_set_on_every_thread_and_undone(child, records):
    assert (os.getpriority(os.PRIO_PROCESS, child), os.sched_getscheduler(child)) == (0, os.SCHED_OTHER)
    result = apply_document(raw({"kind": "set_sched", "pid": child, "nice": 15, "policy": "batch"}), Tree("/"), records)
    assert result["results"][0]["status"] == "applied", result
    assert result["results"][0]["effect"]["now"] == {"nice": 15, "policy": "batch"}
    assert (os.getpriority(os.PRIO_PROCESS, child), os.sched_getscheduler(child)) == (15, os.SCHED_BATCH)
    undo(Tree("/"), records)
    assert (os.getpriority(os.PRIO_PROCESS, child), os.sched_getscheduler(child)) == (0, os.SCHED_OTHER)


def test_the_agent_refuses_to_target_itself(records):
    result = apply_document(raw({"kind": "set_affinity", "pid": os.getpid(), "cpus": [0]}), Tree("/"), records)
    assert result["results"][0]["reason"] == f"pid {os.getpid()} is the agent itself"


def test_run_starts_a_program_under_the_policy(tmp_path):
    """set_mempolicy, then exec: the program's own numa_maps shows the policy."""
    out = subprocess.run([sys.executable, "-I", "-S", str(AGENT_DIR / "bin" / "llamas-agent"),
                          "--state-dir", str(tmp_path), "run", "--policy", "bind", "--nodes", "0", "--",
                          "cat", "/proc/self/numa_maps"], capture_output=True, text=True, check=True).stdout
    policies = {line.split()[1] for line in out.splitlines()}
    assert "bind:0" in policies, out


def test_pages_found_busy_are_tried_again_and_still_busy_ones_are_reported(monkeypatch):
    from llamas_agent import apply as APPLY

    tries = {}

    def move_pages(pid, addresses, node):  # page 0x3000 stays busy; 0x2000 is busy once
        out = []
        for a in addresses:
            tries[a] = tries.get(a, 0) + 1
            busy = a == 0x3000 or (a == 0x2000 and tries[a] == 1)
            out.append(-16 if busy else node)  # -EBUSY
        return out

    monkeypatch.setattr(APPLY, "move_pages", move_pages)
    monkeypatch.setattr(APPLY, "BUSY_WAIT_S", 0)
    effect = APPLY.move_located(7, [0x1000, 0x2000, 0x3000], [1, 1, 1], 0)
    assert effect["moved_pages_from_node"] == {"1": 2} and effect["failed"] == {"EBUSY": 1}
    assert tries == {0x1000: 1, 0x2000: 2, 0x3000: 1 + APPLY.BUSY_RETRIES}
