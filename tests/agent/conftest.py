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
