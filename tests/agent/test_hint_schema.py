"""The hint schema three ways: the guest's hand-written checks, the host's pydantic models and the
published JSON Schema must accept and refuse the same documents."""

from __future__ import annotations

import json

import pytest
from llamas_agent import hints as guest
from llamas_agent.hints import SchemaError, parse_document
from pydantic import ValidationError

from testbed import hints as host

MIGRATE = {"kind": "migrate_pages", "pid": 300, "from_nodes": [0], "to_nodes": [1]}


def doc(*hints, **top) -> dict:
    return {"schema_version": 1, "hints": list(hints), **top}


GOOD = {
    "empty": doc(),
    "migrate with id, reason and source": doc({**MIGRATE, "id": "a", "reason": "cold"}, source="advisor"),
    "move_range": doc({"kind": "move_range", "pid": 300, "start": 0x7F3A00000000, "length": 1 << 30, "to_node": 1}),
    "launch policy": doc({"kind": "set_policy", "launch": "bench.v1", "mode": "bind", "nodes": [1]}),
    "pid policy (shape ok, the guest refuses it later)": doc({"kind": "set_policy", "pid": 300,
                                                               "mode": "preferred", "nodes": [0]}),
    "weighted interleave": doc({"kind": "set_policy", "launch": "x", "mode": "weighted_interleave",
                                "nodes": [0, 1], "weights": {"0": 3, "1": 1}}),
    "numa balancing": doc({"kind": "set_knob", "knob": "numa_balancing", "value": 2}),
    "demotion": doc({"kind": "set_knob", "knob": "demotion_enabled", "value": True}),
    "thp": doc({"kind": "set_knob", "knob": "thp_enabled", "value": "never"}),
    "weights knob": doc({"kind": "set_knob", "knob": "weighted_interleave", "value": {"1": 255}}),
    "affinity": doc({"kind": "set_affinity", "pid": 300, "cpus": [0, 1]}),
    "nice and class": doc({"kind": "set_sched", "pid": 300, "nice": 19, "policy": "batch"}),
    "nice only": doc({"kind": "set_sched", "pid": 300, "nice": -5}),
}

# name -> (document, phrase the guest's reason contains)
BAD = {
    "wrong version": (doc(MIGRATE) | {"schema_version": 2}, "schema_version must be 1, got 2"),
    "version as string": (doc() | {"schema_version": "1"}, "schema_version must be 1"),
    "no hints": ({"schema_version": 1}, "hints must be a list"),
    "unknown top field": (doc(extra=1), "unknown top-level field(s): ['extra']"),
    "unknown kind": (doc({"kind": "format_disk", "pid": 300}), "hints[0]: kind must be one of"),
    "missing field": (doc({"kind": "migrate_pages", "pid": 300, "from_nodes": [0]}), "missing field(s) ['to_nodes']"),
    "extra field": (doc({**MIGRATE, "force": True}), "unknown field(s) ['force']"),
    "pid 0": (doc({**MIGRATE, "pid": 0}), "pid must be an integer in 1..4194304"),
    "pid as bool": (doc({**MIGRATE, "pid": True}), "pid must be an integer"),
    "pid as float": (doc({**MIGRATE, "pid": 300.0}), "pid must be an integer"),
    "empty node list": (doc({**MIGRATE, "to_nodes": []}), "to_nodes must be a list of 1..64"),
    "duplicate nodes": (doc({**MIGRATE, "from_nodes": [0, 0]}), "from_nodes has duplicates"),
    "node too big": (doc({**MIGRATE, "to_nodes": [1024]}), "to_nodes entry must be an integer in 0..1023"),
    "range too long": (doc({"kind": "move_range", "pid": 300, "start": 0, "length": (1 << 30) + 1, "to_node": 1}),
                       "length must be an integer in 1..1073741824"),
    "policy with two targets": (doc({"kind": "set_policy", "pid": 300, "launch": "x", "mode": "bind", "nodes": [1]}),
                                "exactly one target"),
    "bad launch name": (doc({"kind": "set_policy", "launch": "a/../b", "mode": "bind", "nodes": [1]}), "launch must"),
    "weights without weighted mode": (doc({"kind": "set_policy", "launch": "x", "mode": "bind", "nodes": [1],
                                           "weights": {"1": 2}}), "weights only go with"),
    "weight zero": (doc({"kind": "set_knob", "knob": "weighted_interleave", "value": {"1": 0}}), "weights[1]"),
    "weight key not a node": (doc({"kind": "set_knob", "knob": "weighted_interleave", "value": {"01": 1}}),
                              "is not a node id"),
    "unknown knob": (doc({"kind": "set_knob", "knob": "swappiness", "value": 1}), "knob must be one of"),
    "numa balancing 9": (doc({"kind": "set_knob", "knob": "numa_balancing", "value": 9}), "numa_balancing value"),
    "demotion as string": (doc({"kind": "set_knob", "knob": "demotion_enabled", "value": "yes"}), "true or false"),
    "thp garbage": (doc({"kind": "set_knob", "knob": "thp_enabled", "value": "sometimes"}), "thp_enabled value"),
    "no cpus": (doc({"kind": "set_affinity", "pid": 300, "cpus": []}), "cpus must be a list"),
    "sched without change": (doc({"kind": "set_sched", "pid": 300}), "needs nice, policy or both"),
    "nice out of range": (doc({"kind": "set_sched", "pid": 300, "nice": 20}), "nice must be an integer in -20..19"),
    "real-time class": (doc({"kind": "set_sched", "pid": 300, "policy": "fifo"}), "policy must be one of"),
    "too many hints": (doc(*[MIGRATE] * 65), "65 hints, more than the 64 allowed"),
    "long reason": (doc({**MIGRATE, "reason": "x" * 1001}), "reason must be a string of at most 1000"),
    "not an object": ([MIGRATE], "document must be a JSON object"),
}


@pytest.mark.parametrize("name", GOOD)
def test_good_documents_pass_guest_and_host(name):
    raw = json.dumps(GOOD[name]).encode()
    assert parse_document(raw) == GOOD[name]
    host_doc = host.HintDocument.model_validate(GOOD[name])
    # What the host writes, the guest reads back unchanged.
    assert parse_document(host_doc.to_json().encode()) == GOOD[name]


@pytest.mark.parametrize("name", BAD)
def test_bad_documents_fail_guest_and_host_with_a_reason(name):
    document, phrase = BAD[name]
    with pytest.raises(SchemaError) as guest_error:
        parse_document(json.dumps(document).encode())
    assert phrase in str(guest_error.value)
    with pytest.raises(ValidationError):
        host.HintDocument.model_validate(document)


@pytest.mark.parametrize("raw, phrase", [
    (b'{"schema_version": 1, "hints": [', "malformed JSON"),
    (b"\xff\xfe not utf-8", "malformed JSON"),
    (b"[" * 100_000, "more than the 65536 allowed"),
    (b"[" * 30_000 + b"]" * 30_000, "nested too deeply"),
    (json.dumps(doc(source="x" * 70_000)).encode(), "more than the 65536 allowed"),
])
def test_unparseable_documents_are_refused_not_crashed_on(raw, phrase):
    with pytest.raises(SchemaError, match=phrase):
        parse_document(raw)


def test_published_json_schema_states_the_same_limits():
    schema = host.json_schema()
    defs = schema["$defs"]
    assert schema["properties"]["schema_version"]["const"] == guest.HINTS_SCHEMA_VERSION == host.SCHEMA_VERSION
    assert schema["properties"]["hints"]["maxItems"] == guest.MAX_HINTS
    assert schema["properties"]["hints"]["items"]["properties"]["kind"]["enum"] == list(guest.KINDS)
    for kind, (required, optional) in guest.FIELDS.items():
        fields = set(defs[kind]["properties"])
        assert fields == required | optional | guest.COMMON, kind
        assert set(defs[kind]["required"]) == required | {"kind"}, kind
    assert defs["set_knob"]["properties"]["knob"]["enum"] == list(guest.KNOB_NAMES)
    assert defs["move_range"]["properties"]["length"]["maximum"] == guest.MAX_RANGE_BYTES == host.MAX_RANGE_BYTES
    assert defs["set_policy"]["properties"]["mode"]["enum"] == list(guest.POLICY_MODES)
    assert guest.MAX_DOCUMENT_BYTES == host.MAX_DOCUMENT_BYTES
    assert str(guest.MAX_DOCUMENT_BYTES) in schema["description"]
