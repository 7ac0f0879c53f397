"""The event contract: the hand-written validator agrees with the shipped JSON Schema."""

import json

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regretflow.engine.config import parse_config
from regretflow.engine.runtime.dead_letters import REASONS, BadEvent
from regretflow.engine.runtime.events import EventDecoder, schema
from regretflow.engine.tasks import model_tasks

CONFIG = parse_config(
    {
        "models": {
            "m": {
                "learner": "ridge",
                "features": ["a", "b"],
                "groups": [{"name": "sex", "field": "sex", "values": ["f", "m"]}, {"name": "age", "field": "age", "edges": [0, 30, 60]}],
            },
        }
    }
)

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
    (
        {"id": "x", "model": "m", "kind": "audit", "ref": "y", "violations": [[0, 1, 0]], "auditors": [f"a{i}" for i in range(65)]},
        "bad_field",
    ),
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
    (
        {"id": "x", "model": "m", "kind": "audit", "ref": "y", "violations": [[0, 1, 0]], "panel_size": 3, "auditors": ["ann", "bo"]},
        "bad_field",
    ),
    ({"id": "x", "model": "m", "kind": "audit", "ref": "y", "violations": [[0, 1]], "auditors": ["ann"]}, "bad_field"),
    ({"id": "x", "model": "m", "kind": "feedback", "ref": "y", "reward": 1.0, "auditors": ["ann"]}, "unknown_field"),
    # runtime.max_abs_value (1e12 by default) bounds every number the learners and regret sums take
    ({"id": "x", "model": "m", "kind": "observe", "features": [1e155, 2], "label": 1}, "out_of_range"),
    ({"id": "x", "model": "m", "kind": "observe", "features": {"a": 1, "b": -2e12}, "label": 1}, "out_of_range"),
    ({"id": "x", "model": "m", "kind": "observe", "features": [1, 18446744073709551615], "label": 1}, "out_of_range"),
    ({"id": "x", "model": "m", "kind": "observe", "features": [1, 2], "label": 1.5e12}, "out_of_range"),
    ({"id": "x", "model": "m", "kind": "feedback", "ref": "y", "reward": -1e300}, "out_of_range"),
    ({"id": "x", "model": "m", "kind": "feedback", "ref": "y", "label": 1e13}, "out_of_range"),
    ({"id": "x", "model": "m", "kind": "decide", "actions": [[1, 0], [0, 1e13]]}, "out_of_range"),
    ({"id": "x", "model": "m", "kind": "decide", "actions": [[1, 0], [0, 1]], "expected_rewards": [0.1, 1e13]}, "out_of_range"),
    # indices past int64 would overflow the decoder's arrays
    ({"id": "x", "model": "m", "kind": "audit", "ref": "y", "violations": [[0, 18446744073709551615]]}, "bad_field"),
    ({"id": "x", "model": "m", "kind": "audit", "ref": "y", "violations": [[0, 1, 0]], "panel_size": 2**63}, "bad_field"),
]


@pytest.fixture(scope="module")
def validator():
    return jsonschema.Draft202012Validator(schema())


@pytest.mark.parametrize("event", GOOD)
def test_good_events_pass_schema_and_decoder(event, validator):
    validator.validate(event)
    EventDecoder(CONFIG, model_tasks(CONFIG)).decode(orjson.dumps(event))


@pytest.mark.parametrize("event,reason", BAD)
def test_bad_events_fail_schema_and_decoder_with_reason(event, reason, validator):
    assert not validator.is_valid(event)
    with pytest.raises(BadEvent) as info:
        EventDecoder(CONFIG, model_tasks(CONFIG)).decode(orjson.dumps(event))
    assert info.value.reason == reason


@pytest.mark.parametrize("event,reason", MODEL_BAD)
def test_model_rules_apply_after_schema(event, reason, validator):
    assert validator.is_valid(event)
    with pytest.raises(BadEvent) as info:
        EventDecoder(CONFIG, model_tasks(CONFIG)).decode(orjson.dumps(event))
    assert info.value.reason == reason


@pytest.mark.parametrize(
    "payload,reason",
    [
        (b'{"id": "x", "model": "m", "kind": "observe", "features": [NaN, 1], "label": 1}', "non_finite"),
        (b'{"id": "x", "model": "m", "kind": "observe", "features": [1, 1], "label": Infinity}', "non_finite"),
        (b'{"id": "x", "model": "m", "kind": "observe", "features": [1e999, 1], "label": 1}', "non_finite"),
        (b'{"id": "x", "model": "m", "kind": "obs', "not_json"),
        (b"\xff\xfe\x00", "not_json"),
        (b"", "not_json"),
        (b"x" * 70_000, "oversized"),
    ],
)
def test_undecodable_payloads_are_classified(payload, reason):
    with pytest.raises(BadEvent) as info:
        EventDecoder(CONFIG, model_tasks(CONFIG)).decode(payload)
    assert info.value.reason == reason


def test_named_and_dense_features_give_the_same_row():
    dec = EventDecoder(CONFIG, model_tasks(CONFIG))
    a = dec.decode(b'{"id": "1", "model": "m", "kind": "predict", "features": [1, 2]}')
    b = dec.decode(b'{"id": "1", "model": "m", "kind": "predict", "features": {"b": 2, "a": 1}}')
    assert a.x.tolist() == b.x.tolist() == [1.0, 2.0]


def test_groups_come_from_declared_values_and_bins_only():
    dec = EventDecoder(CONFIG, model_tasks(CONFIG))
    ev = dec.decode(b'{"id": "1", "model": "m", "kind": "predict", "features": [1, 2], "attributes": {"sex": "m", "age": 30}}')
    # columns: sex=f, sex=m, age=[0,30), age=[30,60]
    assert ev.groups.tolist() == [False, True, False, True]
    ev = dec.decode(b'{"id": "1", "model": "m", "kind": "predict", "features": [1, 2], "attributes": {"sex": "x", "age": 99}}')
    assert ev.groups.tolist() == [False, False, False, False]


@pytest.mark.parametrize("kind", [["observe"], {"observe": 1}, None, 1, 1.5, True, [[["observe"]]]])
def test_a_kind_of_any_json_type_is_unknown_kind_naming_the_model(kind):
    event = {"id": "x", "model": "m", "kind": kind, "features": [1, 2], "label": 1}
    with pytest.raises(BadEvent) as info:
        EventDecoder(CONFIG, model_tasks(CONFIG)).decode(orjson.dumps(event))
    assert (info.value.reason, info.value.model) == ("unknown_kind", "m")


@pytest.mark.parametrize("literal", ["1" + "0" * 309, "-" + "9" * 400, "1" + "0" * 5000, "17976931348623159" + "0" * 292])
@pytest.mark.parametrize("field", ["features", "label", "ts"])
def test_integers_past_the_float_range_are_out_of_range_not_json(literal, field):
    event = {"id": "x", "model": "m", "kind": "observe", "features": [1, 2], "label": 1}
    event[field] = "@"
    payload = orjson.dumps(event).replace(b'"@"', (f"[{literal}, 1]" if field == "features" else literal).encode())
    with pytest.raises(BadEvent) as info:
        EventDecoder(CONFIG, model_tasks(CONFIG)).decode(payload)
    assert (info.value.reason, info.value.model) == ("out_of_range", "m")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_dead_letters_name_the_declared_model(literal):
    payload = b'{"id": "x", "model": "m", "kind": "observe", "features": [1, 1], "label": ' + literal.encode() + b"}"
    with pytest.raises(BadEvent) as info:
        EventDecoder(CONFIG, model_tasks(CONFIG)).decode(payload)
    assert (info.value.reason, info.value.model) == ("non_finite", "m")
    # an undeclared model is not named (its name would be an unbounded metric label)
    with pytest.raises(BadEvent) as info:
        EventDecoder(CONFIG, model_tasks(CONFIG)).decode(payload.replace(b'"m"', b'"nope"'))
    assert (info.value.reason, info.value.model) == ("non_finite", None)


def test_max_abs_value_is_the_configured_bound_inclusive():
    config = parse_config({"runtime": {"max_abs_value": 10.0}, "models": {"m": {"learner": "ridge", "features": ["a", "b"]}}})
    dec = EventDecoder(config, model_tasks(config))
    assert dec.decode(b'{"id": "1", "model": "m", "kind": "observe", "features": [10, -10], "label": -10.0}').x.tolist() == [10, -10]
    for payload in (
        b'{"id": "1", "model": "m", "kind": "observe", "features": [10.5, 0], "label": 1}',
        b'{"id": "1", "model": "m", "kind": "observe", "features": [0, 0], "label": -11}',
        b'{"id": "1", "model": "m", "kind": "feedback", "ref": "0", "reward": 10.000001}',
    ):
        with pytest.raises(BadEvent) as info:
            dec.decode(payload)
        assert (info.value.reason, info.value.model) == ("out_of_range", "m")


@pytest.mark.parametrize("depth", [900, 1023, 1024, 1025, 5000])
@pytest.mark.parametrize("field", ["features", "label", "attributes", "id", "kind"])
def test_deep_nesting_in_any_field_is_a_bad_event(depth, field):
    event = {"id": "x", "model": "m", "kind": "observe", "features": [1, 2], "label": 1, "attributes": {"sex": "f"}}
    event[field] = "@"
    payload = orjson.dumps(event).replace(b'"@"', b"[" * depth + b"]" * depth)
    with pytest.raises(BadEvent) as info:
        EventDecoder(CONFIG, model_tasks(CONFIG)).decode(payload)
    assert info.value.reason in {"not_json", "bad_field", "bad_label", "missing_features", "unknown_kind"}
    assert len(info.value.detail) < 300


def test_a_group_attribute_that_is_not_a_scalar_is_bad_field():
    dec = EventDecoder(CONFIG, model_tasks(CONFIG))
    for value in ([["f"]], {"f": 1}, [1] * 1000):
        event = {"id": "x", "model": "m", "kind": "predict", "features": [1, 2], "attributes": {"sex": value}}
        with pytest.raises(BadEvent) as info:
            dec.decode(orjson.dumps(event))
        assert (info.value.reason, info.value.model) == ("bad_field", "m")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)
FIELD_NAMES = list(schema()["properties"])  # id, model, kind first: the event contract's fields in the schema's order
# mostly well-typed events with some fields replaced by arbitrary JSON: deep enough into the decoder to reach every check
EVENTS = st.fixed_dictionaries(
    {
        "id": st.just("x") | JSON,
        "model": st.just("m") | JSON,
        "kind": st.sampled_from(["observe", "predict", "decide", "feedback", "audit"]) | JSON,
    },
    optional={name: JSON for name in FIELD_NAMES[3:]}
    | {
        "features": st.lists(st.integers() | st.floats(), min_size=2, max_size=2) | JSON,
        "ref": st.just("y"),
        "violations": st.lists(st.lists(st.integers(), min_size=2, max_size=3), max_size=3) | JSON,
        "auditors": st.lists(st.text(max_size=3), max_size=3) | JSON,
    },
)


def _decode_or_bad(payload: bytes) -> None:
    try:
        EventDecoder(CONFIG, model_tasks(CONFIG)).decode(payload)
    except BadEvent as bad:
        assert bad.reason in REASONS


@settings(max_examples=400, deadline=None, database=None)
@given(EVENTS)
def test_no_event_of_any_shape_makes_the_decoder_raise_anything_but_bad_event(event):
    try:
        payload = orjson.dumps(event)
    except TypeError:  # an integer orjson cannot write: write it as JSON text
        payload = json.dumps(event).encode()
    _decode_or_bad(payload)


@settings(max_examples=300, deadline=None, database=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_no_byte_string_makes_the_decoder_raise_anything_but_bad_event(payload):
    _decode_or_bad(payload)


def test_a_null_record_is_not_json():
    with pytest.raises(BadEvent) as info:
        EventDecoder(CONFIG, model_tasks(CONFIG)).decode(None)  # a Kafka tombstone
    assert info.value.reason == "not_json"


def test_huge_features_are_out_of_range_without_a_numeric_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow warning per event would flood the daemon's log
        for v in (1e200, -1.7e308, 1e13):
            with pytest.raises(BadEvent) as info:
                EventDecoder(CONFIG, model_tasks(CONFIG)).decode(
                    orjson.dumps({"id": "x", "model": "m", "kind": "observe", "features": [v, v], "label": 1})
                )
            assert info.value.reason == "out_of_range"
