"""Fixtures shared by the end-to-end VM tests."""

from __future__ import annotations

import subprocess

import pytest


def _guest_qemus(pid: int) -> list[int]:
    # pgrep reads every command line itself, so a child that exits while it looks is simply not listed.
    out = subprocess.run(["pgrep", "-P", str(pid), "-f", "qemu-system.* -name llamas-"],
                         capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


@pytest.fixture
def guest_qemus():
    """`guest_qemus(pid)`: the guest QEMUs process `pid` started now (not the `qemu-system-x86_64 --version` probes)."""
    return _guest_qemus
