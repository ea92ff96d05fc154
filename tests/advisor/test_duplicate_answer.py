"""A model answer that names a key twice is an invalid answer: the model is told which key, once."""

from __future__ import annotations

import json

import pytest

from testbed import advice_schema
from testbed.advice_schema import AnswerInvalid
from testbed.llm_client import ChatClient, Endpoint, LLMAnswerError, ask_structured

from .scripted_server import MODEL, ScriptedServer, reply

MOVE = {"kind": "migrate_pages", "pid": 412, "reason": "kvstore writes often", "from_nodes": [1], "to_nodes": [0]}
TWICE = '{"hints": [], "hints": [' + json.dumps(MOVE) + "]}"
TWICE_IN_HINT = '{"hints": [' + json.dumps(MOVE)[:-1] + ', "pid": 300}]}'


def ask(server: ScriptedServer, schema: dict):
    client = ChatClient(Endpoint(server.url, MODEL, timeout=10.0))
    return ask_structured(client, MODEL, [{"role": "user", "content": "state"}], schema, {"temperature": 0.0},
                          advice_schema.parse_answer)


def test_parse_answer_names_the_repeated_key():
    with pytest.raises(AnswerInvalid, match="ambiguous: duplicate key 'hints' in the top-level object"):
        advice_schema.parse_answer(TWICE)
    with pytest.raises(AnswerInvalid, match=r"duplicate key 'pid' in hints\[0\]"):
        advice_schema.parse_answer(TWICE_IN_HINT)


def test_a_repeated_key_goes_back_to_the_model_once(scenario):
    schema = advice_schema.response_schema(scenario("nvm-01-write-heavy-spilled").state)
    with ScriptedServer([reply(TWICE), reply({"hints": [MOVE]})]) as server:
        answer = ask(server, schema)
    assert answer.repaired and [h.pid for h in answer.value] == [412]
    assert "duplicate key 'hints' in the top-level object" in server.completions()[1]["messages"][-1]["content"]
    with ScriptedServer([reply(TWICE_IN_HINT), reply(TWICE_IN_HINT)]) as server, \
            pytest.raises(LLMAnswerError, match=r"after repair: the answer is ambiguous: duplicate key 'pid'"):
        ask(server, schema)


def test_a_cached_answer_with_a_repeated_key_is_asked_again(scenario, advisor_at, tmp_path):
    s = scenario("nvm-01-write-heavy-spilled")
    with ScriptedServer([reply({"hints": [MOVE]}), reply({"hints": [MOVE]})]) as server:
        advisor_at(server.url).advise(s.topology, s.state, s.notes)
        path = next((tmp_path / "answers").rglob("*.json"))
        entry = json.loads(path.read_text())
        path.write_text(json.dumps({**entry, "text": TWICE}))  # as an older, laxer version stored it
        advice = advisor_at(server.url).advise(s.topology, s.state, s.notes)
    assert not advice.cached and [h.pid for h in advice.hints] == [412] and len(server.completions()) == 2
