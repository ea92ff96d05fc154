"""Compile the latency plugin on first use, cached by source digest, and check QEMU loads it.

Debian ships no qemu-plugin.h; plugin.c declares the API it uses.  The check
loads the freshly built plugin into a machine-less QEMU once per (QEMU
binary, plugin digest), so an old QEMU or one built without plugins fails
here with a clear message rather than in the middle of a boot.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..image import cache_root

SOURCE = Path(__file__).resolve().parent / "plugin.c"
CFLAGS = ("-O2", "-g", "-Wall", "-Werror", "-fPIC", "-shared", "-fvisibility=hidden", "-pthread")
# The plugin declares API 2 (QEMU 10 accepts 2..4) and calls what QEMU 9.0 and 9.1 added: per-vCPU
# scoreboards and conditional callbacks (pacing), and qemu_plugin_insn_data's copying form (phase marks).
MIN_QEMU = (9, 1)


class PluginError(RuntimeError):
    """The plugin cannot be built, or this QEMU cannot load it."""


def source_digest() -> str:
    """Digest of the C source and the flags: a change to either rebuilds."""
    h = hashlib.sha256(SOURCE.read_bytes())
    h.update(" ".join(CFLAGS).encode())
    return h.hexdigest()[:16]


def qemu_version(qemu: str = "qemu-system-x86_64") -> tuple[int, int, int]:
    """QEMU's version as a tuple, from `--version`."""
    try:
        text = subprocess.run([qemu, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise PluginError(f"cannot run {qemu} --version: {exc}") from None
    match = re.search(r"version (\d+)\.(\d+)\.(\d+)", text)
    if not match:
        raise PluginError(f"cannot read a version from {qemu} --version: {text.strip()!r}")
    return tuple(int(g) for g in match.groups())


def _compile(target: Path) -> None:
    cc = shutil.which(os.environ.get("CC", "gcc"))
    if cc is None:
        raise PluginError("no C compiler: install gcc to build the latency plugin")
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    result = subprocess.run([cc, *CFLAGS, "-o", str(tmp), str(SOURCE)], check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise PluginError(f"compiling {SOURCE} failed:\n{result.stderr}")
    tmp.replace(target)  # atomic: a concurrent user never sees half a library


def check_loads(library: Path, qemu: str = "qemu-system-x86_64") -> None:
    """Load the plugin into a machine-less QEMU and quit over QMP; raise if QEMU refuses it."""
    version = qemu_version(qemu)
    if version[:2] < MIN_QEMU:
        raise PluginError(f"{qemu} is QEMU {'.'.join(map(str, version))}; the latency plugin needs "
                          f"QEMU {'.'.join(map(str, MIN_QEMU))} or newer")
    with tempfile.TemporaryDirectory() as tmp:
        argv = [qemu, "-machine", "none", "-nodefaults", "-display", "none", "-accel", "tcg,thread=single",
                "-plugin", f"{library},sock={tmp}/check.sock", "-qmp", "stdio"]
        qmp = '{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n'
        try:
            result = subprocess.run(argv, input=qmp, check=False, capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            raise PluginError(f"QEMU did not quit while checking the plugin: {' '.join(argv)}") from None
    if result.returncode != 0:
        raise PluginError(f"QEMU {'.'.join(map(str, version))} cannot load the latency plugin "
                          f"(built with TCG plugin support? API 2 accepted?):\n{result.stderr.strip()}")


def ensure(qemu: str = "qemu-system-x86_64") -> Path:
    """Path of the built plugin, compiling and load-checking it on first use."""
    directory = cache_root() / "latency" / "plugin"
    directory.mkdir(parents=True, exist_ok=True)
    library = directory / f"libllamas-latency-{source_digest()}.so"
    checked = library.with_suffix(".checked")
    if not library.exists():
        _compile(library)
    stamp = f"{shutil.which(qemu)} {'.'.join(map(str, qemu_version(qemu)))}"
    if not checked.exists() or checked.read_text() != stamp:
        check_loads(library, qemu)
        checked.write_text(stamp)
    return library
