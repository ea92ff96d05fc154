"""manifest.json: everything an evaluation's figures depend on, and the way back to re-run it.

Written next to the results: the matrix text itself, the testbed's commit,
QEMU, kernel and image, digests of every topology, workload and rules policy, the latency
plugin's parameters and calibration, the LLM exchanges (model, prompt and
answer digests), the seeds and the host.  `rerun_matrix()` rebuilds the
matrix from the stored text (not from a file that may have changed since);
`drift()` lists what differs on this checkout and host, so a re-run says
what it cannot reproduce.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .. import topology as _topology
from ..files import write_atomic
from ..image import GuestImage
from ..latency import build as _plugin_build
from . import datafile
from . import matrix as _matrix

SCHEMA_VERSION = 2  # 2: hosts
READS = (1, 2)  # a version 1 manifest lacks only `hosts`
NAME = "manifest.json"
REPO = Path(__file__).resolve().parent.parent.parent


class ManifestError(ValueError):
    """A manifest that cannot be read or re-run."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MatrixRecord(_Model):
    name: str
    origin: str
    text: str
    digest: str


class LlmExchange(_Model):
    """One question to the advisor and its answer, by digest (answers are replayed from the cache)."""

    topology: str
    workload: str
    repeat: int
    model: str
    prompt_digest: str
    answer_digest: str
    cached: bool = False


class Manifest(_Model):
    schema_version: int = SCHEMA_VERSION
    created_at: str
    command: list[str]
    matrix: MatrixRecord
    testbed_commit: str
    testbed_dirty: bool
    qemu_version: str
    kernel_version: str = ""
    image_digest: str = ""
    topologies: dict[str, str] = Field(description="name -> sha256 of the topology file")
    workloads: dict[str, str] = Field(description="name -> digest of the workload file and program source")
    rules: dict[str, str] = Field(default_factory=dict, description="rules:NAME policy -> sha256 of its file")
    plugin: dict[str, Any] = Field(default_factory=dict, description="parameters and calibration per topology")
    llm_endpoint: str = ""
    llm: list[LlmExchange] = Field(default_factory=list)
    answers_dir: str | None = Field(default=None, description="copies of the answers, relative to the manifest")
    seeds: list[int]
    host: dict[str, Any] = Field(description="the host that ran the command (the driver, on a cluster)")
    hosts: dict[str, dict[str, Any]] = Field(default_factory=dict, description="on a cluster, per host that "
                                             "ran runs: its facts, testbed commit, QEMU, and its plugin "
                                             "record per topology (calibration, trim, k); `plugin` then "
                                             "holds the first host's, per topology")


# ---- facts ----------------------------------------------------------------


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""


def host_facts() -> dict[str, Any]:
    """The host the figures were measured on."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {"hostname": socket.gethostname(), "cpu_model": model, "cpus": os.cpu_count(),
            "memory_mib": pages >> 20, "kernel": platform.release(), "python": sys.version.split()[0],
            "platform": platform.platform()}


def collect(matrix: _matrix.Matrix, image: GuestImage | None, command: list[str],
            qemu: str = "qemu-system-x86_64") -> Manifest:
    """The manifest of `matrix` as far as the host knows it before any boot; the runner adds plugin and llm."""
    return Manifest(
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        command=list(command),
        matrix=MatrixRecord(name=matrix.name, origin=matrix.origin, text=matrix.text,
                            digest=matrix.digest),
        testbed_commit=_git("rev-parse", "HEAD").strip(),
        testbed_dirty=bool(_git("status", "--porcelain", "--untracked-files=no").strip()),
        qemu_version=".".join(map(str, _plugin_build.qemu_version(qemu))),
        kernel_version=image.kernel_version if image else "",
        image_digest=image.digest if image else "",
        topologies={t: _topology.digest(_topology.resolve(t)) for t in matrix.topologies},
        workloads={w.name: matrix.workload(w.name).digest() for w in matrix.workloads},
        rules={name: hashlib.sha256(_matrix.rules_file(name).read_bytes()).hexdigest() for name in matrix.rules()},
        seeds=[matrix.seed_of(r) for r in range(matrix.repeats)],
        host=host_facts(),
    )


# ---- files ----------------------------------------------------------------


def write(path: Path, manifest: Manifest) -> Path:
    """Write `manifest` to `path` (a file, or a directory to hold manifest.json)."""
    path = Path(path)
    if path.is_dir():
        path = path / NAME
    return write_atomic(path, manifest.model_dump_json(indent=2) + "\n")


def read(path: Path) -> Manifest:
    """Read and validate a manifest; errors name the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such manifest") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not valid JSON: {exc}") from None
    try:
        manifest = datafile.validate(path, Manifest, data)
    except datafile.DataFileError as exc:
        raise ManifestError(str(exc)) from None
    if manifest.schema_version not in READS:
        raise ManifestError(f"{path}: schema_version {manifest.schema_version}, this testbed reads {READS}")
    return manifest


def rerun_matrix(manifest: Manifest, origin: Path) -> _matrix.Matrix:
    """The matrix exactly as it was run, from the text stored in the manifest at `origin`."""
    return _matrix.from_text(manifest.matrix.text, origin, name=manifest.matrix.name)


def drift(manifest: Manifest, now: Manifest) -> list[str]:
    """What differs between the recorded run and a fresh `collect()` here: each item names the field."""
    out = []
    for field in ("testbed_commit", "qemu_version", "kernel_version", "image_digest"):
        was, is_ = getattr(manifest, field), getattr(now, field)
        if was != is_:
            out.append(f"{field}: recorded {was!r}, now {is_!r}")
    for kind in ("topologies", "workloads", "rules"):
        was, is_ = getattr(manifest, kind), getattr(now, kind)
        for name in sorted(was):
            if was[name] != is_.get(name):
                out.append(f"{kind}.{name}: the file changed since the recorded run")
    return out

