"""The VM benchmarks' start-up: the host checked, the guest image built or found, the accelerator chosen and said."""

from __future__ import annotations

from rich.console import Console

from testbed import accel as accel_mod
from testbed import host, image


def start(console: Console, requested: str, detail: str | None = None) -> tuple[image.GuestImage, str]:
    """(image, accelerator) for `--accel requested`, after one line `accelerator: ACCEL (WHY); DETAIL`
    (DETAIL: the image's digest and kernel unless given)."""
    host.ensure()
    img = image.ensure(console)
    accel, why = accel_mod.choose(requested, host.QEMU, img.kernel)
    detail = f"image {img.digest}, kernel {img.kernel_version}" if detail is None else detail
    console.print(f"accelerator: {accel} ({why}); {detail}")
    return img, accel
