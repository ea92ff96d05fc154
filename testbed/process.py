"""Process hygiene: no QEMU outlives the command that started it, and no stop request is lost.

Four layers: `VM.shutdown` escalates from a QMP quit to SIGTERM to SIGKILL;
children (QEMU, the local LLM server) start in their own process group, so a
terminal's Ctrl-C reaches only the harness, which then shuts them down in
order; the CLI turns SIGINT, SIGTERM and SIGHUP into exceptions *and remembers
them*, so that a library that swallows the exception (invoke forwards Ctrl-C to
the remote command and keeps waiting; qemu.qmp wraps errors raised inside its
handshake) cannot make the command carry on: `check_stop()` raises it again at
the next checkpoint; and every child carries PR_SET_PDEATHSIG, so the kernel
kills it even if its parent dies by SIGKILL.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_PR_SET_PDEATHSIG = 1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_requested: signal.Signals | None = None  # the first stop signal received, once one has come
_deferring = 0                             # > 0 inside `signals_deferred()`


# Loaded once, in the parent: a preexec_fn runs between fork and exec, where a dlopen could wait
# forever on a loader lock another thread of the parent held at the fork.
_LIBC = ctypes.CDLL(None, use_errno=True)


def child_dies_with_parent() -> None:
    """preexec_fn for Popen: SIGKILL this child when the parent thread exits (one prctl, no lock taken)."""
    if _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def start_child(argv: list[str], **kwargs) -> subprocess.Popen:
    """Popen for a long-lived child the harness shuts down itself (QEMU, an LLM server).

    Its own process group keeps a terminal's Ctrl-C (sent to the whole foreground
    group) from killing it underneath the harness; PDEATHSIG is the last resort.
    """
    # A preexec_fn is unsafe in a threaded parent only if it takes a lock; this one calls prctl alone.
    return subprocess.Popen(argv, preexec_fn=child_dies_with_parent, process_group=0, **kwargs)  # noqa: PLW1509


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


def _stop_exception(sig: signal.Signals) -> BaseException:
    return KeyboardInterrupt() if sig == signal.SIGINT else Terminated(f"terminated by {sig.name}")


@contextmanager
def stop_signals() -> Iterator[None]:
    """Inside, SIGINT raises KeyboardInterrupt and SIGTERM/SIGHUP raise `Terminated`, and the first is remembered.

    The previous handlers come back afterwards, and the remembered stop is forgotten (a
    command run in-process, as tests do, leaves its caller as it was).
    """
    global _requested

    def handler(signum, _frame):
        global _requested
        if _requested is None:
            _requested = signal.Signals(signum)
        if not _deferring:
            raise _stop_exception(_requested)

    _requested = None
    saved = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, previous in saved.items():
            signal.signal(sig, previous)
        _requested = None


def stop_requested() -> signal.Signals | None:
    """The stop signal received so far (None if none came, or the handlers are not installed)."""
    return _requested


def check_stop() -> None:
    """Raise the stop a signal asked for, if one came: call it where a library may have swallowed it."""
    if _requested is not None and not _deferring:
        raise _stop_exception(_requested)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Inside, a stop signal is remembered but not raised; it is raised when the block ends.

    For work that must finish what it started, such as shutting a guest down in order
    or writing the results of finished runs: an exception in the middle of it would skip
    the rest. A block that ends by raising lets its own exception go on.
    """
    global _deferring
    _deferring += 1
    try:
        yield
    except BaseException:
        _deferring -= 1
        raise
    _deferring -= 1
    check_stop()
