"""Choosing the accelerator: KVM when it really works, TCG otherwise.

/dev/kvm existing is not enough: nested KVM on some hosts fails at the first
VEX instruction of the kernel's decompressor.  So the probe boots the guest
kernel under KVM and waits for it to print its banner.  The answer is cached
per QEMU binary, kernel and host kernel.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import selectors
import subprocess
import time
from pathlib import Path

from .image import cache_root
from .process import check_stop, start_child

PROBE_TIMEOUT_S = 20.0


def _probe_key(qemu: str, kernel: Path) -> str:
    version = subprocess.run([qemu, "--version"], capture_output=True, text=True,
                             check=False).stdout.splitlines()[0]
    facts = f"probe-v2|{version}|{kernel.stat().st_size}|{kernel.stat().st_mtime_ns}|{platform.release()}"
    return hashlib.sha256(facts.encode()).hexdigest()[:16]


def _boots_under_kvm(qemu: str, kernel: Path) -> tuple[bool, str]:
    argv = [qemu, "-accel", "kvm", "-cpu", "host", "-m", "256M", "-nodefaults", "-display", "none",
            "-no-reboot", "-serial", "stdio", "-kernel", str(kernel), "-append", "console=ttyS0 panic=-1"]
    proc = start_child(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = b""
    try:
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        while time.monotonic() < deadline and b"Linux version" not in seen:
            if selector.select(timeout=0.5):
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                seen += chunk
        ok = b"Linux version" in seen
        return ok, "the kernel booted under KVM" if ok else _failure_reason(seen.decode(errors="replace"))
    finally:
        proc.kill()
        proc.wait()
        check_stop()  # a probe cut short by Ctrl-C says nothing about KVM: never cache it


def _failure_reason(output: str) -> str:
    """QEMU's one-line complaint (e.g. 'KVM internal error', 'emulation failure'), not the register dump."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if "error" in line.lower() or "failure" in line.lower() or "assertion" in line.lower():
            return line[:200]
    return lines[-1][:200] if lines else "no output"


def kvm_works(qemu: str, kernel: Path) -> tuple[bool, str]:
    """(works, why), from the cache or a probe boot."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is missing or not accessible"
    cache = cache_root() / "kvm-probe.json"
    key = _probe_key(qemu, kernel)
    known = json.loads(cache.read_text()) if cache.exists() else {}
    if key not in known:
        ok, why = _boots_under_kvm(qemu, kernel)
        known[key] = {"ok": ok, "why": why}
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(known, indent=2))
    return known[key]["ok"], known[key]["why"]


def choose(requested: str, qemu: str, kernel: Path) -> tuple[str, str]:
    """Resolve 'auto', 'kvm' or 'tcg' to ('kvm'|'tcg', reason)."""
    if requested == "tcg":
        return "tcg", "TCG requested"
    ok, why = kvm_works(qemu, kernel)
    if requested == "kvm" and not ok:
        raise RuntimeError(f"KVM requested but it does not work here: {why}")
    return ("kvm", why) if ok else ("tcg", f"KVM unusable: {why}")
