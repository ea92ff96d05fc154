"""The CLI end to end, and QEMU's lifecycle: no process outlives its command, a failed boot says why."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed.process import processes_with_arg
from testbed.vm import VM, BootError

pytestmark = pytest.mark.vm

TESTBED = [sys.executable, "-m", "testbed.cli"]


def _wait_for_qemu(proc: subprocess.Popen, guest_qemus, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = guest_qemus(proc.pid)
        if children:
            return children[0]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("QEMU never started")


def _gone(pid: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower():
            return True
        time.sleep(0.1)
    return False


def test_validate_json_reports_every_check(guest_image):
    out = subprocess.run([*TESTBED, "validate", "--json", "two-socket"], capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report) == {"topology", "ok", "accel", "boot_seconds", "checks"}
    assert report["topology"] == "two-socket" and report["ok"] is True
    assert report["accel"] in ("kvm", "tcg") and report["boot_seconds"] > 0
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["node1.distances"]["observed"] == [21, 10]
    assert checks["node1.cpus"]["observed"] == [2, 3]
    assert all(set(c) == {"name", "expected", "observed", "ok"} for c in report["checks"])


def test_exec_prints_output_and_returns_the_guest_status(guest_image):
    out = subprocess.run([*TESTBED, "exec", "dram-only", "--", "sh", "-c", "echo hello from $(hostname); exit 7"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 7, out.stderr
    assert out.stdout.strip() == "hello from llamas"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_killing_a_run_mid_boot_leaves_no_qemu(guest_image, guest_qemus, sig):
    proc = subprocess.Popen([*TESTBED, "exec", "dram-only", "--", "true"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    qemu = _wait_for_qemu(proc, guest_qemus)
    name = Path(f"/proc/{qemu}/cmdline").read_bytes().split(b"\0")[2].decode()  # -name NAME
    assert name.startswith("llamas-dram-only-")
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert _gone(qemu), f"QEMU {qemu} survived {sig.name}"
    assert processes_with_arg(name) == []
    if sig != signal.SIGKILL:  # SIGKILL leaves no chance to clean up; PDEATHSIG kills QEMU
        assert proc.returncode in (130, 143), (proc.returncode, stderr.decode(errors="replace")[-2000:])


def test_a_guest_that_does_not_boot_fails_with_its_serial_log(guest_image, accel, load_topology):
    vm = VM(load_topology("dram-only"), guest_image, accel, append="init=/no/such/init", boot_timeout=25)
    with pytest.raises(BootError) as failure, vm:
        pass
    message = str(failure.value)
    assert "did not boot" in message and "serial log" in message
    assert "switch_root" in message or "Kernel panic" in message
    if "Kernel panic - not syncing" in message:
        assert "the guest kernel panicked" in message  # said so at once, not after the boot timeout
    assert not vm.alive()
