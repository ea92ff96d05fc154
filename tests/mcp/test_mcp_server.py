"""The MCP server without a VM: the SDK's own client in process, a stand-in guest that answers like the agent.

Every tool's schema, every result validated against its output schema, the
refusals (missing node, unknown workload, time and action budgets) with clear
words and nothing sent to the guest, and an audit line per call.
"""

from __future__ import annotations

import asyncio
import json

import jsonschema
import pytest
from mcp import Client

from testbed.mcp import audit, server
from testbed.mcp.budget import Budget, BudgetExceeded
from testbed.mcp.tools import Toolbox

TOOLS = {"describe_machine", "gather_state", "apply_hints", "undo", "list_workloads", "run_workload",
         "read_counters"}
KNOB = {"kind": "set_knob", "knob": "numa_balancing", "value": 2, "reason": "tiering mode"}


def session(machine, tmp_path, calls, budget: Budget | None = None):
    """Run `calls` ([(tool, arguments)]) through the SDK's client; return (tools listed, results, audit lines)."""
    log = audit.AuditLog(tmp_path / "audit.jsonl")
    mcp_server = server.build(Toolbox(machine, budget or Budget()), log)

    async def main():
        async with Client(mcp_server) as client:
            listed = (await client.list_tools()).tools
            return listed, [await client.call_tool(name, args) for name, args in calls]

    listed, results = asyncio.run(main())
    return {t.name: t for t in listed}, results, audit.read(tmp_path / "audit.jsonl")


def text(result) -> str:
    return " ".join(c.text for c in result.content)


def test_every_tool_has_typed_input_and_output_schemas(stand_in, tmp_path):
    tools, _, _ = session(stand_in[0], tmp_path, [])
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.input_schema["type"] == "object" and tool.output_schema["type"] == "object", tool.name
        assert tool.description and len(tool.description) > 40
    hint_kinds = json.dumps(tools["apply_hints"].input_schema)
    assert all(k in hint_kinds for k in ("migrate_pages", "set_policy", "set_knob", "move_range"))
    assert set(tools["run_workload"].input_schema["required"]) == {"name"}


def test_results_fit_their_output_schemas(stand_in, tmp_path):
    machine, shell = stand_in
    calls = [("describe_machine", {}), ("gather_state", {}), ("apply_hints", {"hints": [KNOB], "dry_run": True}),
             ("apply_hints", {"hints": [KNOB]}), ("undo", {}), ("list_workloads", {})]
    tools, results, lines = session(machine, tmp_path, calls)
    for (name, _), result in zip(calls, results, strict=True):
        assert not result.is_error, text(result)
        jsonschema.validate(result.structured_content, tools[name].output_schema)
    described, state, dry, applied, _, workloads = (r.structured_content for r in results)
    assert described["topology"] == "dram-nvm" and "non-volatile" in described["description"]
    assert [n["id"] for n in described["nodes"]] == [0, 1] and described["latency"] == "advertised"
    assert {p["pid"] for p in state["processes"]} and state["nodes"][1]["id"] == 1
    assert dry["dry_run"] and dry["results"][0]["status"] == "would_apply" and dry["budget"]["actions_left"] == 20
    assert applied["applied"] == 1 and applied["error"] is None and applied["budget"]["actions_left"] == 19
    assert {"skewed-read", "skewed-write", "redis"} <= {w["name"] for w in workloads["workloads"]}
    assert [c.split()[:2] for c in shell.commands if c.startswith("llamas-agent")] == [
        ["llamas-agent", "gather"], ["llamas-agent", "apply"], ["llamas-agent", "apply"], ["llamas-agent", "undo"]]
    assert [line["tool"] for line in lines] == [name for name, _ in calls] and all(line["ok"] for line in lines)
    assert lines[3]["arguments"] == {"hints": [KNOB]} and lines[3]["result"]["applied"] == 1


def test_refusals_are_clear_errors_and_leave_the_guest_alone(stand_in, tmp_path):
    machine, shell = stand_in
    pid = json.loads(shell.state_json)["processes"][0]["pid"]
    missing_node = {"kind": "migrate_pages", "pid": pid, "from_nodes": [1], "to_nodes": [7]}
    calls = [("apply_hints", {"hints": [missing_node]}),                       # the agent refuses it
             ("run_workload", {"name": "no-such-workload"}),
             ("run_workload", {"name": "skewed-read", "time_limit_s": 120}),   # beyond the guest time left
             ("apply_hints", {"hints": [KNOB]}),                               # beyond the action budget
             ("apply_hints", {"hints": [KNOB], "dry_run": True}),              # dry runs are still free
             ("read_counters", {}),                                            # advertised mode: no plugin
             ("apply_hints", {"hints": [{"kind": "set_knob", "knob": "swappiness", "value": 1}]}),
             ("no_such_tool", {})]
    _, results, lines = session(machine, tmp_path, calls, Budget(actions=1, guest_seconds=60))
    refused, no_workload, too_long, spent, dry, counters, bad_knob, unknown = results
    assert not refused.is_error and refused.structured_content["rejected"] == 1
    assert "node 7 does not exist" in refused.structured_content["error"]
    assert no_workload.is_error and "no workload 'no-such-workload'" in text(no_workload)
    assert "skewed-read" in text(no_workload)
    assert too_long.is_error and "120 s is more than the 60.0 s of guest time" in text(too_long)
    assert "nothing was started" in text(too_long)
    assert spent.is_error and "action budget is spent (1 of 1" in text(spent)
    assert not dry.is_error and dry.structured_content["results"][0]["status"] == "would_apply"
    assert counters.is_error and "emulated mode" in text(counters)
    assert bad_knob.is_error and "swappiness" in text(bad_knob)
    assert unknown.is_error
    for result in results:
        assert "Traceback" not in text(result) and 'File "' not in text(result)
    # Only the refused document and the dry run reached the guest; no workload was started.
    applies = [c for c in shell.commands if c.startswith("llamas-agent apply")]
    assert len(applies) == 2 and applies[1].endswith("--dry-run")
    assert not any("skewed" in c for c in shell.commands)
    assert [line["tool"] for line in lines] == [name for name, _ in calls]
    assert [line["ok"] for line in lines] == [True, False, False, False, True, False, False, False]
    assert "action budget" in lines[3]["error"] and lines[6]["arguments"]["hints"][0]["knob"] == "swappiness"


def test_an_unexpected_failure_is_named_not_traced(stand_in, tmp_path):
    machine, shell = stand_in

    def broken(command, check=True, timeout=None):
        raise OSError(113, "No route to host")

    shell.run = broken
    _, (result,), (line,) = session(machine, tmp_path, [("gather_state", {})])
    assert result.is_error and text(result).endswith("OSError: [Errno 113] No route to host")
    assert "Traceback" not in text(result) and line["ok"] is False and "No route to host" in line["error"]


def test_the_call_budget_ends_a_runaway_agent(stand_in, tmp_path):
    _, results, _ = session(stand_in[0], tmp_path, [("list_workloads", {})] * 3, Budget(calls=2))
    assert [r.is_error for r in results] == [False, False, True]
    assert "2 tool calls are spent" in text(results[2])


def test_budget_reserves_before_and_charges_after():
    budget = Budget(actions=1, guest_seconds=100)
    budget.reserve(100, "a run")
    budget.charge(30.5)
    with pytest.raises(BudgetExceeded, match="100 s is more than the 69.5 s"):
        budget.reserve(100, "a run")
    budget.action()
    with pytest.raises(BudgetExceeded, match="1 of 1"):
        budget.action()
    assert budget.left().model_dump() == {"actions_left": 0, "guest_seconds_left": 69.5, "calls_left": 500}
