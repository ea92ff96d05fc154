"""From a topology name to a booted, prepared guest: host check, image, accelerator, VM."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from . import accel, host, image
from .topology import Topology, load, resolve
from .vm import VM

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BootOptions:
    accel: str = "auto"          # auto | kvm | tcg
    kernel: Path | None = None   # boot this kernel instead of the image's
    initrd: Path | None = None
    append: str = ""
    boot_timeout: float = 180.0


def load_topology(name: str) -> Topology:
    """Load and validate before anything starts: a bad file never reaches QEMU."""
    return load(resolve(name))


@contextmanager
def booted(topology: Topology, options: BootOptions, console: Console) -> Iterator[VM]:
    """A guest of `topology`, ready over SSH with its CXL nodes online; gone on exit."""
    host.ensure()
    img = image.ensure(console)
    log.info("host and image %s ready; choosing the accelerator", img.digest[:16])
    chosen, why = accel.choose(options.accel, host.QEMU, options.kernel or img.kernel)
    console.print(f"[dim]booting {topology.name} under {chosen.upper()} ({why})[/dim]")
    vm = VM(topology, img, chosen, kernel=options.kernel, initrd=options.initrd, append=options.append,
            boot_timeout=options.boot_timeout)
    with vm:
        console.print(f"[dim]{topology.name}: SSH ready after {vm.boot_seconds:.1f} s[/dim]")
        yield vm
