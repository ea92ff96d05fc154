"""The VM's boot watch, without QEMU: what it reads in the serial log, how QEMU's exit ends the
wait (a real process stands in for it), and when it boots again.

Booting itself is tested with real guests in tests/vm/.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from testbed import vm as vm_module
from testbed.image import GuestImage
from testbed.vm import VM, BootError, BootStalled, QemuAborted

STALL_REPORT = """\
[   65.863802] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:
[   65.865073] rcu: \t0-...!: (0 ticks this GP) idle=9f68/0/0x0 softirq=144/144 fqs=1 (false positive?)
[   65.869989] rcu: \tPossible timer handling issue on cpu=0 timer-softirq=50
"""


@pytest.fixture
def machine(tmp_path, load_topology):
    """A VM that is never started: its serial log is ours to write."""
    (tmp_path / "ssh_host_ed25519_key.pub").write_text("ssh-ed25519 AAAA test\n")
    vm = VM(load_topology("hybrid-cores"), GuestImage(tmp_path, "0" * 16, "6.12"), "tcg")
    vm.alive = lambda: True
    vm.rundir.mkdir()  # as start() makes it
    yield vm
    vm.shutdown()


def test_a_vm_never_started_leaves_nothing_in_the_temporary_folder(tmp_path, load_topology, monkeypatch):
    # A Ctrl-C between building a VM and booting it (test_signals_vm, "before QEMU") left an
    # empty folder behind each time, when the folder was made with the VM.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    (tmp_path / "ssh_host_ed25519_key.pub").write_text("ssh-ed25519 AAAA test\n")
    vm = VM(load_topology("hybrid-cores"), GuestImage(tmp_path, "0" * 16, "6.12"), "tcg")
    assert vm.rundir.parent == scratch and vm.name in vm.rundir.name
    assert list(scratch.iterdir()) == []
    vm.shutdown()
    assert list(scratch.iterdir()) == []


def test_only_run_folders_a_killed_owner_left_are_swept(tmp_path):
    """A SIGKILLed harness (a cluster worker, in test_cluster_vm) leaves its VMs' run folders; the next
    VM's start removes those, and never a live VM's, a young one's, or a folder that is not a VM's."""
    def folder(name: str, age_s: float = 3600, stderr: bool = True) -> Path:
        path = tmp_path / name
        path.mkdir()
        if stderr:
            (path / "qemu.stderr").write_text("")
        then = time.time() - age_s
        os.utime(path, (then, then))
        return path

    left = folder("llamas-dram-cxl-0123abcd")
    live = folder("llamas-two-socket-89abcdef")
    kept = [live, folder("llamas-dram-nvm-00000001", age_s=5), folder("llamas-worker-deadbeef", stderr=False),
            folder("llamas-ci-nox"), folder("other-dram-cxl-0123abcd")]
    owner = subprocess.Popen(["sh", "-c", "sleep 60", live.name])  # a running QEMU names its folder
    try:
        assert vm_module.sweep_leftovers(tmp_path) == [left]
    finally:
        owner.kill()
        owner.wait()
    assert not left.exists() and all(path.is_dir() for path in kept)


def test_one_stall_report_is_a_slow_host_not_a_lost_boot(machine):
    machine.spec.serial_log.write_text("llamas-init: mounting\n" + STALL_REPORT)
    assert machine._booting() is True


def test_a_stall_reported_again_ends_the_wait_at_once(machine):
    machine.spec.serial_log.write_text(STALL_REPORT + "[   86.9] rcu: INFO: rcu_preempt self-detected stall on CPU\n")
    with pytest.raises(ConnectionError, match="RCU stall reported 2 times"):
        machine._booting()


def test_a_panic_is_still_a_panic(machine):
    machine.spec.serial_log.write_text("Kernel panic - not syncing: VFS: Unable to mount root fs\n")
    with pytest.raises(ConnectionError, match="panicked"):
        machine._booting()


def test_no_serial_output_yet_is_said_so(machine):
    assert machine.serial_text() == ""
    assert machine.serial_tail() == "(no serial output)"


def _boots(machine, monkeypatch, outcomes):
    """Make each boot attempt end as the next item of `outcomes` (an exception, or None for success)."""
    attempts = []

    def boot():
        attempts.append(outcomes[len(attempts)])
        if attempts[-1] is not None:
            raise attempts[-1]
        return machine

    monkeypatch.setattr(machine, "_boot", boot)
    return attempts


def test_a_stalled_boot_is_booted_once_more_and_said_so(machine, monkeypatch, caplog):
    attempts = _boots(machine, monkeypatch, [BootStalled("vm did not boot: stalled\nserial"), None])
    with caplog.at_level(logging.WARNING, logger=vm_module.__name__):
        assert machine.__enter__() is machine
    assert len(attempts) == 2
    assert "vm did not boot: stalled; booting again (attempt 2 of 2)" in caplog.text


def test_a_boot_that_stalls_every_time_fails(machine, monkeypatch):
    attempts = _boots(machine, monkeypatch, [BootStalled("first"), BootStalled("second")])
    with pytest.raises(BootStalled, match="second"):
        machine.__enter__()
    assert len(attempts) == vm_module.BOOT_ATTEMPTS


def test_other_boot_failures_are_not_retried(machine, monkeypatch):
    attempts = _boots(machine, monkeypatch, [BootError("panicked"), None])
    with pytest.raises(BootError, match="panicked"):
        machine.__enter__()
    assert len(attempts) == 1


def _exited(machine, code: str) -> None:
    """Make `machine`'s QEMU a real process that has run `code` and exited, so the wait sees it gone."""
    machine.process = subprocess.Popen([sys.executable, "-c", code])
    machine.process.wait()
    del machine.alive  # the class's own check again
    machine.boot_timeout = 5


def test_a_qemu_abort_before_ssh_is_a_lost_boot(machine):
    _exited(machine, "import os; os.abort()")  # SIGABRT, as QEMU's failed assertions end
    with pytest.raises(QemuAborted, match="QEMU exited before SSH came up"):
        machine.wait_ready()


def test_a_qemu_that_exits_otherwise_is_not_retried(machine):
    _exited(machine, "raise SystemExit(1)")
    with pytest.raises(BootError) as raised:
        machine.wait_ready()
    assert not isinstance(raised.value, vm_module.BootLost)


def test_an_aborted_boot_is_booted_once_more(machine, monkeypatch):
    attempts = _boots(machine, monkeypatch, [QemuAborted("iotlb_to_section"), None])
    assert machine.__enter__() is machine and len(attempts) == 2
