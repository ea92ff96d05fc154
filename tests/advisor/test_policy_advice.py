"""`testbed advise TOPO --policy`: the model writes a standing placement policy from the machine's description
and facts alone; it is checked against the machine, repaired once, cached, and printed or given as JSON."""

from __future__ import annotations

import json

import pytest

from testbed import cli, policy_advice
from testbed.launcher import load_topology

from .scripted_server import MODEL, ScriptedServer, reply

WRITE_AWARE = {
    "schema": "placement-policy-v1",
    "name": "write-aware",
    "description": "NVM writes slowly: written memory stays in DRAM.",
    "limits": {"keep_free_mib": {"0": 64}, "bandwidth_mib_s": 64, "interval_s": 5},
    "rules": [{"id": "writes-to-dram", "match": {"write": "write-heavy"}, "nodes": [0]},
              {"id": "reads-to-nvm", "match": {"write": "read-mostly"}, "nodes": [1, 0]}],
}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMAS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def advise(server: ScriptedServer, *extra: str) -> int:
    return cli.main(["advise", "dram-nvm", "--policy", "--endpoint", server.url, "--model", MODEL, *extra])


def test_the_policy_comes_from_the_description_and_is_replayed_from_the_cache(cache, capsys):
    with ScriptedServer([reply(WRITE_AWARE)]) as server:
        assert advise(server, "--json") == 0
        (request,) = server.completions()
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == MODEL and out["cached"] is False and out["repaired"] is False
    assert out["policy"] == WRITE_AWARE
    user = request["messages"][-1]["content"]
    topo = load_topology("dram-nvm")
    assert topo.description.strip()[:80] in user and "node 1: nvm" in user
    assert "pid" not in user and "<guest-data>" not in user  # no live state
    # The second call is answered from the cache: the scripted server has no step left and is gone.
    assert advise(server, "--json") == 0
    again = json.loads(capsys.readouterr().out)
    assert again["cached"] is True and again["policy"] == WRITE_AWARE
    assert again["prompt_digest"] == out["prompt_digest"]


def test_the_schema_offers_only_the_machines_nodes(load_topology):
    schema = policy_advice.response_schema(load_topology("dram-nvm"))
    assert schema["$defs"]["rule"]["properties"]["nodes"]["items"] == {"enum": [0, 1]}
    assert schema["properties"]["limits"]["properties"]["keep_free_mib"]["propertyNames"] == {"enum": ["0", "1"]}


def test_a_policy_for_a_missing_node_goes_back_to_the_model_once(cache, capsys):
    wrong = {**WRITE_AWARE, "rules": [{"match": {"write": "write-heavy"}, "nodes": [0, 7]}]}
    with ScriptedServer([reply(wrong), reply(WRITE_AWARE)]) as server:
        assert advise(server, "--json") == 0
        repair = server.completions()[1]["messages"][-1]["content"]
    assert "names node(s) [7] that the machine lacks" in repair
    out = json.loads(capsys.readouterr().out)
    assert out["repaired"] is True and out["policy"] == WRITE_AWARE


@pytest.mark.parametrize("answer, phrase", [
    ({**WRITE_AWARE, "limits": {"bandwidth_mib_s": 0, "interval_s": 5}}, "limits.bandwidth_mib_s"),
    ({**WRITE_AWARE, "rules": [{"match": {}, "nodes": [1]}, {"match": {"write": "write-heavy"}, "nodes": [0]}]},
     "rules[1] can never apply"),
    ('{"schema": "placement-policy-v1", "schema": "placement-policy-v1"}', "duplicate key 'schema'"),
    ("not json", "malformed JSON"),
])
def test_a_policy_that_stays_wrong_is_a_clear_error(cache, capsys, answer, phrase):
    with ScriptedServer([reply(answer), reply(answer)]) as server:
        assert advise(server) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "gave no valid answer after one repair round" in err and phrase in err


def test_the_policy_is_printed_for_people(cache, capsys):
    with ScriptedServer([reply(WRITE_AWARE)]) as server:
        assert advise(server) == 0
    out = capsys.readouterr().out
    assert f"model {MODEL} (from the model)" in out
    assert '- rule writes-to-dram: {"write": "write-heavy"} -> nodes [0]' in out
    assert "- limits: keep free {'0': 64} MiB, 64 MiB/s, every 5 s" in out
    assert json.loads(out.strip().splitlines()[-1]) == WRITE_AWARE  # the document, ready for enforce


def test_state_and_policy_are_one_or_the_other(capsys):
    with pytest.raises(SystemExit):
        cli.main(["advise", "dram-nvm", "--policy", "--state", "x.json"])
    with pytest.raises(SystemExit):
        cli.main(["advise", "dram-nvm"])


def test_the_schema_leaves_out_the_bounds_a_grammar_would_unroll(load_topology):
    text = json.dumps(policy_advice.response_schema(load_topology("dram-nvm")))
    assert '"maxLength"' not in text and '"maximum"' not in text and '"pattern"' not in text
    assert '"placement-policy-v1"' in text and '"write-heavy"' in text
