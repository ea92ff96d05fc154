"""A hint document that names a key twice is refused, by the guest and by the host alike, with the key
and where it stands: parsers disagree on which value wins, so host and guest could read it two ways."""

from __future__ import annotations

import json

import pytest
from llamas_agent.apply import apply_document
from llamas_agent.cli import APPLY_DOCUMENT_REJECTED, main
from llamas_agent.hints import SchemaError, parse_document

from testbed import hints as host

MOVE = '{"kind": "migrate_pages", "pid": 300, "from_nodes": [0], "to_nodes": [1]}'
KNOB = '{"kind": "set_knob", "knob": "numa_balancing", "value": 1}'

# document text -> what the refusal names
REPEATED = {
    f'{{"schema_version": 1, "hints": [], "hints": [{MOVE}]}}': "duplicate key 'hints' in the top-level object",
    f'{{"schema_version": 1, "schema_version": 1, "hints": [{MOVE}]}}':
        "duplicate key 'schema_version' in the top-level object",
    f'{{"schema_version": 1, "hints": [{KNOB}, {MOVE[:-1]}, "pid": 1}}]}}': "duplicate key 'pid' in hints[1]",
    '{"schema_version": 1, "hints": [{"kind": "set_policy", "launch": "x", "mode": "weighted_interleave", '
    '"nodes": [0, 1], "weights": {"0": 3, "1": 1, "0": 9}}]}': "duplicate key '0' in hints[0].weights",
}


@pytest.mark.parametrize("text", REPEATED)
def test_guest_and_host_refuse_a_repeated_key_in_the_same_words(text):
    phrase = REPEATED[text]
    with pytest.raises(SchemaError) as guest_error:
        parse_document(text.encode())
    with pytest.raises(host.DuplicateKey) as host_error:
        host.HintDocument.from_json(text)
    assert str(guest_error.value) == str(host_error.value)
    assert str(guest_error.value).startswith(phrase + ": each key may appear once")


def test_the_same_key_in_different_objects_is_no_duplicate():
    text = f'{{"schema_version": 1, "hints": [{MOVE}, {KNOB}], "source": "a"}}'
    assert parse_document(text.encode()) == json.loads(text)
    assert host.HintDocument.from_json(text) == host.HintDocument.model_validate(json.loads(text))


def test_the_first_repeat_in_document_order_is_named():
    text = '{"a": {"x": 1, "x": 2}, "b": [{"y": 1, "y": 2}], "a": 3}'
    with pytest.raises(host.DuplicateKey, match="duplicate key 'a' in the top-level object"):
        host.loads_unique(text)
    with pytest.raises(host.DuplicateKey, match=r"duplicate key 'y' in b\[0\]"):
        host.loads_unique('{"a": {"x": 1}, "b": [{"y": 1, "y": 2}], "c": {"z": 1, "z": 2}}')


def test_deep_nesting_is_walked_without_recursion():
    deep = '{"k": ' * 900 + '{"d": 1, "d": 2}' + "}" * 900
    with pytest.raises(host.DuplicateKey, match="duplicate key 'd' in k.k.k"):
        host.loads_unique(deep)
    with pytest.raises(SchemaError, match="duplicate key 'd' in k.k.k"):
        parse_document(deep.encode())


def test_apply_refuses_the_document_whole_changes_nothing_and_logs_it(guest_root, tree, records, tmp_path, capsys):
    text = next(iter(REPEATED)).encode()
    before = sorted((p, p.read_bytes()) for p in guest_root.rglob("*") if p.is_file())
    result = apply_document(text, tree, records, agent_pids=[999])
    assert not result["accepted"] and result["results"] == []
    assert result["error"].startswith("duplicate key 'hints' in the top-level object")
    with open(records.audit_path) as f:
        (entry,) = [json.loads(line) for line in f]
    assert entry["status"] == "rejected_document" and "duplicate key 'hints'" in entry["reason"]
    (tmp_path / "hints.json").write_bytes(text)
    status = main(["--root", str(guest_root), "--log-dir", str(tmp_path / "log"), "--state-dir",
                   str(tmp_path / "state"), "apply", str(tmp_path / "hints.json")])
    assert status == APPLY_DOCUMENT_REJECTED and "duplicate key 'hints'" in json.loads(capsys.readouterr().out)["error"]
    assert sorted((p, p.read_bytes()) for p in guest_root.rglob("*") if p.is_file()) == before
