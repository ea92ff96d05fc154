"""Fixtures of the guest agent's unit tests; the agent's package goes on sys.path (it is not installed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from .fixture_tree import AGENT_DIR, build_tree

sys.path.insert(0, str(AGENT_DIR))


@pytest.fixture
def guest_root(tmp_path: Path) -> Path:
    """A fresh fixture tree per test (apply tests write its knob files)."""
    return build_tree(tmp_path / "root")


@pytest.fixture
def tree(guest_root):
    from llamas_agent.sysfs import Tree

    return Tree(str(guest_root))


@pytest.fixture
def records(tmp_path: Path):
    from llamas_agent.audit import Records

    return Records(str(tmp_path / "log"), str(tmp_path / "state"))


@pytest.fixture
def policy():
    """`policy(**overrides)`: a valid placement-policy-v1 document (a write-aware one for the fixture's two nodes)."""

    def _policy(**overrides) -> dict:
        doc = {
            "schema": "placement-policy-v1",
            "name": "write-aware",
            "limits": {"keep_free_mib": {"0": 64}, "bandwidth_mib_s": 64, "interval_s": 2},
            "rules": [
                {"id": "writes-to-dram", "match": {"write": "write-heavy"}, "nodes": [0]},
                {"id": "reads-to-slow", "match": {"write": "read-mostly"}, "nodes": [1, 0]},
            ],
        }
        doc.update(overrides)
        return doc

    return _policy


@pytest.fixture
def admin(guest_root):
    """A DAMON sysfs tree (no kdamond running) whose kdamond 0 lists two tried regions of pid 300."""
    from llamas_agent.damon import ADMIN

    base = guest_root / ADMIN
    base.mkdir(parents=True)
    (base / "nr_kdamonds").write_text("0\n")
    # The kernel makes these directories when nr_kdamonds, nr_contexts, ... are written.
    ctx = base / "0/contexts/0"
    for sub in ("monitoring_attrs/intervals", "monitoring_attrs/nr_regions", "targets/0", "schemes/0/access_pattern/sz",
                "schemes/0/access_pattern/nr_accesses", "schemes/0/access_pattern/age"):
        (ctx / sub).mkdir(parents=True)
    # What the kernel would list after update_schemes_tried_regions: two regions of pid 300.
    tried = base / "0/contexts/0/schemes/0/tried_regions"
    for name, (start, end, hits, age) in {"0": (0x1000, 0x5000, 2, 7), "1": (0x5000, 0x9000, 15, 1)}.items():
        (tried / name).mkdir(parents=True)
        for field, value in (("start", start), ("end", end), ("nr_accesses", hits), ("age", age)):
            (tried / name / field).write_text(f"{value}\n")
    return base
