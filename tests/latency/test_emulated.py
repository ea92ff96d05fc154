"""The emulated machine's lifecycle without QEMU: its scratch folder is the VM's, and goes with the guest.

Booting it, and what the guest feels, is tested with real guests in tests/latency/*_vm.py.
"""

from __future__ import annotations

import os
import signal
import tempfile

import pytest

from testbed.image import GuestImage
from testbed.latency.emulated import EmulatedMachine
from testbed.process import stop_signals


def test_the_plugins_socket_comes_and_goes_with_the_vms_run_folder(tmp_path, load_topology, monkeypatch):
    # One scratch folder per guest: the plugin's socket beside QMP's, in the VM's run folder, which
    # QEMU's start makes and the VM's shutdown removes after a stop signal that arrives meanwhile.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    (tmp_path / "ssh_host_ed25519_key.pub").write_text("ssh-ed25519 AAAA test\n")
    machine = EmulatedMachine(load_topology("dram-cxl"), GuestImage(tmp_path, "0" * 16, "6.12"), plugin=False)
    assert machine.socket_path.parent == machine.vm.rundir == machine.vm.spec.qmp_socket.parent
    assert not machine.vm.rundir.exists()  # made when QEMU starts, not when built
    machine.vm.rundir.mkdir()
    machine.socket_path.touch()

    def close_as_a_signal_arrives() -> None:
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(machine.vm.shell, "close", close_as_a_signal_arrives)  # the shutdown's first step
    with stop_signals(), pytest.raises(KeyboardInterrupt):
        machine.close()
    assert list(tmp_path.iterdir()) == [tmp_path / "ssh_host_ed25519_key.pub"]
