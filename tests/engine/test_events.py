"""The event contract: the hand-written validator agrees with the shipped JSON Schema."""

import jsonschema
import numpy as np
import orjson
import pytest

from regretflow.engine.config import parse_config
from regretflow.engine.events import REASONS, BadEvent, EventDecoder, schema

CONFIG = parse_config({
    "models": {
        "m": {"learner": "ridge", "features": ["a", "b"],
              "groups": [{"name": "sex", "field": "sex", "values": ["f", "m"]}, {"name": "age", "field": "age", "edges": [0, 30, 60]}]},
    }
})

GOOD = [
    {"id": "1", "model": "m", "kind": "observe", "features": [1, 2.5], "label": 3},
    {"id": "2", "model": "m", "kind": "observe", "features": {"b": 2, "a": 1}, "label": -1.5, "attributes": {"sex": "f", "age": 31}},
    {"id": "3", "model": "m", "kind": "predict", "features": [0, 0], "key": "shard-7", "ts": 1700000000.5},
    {"id": "4", "model": "m", "kind": "feedback", "ref": "3", "label": 1.0},
    {"id": "5", "model": "m", "kind": "feedback", "ref": "9", "reward": 0.5},
    {"id": "6", "model": "m", "kind": "audit", "ref": "9", "violations": [[0, 1]]},
    {"id": "6b", "model": "m", "kind": "audit", "ref": "9", "violations": [[0, 1, 1]], "panel_size": 2, "auditors": ["ann", "bo"]},
    {"id": "7", "model": "m", "kind": "decide", "actions": [[1, 0], [0, 1]], "expected_rewards": [0.1, 0.2]},
]

# (event, reason): each violates the schema or a model-specific rule
BAD = [
    ([1, 2], "not_object"),
    ({"model": "m", "kind": "observe", "features": [1, 2], "label": 1}, "missing_field"),
    ({"id": "x", "model": "m", "kind": "observe", "features": [1, 2]}, "missing_field"),
    ({"id": "x", "model": "m", "kind": "observe", "features": [1, 2], "label": 1, "colour": "red"}, "unknown_field"),
    ({"id": 5, "model": "m", "kind": "observe", "features": [1, 2], "label": 1}, "bad_field"),
    ({"id": "x", "model": "m", "kind": "teleport", "features": [1, 2], "label": 1}, "unknown_kind"),
    ({"id": "x", "model": "m", "kind": "observe", "features": [1, "2"], "label": 1}, "wrong_type"),
    ({"id": "x", "model": "m", "kind": "observe", "features": [1, True], "label": 1}, "wrong_type"),
    ({"id": "x", "model": "m", "kind": "observe", "features": "1,2", "label": 1}, "bad_field"),
    ({"id": "x", "model": "m", "kind": "feedback", "ref": "y"}, "missing_field"),
    ({"id": "x", "model": "m", "kind": "feedback", "ref": "y", "reward": "high"}, "bad_field"),
    ({"id": "x", "model": "m", "kind": "audit", "ref": "y", "violations": [[0]]}, "bad_field"),
    ({"id": "x", "model": "m", "kind": "audit", "ref": "y", "violations": [[0, 1, 0]], "auditors": ["ann", "ann"]}, "bad_field"),
    ({"id": "x", "model": "m", "kind": "audit", "ref": "y", "violations": [[0, 1, 0]], "auditors": [""]}, "bad_field"),
    ({"id": "x", "model": "m", "kind": "audit", "ref": "y", "violations": [[0, 1, 0]], "auditors": "ann"}, "bad_field"),
    ({"id": "x", "model": "m", "kind": "audit", "ref": "y", "violations": [[0, 1, 0]], "auditors": [["ann"]]}, "bad_field"),
    ({"id": "x", "model": "m", "kind": "audit", "ref": "y", "violations": [[0, 1, 0]], "auditors": [{"a": 1}]}, "bad_field"),
    ({"id": "x", "model": "m", "kind": "audit", "ref": "y", "violations": [[0, 1, 0]], "auditors": [1]}, "bad_field"),
    ({"id": "x", "model": "m", "kind": "audit", "ref": "y", "violations": [[0, 1, 0]], "auditors": ["a\x00"]}, "bad_field"),
    ({"id": "x", "model": "m", "kind": "audit", "ref": "y", "violations": [[0, 1, 0]], "auditors": ["_other_"]}, "bad_field"),
    ({"id": "x", "model": "m", "kind": "audit", "ref": "y", "violations": [[0, 1, 0]], "auditors": [f"a{i}" for i in range(65)]},
     "bad_field"),
    ({"id": "x", "model": "m", "kind": "observe", "features": [1, 2], "label": 1, "ts": "noon"}, "bad_field"),
]

# valid for the schema, rejected by the model-specific rules
MODEL_BAD = [
    ({"id": "x", "model": "nope", "kind": "observe", "features": [1, 2], "label": 1}, "unknown_model"),
    ({"id": "x", "model": "m", "kind": "observe", "features": [1], "label": 1}, "missing_features"),
    ({"id": "x", "model": "m", "kind": "observe", "features": [1, 2, 3], "label": 1}, "extra_features"),
    ({"id": "x", "model": "m", "kind": "observe", "features": {"a": 1}, "label": 1}, "missing_features"),
    ({"id": "x", "model": "m", "kind": "observe", "features": {"a": 1, "b": 2, "c": 3}, "label": 1}, "extra_features"),
    ({"id": "x", "model": "m", "kind": "observe", "features": [1, 2], "label": "cat"}, "bad_label"),
    ({"id": "x", "model": "m", "kind": "decide", "actions": [[1, 0], [1]]}, "bad_actions"),
    ({"id": "x", "model": "m", "kind": "audit", "ref": "y", "violations": [[0, 1, 2]], "auditors": ["ann", "bo"]}, "bad_field"),
    ({"id": "x", "model": "m", "kind": "audit", "ref": "y", "violations": [[0, 1, 0]], "panel_size": 3, "auditors": ["ann", "bo"]}, "bad_field"),
    ({"id": "x", "model": "m", "kind": "audit", "ref": "y", "violations": [[0, 1]], "auditors": ["ann"]}, "bad_field"),
    ({"id": "x", "model": "m", "kind": "feedback", "ref": "y", "reward": 1.0, "auditors": ["ann"]}, "unknown_field"),
]


@pytest.fixture(scope="module")
def validator():
    return jsonschema.Draft202012Validator(schema())


@pytest.mark.parametrize("event", GOOD)
def test_good_events_pass_schema_and_decoder(event, validator):
    validator.validate(event)
    EventDecoder(CONFIG).decode(orjson.dumps(event))


@pytest.mark.parametrize("event,reason", BAD)
def test_bad_events_fail_schema_and_decoder_with_reason(event, reason, validator):
    assert not validator.is_valid(event)
    with pytest.raises(BadEvent) as info:
        EventDecoder(CONFIG).decode(orjson.dumps(event))
    assert info.value.reason == reason


@pytest.mark.parametrize("event,reason", MODEL_BAD)
def test_model_rules_apply_after_schema(event, reason, validator):
    assert validator.is_valid(event)
    with pytest.raises(BadEvent) as info:
        EventDecoder(CONFIG).decode(orjson.dumps(event))
    assert info.value.reason == reason


@pytest.mark.parametrize("payload,reason", [
    (b'{"id": "x", "model": "m", "kind": "observe", "features": [NaN, 1], "label": 1}', "non_finite"),
    (b'{"id": "x", "model": "m", "kind": "observe", "features": [1, 1], "label": Infinity}', "non_finite"),
    (b'{"id": "x", "model": "m", "kind": "observe", "features": [1e999, 1], "label": 1}', "non_finite"),
    (b'{"id": "x", "model": "m", "kind": "obs', "not_json"),
    (b"\xff\xfe\x00", "not_json"),
    (b"", "not_json"),
    (b"x" * 70_000, "oversized"),
])
def test_undecodable_payloads_are_classified(payload, reason):
    with pytest.raises(BadEvent) as info:
        EventDecoder(CONFIG).decode(payload)
    assert info.value.reason == reason


def test_named_and_dense_features_give_the_same_row():
    dec = EventDecoder(CONFIG)
    a = dec.decode(b'{"id": "1", "model": "m", "kind": "predict", "features": [1, 2]}')
    b = dec.decode(b'{"id": "1", "model": "m", "kind": "predict", "features": {"b": 2, "a": 1}}')
    assert a.x.tolist() == b.x.tolist() == [1.0, 2.0]


def test_groups_come_from_declared_values_and_bins_only():
    dec = EventDecoder(CONFIG)
    ev = dec.decode(b'{"id": "1", "model": "m", "kind": "predict", "features": [1, 2], "attributes": {"sex": "m", "age": 30}}')
    # columns: sex=f, sex=m, age=[0,30), age=[30,60]
    assert ev.groups.tolist() == [False, True, False, True]
    ev = dec.decode(b'{"id": "1", "model": "m", "kind": "predict", "features": [1, 2], "attributes": {"sex": "x", "age": 99}}')
    assert ev.groups.tolist() == [False, False, False, False]


def test_every_reason_is_documented_in_readme():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [r for r in REASONS if f"`{r}`" not in readme]
    assert not missing, f"README does not document dead-letter reasons {missing}"
