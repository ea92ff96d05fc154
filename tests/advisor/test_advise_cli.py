"""`testbed advise`: prints hints or one JSON object, touching no VM; bad input is a clear error."""

from __future__ import annotations

import json

import pytest

from testbed import cli

from .scripted_server import MODEL, ScriptedServer, reply

MOVE = {"kind": "migrate_pages", "pid": 412, "reason": "write-heavy data off slow-writing NVM",
        "from_nodes": [1], "to_nodes": [0]}


@pytest.fixture
def state_file(scenario, tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMAS_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "state.json"
    path.write_text(scenario("nvm-01-write-heavy-spilled").state.model_dump_json())
    return path


def test_advise_json(state_file, capsys):
    with ScriptedServer([reply({"hints": [MOVE]})]) as server:
        rc = cli.main(["advise", "dram-nvm", "--state", str(state_file), "--endpoint", server.url,
                       "--model", MODEL, "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == MODEL and out["cached"] is False and out["hints"] == [MOVE]
    assert len(out["prompt_digest"]) == 64
    # Second run: replayed from the cache under LLAMAS_CACHE, with no server at all.
    assert cli.main(["advise", "dram-nvm", "--state", str(state_file), "--endpoint", server.url,
                     "--model", MODEL, "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["cached"] is True and again["hints"] == [MOVE] and again["prompt_digest"] == out["prompt_digest"]


def test_advise_prints_hints_with_reasons(state_file, capsys, monkeypatch):
    monkeypatch.delenv("LLAMAS_MODEL", raising=False)
    with ScriptedServer([reply({"hints": [MOVE]})]) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        assert cli.main(["advise", "dram-nvm", "--state", str(state_file)]) == 0
    out = capsys.readouterr().out
    assert f"model {MODEL} (from the model)" in out
    assert '- migrate_pages {"pid": 412, "from_nodes": [1], "to_nodes": [0]}' in out
    assert "because: write-heavy data off slow-writing NVM" in out


def test_bad_state_file_names_the_file(tmp_path, capsys):
    bad = tmp_path / "state.json"
    bad.write_text('{"schema_version": 1, "nodes": []}')
    assert cli.main(["advise", "dram-nvm", "--state", str(bad), "--endpoint", "http://127.0.0.1:9/v1"]) == 2
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert str(bad) in err and "does not fit the schema" in err
    missing = tmp_path / "missing.json"
    assert cli.main(["advise", "dram-nvm", "--state", str(missing), "--endpoint", "http://127.0.0.1:9/v1"]) == 2
    assert f"{missing}: cannot read the state" in " ".join(capsys.readouterr().err.split())


def test_unreachable_endpoint_is_a_clear_error(state_file, capsys):
    assert cli.main(["advise", "dram-nvm", "--state", str(state_file), "--endpoint", "http://127.0.0.1:9/v1",
                     "--model", "m", "--timeout", "5"]) == 2
    assert "cannot reach http://127.0.0.1:9/v1" in " ".join(capsys.readouterr().err.split())
