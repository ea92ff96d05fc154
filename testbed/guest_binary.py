"""Guest programs: C sources built static on the host (the guest has no compiler), cached by digest;
scripts (any other file) copied as they are.

The cache key covers the source, the flags and the compiler's version, so
a change to any of them rebuilds; the build is atomic, so concurrent users
never see half a binary.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from .image import cache_root
from .ssh import GuestShell

CFLAGS = ("-static", "-O2", "-Wall")
LIBS = ("-lm",)


class GuestBinaryError(RuntimeError):
    """A guest program cannot be built."""


def _compiler() -> str:
    cc = shutil.which(os.environ.get("CC", "gcc"))
    if cc is None:
        raise GuestBinaryError("no C compiler: install gcc (and libc6-dev for static libc) to build guest programs")
    return cc


def digest(source: Path, cc: str | None = None) -> str:
    """Digest of the source, the flags and the compiler version."""
    cc = cc or _compiler()
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False).stdout.splitlines()[:1]
    h = hashlib.sha256(Path(source).read_bytes())
    h.update(" ".join([*CFLAGS, *LIBS, *version]).encode())
    return h.hexdigest()[:16]


def build(source: Path) -> Path:
    """Path of the static binary built from `source`, compiling it on first use."""
    source = Path(source)
    cc = _compiler()
    target = cache_root() / "bin" / f"{source.stem}-{digest(source, cc)}"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    result = subprocess.run([cc, *CFLAGS, "-o", str(tmp), str(source), *LIBS], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise GuestBinaryError(f"compiling {source} failed:\n{result.stderr.strip()}")
    tmp.replace(target)
    return target


def install(shell: GuestShell, source: Path, remote: str) -> str:
    """Build `source` (a .c file; anything else is a script, copied as is) and copy it to `remote` in the
    guest, executable; return `remote`.

    The copy is renamed into place, so a copy of the program still running keeps its old file.
    """
    tmp = f"{remote}.new"
    source = Path(source)
    shell.put(build(source) if source.suffix == ".c" else source, tmp)
    shell.run(f"chmod 755 {tmp} && mv -f {tmp} {remote}")
    return remote
