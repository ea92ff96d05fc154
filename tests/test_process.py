"""SIGTERM ends a command even when it lands inside a library that wraps exceptions."""

from __future__ import annotations

import os
import signal
import socket
import threading

import pytest

from testbed.process import Terminated, raise_on_termination
from testbed.qmp import Monitor


@pytest.fixture
def sigterm_raises():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    raise_on_termination()
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_sigterm_during_a_qmp_handshake_is_not_taken_for_a_connection_error(tmp_path, sigterm_raises):
    # A socket that accepts and never greets: the handshake waits inside qemu.qmp's event loop.
    path = tmp_path / "qmp.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        with pytest.raises(Terminated, match="SIGTERM"):
            Monitor(path).connect(timeout=5)
    finally:
        timer.cancel()
        server.close()


def test_terminated_is_not_an_exception_that_a_library_may_wrap():
    # qemu.qmp, for one, re-raises any Exception from inside a handshake as its own ConnectError.
    assert issubclass(Terminated, BaseException) and not issubclass(Terminated, Exception)
