"""What the host needs, checked and (as root on Debian) installed.

QEMU 10 comes from bookworm-backports (Debian 12 ships 7.2, without the CXL
type-3 volatile memory and plugin API the testbed relies on).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

MIN_QEMU = (10, 0)
QEMU = "qemu-system-x86_64"
# tool -> Debian package
TOOLS = {
    "mmdebstrap": "mmdebstrap",
    "mkfs.ext4": "e2fsprogs",
    "cpio": "cpio",
    "ssh-keygen": "openssh-client",
    "ssh": "openssh-client",
    "gcc": "gcc",
    # the redis workload's adapter is tested against the real server and load generator on the host
    "redis-server": "redis-server",
    "redis-benchmark": "redis-tools",
}
BACKPORTS_SOURCE = Path("/etc/apt/sources.list.d/llamas-backports.sources")
BACKPORTS = """Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


class HostError(RuntimeError):
    """The host lacks something; the message gives the command that fixes it."""


def qemu_version(qemu: str = QEMU) -> tuple[int, int] | None:
    if shutil.which(qemu) is None:
        return None
    out = subprocess.run([qemu, "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"version (\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _debian_codename() -> str | None:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return None
    match = re.search(r"^VERSION_CODENAME=(\w+)", text, re.MULTILINE)
    return match.group(1) if match else None


def missing() -> tuple[list[str], bool]:
    """(Debian packages to install, whether QEMU must come from backports)."""
    packages = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    version = qemu_version()
    return packages, version is None or version < MIN_QEMU


def install_commands(packages: list[str], need_qemu: bool) -> list[list[str]]:
    commands = [["apt-get", "update"]]
    if need_qemu:
        backports = [] if _debian_codename() != "bookworm" else ["-t", "bookworm-backports"]
        commands.append(["apt-get", "install", "-y", *backports, "qemu-system-x86", "qemu-utils"])
    if packages:
        commands.append(["apt-get", "install", "-y", *packages])
    return commands


def ensure(install: bool = True) -> None:
    """Install what is missing when root on Debian; otherwise raise with the exact commands."""
    packages, need_qemu = missing()
    if not packages and not need_qemu:
        return
    if not install or os.geteuid() != 0 or shutil.which("apt-get") is None:
        steps = install_commands(packages, need_qemu)
        if need_qemu and _debian_codename() == "bookworm":
            steps.insert(0, ["echo", "'deb http://deb.debian.org/debian bookworm-backports main'", "|",
                             "sudo", "tee", "/etc/apt/sources.list.d/llamas-backports.list"])
        text = "\n".join("  " + ("" if step[0] == "echo" else "sudo ") + " ".join(step) for step in steps)
        raise HostError(f"the host lacks {packages + (['QEMU >= 10.0'] if need_qemu else [])}; run:\n{text}")
    if need_qemu and _debian_codename() == "bookworm" and not _has_backports():
        BACKPORTS_SOURCE.write_text(BACKPORTS)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in install_commands(packages, need_qemu):
        subprocess.run(step, check=True, env=env)
    packages, need_qemu = missing()
    if packages or need_qemu:
        raise HostError(f"still missing after installing: {packages}, QEMU >= 10.0: {need_qemu}")


def _has_backports() -> bool:
    sources = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
    return any("bookworm-backports" in p.read_text(errors="replace") for p in sources if p.is_file())
