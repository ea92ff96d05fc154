"""Talking to the guest agent from the host: gather state, apply hints, undo."""

from __future__ import annotations

import json
import shlex
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from . import state as _state
from .hints import HintDocument
from .ssh import GuestCommandError, GuestShell

REMOTE_HINTS = "/tmp/llamas-hints.json"


class HintResult(BaseModel):
    """One hint's outcome: applied, would_apply (dry run), rejected or failed."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    index: int
    id: str | None
    kind: str
    status: str
    reason: str | None
    effect: dict[str, Any] | None


class ApplyResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: int
    dry_run: bool
    accepted: bool
    error: str | None
    results: list[HintResult]

    @property
    def all_applied(self) -> bool:
        return self.accepted and all(r.status in ("applied", "would_apply") for r in self.results)


def gather(shell: GuestShell, damon_seconds: float | None = None,
           damon_pids: list[int] | None = None) -> _state.GuestState:
    """The guest's state, typed; with damon_seconds, DAMON watches damon_pids (default: the largest)."""
    damon = f" --damon {damon_seconds}" if damon_seconds else ""
    if damon and damon_pids:
        damon += " --damon-pids " + ",".join(str(int(p)) for p in damon_pids)
    return _state.parse(shell.run(f"llamas-agent gather{damon}", timeout=120).stdout)


def upload_text(shell: GuestShell, text: str | bytes, remote: str) -> None:
    """Put raw text or bytes into a guest file (bytes as given, so malformed documents stay malformed)."""
    data = text.encode() if isinstance(text, str) else text
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "upload"
        local.write_bytes(data)
        shell.put(local, remote)


def apply(shell: GuestShell, hints: HintDocument | str | bytes, dry_run: bool = False) -> ApplyResult:
    """Upload a hint document and apply it; raw text is sent as-is (for testing the guest's checks)."""
    text = hints.to_json() if isinstance(hints, HintDocument) else hints
    upload_text(shell, text, REMOTE_HINTS)
    flag = " --dry-run" if dry_run else ""
    result = shell.run(f"llamas-agent apply {shlex.quote(REMOTE_HINTS)}{flag}", check=False, timeout=300)
    if result.exit_status not in (0, 2, 3):
        raise GuestCommandError(result.command, result, f"exited with status {result.exit_status}")
    return ApplyResult.model_validate(json.loads(result.stdout))


def undo(shell: GuestShell) -> dict:
    """Restore what `apply` changed; returns the agent's report."""
    return json.loads(shell.run("llamas-agent undo", timeout=60).stdout)


def audit_log(shell: GuestShell) -> list[dict]:
    """Every line of the guest's audit log."""
    text = shell.run("cat /var/log/llamas-agent/audit.jsonl", check=False).stdout
    return [json.loads(line) for line in text.splitlines() if line.strip()]
