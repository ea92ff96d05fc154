"""`testbed mcp` on a real guest, through the SDK's own stdio client: one session (one boot) on dram-nvm in
emulated mode, then checks on what it recorded.

The session describes the machine, gathers, applies a document as a dry run and
for real, runs a short workload, reads the counters and undoes; then it is
refused: a hint naming a node the machine lacks, a workload that does not
exist, a run longer than the guest time left, an apply after the action
budget.  Every refusal must be a clear error and leave the guest as it was.
When the client goes, the server shuts its guest down.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import jsonschema
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from testbed.mcp import audit

pytestmark = pytest.mark.vm

# Small enough to fit in the fast node's 128 MiB left free: first touch would put it all on node 0, so only
# the interleaving launch policy gives node 1 a share of the loop's misses.  (A 256 MiB buffer spilled: the
# interleaving filled node 0 and the hot tail went to node 1 either way, 86 % of the loop's misses there.)
SHORT = {"size_mib": 64, "hot_mib": 8, "ops": 100000}
LAUNCH = {"kind": "set_policy", "launch": "skewed-read", "mode": "interleave", "nodes": [0, 1],
          "reason": "spread the working set over DRAM and NVM"}
TIERING = {"kind": "set_knob", "knob": "numa_balancing", "value": 2, "reason": "promote hot pages"}


def _guest_qemus(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid), "-f", "qemu-system"], check=False, capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _server(pidfile, *args: str) -> StdioServerParameters:
    """`testbed mcp ARGS` under the SDK's stdio client; its pid is written to `pidfile`."""
    argv = [sys.executable, "-m", "testbed.cli", "mcp", *args]
    return StdioServerParameters(command="sh", args=["-c", f'echo $$ > {pidfile}; exec "$0" "$@"', *argv],
                                 env=dict(os.environ))


@pytest.fixture(scope="module")
def session(tmp_path_factory, guest_image):
    """Run the whole session; return what each call gave, the tools listed, the audit file and the pids."""
    tmp = tmp_path_factory.mktemp("mcp")
    pidfile, audit_path = tmp / "server.pid", tmp / "audit.jsonl"
    params = _server(pidfile, "dram-nvm", "--latency", "emulated", "--fast-node-free-mib", "128",
                     "--max-actions", "2", "--max-guest-seconds", "400", "--audit", str(audit_path))
    got: dict = {"calls": []}

    async def main():
        async with Client(params) as client:
            got["tools"] = {t.name: t for t in (await client.list_tools()).tools}

            async def call(key: str, name: str, arguments: dict):
                result = await client.call_tool(name, arguments)
                got["calls"].append((key, name, result))
                got[key] = result
                return result

            await call("describe", "describe_machine", {})
            got["qemus"] = _guest_qemus(int(pidfile.read_text()))
            await call("before", "gather_state", {})
            await call("dry", "apply_hints", {"hints": [TIERING, LAUNCH], "dry_run": True})
            await call("after_dry", "gather_state", {})
            await call("applied", "apply_hints", {"hints": [TIERING, LAUNCH], "source": "vm test"})
            await call("after_apply", "gather_state", {})
            await call("run", "run_workload", {"name": "skewed-read", "params": SHORT, "time_limit_s": 300})
            await call("counters", "read_counters", {})
            await call("undone", "undo", {})
            await call("after_undo", "gather_state", {})
            await call("missing_node", "apply_hints", {"hints": [{"kind": "set_policy", "launch": "skewed-read",
                                                                  "mode": "bind", "nodes": [7]}]})
            await call("no_workload", "run_workload", {"name": "no-such-workload"})
            await call("too_long", "run_workload", {"name": "skewed-read", "params": SHORT, "time_limit_s": 3000})
            await call("spent", "apply_hints", {"hints": [{"kind": "set_knob", "knob": "numa_balancing",
                                                           "value": 1}]})
            await call("after_refusals", "gather_state", {})
            await call("final_undo", "undo", {})

    asyncio.run(main())
    got["server_pid"] = int(pidfile.read_text())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (_gone(got["server_pid"]) and all(map(_gone, got["qemus"]))):
        time.sleep(0.5)
    got["audit"] = audit.read(audit_path)
    return got


def structured(session, key: str) -> dict:
    result = session[key]
    assert not result.is_error, result.content
    return result.structured_content


def error_text(session, key: str) -> str:
    result = session[key]
    assert result.is_error, result.structured_content
    return " ".join(c.text for c in result.content)


def test_every_result_fits_its_tools_output_schema(session):
    assert len(session["tools"]) == 7
    for key, name, result in session["calls"]:
        if not result.is_error:
            jsonschema.validate(result.structured_content, session["tools"][name].output_schema)


def test_describe_and_gather_see_the_machine(session):
    described = structured(session, "describe")
    assert described["topology"] == "dram-nvm" and described["latency"] == "emulated"
    assert described["fast_node"] == 0 and described["fast_node_held_mib"] > 0
    state = structured(session, "before")
    assert [n["id"] for n in state["nodes"]] == [0, 1] and state["knobs"]["numa_balancing"] == 0


def test_a_dry_run_checks_and_changes_nothing_then_apply_and_undo(session):
    dry = structured(session, "dry")
    assert dry["dry_run"] and [r["status"] for r in dry["results"]] == ["would_apply", "would_apply"]
    assert structured(session, "after_dry")["knobs"]["numa_balancing"] == 0
    applied = structured(session, "applied")
    assert applied["applied"] == 2 and applied["error"] is None and applied["budget"]["actions_left"] == 1
    assert structured(session, "after_apply")["knobs"]["numa_balancing"] == 2
    undone = structured(session, "undone")
    assert {e["entry"]["type"] for e in undone["undone"]} >= {"knob", "launch"}
    assert structured(session, "after_undo")["knobs"]["numa_balancing"] == 0


def test_the_workload_ran_under_its_launch_policy_with_counters(session):
    run = structured(session, "run")
    assert run["figures"]["ops_per_s"] > 0 and run["figures"]["ops"] == SHORT["ops"]
    assert run["launch"] == "skewed-read" and run["timed_seconds"] > 0
    # Interleaved over both nodes (the launch policy applied): each served a good share of the misses.
    assert run["miss_share"]["0"] > 0.25 and run["miss_share"]["1"] > 0.25, run["miss_share"]
    assert run["counters"]["1"]["delay_ns"] > 0
    counters = structured(session, "counters")
    assert counters["nodes"]["1"]["misses"] >= run["counters"]["1"]["misses"]
    assert run["budget"]["guest_seconds_left"] < 400


def test_refusals_are_clear_and_leave_the_guest_as_it_was(session):
    missing = structured(session, "missing_node")
    assert missing["applied"] == 0 and missing["rejected"] == 1, missing
    assert "node 7 does not exist" in missing["error"], missing
    assert "Error executing tool run_workload: no workload 'no-such-workload'" in error_text(session, "no_workload")
    too_long = error_text(session, "too_long")
    assert "time limit of 3000 s is more than the" in too_long and "nothing was started" in too_long
    assert "action budget is spent (2 of 2" in error_text(session, "spent")
    after = structured(session, "after_refusals")
    assert after["knobs"] == structured(session, "after_undo")["knobs"]
    assert not any("skewed_access" in p["cmdline"] for p in after["processes"])
    assert not structured(session, "final_undo")["undone"]  # nothing was applied since the first undo
    for _, _, result in session["calls"]:
        assert "Traceback" not in " ".join(getattr(c, "text", "") for c in result.content)


def test_every_call_is_in_the_audit_file(session):
    lines = session["audit"]
    assert [line["tool"] for line in lines] == [name for _, name, _ in session["calls"]]
    assert [line["ok"] for line in lines] == [not r.is_error for _, _, r in session["calls"]]
    assert lines[4]["arguments"]["source"] == "vm test" and lines[4]["result"]["applied"] == 2


def test_the_guest_goes_with_the_client(session):
    assert session["qemus"], "the server had no guest QEMU while it served"
    assert _gone(session["server_pid"]) and all(map(_gone, session["qemus"]))


def test_sigterm_in_the_middle_of_a_call_shuts_the_guest_down(tmp_path, guest_image):
    """SIGTERM while a tool runs (a DAMON gather): the command ends, its guest with it, no traceback."""
    pidfile, errlog_path = tmp_path / "server.pid", tmp_path / "stderr.txt"
    params = _server(pidfile, "dram-cxl", "--audit", str(tmp_path / "audit.jsonl"))

    async def main(errlog):
        async with Client(stdio_client(params, errlog=errlog)) as client:
            await client.call_tool("list_workloads", {})
            pid = int(pidfile.read_text())
            qemus = _guest_qemus(pid)
            pending = asyncio.ensure_future(client.call_tool("gather_state", {"damon_seconds": 20}))
            await asyncio.sleep(4)
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not (_gone(pid) and all(map(_gone, qemus))):
                await asyncio.sleep(0.5)
            pending.cancel()
            return pid, qemus

    with errlog_path.open("w") as errlog:
        pid, qemus = asyncio.run(main(errlog))
    stderr = errlog_path.read_text()
    assert qemus and _gone(pid) and all(map(_gone, qemus)), stderr[-3000:]
    assert "terminated by SIGTERM; guest shut down" in stderr and "Traceback" not in stderr, stderr[-3000:]
