"""Shared fixtures for the testbed's unit tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from testbed import topology as _topology
from testbed.qemu_argv import BootSpec


@pytest.fixture
def load_topology():
    """Load a shipped topology by name: `load_topology('dram-cxl')`."""

    def _load(name: str) -> _topology.Topology:
        return _topology.load(_topology.resolve(name))

    return _load


@pytest.fixture
def write_topology(tmp_path: Path):
    """Write TOML text to `<tmp>/<name>.toml` and return the path (the name defaults to the stem)."""

    def _write(text: str, name: str = "broken") -> Path:
        path = tmp_path / f"{name}.toml"
        path.write_text(text)
        return path

    return _write


@pytest.fixture
def boot_spec(tmp_path: Path):
    """Factory for a BootSpec whose files all live under tmp_path; keyword arguments override."""

    def _spec(**overrides) -> BootSpec:
        fields = {
            "kernel": tmp_path / "bzImage",
            "initrd": tmp_path / "initramfs.cpio.gz",
            "rootfs": tmp_path / "rootfs.img",
            "ssh_port": 10022,
            "qmp_socket": tmp_path / "qmp.sock",
            "serial_log": tmp_path / "serial.log",
            "accel": "tcg",
            "name": "unit-test",
        }
        fields.update(overrides)
        return BootSpec(**fields)

    return _spec


# ---- VM fixtures: a real image, a real QEMU ------------------------------


@pytest.fixture(scope="session")
def guest_image():
    """The cached guest image (built on first use; `nox -s tests` builds it up front)."""
    from rich.console import Console

    from testbed import host, image

    host.ensure()
    return image.ensure(Console(stderr=True))


@pytest.fixture(scope="session")
def accel(guest_image) -> str:
    """'kvm' where it really works, else 'tcg'."""
    from testbed import accel as _accel
    from testbed import host

    return _accel.choose("auto", host.QEMU, guest_image.kernel)[0]


@pytest.fixture(scope="module")
def booted_vm(request, guest_image, accel):
    """Factory for module-scoped guests: `vm = booted_vm('dram-cxl')`; all shut down after the module."""
    from testbed.vm import VM

    vms = []

    def _boot(name: str, **kwargs) -> VM:
        vm = VM(_topology.load(_topology.resolve(name)), guest_image, accel, **kwargs)
        vms.append(vm)
        vm.__enter__()
        return vm

    yield _boot
    for vm in vms:
        vm.shutdown()


@pytest.fixture(scope="module")
def run_eval(tmp_path_factory, guest_image):
    """A function: `testbed eval MATRIX` as a real command into a fresh folder; returns (folder, stdout)."""
    def run(name: str, timeout: float) -> tuple[Path, str]:
        out = tmp_path_factory.mktemp("eval") / name
        done = subprocess.run([sys.executable, "-m", "testbed.cli", "eval", name, "--out", str(out)],
                              capture_output=True, text=True, timeout=timeout, check=False)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return out, done.stdout
    return run
