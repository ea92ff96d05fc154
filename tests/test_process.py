"""Stop signals end a command even when they land inside a library that wraps or swallows exceptions."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from testbed import process
from testbed.process import (
    Terminated,
    check_stop,
    signals_deferred,
    stop_requested,
    stop_signals,
)
from testbed.qmp import Monitor


def _soon(sig: signal.Signals, delay: float = 0.3) -> threading.Timer:
    timer = threading.Timer(delay, os.kill, (os.getpid(), sig))
    timer.start()
    return timer


def test_sigterm_during_a_qmp_handshake_is_not_taken_for_a_connection_error(tmp_path):
    # A socket that accepts and never greets: the handshake waits inside qemu.qmp's event loop.
    path = tmp_path / "qmp.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()
    timer = _soon(signal.SIGTERM, 0.5)
    try:
        with stop_signals(), pytest.raises(Terminated, match="SIGTERM"):
            Monitor(path).connect(timeout=5)
    finally:
        timer.cancel()
        server.close()


def test_terminated_is_not_an_exception_that_a_library_may_wrap():
    # qemu.qmp, for one, re-raises any Exception from inside a handshake as its own ConnectError.
    assert issubclass(Terminated, BaseException) and not issubclass(Terminated, Exception)


def test_a_swallowed_interrupt_is_raised_again_at_the_next_checkpoint():
    caught = []
    with stop_signals():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler raises here, at once
        except KeyboardInterrupt as exc:  # what a careless library does
            caught.append(exc)
        assert caught and stop_requested() == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            check_stop()


def test_handlers_are_restored_and_a_new_command_starts_without_a_stop():
    before = {sig: signal.getsignal(sig) for sig in process.STOP_SIGNALS}
    with stop_signals():
        assert stop_requested() is None
        check_stop()  # nothing asked: no-op
    assert {sig: signal.getsignal(sig) for sig in process.STOP_SIGNALS} == before
    with pytest.raises(Terminated), stop_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)
    assert stop_requested() is None  # forgotten with the command
    check_stop()


def test_a_signal_inside_a_deferred_block_is_raised_when_the_block_ends():
    done = []
    with stop_signals(), pytest.raises(Terminated), signals_deferred():
        os.kill(os.getpid(), signal.SIGHUP)
        check_stop()  # deferred: not raised in the middle
        done.append("the block finished its work")
    assert done == ["the block finished its work"]


def test_a_deferred_block_that_raises_lets_its_own_exception_go_on():
    with stop_signals(), pytest.raises(ValueError), signals_deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        raise ValueError("its own")


def test_children_start_in_their_own_process_group():
    child = process.start_child([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert os.getpgid(child.pid) == child.pid != os.getpgid(0)  # a terminal's Ctrl-C does not reach it
    finally:
        child.kill()
        child.wait()


def _gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status")
        if not status.exists() or "zombie" in status.read_text().lower():
            return True
        time.sleep(0.05)
    return False


def test_a_child_dies_with_its_parent():
    code = ("import sys, time; from testbed.process import start_child; "
            "c = start_child([sys.executable, '-c', 'import time; time.sleep(60)']); print(c.pid, flush=True); "
            "time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pid = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    assert _gone(pid), f"child {pid} outlived its parent"


def test_a_failure_while_stopping_still_exits_as_the_stop(monkeypatch, capsys):
    # CI saw it: SIGTERM landed inside paramiko's open_session, and closing SSH then raised
    # AttributeError; the command exited 1 with a traceback instead of 143.
    from testbed import cli

    def cleanup_breaks_after_sigterm(_args):
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            raise AttributeError("'NoneType' object has no attribute '_unlink_channel'")

    monkeypatch.setattr(cli, "cmd_list", cleanup_breaks_after_sigterm)
    assert cli.main(["list"]) == 143
    assert "_unlink_channel" in capsys.readouterr().err


def test_a_failure_without_a_stop_is_not_hidden(monkeypatch):
    from testbed import cli

    def broken(_args):
        raise AttributeError("a real bug")

    monkeypatch.setattr(cli, "cmd_list", broken)
    with pytest.raises(AttributeError, match="a real bug"):
        cli.main(["list"])
