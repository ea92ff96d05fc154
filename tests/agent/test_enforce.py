"""`llamas-agent enforce` over a fixture /proc: refusals change nothing, a round moves by the rules and is
recorded, undo moves the journalled pages back, a stop signal ends the daemon cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from llamas_agent import enforce as daemon
from llamas_agent.classify import CHUNK_PAGES, PAGE
from llamas_agent.cli import APPLY_DOCUMENT_REJECTED, main
from llamas_agent.undo import undo

from .fixture_tree import AGENT_DIR, add_mapped_process, pagemap_entry

BASE = 0x10000000
MAPS = f"{BASE:x}-{BASE + 2 * CHUNK_PAGES * PAGE:x} rw-p 00000000 00:00 0\n"
WRITTEN = range(CHUNK_PAGES)                    # chunk 0: every page written, on node 1
UNTOUCHED = range(CHUNK_PAGES, 2 * CHUNK_PAGES)  # chunk 1: never written, on node 0
RULES = [{"id": "writes-to-dram", "match": {"write": "write-heavy"}, "nodes": [0]},
         {"id": "quiet-to-slow", "match": {"write": "untouched"}, "nodes": [1]}]


class FakeKernel:
    """Where each page of pid 500 is, as move_pages would locate and move it."""

    def __init__(self):
        self.node = {BASE + i * PAGE: 1 for i in WRITTEN} | {BASE + i * PAGE: 0 for i in UNTOUCHED}
        self.moves: list[tuple[int, int, int]] = []   # (pid, pages, to node)

    def locate(self, pid, addresses):
        return [self.node.get(a, -14) for a in addresses]

    def move_located(self, pid, addresses, before, node):
        moved = {}
        for a, b in zip(addresses, before, strict=True):
            if b >= 0 and b != node:
                moved[str(b)] = moved.get(str(b), 0) + 1
                self.node[a] = node
        self.moves.append((pid, len(addresses), node))
        return {"moved_pages_from_node": moved, "failed": {}}


@pytest.fixture
def kernel(guest_root, monkeypatch):
    pages = {BASE + i * PAGE: pagemap_entry(0x1000 + i, written=i in WRITTEN) for i in range(2 * CHUNK_PAGES)}
    add_mapped_process(guest_root, 500, "bench", MAPS, pages)
    fake = FakeKernel()
    monkeypatch.setattr(daemon, "locate", fake.locate)
    monkeypatch.setattr(daemon, "move_located", fake.move_located)
    return fake


def raw(doc: dict) -> bytes:
    return json.dumps(doc).encode()


def audit(records) -> list[dict]:
    with open(records.audit_path) as f:
        return [json.loads(line) for line in f]


def test_a_policy_naming_a_missing_node_is_refused_and_changes_nothing(tree, records, guest_root, kernel, policy,
                                                                       capsys):
    doc = policy(rules=[{"match": {"write": "write-heavy"}, "nodes": [0, 5]}])
    assert daemon.enforce(tree, records, raw(doc), rounds=1) == APPLY_DOCUMENT_REJECTED
    out = json.loads(capsys.readouterr().out)
    assert out == {"accepted": False, "error": "rules[0].nodes: node 5 does not exist (nodes: [0, 1])"}
    (entry,) = audit(records)
    assert entry["action"] == "enforce" and entry["status"] == "rejected" and "node 5" in entry["reason"]
    assert records.load(records.undo_path, []) == []
    assert (guest_root / "proc/500/clear_refs").read_text() == ""  # no process was touched
    assert kernel.moves == []


def test_a_round_moves_by_the_rules_records_it_and_undo_moves_back(tree, records, guest_root, kernel, policy,
                                                                   capsys):
    assert daemon.enforce(tree, records, raw(policy(rules=RULES)), interval=1, rounds=1, only_pids=[500]) == 0
    assert (guest_root / "proc/500/clear_refs").read_text() == "4"
    assert sorted(kernel.moves) == [(500, CHUNK_PAGES, 0), (500, CHUNK_PAGES, 1)]
    assert all(kernel.node[BASE + i * PAGE] == 0 for i in WRITTEN)
    assert all(kernel.node[BASE + i * PAGE] == 1 for i in UNTOUCHED)
    rounds = [e for e in audit(records) if e["action"] == "enforce_round"]
    assert len(rounds) == 1 and json.loads(capsys.readouterr().out.splitlines()[0])["round"] == 0
    record = rounds[0]
    assert record["bytes_by_class"] == {"unknown/write-heavy": {"1": CHUNK_PAGES * PAGE},
                                        "unknown/untouched": {"0": CHUNK_PAGES * PAGE}}
    assert record["moved_bytes"] == 2 * CHUNK_PAGES * PAGE
    assert record["moved_bytes_by_rule"] == {"writes-to-dram": {"0": CHUNK_PAGES * PAGE},
                                             "quiet-to-slow": {"1": CHUNK_PAGES * PAGE}}
    assert record["processes"] == [500] and record["heat"] == "unmeasured"
    assert record["cpu_seconds"] >= 0 and 0 <= record["cpu_percent"] < 100 and record["seconds"] >= 0
    assert record["budget_bytes"] == 64 * 1 << 20

    report = undo(tree, records)
    (done,) = report["undone"]
    assert done["status"] == "restored", done
    assert done["detail"] == {"daemon": "not running", "restored_pages": 2 * CHUNK_PAGES, "failed_pages": {},
                              "exited_processes": []}
    assert all(kernel.node[BASE + i * PAGE] == 1 for i in WRITTEN)
    assert all(kernel.node[BASE + i * PAGE] == 0 for i in UNTOUCHED)
    assert not os.path.exists(done["entry"]["journal"])


def test_the_bandwidth_limit_caps_each_round(tree, records, kernel, policy):
    one_chunk_mib = CHUNK_PAGES * PAGE >> 20
    doc = policy(rules=RULES, limits={"bandwidth_mib_s": one_chunk_mib, "interval_s": 1})
    daemon.enforce(tree, records, raw(doc), rounds=1, only_pids=[500])
    (record,) = [e for e in audit(records) if e["action"] == "enforce_round"]
    assert record["moved_bytes"] == CHUNK_PAGES * PAGE <= record["budget_bytes"]
    assert record["deferred_bytes"] == CHUNK_PAGES * PAGE
    assert kernel.moves == [(500, CHUNK_PAGES, 0)]   # the first rule's chunk went first


def test_a_second_daemon_is_refused_while_one_runs(tree, records, kernel, policy, capsys):
    records.push_undo({"type": "enforce", "pid": 500, "starttime": 500, "journal": "/nonexistent"})
    assert daemon.enforce(tree, records, raw(policy()), rounds=1) == APPLY_DOCUMENT_REJECTED
    assert "already running (pid 500)" in json.loads(capsys.readouterr().out)["error"]
    assert kernel.moves == []


def test_protected_and_small_processes_are_out_of_scope(tree, records, guest_root, kernel, policy):
    (guest_root / "etc/llamas-agent").mkdir(parents=True)
    (guest_root / "etc/llamas-agent/protected").write_text("bench\n")
    d = daemon.Daemon(tree, records, policy(), b"{}", only_pids=[500, 400, 1])
    assert d.scope() == {400: 500}  # named with --pids: no size floor
    assert d.skipped["500"].startswith("protected (listed in /etc/llamas-agent/protected)")
    assert d.skipped["1"] == "init or the agent itself"
    everyone = daemon.Daemon(tree, records, policy(), b"{}").scope()
    assert 300 in everyone and 400 not in everyone  # 1200 KiB resident: below the scope's floor
    assert 500 not in everyone and 1 not in everyone


def test_cli_refuses_bad_rounds_and_intervals(guest_root, tmp_path, policy, capsys):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(policy()))
    base = ["--root", str(guest_root), "--log-dir", str(tmp_path / "log"), "--state-dir", str(tmp_path / "state")]
    assert main([*base, "enforce", str(path), "--rounds", "0"]) == APPLY_DOCUMENT_REJECTED
    assert main([*base, "enforce", str(path), "--interval", "0.1"]) == APPLY_DOCUMENT_REJECTED
    assert "--interval must be in 1..3600" in capsys.readouterr().out
    assert main([*base, "enforce", str(tmp_path / "absent.json")]) == APPLY_DOCUMENT_REJECTED


def test_a_stop_signal_ends_the_daemon_between_rounds(guest_root, tmp_path, policy):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(policy()))
    log = tmp_path / "log"
    proc = subprocess.Popen([sys.executable, str(AGENT_DIR / "bin" / "llamas-agent"), "--root", str(guest_root),
                             "--log-dir", str(log), "--state-dir", str(tmp_path / "state"), "enforce", str(path),
                             "--interval", "1", "--pids", "400"], stdout=subprocess.PIPE, text=True)
    try:
        first = json.loads(proc.stdout.readline())  # a round happened: the daemon is in its loop
        assert first["round"] == 0 and first["processes"] == [400]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    entries = [json.loads(line) for line in (log / "audit.jsonl").read_text().splitlines()]
    assert entries[-1]["action"] == "enforce" and entries[-1]["stopped_by"] == "SIGTERM"


def test_without_idle_page_tracking_damon_tells_read_memory_from_untouched(tree, records, admin, kernel, policy):
    # DAMON's tried regions (the `admin` fixture's kdamond 0): chunk 1 was accessed in 10 of 100 samples.
    region = admin / "0/contexts/0/schemes/0/tried_regions/1"
    (region / "start").write_text(f"{BASE + CHUNK_PAGES * PAGE}\n")
    (region / "end").write_text(f"{BASE + 2 * CHUNK_PAGES * PAGE}\n")
    (region / "nr_accesses").write_text("10\n")
    rules = [RULES[0], {"id": "reads-to-slow", "match": {"write": "read-mostly"}, "nodes": [1]}]
    assert daemon.enforce(tree, records, raw(policy(rules=rules)), interval=1, rounds=1, only_pids=[500]) == 0
    (record,) = [e for e in audit(records) if e["action"] == "enforce_round"]
    assert record["heat"] == "damon"
    assert record["bytes_by_class"] == {"hot/write-heavy": {"1": CHUNK_PAGES * PAGE},
                                        "warm/read-mostly": {"0": CHUNK_PAGES * PAGE}}
    assert record["moved_bytes_by_rule"] == {"writes-to-dram": {"0": CHUNK_PAGES * PAGE},
                                             "reads-to-slow": {"1": CHUNK_PAGES * PAGE}}
    ctx = admin / "0/contexts/0"
    assert (ctx / "targets/0/pid_target").read_text() == "500"
    assert (ctx / "monitoring_attrs/intervals/aggr_us").read_text() == str(daemon.DAMON_AGGR_US)
    assert (ctx / "monitoring_attrs/nr_regions/max").read_text() == str(daemon.DAMON_MAX_REGIONS)
    assert (admin / "nr_kdamonds").read_text() == "0"   # the daemon's kdamond is gone after each interval


def test_damon_in_use_leaves_heat_unmeasured_and_says_why(tree, records, admin, kernel, policy):
    (admin / "nr_kdamonds").write_text("1\n")
    daemon.enforce(tree, records, raw(policy(rules=RULES)), interval=1, rounds=1, only_pids=[500])
    (record,) = [e for e in audit(records) if e["action"] == "enforce_round"]
    assert record["heat"] == "unmeasured" and "already in use" in record["heat_note"]
    assert (admin / "nr_kdamonds").read_text() == "1\n"   # someone else's DAMON is left alone


def test_what_cannot_change_is_judged_once_per_process_and_size_every_round(tree, records, guest_root, kernel,
                                                                            policy, monkeypatch):
    judged = []
    real = daemon.why_protected
    monkeypatch.setattr(daemon, "why_protected", lambda ctx, pid: judged.append(pid) or real(ctx, pid))
    d = daemon.Daemon(tree, records, policy(), b"{}")
    first = d.scope()
    assert 300 in first and 400 not in first and sorted(judged) == [300, 400, 500]
    (guest_root / "proc/400/status").write_text("Name:\tevil\nVmRSS:\t  9000 kB\n")  # it grew
    assert 400 in d.scope() and sorted(judged) == [300, 400, 500]  # no process judged again
    (guest_root / "proc/400/stat").write_text(
        (guest_root / "proc/400/stat").read_text().replace(" 500 0 0", " 501 0 0", 1))  # a new process, pid reused
    d.scope()
    assert sorted(judged) == [300, 400, 400, 500]
