"""Process hygiene: no QEMU outlives the command that started it.

Three layers: `VM.shutdown` escalates from a QMP quit to SIGTERM to SIGKILL;
the CLI turns SIGTERM and SIGHUP into exceptions so context managers run; and
every QEMU child carries PR_SET_PDEATHSIG, so the kernel kills it even if
its parent dies by SIGKILL.
"""

from __future__ import annotations

import ctypes
import os
import signal
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def child_dies_with_parent() -> None:
    """preexec_fn for Popen: SIGKILL this child when the parent thread exits."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def processes_with_arg(marker: str) -> list[int]:
    """PIDs whose command line contains `marker` as one argument or part of one."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(marker.encode() in a for a in args):
            pids.append(int(entry.name))
    return pids


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM or SIGHUP so that cleanup runs.

    A BaseException, like KeyboardInterrupt: libraries that turn any Exception
    into their own error (qemu.qmp wraps one raised mid-handshake in ConnectError,
    which the QMP client retries) must not swallow a request to stop.
    """


def raise_on_termination() -> None:
    """Turn SIGTERM and SIGHUP into `Terminated` (SIGINT already raises KeyboardInterrupt)."""

    def handler(signum, _frame):
        raise Terminated(f"terminated by {signal.Signals(signum).name}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)
