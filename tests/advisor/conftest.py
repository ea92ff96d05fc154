"""Fixtures for the advisor's tests: realistic states from the exam's scenarios, scripted endpoints."""

from __future__ import annotations

import pytest

from testbed import exam

from .scripted_server import MODEL


@pytest.fixture
def scenario():
    """A scenario of the hint exam by name: a topology, a state and notes."""
    return lambda name: exam.load_scenario(exam.SCENARIO_DIR / f"{name}.toml")


@pytest.fixture
def advisor_at(tmp_path):
    """An Advisor for a URL, with its answer cache in tmp_path."""
    from testbed.advisor import Advisor, AnswerCache
    from testbed.llm_client import Endpoint

    made = []

    def _make(url: str, timeout: float = 10.0, refresh: bool = False) -> Advisor:
        advisor = Advisor(Endpoint(url, MODEL, timeout=timeout), AnswerCache(tmp_path / "answers"), refresh)
        made.append(advisor)
        return advisor

    yield _make
    for advisor in made:
        advisor.close()
