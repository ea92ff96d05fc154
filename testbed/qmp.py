"""The QMP client: a thin synchronous wrapper over `qemu.qmp` for the few commands the testbed uses."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from qemu.qmp import QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol

from .process import check_stop

COMMAND_TIMEOUT_S = 60.0  # no command the testbed sends takes long; a QEMU that does not answer is stuck


class MonitorError(RuntimeError):
    """QMP could not be reached or a command failed."""


class Monitor:
    """QMP over the UNIX socket QEMU listens on (`-qmp unix:PATH,server=on,wait=off`)."""

    def __init__(self, socket_path: Path):
        self.socket_path = socket_path
        self._qmp: QEMUMonitorProtocol | None = None
        self._timeout = COMMAND_TIMEOUT_S

    def connect(self, timeout: float = 10.0, alive: Callable[[], bool] = lambda: True) -> None:
        """Connect and negotiate capabilities, retrying while QEMU creates the socket."""
        self._timeout = COMMAND_TIMEOUT_S
        deadline = time.monotonic() + timeout
        while True:
            qmp = QEMUMonitorProtocol(str(self.socket_path))
            try:
                qmp.connect(negotiate=True)
                qmp.settimeout(self._timeout)
                self._qmp = qmp
                return
            except (QMPError, OSError) as exc:
                qmp.close()
                check_stop()  # qemu.qmp wraps what a signal raises mid-handshake in its own error
                if not alive():
                    raise MonitorError("QEMU exited before its QMP socket answered") from None
                if time.monotonic() > deadline:
                    raise MonitorError(f"no QMP on {self.socket_path} after {timeout:.0f} s: {exc}") from None
                time.sleep(0.05)

    def command(self, name: str, **args: Any) -> Any:
        if self._qmp is None:
            raise MonitorError("QMP is not connected")
        try:
            return self._qmp.cmd(name, **args)
        except QMPError as exc:
            raise MonitorError(f"QMP {name} failed: {exc}") from None
        except TimeoutError:
            raise MonitorError(f"QMP {name}: no answer from QEMU within {self._timeout:g} s") from None

    def status(self) -> str:
        """'running', 'paused', 'shutdown', ... as QEMU reports it."""
        return self.command("query-status")["status"]

    def memdevs(self) -> list[dict]:
        """The memory backends: id, size, policy, host nodes."""
        return self.command("query-memdev")

    @contextmanager
    def paused(self) -> Iterator[None]:
        """The guest stopped (vCPUs and its clock) inside the block, running again after it."""
        self.command("stop")
        try:
            yield
        finally:
            self.command("cont")

    def quit(self, timeout: float = 5.0) -> None:
        """Ask QEMU to exit, waiting at most `timeout` for its answer; the connection drops as it does."""
        self._timeout = timeout  # a stopped or wedged QEMU must not hold shutdown up
        if self._qmp is not None:
            self._qmp.settimeout(timeout)
        try:
            self.command("quit")
        except (MonitorError, OSError, EOFError):
            pass  # QEMU may close the socket before it answers, or not answer at all (then: SIGTERM)

    def close(self) -> None:
        if self._qmp is not None:
            try:
                self._qmp.close()
            except (QMPError, OSError, EOFError):
                pass  # the peer is gone: that is what closing after quit means
            self._qmp = None
