"""A tiny initramfs: busybox, a dozen lines of /init, and the few modules needed to mount root.

Debian's initramfs (~37 MB with udev) takes seconds to unpack and run under
TCG.  This one holds only what `images/recipe.toml` names plus their
dependencies, decompressed (busybox's insmod cannot read .ko.xz).
"""

from __future__ import annotations

import lzma
import shutil
import subprocess
import tempfile
from pathlib import Path


def module_index(modules_dir: Path) -> dict[str, tuple[str, list[str]]]:
    """Parse modules.dep into {name: (relative path, [dependency paths])}."""
    index = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        path, _, deps = line.partition(":")
        index[_module_name(path)] = (path, deps.split())
    return index


def _module_name(path: str) -> str:
    return Path(path).name.split(".ko")[0].replace("-", "_")


def load_order(index: dict[str, tuple[str, list[str]]], wanted: list[str]) -> list[str]:
    """Module paths in an order where every module follows its dependencies."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name not in index:
            raise KeyError(f"module {name!r} is not in modules.dep (built in, or misspelt?)")
        path, deps = index[name]
        for dep in deps:
            if dep not in order:
                visit(_module_name(dep))
        if path not in order:
            order.append(path)

    for name in wanted:
        visit(name.replace("-", "_"))
    return order


def _copy_module(src: Path, dst_dir: Path) -> str:
    name = src.name.split(".ko")[0] + ".ko"
    data = src.read_bytes()
    if src.suffix == ".xz":
        data = lzma.decompress(data)
    (dst_dir / name).write_bytes(data)
    return name


def build(root: Path, kernel_version: str, modules: list[str], init_script: Path, out: Path) -> None:
    """Write an uncompressed newc cpio to `out` for the kernel in `root`."""
    modules_dir = root / "lib" / "modules" / kernel_version
    order = load_order(module_index(modules_dir), modules)
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp)
        for d in ("bin", "dev", "proc", "sys", "newroot", "lib/modules"):
            (stage / d).mkdir(parents=True)
        shutil.copy2(root / "usr" / "bin" / "busybox", stage / "bin" / "busybox")
        shutil.copy2(init_script, stage / "init")
        names = [_copy_module(modules_dir / rel, stage / "lib" / "modules") for rel in order]
        (stage / "modules.order").write_text("".join(f"{n}\n" for n in names))
        files = subprocess.run(["find", ".", "-print0"], cwd=stage, capture_output=True, check=True).stdout
        with out.open("wb") as sink:
            subprocess.run(["cpio", "--null", "-o", "-H", "newc", "-R", "0:0", "--quiet"],
                           cwd=stage, input=files, stdout=sink, check=True)
