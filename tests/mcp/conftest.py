"""Fixtures of the MCP tests: a toolbox on a stand-in guest (no VM), and MCP clients for it.

The stand-in answers the guest commands the tools send with what the agent
would print (a state from the hint exam, an apply result built from the
document it was given), so the server, its schemas, budget and audit are
tested end to end without booting; tests/mcp/test_mcp_vm.py does the same on
a real guest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from testbed import exam
from testbed.ssh import CommandResult
from testbed.topology import load, resolve


@dataclass
class StandInShell:
    """Answers `llamas-agent gather|apply|undo` like the agent; records every command and upload."""

    state_json: str
    commands: list[str] = field(default_factory=list)
    uploads: dict[str, bytes] = field(default_factory=dict)

    def run(self, command: str, check: bool = True, timeout: float | None = None) -> CommandResult:
        self.commands.append(command)
        if command.startswith("llamas-agent gather"):
            return CommandResult(command, 0, self.state_json, "")
        if command.startswith("llamas-agent apply"):
            document = json.loads(self.uploads["/tmp/llamas-hints.json"])
            dry = "--dry-run" in command
            nodes = {n["id"] for n in json.loads(self.state_json)["nodes"]}
            results = []
            for i, hint in enumerate(document["hints"]):
                bad = [n for n in hint.get("to_nodes", []) + hint.get("from_nodes", []) if n not in nodes]
                status = "rejected" if bad else ("would_apply" if dry else "applied")
                results.append({"index": i, "id": hint.get("id"), "kind": hint["kind"], "status": status,
                                "reason": f"node {bad[0]} does not exist" if bad else None, "effect": None})
            out = {"schema_version": 1, "dry_run": dry, "accepted": True, "error": None, "results": results}
            return CommandResult(command, 0 if all(r["status"] != "rejected" for r in results) else 3,
                                 json.dumps(out), "")
        if command.startswith("llamas-agent undo"):
            return CommandResult(command, 0, json.dumps({"undone": []}), "")
        raise AssertionError(f"the stand-in guest does not know {command!r}")

    def put(self, local: Path, remote: str) -> None:
        self.uploads[remote] = Path(local).read_bytes()


@dataclass
class StandInMachine:
    topology: object
    shell: StandInShell
    latency: str = "advertised"
    fast_node: int = 0
    held_mib: int = 0
    control: object = None


@pytest.fixture
def stand_in():
    """(machine, shell): dram-nvm with the state of an exam scenario."""
    scenario = exam.load_scenario(exam.SCENARIO_DIR / "nvm-01-write-heavy-spilled.toml")
    shell = StandInShell(scenario.state.model_dump_json())
    return StandInMachine(load(resolve("dram-nvm")), shell), shell
