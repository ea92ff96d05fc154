"""`testbed agent-loop` on a real guest, as a real command: a scripted OpenAI-compatible server on 127.0.0.1
plays the model (a test double for the model only: the guest, its agent and the workload are real).

The script looks, interleaves the workload's memory over both nodes (dry run,
then for real) in round 1 and undoes it in round 2.  The figures must show
each round's run, the transcript must rebuild the same figures files without
the model or a guest, and its recorded turns must drive a second run on a
fresh guest without any model, calling the same tools with the same arguments.
The local model (marked `llm`) goes through the same loop and is recorded as
it is, useful or not.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from advisor.scripted_server import MODEL, ScriptedServer, call_tools, reply

pytestmark = pytest.mark.vm

TESTBED = [sys.executable, "-m", "testbed.cli"]
# Small enough for the fast node's 128 MiB left free, so that first touch keeps it all on node 0 and only
# the interleaving launch policy gives node 1 a share (test_mcp_vm.py says why a spilling buffer cannot show it).
SHORT = ["--params", "size_mib=64", "--params", "hot_mib=8", "--params", "ops=100000"]
LOOP = [*TESTBED, "agent-loop", "dram-nvm", "--workload", "skewed-read", *SHORT, "--fast-node-free-mib", "128",
        "--time-limit", "300"]
POLICY = {"kind": "set_policy", "launch": "skewed-read", "mode": "interleave", "nodes": [0, 1],
          "reason": "first touch keeps every page on DRAM; spread them over both nodes instead"}
SCRIPT = [
    call_tools(("describe_machine", {}), ("gather_state", {})),
    call_tools(("apply_hints", {"hints": [POLICY], "dry_run": True})),
    call_tools(("apply_hints", {"hints": [POLICY]})),
    reply("Interleaved skewed-read over DRAM and NVM."),
    call_tools(("read_counters", {}), ("undo", {})),
    reply("Back to first touch."),
]


def agent_loop(*args: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    done = subprocess.run([*LOOP, *args], check=False, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done


@pytest.fixture(scope="module")
def scripted(tmp_path_factory, guest_image):
    out = tmp_path_factory.mktemp("loop") / "scripted"
    with ScriptedServer(list(SCRIPT)) as fake:
        agent_loop("--rounds", "2", "--endpoint", fake.url, "--model", MODEL, "--out", str(out))
        asked = fake.completions()
    return out, asked


def figures(out) -> list[dict]:
    return json.loads((out / "figures.json").read_text())["rounds"]


def test_the_scripted_model_acts_and_every_round_is_measured(scripted):
    out, asked = scripted
    assert len(asked) == len(SCRIPT)
    transcript = json.loads((out / "transcript.json").read_text())
    assert transcript["finished"] and transcript["tool_mode"] == "native"
    by_model = [(e["round"], e["tool"], e["is_error"]) for e in transcript["events"] if e["by"] == MODEL]
    assert by_model == [(1, "describe_machine", False), (1, "gather_state", False), (1, "apply_hints", False),
                        (1, "apply_hints", False), (2, "read_counters", False), (2, "undo", False)]
    rows = figures(out)
    assert [r["round"] for r in rows] == [0, 1, 2] and all(r["ok"] and r["value"] > 0 for r in rows)
    assert [r["hints_applied"] for r in rows] == [0, 1, 0]
    # The launch policy reached round 1's run: its misses are split over both nodes, unlike first touch's.
    assert rows[1]["miss_share"]["1"] > 0.25 and rows[1]["miss_share"]["0"] > 0.25, rows
    assert rows[0]["miss_share"]["1"] < 0.1 and rows[2]["miss_share"]["1"] < 0.1, rows
    audit = [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()]
    assert len(audit) == len(transcript["events"])


def test_the_transcript_replays_to_the_same_figures_files(scripted, tmp_path):
    out, _ = scripted
    subprocess.run([*TESTBED, "agent-loop", "--replay", str(out / "transcript.json"), "--out", str(tmp_path)],
                   check=True, capture_output=True, timeout=120)
    for name in ("figures.json", "figures.csv"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes()


def test_recorded_turns_run_again_without_the_model(scripted, tmp_path):
    out, _ = scripted
    again = tmp_path / "again"
    agent_loop("--rounds", "2", "--answers-from", str(out / "transcript.json"), "--out", str(again))
    first = json.loads((out / "transcript.json").read_text())
    second = json.loads((again / "transcript.json").read_text())
    assert [(e["round"], e["tool"], e["arguments"]) for e in second["events"]] == \
           [(e["round"], e["tool"], e["arguments"]) for e in first["events"]]
    assert [(r["round"], r["hints_applied"], r["tools_used"]) for r in figures(again)] == \
           [(r["round"], r["hints_applied"], r["tools_used"]) for r in figures(out)]
    assert second["model"] == f"{MODEL} (recorded)"


@pytest.mark.llm
def test_the_local_model_goes_through_the_loop(tmp_path_factory, guest_image):
    """Whatever the 270M model does is recorded; the loop must finish and measure every round."""
    out = tmp_path_factory.mktemp("loop") / "local"
    # One round of two turns: each turn of the 270M model takes about a minute on 2 cores.
    done = agent_loop("--rounds", "1", "--out", str(out), "--max-turns", "2")
    transcript = json.loads((out / "transcript.json").read_text())
    assert transcript["finished"] and transcript["tool_mode"] == "json" and transcript["turns"]
    assert [r["round"] for r in figures(out)] == [0, 1]
    sys.stderr.write(done.stderr[-4000:])
