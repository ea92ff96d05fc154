"""Fixtures shared by the end-to-end VM tests."""

from __future__ import annotations

import subprocess
import time

import pytest

from testbed import agent


def _guest_qemus(pid: int) -> list[int]:
    # pgrep reads every command line itself, so a child that exits while it looks is simply not listed.
    out = subprocess.run(["pgrep", "-P", str(pid), "-f", "qemu-system.* -name llamas-"],
                         capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


@pytest.fixture
def guest_qemus():
    """`guest_qemus(pid)`: the guest QEMUs process `pid` started now (not the `qemu-system-x86_64 --version` probes)."""
    return _guest_qemus


# Allocates and touches MIB, says so, then sleeps: a process whose pages sit still.
WORKLOAD = "import time\nb = b'\\x01' * ({mib} << 20)\nopen('/tmp/{tag}.ready', 'w').close()\ntime.sleep(3600)\n"


def _start_workload(shell, tag: str, mib: int = 0, policy: str = "--policy bind --nodes 0",
                    program: str = WORKLOAD, wrapper: str = "") -> int:
    """Start a program (by default a memory-filling one) under `policy` and return its pid once it has
    created /tmp/TAG.ready."""
    agent.upload_text(shell, program.format(mib=mib, tag=tag), f"/tmp/{tag}.py")
    pid = int(shell.run(f"rm -f /tmp/{tag}.ready; setsid llamas-agent run {policy} -- {wrapper} python3 /tmp/{tag}.py "
                        f"</dev/null >/tmp/{tag}.log 2>&1 & echo $!").stdout)
    deadline = time.monotonic() + 60
    while shell.run(f"test -e /tmp/{tag}.ready", check=False).exit_status != 0:
        assert shell.run(f"kill -0 {pid}", check=False).ok, f"workload {tag} died before it was ready"
        assert time.monotonic() < deadline, f"workload {tag} did not get ready"
        time.sleep(0.5)
    return pid


@pytest.fixture(scope="session")
def start_workload():
    """`start_workload(shell, tag, mib=0, policy=..., program=WORKLOAD, wrapper="")`: a guest program started with
    `llamas-agent run`, its pid once it is ready (programs are format strings with {mib} and {tag})."""
    return _start_workload
