"""The guest image: built from Debian packages with mmdebstrap, cached by recipe digest.

One cache entry holds a raw ext4 root filesystem, the kernel and a tiny
initramfs taken from it, an SSH key pair for the host to log in with, and the
guest's public host key, which the host pins.  Guests boot the root file
system with `snapshot=on`, so the cached image is never written to.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from . import initramfs

IMAGES_DIR = Path(__file__).resolve().parent.parent / "images"
RECIPE = IMAGES_DIR / "recipe.toml"
GUEST_FILES = IMAGES_DIR / "guest"
# The builder's own code is part of the recipe: a change to it changes the image.
BUILDER_SOURCES = (Path(__file__), Path(initramfs.__file__))


class ImageError(RuntimeError):
    """The image cannot be built or is damaged."""


@dataclass(frozen=True)
class GuestImage:
    """Paths and facts of one built image."""

    directory: Path
    digest: str
    kernel_version: str

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.cpio"

    @property
    def rootfs(self) -> Path:
        return self.directory / "rootfs.ext4"

    @property
    def client_key(self) -> Path:
        return self.directory / "id_ed25519"

    @property
    def host_key(self) -> str:
        """The guest's public host key, 'ssh-ed25519 AAAA...', pinned by the host."""
        return (self.directory / "ssh_host_ed25519_key.pub").read_text().split()[1]


def cache_root() -> Path:
    return Path(os.environ.get("LLAMAS_CACHE", Path.home() / ".cache" / "llamas-testbed"))


def recipe_digest() -> str:
    """Digest of everything that decides the image's content."""
    h = hashlib.sha256()
    paths = [RECIPE, *sorted(GUEST_FILES.iterdir()), *BUILDER_SOURCES]
    for path in paths:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def load_recipe() -> dict:
    return tomllib.loads(RECIPE.read_text())


def cached(digest: str | None = None) -> GuestImage | None:
    """The image for the current recipe if it is built, else None."""
    digest = digest or recipe_digest()
    directory = cache_root() / "images" / digest
    manifest = directory / "manifest.json"
    if not manifest.exists():
        return None
    facts = json.loads(manifest.read_text())
    return GuestImage(directory, digest, facts["kernel_version"])


def ensure(console: Console | None = None) -> GuestImage:
    """Return the cached image for the current recipe, building it first if needed."""
    image = cached()
    if image is None:
        image = build(console or Console(stderr=True))
    return image


def _run_with_status(argv: list[str], console: Console, what: str) -> None:
    """Run a long command, showing its latest output line as progress."""
    lines: list[str] = []
    with console.status(what) as status:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            lines.append(line.rstrip())
            status.update(f"{what}: {line.strip()[:100]}")
        if proc.wait() != 0:
            tail = "\n".join(lines[-30:])
            raise ImageError(f"{argv[0]} failed with status {proc.returncode}:\n{tail}")


def _require_build_tools() -> None:
    if os.geteuid() != 0:
        raise ImageError(
            "building the guest image needs root (mmdebstrap keeps file ownership, mkfs.ext4 -d copies it); "
            "run: sudo testbed image"
        )
    missing = [t for t in ("mmdebstrap", "mkfs.ext4", "cpio", "ssh-keygen") if shutil.which(t) is None]
    if missing:
        raise ImageError(f"missing tools {missing}; run: testbed host-setup (as root)")


def _customize(root: Path, out: Path) -> None:
    """Lean init, SSH keys and sshd settings: what makes the root a testbed guest."""
    shutil.copy2(GUEST_FILES / "llamas-init", root / "sbin" / "llamas-init")
    (root / "etc" / "hostname").write_text("llamas\n")
    (root / "etc" / "hosts").write_text("127.0.0.1 localhost\n127.0.1.1 llamas\n")
    for old in (root / "etc" / "ssh").glob("ssh_host_*"):
        old.unlink()
    host_key = root / "etc" / "ssh" / "ssh_host_ed25519_key"
    for key, comment in ((host_key, "llamas-guest"), (out / "id_ed25519", "llamas-host")):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)], check=True)
    shutil.copy2(host_key.with_suffix(".pub"), out / "ssh_host_ed25519_key.pub")
    ssh_dir = root / "root" / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    shutil.copy2(out / "id_ed25519.pub", ssh_dir / "authorized_keys")
    (root / "etc" / "ssh" / "sshd_config.d" / "llamas.conf").write_text(
        "HostKey /etc/ssh/ssh_host_ed25519_key\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UseDNS no\n"
    )


def _kernel_version(root: Path) -> str:
    versions = sorted(p.name for p in (root / "lib" / "modules").iterdir())
    if len(versions) != 1:
        raise ImageError(f"expected one kernel in the image, found {versions}")
    return versions[0]


def _make_ext4(root: Path, target: Path) -> None:
    used = int(subprocess.run(["du", "-sm", str(root)], capture_output=True, text=True, check=True).stdout.split()[0])
    size_mib = int(used * 1.3) + 512  # headroom for guest writes, which go to a snapshot anyway
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "llamas-root", "-d", str(root), str(target), f"{size_mib}M"],
                   check=True)


def build(console: Console) -> GuestImage:
    """Build the image for the current recipe into the cache (atomically)."""
    _require_build_tools()
    recipe, digest = load_recipe(), recipe_digest()
    images = cache_root() / "images"
    images.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(dir=images, prefix=f".{digest}-") as tmp:
        out, root = Path(tmp) / "image", Path(tmp) / "root"
        out.mkdir()
        mirror = os.environ.get("LLAMAS_MIRROR", recipe["mirror"])
        _run_with_status(
            ["mmdebstrap", f"--variant={recipe['variant']}", "--include=" + ",".join(recipe["packages"]),
             recipe["suite"], str(root), mirror],
            console, f"building guest image {digest} (Debian {recipe['suite']})",
        )
        kver = _kernel_version(root)
        shutil.copy2(root / "boot" / f"vmlinuz-{kver}", out / "vmlinuz")
        for debian_initrd in (root / "boot").glob("initrd.img-*"):
            debian_initrd.unlink()  # the tiny initramfs replaces it
        _customize(root, out)
        initramfs.build(root, kver, recipe["initramfs_modules"], GUEST_FILES / "initramfs-init", out / "initrd.cpio")
        packages = subprocess.run(["chroot", str(root), "dpkg-query", "-W", "-f", "${Package}=${Version}\n"],
                                  capture_output=True, text=True, check=True).stdout.split()
        with console.status("writing root filesystem"):
            _make_ext4(root, out / "rootfs.ext4")
        manifest = {"digest": digest, "suite": recipe["suite"], "kernel_version": kver, "mirror": mirror,
                    "packages": packages, "build_seconds": round(time.monotonic() - start, 1),
                    "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        final = images / digest
        if final.exists():
            shutil.rmtree(final)
        out.rename(final)
    console.print(f"guest image {digest} built in {manifest['build_seconds']} s: kernel {kver}, "
                  f"{len(packages)} packages")
    return GuestImage(final, digest, kver)
