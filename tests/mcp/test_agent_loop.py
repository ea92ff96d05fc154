"""The agent loop without a VM: a scripted OpenAI-compatible server on 127.0.0.1 plays the model, the stand-in
guest answers the agent's commands, and workload runs return canned figures.

What is checked: the model's tool calls reach the MCP tools in order and their
results go back to it (function calling, and the JSON mode for servers without
tools); a model that fails ends its round, not the loop; the figures files are
rebuilt byte for byte from the transcript; the recorded turns drive a second
run without any model.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from advisor.scripted_server import MODEL, ScriptedServer, Step, call_tools, reply
from mcp import Client

from testbed import cli
from testbed.llm_client import ChatClient, Endpoint
from testbed.mcp import audit, loop, server
from testbed.mcp.budget import Budget
from testbed.mcp.tools import Toolbox, WorkloadRun

POLICY = {"kind": "set_policy", "launch": "skewed-read", "mode": "interleave", "nodes": [0, 1],
          "reason": "spread the pages over both nodes"}


class CannedRuns(Toolbox):
    """The stand-in guest's toolbox, with workload runs that report more ops/s after every applied document."""

    def run_workload(self, name, params=None, time_limit_s=300.0, seed=1) -> WorkloadRun:
        w = self.workload(name)
        value = 1000.0 + 250 * self.budget.used_actions
        nodes = {"0": 600, "1": 400}
        return WorkloadRun(workload=name, params={**w.params, **(params or {})}, seed=seed, launch=name,
                           primary=w.primary, higher_is_better=w.higher_is_better, value=value,
                           figures={w.primary: value, "ops": 1000.0}, counters=None,
                           miss_share={n: v / 1000 for n, v in nodes.items()}, setup_seconds=1.0,
                           timed_seconds=2.0, budget=self.budget.left())


def run_loop(machine, tmp_path: Path, model, rounds: int = 2) -> loop.Transcript:
    out = tmp_path / "out"
    out.mkdir(parents=True, exist_ok=True)
    log = audit.AuditLog(out / "audit.jsonl")
    mcp_server = server.build(CannedRuns(machine, Budget()), log)
    settings = loop.Settings("skewed-read", {"ops": 1000}, rounds, out)
    transcript = loop.Transcript("dram-nvm", "skewed-read", {"ops": 1000}, rounds, model.name, "scripted",
                                 "native" if isinstance(model, loop.NativeModel) else "json", "advertised", "t0")

    async def main():
        async with Client(mcp_server) as client:
            return await loop.run(client, model, settings, transcript)

    return asyncio.run(main())


NATIVE_SCRIPT = [
    call_tools(("describe_machine", {}), ("gather_state", {})),
    call_tools(("apply_hints", {"hints": [POLICY], "dry_run": True})),
    call_tools(("apply_hints", {"hints": [POLICY]})),
    reply("Interleaved the workload over both nodes."),
    call_tools(("run_workload", {"name": "no-such"}), ("undo", {})),
    reply("Undone."),
]


@pytest.fixture
def native_run(stand_in, tmp_path):
    with ScriptedServer(list(NATIVE_SCRIPT)) as fake:
        model = loop.NativeModel(ChatClient(Endpoint(fake.url, MODEL, timeout=10)), MODEL)
        transcript = run_loop(stand_in[0], tmp_path, model)
        return transcript, fake.completions(), tmp_path / "out"


def test_native_calls_reach_the_tools_and_their_results_go_back(native_run):
    transcript, requests, out = native_run
    assert transcript.finished
    model_calls = [(e["round"], e["tool"]) for e in transcript.events if e["by"] == MODEL]
    assert model_calls == [(1, "describe_machine"), (1, "gather_state"), (1, "apply_hints"), (1, "apply_hints"),
                           (2, "run_workload"), (2, "undo")]
    measured = [e["round"] for e in transcript.events if e["by"] == loop.LOOP]
    assert measured == [0, 1, 2]
    assert len(requests) == len(NATIVE_SCRIPT)
    assert {t["function"]["name"] for t in requests[0]["tools"]} >= {"apply_hints", "gather_state", "undo"}
    tool_messages = [m for m in requests[1]["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == ["call-1", "call-2"]
    assert json.loads(tool_messages[0]["content"])["topology"] == "dram-nvm"
    assert "Round 2 of 2" in requests[4]["messages"][-1]["content"]
    errors = [e for e in transcript.events if e["is_error"]]
    assert len(errors) == 1 and "no workload 'no-such'" in errors[0]["result"]
    assert [line["tool"] for line in audit.read(out / "audit.jsonl")] == [
        "run_workload", "describe_machine", "gather_state", "apply_hints", "apply_hints", "run_workload",
        "run_workload", "undo", "run_workload"]


def test_figures_come_from_the_transcript_and_replay_byte_for_byte(native_run, tmp_path):
    transcript, _, out = native_run
    rows = loop.write_figures(out, transcript)
    assert [(r["round"], r["value"], r["hints_applied"], r["model_calls"], r["model_errors"]) for r in rows] == [
        (0, 1000.0, 0, 0, 0), (1, 1250.0, 1, 4, 0), (2, 1250.0, 0, 2, 1)]
    assert rows[1]["tools_used"] == ["apply_hints", "describe_machine", "gather_state"]
    replayed = tmp_path / "replayed"
    assert cli.main(["agent-loop", "--replay", str(out / "transcript.json"), "--out", str(replayed)]) == 0
    for name in ("figures.json", "figures.csv"):
        assert (replayed / name).read_bytes() == (out / name).read_bytes()
    header = (out / "figures.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["round", "ok", "value", "ops"] and "miss_share.1" in header


def test_recorded_turns_drive_a_run_without_the_model(native_run, stand_in, tmp_path):
    transcript, _, _ = native_run
    again = run_loop(stand_in[0], tmp_path / "again", loop.RecordedModel(transcript, native=True))
    calls = [(e["round"], e["tool"], e["arguments"]) for e in again.events]
    assert calls == [(e["round"], e["tool"], e["arguments"]) for e in transcript.events]
    assert loop.figures_of(again) == [dict(r) for r in loop.figures_of(transcript)]


def test_json_mode_offers_the_tools_through_a_response_schema(stand_in, tmp_path):
    script = [reply({"tool": "apply_hints", "arguments": {"hints": [POLICY]}}),
              reply({"done": "interleaved"}), reply("not json at all")]
    with ScriptedServer(script) as fake:
        model = loop.JsonModel(ChatClient(Endpoint(fake.url, MODEL, timeout=10)), MODEL)
        transcript = run_loop(stand_in[0], tmp_path, model)
        requests = fake.completions()
    assert [(e["round"], e["tool"]) for e in transcript.events if e["by"] == MODEL] == [(1, "apply_hints")]
    schema = requests[0]["response_format"]["json_schema"]["schema"]
    assert {c["properties"].get("tool", {}).get("const") for c in schema["anyOf"]} >= {"apply_hints", None}
    assert "MigratePages" in schema["$defs"]
    assert "maxLength" not in json.dumps(schema)  # bounds a grammar would unroll are left to the server's check
    assert '{"tool": NAME' in requests[0]["messages"][0]["content"]
    assert requests[1]["messages"][-1]["content"].startswith("Result of apply_hints: {")
    assert transcript.turns[-1]["error"].startswith("the answer is not JSON")
    assert [r["value"] for r in loop.figures_of(transcript)] == [1000.0, 1250.0, 1250.0]


def test_a_model_that_fails_ends_its_round_not_the_loop(stand_in, tmp_path):
    with ScriptedServer([Step("overloaded", status=503), Step("overloaded", status=503)] * 2) as fake:
        model = loop.NativeModel(ChatClient(Endpoint(fake.url, MODEL, timeout=10)), MODEL)
        transcript = run_loop(stand_in[0], tmp_path, model)
    assert transcript.finished and len(transcript.turns) == 2
    assert all("503" in t["error"] for t in transcript.turns)
    assert [r["round"] for r in loop.figures_of(transcript)] == [0, 1, 2]
