"""A workload process in the guest, run in the background so the harness can act while it lives.

`start()` launches a command detached from the SSH session, its output and
exit status going to files under /tmp; with a gate it returns once the
program printed `ready pid=N` (set-up done, timed phase not begun), so the
harness can read its placement, gather state, advise or move pages, then
`release()` it.  `finish()` waits for the exit and returns the output;
`release_and_finish()` does both from one guest shell that waits first.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass

from ..ssh import GuestShell
from .workload import READY_RE

POLL_S = 0.2       # host-side polling while a program sets up
WAIT_STEP_S = 0.5  # guest-side sleep while a timed phase runs
TAIL_START_S = 0.2  # time `tail` gets to start before the gate opens (release_and_finish)
_TAG_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class GuestProcessError(RuntimeError):
    """The workload died, failed, or outran its time."""


@dataclass
class GuestProcess:
    """One background workload: its files in the guest and, once known, its pid."""

    shell: GuestShell
    tag: str
    pid: int | None = None      # the program's, once it reports it
    group: int | None = None    # the wrapper's session and process group: killing it kills all

    def __post_init__(self) -> None:
        if not _TAG_RE.match(self.tag):
            raise ValueError(f"tag {self.tag!r}: letters, digits, '.', '_' and '-' only (it names guest files)")

    @property
    def out(self) -> str:
        return f"/tmp/llamas-{self.tag}.out"

    @property
    def rc(self) -> str:
        return f"/tmp/llamas-{self.tag}.rc"

    @property
    def gate(self) -> str:
        return f"/tmp/llamas-{self.tag}.go"

    def output(self) -> str:
        return self.shell.run(f"cat {self.out} 2>/dev/null || true").stdout

    def exit_status(self) -> int | None:
        text = self.shell.run(f"cat {self.rc} 2>/dev/null || true").stdout.strip()
        return int(text) if text else None


def start(proc: GuestProcess, command: str, gated: bool, timeout: float = 600) -> GuestProcess:
    """Launch `command` (a shell line) in the background; return `proc`.

    For a gated start the command must carry the workload's wait option with
    `proc.gate` (`Workload.command(..., wait=proc.gate)`); start then blocks
    until the program reports ready, and `proc.pid` is known.
    """
    shell = proc.shell
    shell.run(f"rm -f {proc.out} {proc.rc} {proc.gate}")
    wrapped = f"{command} > {proc.out} 2>&1; echo $? > {proc.rc}"
    started = shell.run(f"setsid sh -c {shlex.quote(wrapped)} < /dev/null > /dev/null 2>&1 & echo $!")
    proc.group = int(started.stdout.strip())
    if gated:
        _wait_ready(proc, timeout)
    return proc


def _wait_ready(proc: GuestProcess, timeout: float) -> None:
    proc.pid = int(wait_output(proc, READY_RE, timeout).group(1))


def wait_output(proc: GuestProcess, pattern: re.Pattern, timeout: float) -> re.Match:
    """Block until the output matches `pattern`; raise if the process exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = pattern.search(proc.output())
        if match:
            return match
        status = proc.exit_status()
        if status is not None:
            raise GuestProcessError(f"{proc.tag} exited with status {status} before it was ready:\n{proc.output()}")
        time.sleep(POLL_S)
    output = proc.output()
    stop(proc)
    raise GuestProcessError(f"{proc.tag} was not ready after {timeout:.0f} s (stopped it):\n{output[-2000:]}")


def release(proc: GuestProcess) -> None:
    """Let a gated program begin its timed phase."""
    proc.shell.run(f"touch {proc.gate}")


def finish(proc: GuestProcess, timeout: float) -> str:
    """Wait for the exit; return the output, or raise with it on a failure or a timeout (the process is killed).

    The wait is one guest process that sleeps between checks of the wrapper's
    pid (`tail --pid`, which forks nothing): polling over SSH, or a shell loop
    that starts `sleep` twice a second, would steal the vCPU time the timed
    phase measures.
    """
    return _waited(proc, _exit_wait(proc), timeout)


def release_and_finish(proc: GuestProcess, timeout: float) -> str:
    """`release()` then `finish()`, the gate opened by a guest shell whose wait has already begun.

    Starting the wait after the release put its start-up (a new SSH session, a shell,
    `timeout`, `tail`: a few million guest accesses) beside the first part of the timed
    phase, where it took host CPU from the workload: 0.1-0.3 s of a 1.5 s loop (README,
    "Evaluation"). Here `tail` is running before the gate opens, and the shell opens
    it with a builtin, so the loop runs beside nothing of the harness's.
    """
    head = f"{_tail(proc)} & t=$!; sleep {TAIL_START_S}; : > {proc.gate}; wait $t"
    return _waited(proc, _exit_wait(proc, head), timeout)


def _tail(proc: GuestProcess) -> str:
    return f"tail --pid={proc.group} -s {WAIT_STEP_S} -f /dev/null"


def _exit_wait(proc: GuestProcess, head: str | None = None) -> str:
    """The guest's wait for the wrapper's exit; `head` replaces its first step, `_tail`."""
    return f"{head or _tail(proc)}; while [ ! -s {proc.rc} ]; do sleep {WAIT_STEP_S}; done"  # rc comes before the exit


def _waited(proc: GuestProcess, wait: str, timeout: float) -> str:
    proc.shell.run(f"timeout {int(timeout) + 1} sh -c {shlex.quote(wait)}", check=False, timeout=timeout + 60)
    status = proc.exit_status()
    if status is None:
        output = proc.output()
        stop(proc)
        raise GuestProcessError(f"{proc.tag} still running after {timeout:.0f} s (stopped it):\n{output[-2000:]}")
    output = proc.output()
    if status != 0:
        raise GuestProcessError(f"{proc.tag} exited with status {status}:\n{output[-2000:]}")
    return output


def alive(proc: GuestProcess) -> bool:
    """Whether any process of the group is left."""
    return proc.shell.run(f"kill -0 -- -{proc.group} 2>/dev/null", check=False).ok


def stop(proc: GuestProcess, timeout: float = 30) -> None:
    """Kill the whole process group (SIGTERM, then SIGKILL) and wait until it is gone."""
    for signal in ("TERM", "KILL"):
        proc.shell.run(f"kill -{signal} -- -{proc.group} 2>/dev/null", check=False)
        deadline = time.monotonic() + timeout / 2
        while alive(proc):
            if time.monotonic() > deadline:
                break
            time.sleep(POLL_S)
        else:
            return
    raise GuestProcessError(f"{proc.tag} (process group {proc.group}) survived SIGKILL")
