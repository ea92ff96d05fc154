"""The chat client against a real HTTP server on 127.0.0.1 that answers from a script."""

from __future__ import annotations

import time

import pytest

from testbed import advice_schema
from testbed.llm_client import (
    ChatClient,
    Endpoint,
    LLMAnswerError,
    LLMServerError,
    LLMTimeout,
    LLMUnavailable,
    ask_structured,
)

from .scripted_server import MODEL, ScriptedServer, Step, reply

GOOD = {"hints": [{"kind": "migrate_pages", "pid": 412, "reason": "kvstore is write-heavy",
                   "from_nodes": [1], "to_nodes": [0]}]}
MESSAGES = [{"role": "system", "content": "answer JSON"}, {"role": "user", "content": "state"}]
PARAMS = {"temperature": 0.0, "max_tokens": 256}


@pytest.fixture
def schema(scenario):
    return advice_schema.response_schema(scenario("nvm-01-write-heavy-spilled").state)


def ask(server: ScriptedServer, schema: dict, timeout: float = 10.0):
    client = ChatClient(Endpoint(server.url, MODEL, timeout=timeout))
    return ask_structured(client, MODEL, MESSAGES, schema, PARAMS, advice_schema.parse_answer)


def test_valid_answer_is_parsed_and_the_schema_is_sent(schema):
    with ScriptedServer([reply(GOOD)]) as server:
        answer = ask(server, schema)
    assert not answer.repaired and answer.mode == "json_schema"
    assert [h.pid for h in answer.value] == [412] and answer.value[0].reason == "kvstore is write-heavy"
    sent = server.completions()[0]
    assert sent["response_format"]["json_schema"]["schema"] == schema
    assert sent["model"] == MODEL and sent["temperature"] == 0.0


def test_server_that_rejects_json_schema_gets_llama_form_and_keeps_it(schema):
    with ScriptedServer([reply(GOOD), reply(GOOD)], reject_json_schema=True) as server:
        client = ChatClient(Endpoint(server.url, MODEL))
        first = ask_structured(client, MODEL, MESSAGES, schema, PARAMS, advice_schema.parse_answer)
        second = ask_structured(client, MODEL, MESSAGES, schema, PARAMS, advice_schema.parse_answer)
    assert first.mode == second.mode == "llama_json_object"
    formats = [r["response_format"] for r in server.completions()]
    # One refused json_schema request, then the llama.cpp form with the schema, twice.
    assert [f["type"] for f in formats] == ["json_schema", "json_object", "json_object"]
    assert formats[1]["schema"] == schema


def test_broken_json_is_repaired_once(schema):
    with ScriptedServer([reply('{"hints": [{"kind": "migrate_pages", "pid": 412'), reply(GOOD)]) as server:
        answer = ask(server, schema)
    assert answer.repaired and [h.pid for h in answer.value] == [412]
    repair = server.completions()[1]["messages"]
    assert repair[-2] == {"role": "assistant", "content": '{"hints": [{"kind": "migrate_pages", "pid": 412'}
    assert "not valid JSON" in repair[-1]["content"]


def test_schema_violation_is_shown_to_the_model(schema):
    bad = {"hints": [{"kind": "migrate_pages", "pid": 412, "reason": "x", "from_nodes": [1], "to_nodes": "zero"}]}
    with ScriptedServer([reply(bad), reply(GOOD)]) as server:
        answer = ask(server, schema)
    assert answer.repaired
    repair = server.completions()[1]["messages"][-1]["content"]
    assert "hints[0] does not fit the hint schema: migrate_pages.to_nodes" in repair


def test_missing_reason_is_a_schema_violation(schema):
    no_reason = {"hints": [{"kind": "migrate_pages", "pid": 412, "from_nodes": [1], "to_nodes": [0]}]}
    with (ScriptedServer([reply(no_reason), reply(no_reason)]) as server,
          pytest.raises(LLMAnswerError, match='no "reason"')):
        ask(server, schema)
    assert len(server.completions()) == 2


def test_still_invalid_after_repair_is_a_clear_error(schema):
    with (ScriptedServer([reply("I think you should move it."), reply('{"hints": 3}')]) as server,
          pytest.raises(LLMAnswerError) as caught):
        ask(server, schema)
    message = str(caught.value)
    assert "after one repair round" in message
    assert "not valid JSON" in message and 'list under "hints"' in message


def test_answer_cut_at_max_tokens_is_repaired(schema):
    cut = Step('{"hints": [{"kind": "migrate_pages", "pid": 412, "reason": "a', finish_reason="length")
    with ScriptedServer([cut, reply(GOOD)]) as server:
        answer = ask(server, schema)
    assert answer.repaired
    assert "cut off at the token limit" in server.completions()[1]["messages"][-1]["content"]


def test_timeout_is_a_clear_error_not_a_hang(schema):
    with ScriptedServer([Step(delay=30.0)]) as server:
        started = time.monotonic()
        with pytest.raises(LLMTimeout, match="did not answer within 0.5 s"):
            ask(server, schema, timeout=0.5)
        elapsed = time.monotonic() - started
    assert elapsed < 10, "the client retried or waited far past its timeout"
    assert len(server.completions()) == 1


def test_server_error_500_is_a_clear_error(schema):
    crash = Step("model crashed", status=500)
    with (ScriptedServer([crash, crash, crash]) as server,
          pytest.raises(LLMServerError) as caught):
        ask(server, schema)
    assert caught.value.status == 500
    assert "HTTP 500" in str(caught.value) and "model crashed" in str(caught.value)
    # Each response form was tried once; the client's own retries are off.
    assert len(server.completions()) == 3


def test_auth_error_is_not_retried_in_other_forms(schema):
    with (ScriptedServer([Step("bad key", status=401)]) as server,
          pytest.raises(LLMServerError, match="HTTP 401")):
        ask(server, schema)
    assert len(server.completions()) == 1


def test_nothing_listening_is_unavailable(schema):
    with ScriptedServer([]) as server:
        url = server.url
    with pytest.raises(LLMUnavailable, match="cannot reach"):
        ChatClient(Endpoint(url, MODEL, timeout=2)).complete(MESSAGES, schema, PARAMS, MODEL)


def test_model_comes_from_the_server_when_not_named():
    with ScriptedServer([]) as server:
        assert ChatClient(Endpoint(server.url)).model() == MODEL


def test_endpoint_from_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("LLAMAS_MODEL", "m")
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    assert Endpoint.resolve() == Endpoint("http://127.0.0.1:9/v1", "m", "k", 120.0)
    assert Endpoint.resolve("http://127.0.0.1:8/v1", "n").model == "n"
    monkeypatch.delenv("OPENAI_BASE_URL")
    assert Endpoint.resolve() is None


def test_system_turn_folded_for_templates_that_drop_it(schema):
    with ScriptedServer([reply(GOOD)]) as server:
        client = ChatClient(Endpoint(server.url, MODEL, fold_system=True))
        ask_structured(client, MODEL, MESSAGES, schema, PARAMS, advice_schema.parse_answer)
    sent = server.completions()[0]["messages"]
    assert sent == [{"role": "user", "content": "answer JSON\n\nstate"}]
