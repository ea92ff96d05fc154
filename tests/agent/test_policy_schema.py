"""Placement policies three ways: the guest's hand-written checks, the host's pydantic models and the
published JSON Schema must accept and refuse the same documents; errors name the field and the value."""

from __future__ import annotations

import json

import jsonschema
import pytest
from llamas_agent import policy as guest
from llamas_agent.machine import gather_nodes
from llamas_agent.policy import check_machine, parse_policy
from llamas_agent.strict import SchemaError

from testbed import policy as host


def rules(*pairs) -> list[dict]:
    return [{"match": match, "nodes": nodes} for match, nodes in pairs]


GOOD = {
    "write-aware": {},
    "one catch-all rule, no keep-free": {"rules": rules(({}, [0])), "limits": {"bandwidth_mib_s": 1,
                                                                                "interval_s": 1}},
    "every match field": {"rules": rules(({"heat": "hot", "write": "read-mostly", "launch": "db.v1",
                                           "min_region_mib": 16}, [1, 0]))},
    "fractional interval": {"limits": {"bandwidth_mib_s": 8, "interval_s": 2.5}},
    "narrower rule after a broader one of another class": {
        "rules": rules(({"heat": "hot"}, [0]), ({"heat": "cold", "min_region_mib": 64}, [1]))},
    "a larger region after a smaller threshold is reachable when the earlier one is narrower":
        {"rules": rules(({"min_region_mib": 64, "write": "untouched"}, [1]), ({"min_region_mib": 8}, [1, 0]))},
}

# name -> (overrides, phrase the guest's error contains)
BAD = {
    "wrong schema": ({"schema": "placement-policy-v2"}, "schema must be 'placement-policy-v1'"),
    "unknown top field": ({"pids": [300]}, "unknown field(s) ['pids'] in the top-level object"),
    "no rules": ({"rules": []}, "rules must be a list of 1..32"),
    "too many rules": ({"rules": rules(*[({"min_region_mib": i}, [0]) for i in range(33, 0, -1)])},
                       "rules must be a list of 1..32"),
    "a rule naming a pid": ({"rules": [{"match": {"pid": 300}, "nodes": [0]}]},
                            "rules[0]: unknown field(s) ['pid'] in match"),
    "unknown heat": ({"rules": rules(({"heat": "scalding"}, [0]))}, "match.heat must be one of"),
    "unknown write class": ({"rules": rules(({"write": "often"}, [0]))}, "match.write must be one of"),
    "bad launch name": ({"rules": rules(({"launch": "a/b"}, [0]))}, "match.launch must be"),
    "no nodes": ({"rules": rules(({}, []))}, "rules[0]: nodes must be a list of 1..64"),
    "repeated node": ({"rules": rules(({}, [0, 0]))}, "nodes has duplicates"),
    "zero bandwidth": ({"limits": {"bandwidth_mib_s": 0, "interval_s": 2}},
                       "limits.bandwidth_mib_s must be an integer in 1..65536, got 0"),
    "huge bandwidth": ({"limits": {"bandwidth_mib_s": 1 << 20, "interval_s": 2}}, "limits.bandwidth_mib_s"),
    "zero interval": ({"limits": {"bandwidth_mib_s": 8, "interval_s": 0}}, "limits.interval_s must be a number"),
    "interval as bool": ({"limits": {"bandwidth_mib_s": 8, "interval_s": True}}, "limits.interval_s"),
    "huge keep-free": ({"limits": {"bandwidth_mib_s": 8, "interval_s": 2, "keep_free_mib": {"0": 1 << 21}}},
                       "limits.keep_free_mib[0] must be an integer"),
    "keep-free key not a node": ({"limits": {"bandwidth_mib_s": 8, "interval_s": 2, "keep_free_mib": {"x": 1}}},
                                 "limits.keep_free_mib key 'x' is not a node id"),
    "no limits": ({"limits": None}, "limits must be an object"),
    "unknown limit": ({"limits": {"bandwidth_mib_s": 8, "interval_s": 2, "burst": 1}}, "unknown field(s) ['burst']"),
    "rule after a catch-all": ({"rules": rules(({}, [0]), ({"write": "write-heavy"}, [1]))},
                               "rules[1] can never apply: rules[0]"),
    "the same class twice (contradictory)": (
        {"rules": rules(({"write": "read-mostly"}, [1]), ({"write": "read-mostly"}, [0]))},
        "rules[1] can never apply"),
    "a larger threshold after a smaller one": (
        {"rules": rules(({"min_region_mib": 8}, [1]), ({"min_region_mib": 64}, [0]))}, "rules[1] can never apply"),
}


@pytest.mark.parametrize("name", GOOD)
def test_good_policies_pass_guest_host_and_json_schema(name, policy):
    doc = policy(**GOOD[name])
    assert parse_policy(json.dumps(doc).encode()) == doc
    typed = host.PlacementPolicy.model_validate(doc)
    jsonschema.validate(doc, host.json_schema())
    # What the host writes, the guest reads back as the same rules and limits.
    back = parse_policy(typed.to_json().encode())
    assert back["rules"] == [{k: v for k, v in r.items()} for r in doc["rules"]]
    assert back["limits"]["bandwidth_mib_s"] == doc["limits"]["bandwidth_mib_s"]


@pytest.mark.parametrize("name", BAD)
def test_bad_policies_fail_guest_and_host_with_the_field(name, policy):
    overrides, phrase = BAD[name]
    doc = policy(**overrides)
    with pytest.raises(SchemaError) as guest_error:
        parse_policy(json.dumps(doc).encode())
    assert phrase in str(guest_error.value)
    with pytest.raises(host.PolicyError):
        host.parse(json.dumps(doc), "bad.json")
    if "can never apply" not in phrase:  # reachability is beyond JSON Schema; the description states it
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(doc, host.json_schema())


@pytest.mark.parametrize("raw, phrase", [
    (b'{"schema": "placement-policy-v1", "rules": [', "malformed JSON"),
    (b'{"schema": "placement-policy-v1", "schema": "placement-policy-v1"}',
     "duplicate key 'schema' in the top-level object"),
    (b'{"schema": "placement-policy-v1", "limits": {"interval_s": 1, "interval_s": 9}}',
     "duplicate key 'interval_s' in limits"),
    (b" " * (16 * 1024 + 1), "more than the 16384 allowed"),
])
def test_unreadable_policies_are_refused_by_guest_and_host_in_the_same_words(raw, phrase):
    with pytest.raises(SchemaError, match=phrase):
        parse_policy(raw)
    with pytest.raises(host.PolicyError, match=phrase):
        host.parse(raw, "p.json")


def test_the_host_names_the_file_the_field_and_the_value(tmp_path, policy):
    path = tmp_path / "slow.json"
    path.write_text(json.dumps(policy(limits={"bandwidth_mib_s": 0, "interval_s": 2})))
    with pytest.raises(host.PolicyError) as error:
        host.load(path)
    assert str(error.value).startswith(f"{path}: limits.bandwidth_mib_s: ") and "(got 0)" in str(error.value)
    with pytest.raises(host.PolicyError, match="no such policy file"):
        host.load(tmp_path / "absent.json")


def test_the_host_refuses_a_policy_for_nodes_the_machine_lacks(policy):
    typed = host.PlacementPolicy.model_validate(policy(rules=rules(({}, [2, 0]))))
    host.check_nodes(typed, {0, 1, 2})
    with pytest.raises(host.PolicyError, match=r"names node\(s\) \[2\] that the machine lacks"):
        host.check_nodes(typed, {0, 1}, "p.json")


@pytest.mark.parametrize("overrides, phrase", [
    ({"rules": rules(({}, [0, 7]))}, "rules[0].nodes: node 7 does not exist (nodes: [0, 1])"),
    ({"limits": {"bandwidth_mib_s": 8, "interval_s": 2, "keep_free_mib": {"3": 1}}},
     "limits.keep_free_mib[3]: node 3 does not exist"),
    ({"limits": {"bandwidth_mib_s": 8, "interval_s": 2, "keep_free_mib": {"1": 1024}}},
     "limits.keep_free_mib[1]: 1024 MiB is not less than node 1's 1024 MiB"),
])
def test_the_guest_refuses_a_policy_the_machine_cannot_hold(tree, policy, overrides, phrase):
    doc = policy(**overrides)
    with pytest.raises(SchemaError) as error:
        check_machine(doc, gather_nodes(tree))
    assert phrase in str(error.value)


def test_published_json_schema_states_the_guests_limits():
    schema = host.json_schema()
    assert schema["properties"]["schema"]["const"] == guest.SCHEMA == host.SCHEMA
    assert schema["properties"]["rules"]["maxItems"] == guest.MAX_RULES
    assert set(schema["properties"]) == guest.TOP_FIELDS
    assert set(schema["properties"]["limits"]["properties"]) == guest.LIMIT_FIELDS
    rule = schema["$defs"]["rule"]
    assert set(rule["properties"]) == guest.RULE_FIELDS
    assert tuple(rule["properties"]["match"]["properties"]) == guest.MATCH_FIELDS
    assert rule["properties"]["match"]["properties"]["heat"]["enum"] == list(guest.HEATS)
    assert rule["properties"]["match"]["properties"]["write"]["enum"] == list(guest.WRITES)
    interval = schema["properties"]["limits"]["properties"]["interval_s"]
    assert (interval["minimum"], interval["maximum"]) == guest.INTERVAL_S
    assert str(guest.MAX_POLICY_BYTES) in schema["description"] and guest.MAX_POLICY_BYTES == host.MAX_POLICY_BYTES
