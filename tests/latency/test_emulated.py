"""The emulated machine's lifecycle without QEMU: its scratch folder comes and goes with the guest.

Booting it, and what the guest feels, is tested with real guests in tests/latency/*_vm.py.
"""

from __future__ import annotations

import os
import signal
import tempfile

import pytest

from testbed.image import GuestImage
from testbed.latency.emulated import EmulatedMachine
from testbed.process import signals_deferred, stop_signals


def test_a_signal_during_shutdown_is_raised_after_the_socket_folder_is_gone(tmp_path, load_topology, monkeypatch):
    # The VM's shutdown holds a signal back until it has stopped QEMU, then raises it: the
    # machine's close went no further, and each "during shutdown" signal test left its folder.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    (tmp_path / "ssh_host_ed25519_key.pub").write_text("ssh-ed25519 AAAA test\n")
    machine = EmulatedMachine(load_topology("dram-cxl"), GuestImage(tmp_path, "0" * 16, "6.12"), plugin=False)
    assert not machine._sockdir.exists()  # made on entry, not when built
    machine._sockdir.mkdir()

    def shutdown_as_a_signal_arrives(timeout: float = 10.0) -> None:
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(machine.vm, "shutdown", shutdown_as_a_signal_arrives)
    with stop_signals(), pytest.raises(KeyboardInterrupt):
        machine.close()
    assert not machine._sockdir.exists()
