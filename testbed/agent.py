"""Talking to the guest agent from the host: gather state, apply hints, enforce a placement policy, undo."""

from __future__ import annotations

import json
import shlex
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from . import state as _state
from .hints import HintDocument
from .ssh import GuestCommandError, GuestShell

REMOTE_HINTS = "/tmp/llamas-hints.json"
REMOTE_POLICY = "/tmp/llamas-placement.json"
ENFORCE_LOG = "/tmp/llamas-enforce.log"
AUDIT_LOG = "/var/log/llamas-agent/audit.jsonl"
# For the daemon to check the policy and say it started (it reads every node first). It usually takes
# seconds; while kswapd thrashes the fast node's page cache (README, "Fair baselines") Python's own start
# took over 60 s in one tiny-write-aware run here, alive all along.
ENFORCE_START_S = 180


class EnforceRefused(RuntimeError):
    """The agent refused a placement policy, or its daemon did not start; the message says why."""


@dataclass(frozen=True)
class Enforcer:
    """A running `llamas-agent enforce`: its pid, and where its records begin in the audit log."""

    pid: int
    audit_from: int  # audit log lines written before it started


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


def audit_log(shell: GuestShell, after: int = 0) -> list[dict]:
    """Every line of the guest's audit log (past the first `after`)."""
    text = shell.run(f"tail -n +{int(after) + 1} {AUDIT_LOG}", check=False).stdout
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def start_enforce(shell: GuestShell, policy: str | bytes, pids: list[int] | None = None) -> Enforcer:
    """Upload a placement policy and start `llamas-agent enforce` on it in the background (for `pids`
    only, if given); return once the daemon has said it started, or raise EnforceRefused with its reason."""
    upload_text(shell, policy, REMOTE_POLICY)
    mark = int(shell.run(f"cat {AUDIT_LOG} 2>/dev/null | wc -l").stdout)
    scope = " --pids " + ",".join(str(int(p)) for p in pids) if pids else ""
    pid = int(shell.run(f"setsid llamas-agent enforce {REMOTE_POLICY}{scope} </dev/null >{ENFORCE_LOG} 2>&1 "
                        "& echo $!").stdout)
    deadline = time.monotonic() + ENFORCE_START_S
    while True:
        said = [e for e in audit_log(shell, mark) if e.get("action") == "enforce"]
        if said and said[0].get("status") == "started":
            return Enforcer(pid, mark)
        if said:
            raise EnforceRefused(f"the agent refused the policy: {said[0].get('reason')}")
        if not shell.run(f"kill -0 {pid}", check=False).ok or time.monotonic() > deadline:
            shell.run(f"kill {pid}", check=False)
            log = shell.run(f"tail -c 1000 {ENFORCE_LOG}", check=False).stdout
            raise EnforceRefused(f"llamas-agent enforce did not start: {log.strip() or 'no output'}")
        time.sleep(0.5)


def enforce_rounds(shell: GuestShell, enforcer: Enforcer) -> list[dict]:
    """The round records the daemon has written so far."""
    return [e for e in audit_log(shell, enforcer.audit_from) if e.get("action") == "enforce_round"]
