"""Named generators of bad payloads (hypothesis strategies) for the fuzz and fault suites.

Every generator builds payloads that are certainly bad for the config of
``streams.config_dict`` and says which dead-letter reasons they may get and which
model their dead letter must name. A payload that has to sit at a certain place in
the good stream (a duplicate of a pending request's id, a reply to it) carries the
index of the good event it must directly follow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson
from hypothesis import strategies as st

from regretflow.engine.runtime.events import schema
from tests.fuzz.streams import FAIR_K, REG_FEATURES

# the event contract's top-level fields, as its published JSON Schema names them
EVENT_FIELDS = frozenset(schema()["properties"])

UNKNOWN = "_unknown_"  # the model a dead letter names when the payload names no declared one
ANY = None  # the payload may or may not get far enough to name its model (e.g. depth near the parser's limit)
RAW = "@@RAW@@"  # placeholder for a literal orjson cannot write (NaN, huge integers)
MAX_EVENT_BYTES = 65_536


@dataclass(frozen=True, repr=False)
class Bad:
    payload: bytes
    reasons: frozenset
    model: str | None  # the model its dead letter names (UNKNOWN, a declared one, or ANY)
    after: int | None = None  # index of the good event it must directly follow

    def __repr__(self) -> str:  # short: hypothesis shows it with a failure, and payloads run to 10 MB
        return f"Bad({self.payload[:120]!r}{'...' if len(self.payload) > 120 else ''} ({len(self.payload)} bytes), {sorted(self.reasons)}, {self.model!r}, after={self.after})"


class Context:
    """What the position-dependent generators need to know about the good stream."""

    def __init__(self, good: tuple[bytes, ...]):
        events = [orjson.loads(p) for p in good]
        self.good = good
        self.reg_predicts = [i for i, e in enumerate(events) if e["model"] == "reg" and e["kind"] == "predict"]
        self.bandit_decides = [i for i, e in enumerate(events) if e["model"] == "bandit" and e["kind"] == "decide"]
        self.fair_decides = [i for i, e in enumerate(events) if e["model"] == "fair" and e["kind"] == "decide"]
        self.feedbacks = [i for i, e in enumerate(events) if e["kind"] == "feedback"]
        self.events = events


def expected(bad: Bad) -> tuple[frozenset, str | None]:
    """The reasons and model a dead letter of ``bad`` may carry: past max_event_bytes it is ``oversized``, unread."""
    if len(bad.payload) > MAX_EVENT_BYTES:
        return frozenset({"oversized"}), UNKNOWN
    return bad.reasons, bad.model


def insert_after(payload: bytes, marker: bytes, inserted: bytes) -> bytes:
    assert marker in payload, (marker, payload[:80])  # else the "bad" payload would be a good event
    return payload.replace(marker, marker + inserted, 1)


def dumps(event: dict, literal: str | None = None) -> bytes:
    """The event as JSON, with ``RAW`` (if any) replaced by the raw ``literal``."""
    out = orjson.dumps(event)
    return out.replace(f'"{RAW}"'.encode(), literal.encode()) if literal is not None else out


# -- building blocks -----------------------------------------------------------------------
ids = st.integers(0, 10**9).map(lambda i: f"bad-{i}")
sign = st.sampled_from([1.0, -1.0])
scalars = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8
)
beyond_bound = st.builds(lambda v, s: s * v, st.floats(1e12, 1.7e308, exclude_min=True, allow_infinity=False), sign)
declared = st.sampled_from(["reg", "bandit", "fair"])


def of_types(*excluded: type):
    """JSON values whose top-level type is none of ``excluded`` (bool counts apart from int)."""

    def ok(v):
        return not any(type(v) is t for t in excluded)

    return json_values.filter(ok)


# the well-formed parts of a bad event come from a seeded generator: hypothesis spends its
# choices on what makes the event bad, and a hundred kinds fit in one example
seeds = st.integers(0, 2**32 - 1)


def reg_observe(**override):
    def build(i, seed):
        rng = np.random.default_rng(seed)
        return {
            "id": f"bad-{i}",
            "model": "reg",
            "kind": "observe",
            "key": f"k{seed % 3}",
            "features": rng.normal(size=3).tolist(),
            "label": float(rng.normal()),
            "attributes": {"segment": "abc"[seed % 3]},
            **override,
        }

    return st.builds(build, st.integers(0, 10**9), seeds)


def bandit_decide(**override):
    def build(i, seed):
        rng = np.random.default_rng(seed)
        return {
            "id": f"bad-{i}",
            "model": "bandit",
            "kind": "decide",
            "features": rng.normal(size=18).tolist(),
            "expected_rewards": rng.random(7).tolist(),
            **override,
        }

    return st.builds(build, st.integers(0, 10**9), seeds)


def fair_decide(**override):
    def build(i, seed):
        return {
            "id": f"bad-{i}",
            "model": "fair",
            "kind": "decide",
            "actions": np.random.default_rng(seed).random((FAIR_K, 10)).tolist(),
            **override,
        }

    return st.builds(build, st.integers(0, 10**9), seeds)


def unknown_feedback(model: str, **override):
    return st.builds(lambda i, r: {"id": i, "model": model, "kind": "feedback", "ref": "never-" + r, "reward": 1.0, **override}, ids, ids)


def unknown_audit(**override):
    return st.builds(
        lambda i, r: {
            "id": i,
            "model": "fair",
            "kind": "audit",
            "ref": "never-" + r,
            "violations": [[0, 1, 0]],
            "panel_size": 3,
            **override,
        },
        ids,
        ids,
    )


def any_good_event(ctx: Context):
    return st.sampled_from(range(len(ctx.good))).map(lambda i: ctx.events[i])


def event_kind(base, reasons, model=UNKNOWN):
    """Bad payloads from a strategy of event dicts, each named after the model it claims."""
    return base.map(lambda e: Bad(dumps(e), frozenset(reasons), model))


def with_field(base, field: str, values, reasons):
    """``base`` events whose ``field`` holds one of ``values``."""
    return st.builds(lambda e, v: Bad(dumps({**e, field: v}), frozenset(reasons), e["model"]), base, values)


def with_literal(base, field: str, literal_strategy, reasons, wrap=lambda raw: raw):
    """``base`` events whose ``field`` is a raw JSON literal (NaN, 1e999, a 400-digit integer, ...)."""
    return st.builds(lambda e, lit: Bad(dumps({**e, field: RAW}, wrap(lit)), frozenset(reasons), e["model"]), base, literal_strategy)


def in_first_feature(lit: str) -> str:
    return f"[{lit}, 0.5, 0.5]"


# -- raw bytes -------------------------------------------------------------------------------
def truncated(ctx):
    return st.builds(
        lambda e, f: Bad(e[: max(1, int(len(e) * f))], frozenset({"not_json"}), UNKNOWN), st.sampled_from(ctx.good), st.floats(0, 0.999)
    )


def invalid_utf8(ctx):
    bad_bytes = st.sampled_from([b"\xff", b"\xfe", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x28\xa1", b"\xf0\x28\x8c\x28", b"\xed\xa0\x80"])
    return st.builds(
        lambda e, b: Bad(insert_after(e, b'"id":"', b), frozenset({"not_json"}), UNKNOWN), st.sampled_from(ctx.good), bad_bytes
    )


def truncated_utf8(ctx):
    # a multi-byte character cut after its first byte, inside a string
    return st.builds(
        lambda e, c: Bad(insert_after(e, b'"id":"', c.encode()[:1]), frozenset({"not_json"}), UNKNOWN),
        st.sampled_from(ctx.good),
        st.sampled_from(["é", "€", "😀", "中"]),
    )


def raw_null_bytes(ctx):
    return st.builds(
        lambda e, n: Bad(insert_after(e, b'"kind":', b"\x00" * n), frozenset({"not_json"}), UNKNOWN),
        st.sampled_from(ctx.good),
        st.integers(1, 4),
    )


def empty(ctx):
    return st.sampled_from([b"", b" ", b"\n", b"\t\r\n "]).map(lambda p: Bad(p, frozenset({"not_json"}), UNKNOWN))


def random_bytes(ctx):
    # mostly garbage; a few happen to be JSON (a number, "{}", ...), never a valid event
    return st.binary(max_size=200).map(
        lambda p: Bad(p, frozenset({"not_json", "not_object", "missing_field", "non_finite", "out_of_range"}), UNKNOWN)
    )


def random_text(ctx):
    return st.text(max_size=200).map(
        lambda t: Bad(t.encode(), frozenset({"not_json", "not_object", "missing_field", "non_finite", "out_of_range"}), UNKNOWN)
    )


def json_scalar(ctx):
    return scalars.map(lambda v: Bad(orjson.dumps(v), frozenset({"not_object"}), UNKNOWN))


def array_of_events(ctx):
    return st.lists(any_good_event(ctx), min_size=1, max_size=3).map(lambda es: Bad(orjson.dumps(es), frozenset({"not_object"}), UNKNOWN))


def deep_array(ctx):
    return st.integers(1000, 5000).map(lambda n: Bad(b"[" * n + b"]" * n, frozenset({"not_json", "not_object"}), UNKNOWN))


def deep_object(ctx):
    return st.integers(1000, 3000).map(lambda n: Bad(b'{"a":' * n + b"1" + b"}" * n, frozenset({"not_json", "unknown_field"}), UNKNOWN))


def deep_in_field(ctx):
    # near orjson's depth limit (1024): either not JSON, or a value of the wrong type
    def build(e, field, n):
        return Bad(
            dumps({**e, field: RAW}, "[" * n + "1" + "]" * n), frozenset({"not_json", "bad_label", "bad_field", "missing_features"}), ANY
        )

    return st.builds(build, reg_observe(), st.sampled_from(["features", "label", "attributes", "key", "ts", "id"]), st.integers(900, 1500))


def ten_megabytes(ctx):
    def build(e, fill):
        pad = fill * (10 * 2**20 // (len(orjson.dumps(fill)) - 2))  # about 10 MB of JSON
        return Bad(dumps({**e, "id": pad}), frozenset({"oversized"}), UNKNOWN)

    return st.builds(build, reg_observe(), st.sampled_from(["x", "é", "\u0000", "ab"]))


def just_oversized(ctx):
    def build(e):
        body = dumps({**e, "id": ""})
        return Bad(dumps({**e, "id": "x" * (MAX_EVENT_BYTES + 1 - len(body))}), frozenset({"oversized"}), UNKNOWN)

    return st.builds(build, reg_observe())


# -- strings --------------------------------------------------------------------------------
def huge_string(field: str, reasons, base=None, model="reg"):
    def kind(ctx):
        return st.builds(
            lambda e, n, c: Bad(dumps({**e, field: c * n}), frozenset(reasons), model),
            base if base is not None else reg_observe(),
            st.integers(257, 60_000),
            st.sampled_from(["x", "é", "\u0000"]),
        )

    return kind


def null_byte_in(field: str, reasons):
    def kind(ctx):
        def build(e, at):
            value = e[field]
            return Bad(dumps({**e, field: value[:at] + "\u0000" + value[at:]}), frozenset(reasons), "reg" if field != "model" else UNKNOWN)

        return st.builds(build, reg_observe(), st.integers(0, 3))

    return kind


def null_byte_feature_name(ctx):
    return st.builds(
        lambda e: Bad(dumps({**e, "features": {"x0\u0000": 1.0, "x1": 1.0, "x2": 1.0}}), frozenset({"extra_features"}), "reg"),
        reg_observe(),
    )


# -- numbers --------------------------------------------------------------------------------
non_finite_literals = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e400"])
huge_int_literals = st.builds(lambda n, s: s + "1" + "0" * n, st.integers(309, 5000), st.sampled_from(["", "-"]))
big_int_literals = st.builds(lambda n, s: s + "9" + "0" * n, st.integers(12, 300), st.sampled_from(["", "-"]))  # |v| >= 9e12


def non_finite_feature(ctx):
    return with_literal(reg_observe(), "features", non_finite_literals, {"non_finite"}, in_first_feature)


def non_finite_label(ctx):
    return with_literal(reg_observe(), "label", non_finite_literals, {"non_finite"})


def non_finite_reward(ctx):
    return with_literal(unknown_feedback("bandit"), "reward", non_finite_literals, {"non_finite"})


def huge_int_feature(ctx):
    return with_literal(reg_observe(), "features", huge_int_literals, {"out_of_range"}, in_first_feature)


def huge_int_label(ctx):
    return with_literal(reg_observe(), "label", huge_int_literals, {"out_of_range"})


def huge_int_ts(ctx):
    return with_literal(reg_observe(), "ts", huge_int_literals, {"out_of_range"})


def big_int_feature(ctx):
    return with_literal(reg_observe(), "features", big_int_literals, {"out_of_range"}, in_first_feature)


def u64_violation_index(ctx):
    return st.builds(
        lambda e, v: Bad(dumps({**e, "violations": [[0, v, 0]]}), frozenset({"bad_field"}), "fair"),
        unknown_audit(),
        st.integers(2**31, 2**64 - 1),
    )


def extreme_feature(ctx):
    return st.builds(
        lambda e, v, at: Bad(dumps({**e, "features": [v if i == at else 0.5 for i in range(3)]}), frozenset({"out_of_range"}), "reg"),
        reg_observe(),
        beyond_bound | st.sampled_from([1e155, -1e155, 1.7976931348623157e308]),
        st.integers(0, 2),
    )


def extreme_named_feature(ctx):
    return st.builds(
        lambda e, v: Bad(dumps({**e, "features": {"x0": 0.1, "x1": v, "x2": 0.2}}), frozenset({"out_of_range"}), "reg"),
        reg_observe(),
        beyond_bound,
    )


def extreme_label(ctx):
    return with_field(reg_observe(), "label", beyond_bound, {"out_of_range"})


def extreme_reward(ctx):
    return with_field(unknown_feedback("bandit"), "reward", beyond_bound, {"out_of_range"})


def reg_feedback(**override):
    return st.builds(
        lambda i, r: {"id": i, "model": "reg", "kind": "feedback", "key": "k0", "ref": "never-" + r, "label": 0.5, **override}, ids, ids
    )


def extreme_feedback_label(ctx):
    return with_field(reg_feedback(), "label", beyond_bound, {"out_of_range"})


def extreme_context(ctx):
    return st.builds(
        lambda e, v: Bad(dumps({**e, "features": [v] + e["features"][1:]}), frozenset({"out_of_range"}), "bandit"),
        bandit_decide(),
        beyond_bound,
    )


def extreme_action_row(ctx):
    return st.builds(
        lambda e, v: Bad(dumps({**e, "actions": [[v] + e["actions"][0][1:]] + e["actions"][1:]}), frozenset({"out_of_range"}), "fair"),
        fair_decide(),
        beyond_bound,
    )


def extreme_expected_rewards(ctx):
    return st.builds(
        lambda e, v: Bad(dumps({**e, "expected_rewards": [v] + e["expected_rewards"][1:]}), frozenset({"out_of_range"}), "bandit"),
        bandit_decide(),
        beyond_bound,
    )


# -- every field, every wrong JSON type -------------------------------------------------------
def wrong_type(field: str, base, values, reasons, model):
    def kind(ctx):
        return st.builds(lambda e, v: Bad(dumps({**e, field: v}), frozenset(reasons), model), base, values)

    return kind


WRONG_TYPES = {
    "id": (reg_observe(), of_types(str), {"bad_field"}, "reg"),
    "model": (reg_observe(), of_types(str), {"bad_field"}, UNKNOWN),
    "kind": (reg_observe(), of_types(str), {"unknown_kind"}, "reg"),
    "key": (reg_observe(), of_types(str, type(None)), {"bad_field"}, "reg"),
    "ts": (reg_observe(), of_types(int, float, type(None)), {"bad_field"}, "reg"),
    "features": (reg_observe(), of_types(list, dict), {"bad_field"}, "reg"),
    "label": (reg_observe(), of_types(int, float), {"bad_label"}, "reg"),
    "attributes": (reg_observe(), of_types(dict, type(None)), {"bad_field"}, "reg"),
    "ref": (unknown_feedback("bandit"), of_types(str), {"bad_field"}, "bandit"),
    "reward": (unknown_feedback("bandit"), of_types(int, float), {"bad_field"}, "bandit"),
    "actions": (fair_decide(), of_types(list, type(None)), {"bad_actions"}, "fair"),
    "expected_rewards": (bandit_decide(), of_types(list, type(None)), {"bad_actions"}, "bandit"),
    "violations": (unknown_audit(), of_types(list), {"bad_field"}, "fair"),
    "panel_size": (unknown_audit(), of_types(int, type(None)), {"bad_field"}, "fair"),
    "auditors": (unknown_audit(), of_types(list, type(None)), {"bad_field"}, "fair"),
}


def arrays_for_objects(ctx):
    return st.builds(
        lambda e, field: Bad(
            dumps({**e, field: [list(e[field].items())] if isinstance(e[field], dict) else [e[field]]}), frozenset({"bad_field"}), "reg"
        ),
        reg_observe(),
        st.just("attributes"),
    )


def wrong_feature_values(ctx):
    return st.builds(
        lambda e, v, at: Bad(dumps({**e, "features": [v if i == at else 0.5 for i in range(3)]}), frozenset({"wrong_type"}), "reg"),
        reg_observe(),
        of_types(int, float),
        st.integers(0, 2),
    )


def attribute_not_scalar(ctx):
    return st.builds(
        lambda e, v: Bad(dumps({**e, "attributes": {"segment": v}}), frozenset({"bad_field"}), "reg"),
        reg_observe(),
        st.lists(scalars, max_size=3) | st.dictionaries(st.text(max_size=4), scalars, max_size=3),
    )


def action_rows_wrong(ctx):
    rows = st.lists(json_values, min_size=1, max_size=4).filter(lambda a: any(type(r) is not list for r in a))
    return with_field(fair_decide(), "actions", rows | st.just([]) | st.just([[0.1, 0.2], [0.3]]), {"bad_actions"})


# -- contract rules ----------------------------------------------------------------------------
def unknown_field(ctx):
    return st.builds(
        lambda e, f, v: Bad(dumps({**e, f: v}), frozenset({"unknown_field"}), "reg"),
        reg_observe(),
        st.text(min_size=1, max_size=12).filter(lambda f: f not in EVENT_FIELDS),
        scalars,
    )


def missing_field(ctx):
    return st.builds(
        lambda e, f: Bad(dumps({k: v for k, v in e.items() if k != f}), frozenset({"missing_field"}), "reg" if f != "model" else UNKNOWN),
        reg_observe(),
        st.sampled_from(["id", "model", "kind", "features", "label"]),
    )


def unknown_kind(ctx):
    return with_field(
        reg_observe(),
        "kind",
        st.text(max_size=20).filter(lambda k: k not in {"observe", "predict", "decide", "feedback", "audit"}),
        {"unknown_kind"},
    )


def undeclared_model(ctx):
    return st.builds(
        lambda e, m: Bad(dumps({**e, "model": m}), frozenset({"unknown_model"}), UNKNOWN),
        reg_observe(),
        st.text(max_size=30).filter(lambda m: m not in {"reg", "bandit", "fair"}),
    )


def wrong_dimension(ctx):
    return st.builds(
        lambda e, n: Bad(dumps({**e, "features": [0.5] * n}), frozenset({"missing_features", "extra_features"}), "reg"),
        reg_observe(),
        st.integers(0, 40).filter(lambda n: n != 3),
    )


def undeclared_feature_name(ctx):
    return st.builds(
        lambda e, name: Bad(dumps({**e, "features": {"x0": 1.0, "x1": 1.0, name: 1.0}}), frozenset({"extra_features"}), "reg"),
        reg_observe(),
        st.text(max_size=10).filter(lambda n: n not in REG_FEATURES),
    )


def bool_feature(ctx):
    return st.builds(
        lambda e, b: Bad(dumps({**e, "features": [b, 0.5, 0.5]}), frozenset({"wrong_type"}), "reg"), reg_observe(), st.booleans()
    )


def bad_id_length(ctx):
    return with_field(reg_observe(), "id", st.sampled_from(["", "x" * 257]), {"bad_field"})


def feedback_both_or_neither(ctx):
    both = unknown_feedback("bandit", label=1.0)
    neither = st.builds(lambda i: {"id": i, "model": "bandit", "kind": "feedback", "ref": "never"}, ids)
    return event_kind(both, {"bad_field"}, "bandit") | event_kind(neither, {"missing_field"}, "bandit")


def feedback_label_list_bad(ctx):
    fair_feedback = st.builds(lambda i, r: {"id": i, "model": "fair", "kind": "feedback", "ref": "never-" + r}, ids, ids)
    return with_field(
        fair_feedback, "label", st.lists(st.integers(2, 9) | st.text(max_size=2) | st.booleans(), min_size=1, max_size=5), {"bad_label"}
    )


def malformed_auditors(ctx):
    names = st.sampled_from([[""], ["_other_"], ["a", "a"], ["a\u0000"], [f"a{i}" for i in range(65)], ["x" * 65]])
    return with_field(unknown_audit(), "auditors", names, {"bad_field"})


def bad_panel_size(ctx):
    return with_field(unknown_audit(), "panel_size", st.integers(-5, 0) | st.integers(2**31 + 1, 2**63 - 1), {"bad_field"})


# -- the engine's rules: joins, tasks --------------------------------------------------------------
def feedback_unknown_id(ctx):
    return st.builds(lambda e: Bad(dumps(e), frozenset({"unknown_ref"}), e["model"]), unknown_feedback("bandit") | reg_feedback())


def feedback_unknown_id_fresh_key(ctx):
    return st.builds(
        lambda i, r, k: Bad(
            dumps({"id": i, "model": "reg", "kind": "feedback", "key": "fresh-" + k, "ref": "never-" + r, "label": 0.5}),
            frozenset({"unknown_ref"}),
            "reg",
        ),
        ids,
        ids,
        ids,
    )


def audit_unknown_id(ctx):
    return event_kind(unknown_audit(), {"unknown_ref"}, "fair")


def decide_to_regression(ctx):
    return st.builds(
        lambda i: Bad(
            dumps({"id": i, "model": "reg", "kind": "decide", "key": "k0", "features": [0.1, 0.2, 0.3]}),
            frozenset({"unsupported_kind"}),
            "reg",
        ),
        ids,
    )


def observe_to_bandit(ctx):
    return st.builds(
        lambda i: Bad(
            dumps({"id": i, "model": "bandit", "kind": "observe", "features": [0.1] * 18, "label": 1.0}),
            frozenset({"unsupported_kind"}),
            "bandit",
        ),
        ids,
    )


def audit_to_non_fair(ctx):
    return st.builds(
        lambda i, m: Bad(
            dumps({"id": i, "model": m, "kind": "audit", "key": "k2", "ref": "x", "violations": [[0, 1]]}),
            frozenset({"unsupported_kind"}),
            m,
        ),
        ids,
        st.sampled_from(["reg", "bandit"]),
    )


def predict_to_fair(ctx):
    return st.builds(
        lambda i: Bad(
            dumps({"id": i, "model": "fair", "kind": "predict", "features": [0.1] * 10}), frozenset({"unsupported_kind"}), "fair"
        ),
        ids,
    )


def fair_decide_without_individuals(ctx):
    return st.builds(lambda i: Bad(dumps({"id": i, "model": "fair", "kind": "decide"}), frozenset({"missing_field"}), "fair"), ids)


def fair_decide_wrong_width(ctx):
    return st.builds(
        lambda i, w: Bad(
            dumps({"id": i, "model": "fair", "kind": "decide", "actions": [[0.5] * w] * FAIR_K}), frozenset({"bad_actions"}), "fair"
        ),
        ids,
        st.integers(1, 30).filter(lambda w: w != 10),
    )


def duplicate_predict_id(ctx):
    return st.sampled_from(ctx.reg_predicts).map(lambda i: Bad(ctx.good[i], frozenset({"duplicate_id"}), "reg", after=i))


def duplicate_decide_id(ctx):
    return st.sampled_from(ctx.bandit_decides + ctx.fair_decides).map(
        lambda i: Bad(ctx.good[i], frozenset({"duplicate_id"}), ctx.events[i]["model"], after=i)
    )


def duplicate_feedback(ctx):
    return st.sampled_from(ctx.feedbacks).map(
        lambda i: Bad(ctx.good[i], frozenset({"unknown_ref", "duplicate_feedback"}), ctx.events[i]["model"], after=i)
    )


def reward_for_a_predict(ctx):
    def build(i, r):
        e = ctx.events[i]
        return Bad(
            dumps({"id": r, "model": "reg", "kind": "feedback", "key": e["key"], "ref": e["id"], "reward": 1.0}),
            frozenset({"feedback_mismatch"}),
            "reg",
            after=i,
        )

    return st.builds(build, st.sampled_from(ctx.reg_predicts), ids)


def label_for_a_decide(ctx):
    def build(i, r):
        return Bad(
            dumps({"id": r, "model": "bandit", "kind": "feedback", "ref": ctx.events[i]["id"], "label": 1.0}),
            frozenset({"feedback_mismatch"}),
            "bandit",
            after=i,
        )

    return st.builds(build, st.sampled_from(ctx.bandit_decides), ids)


def fair_labels_wrong_length(ctx):
    def build(i, r, n):
        return Bad(
            dumps({"id": r, "model": "fair", "kind": "feedback", "ref": ctx.events[i]["id"], "label": [None] * n}),
            frozenset({"bad_label"}),
            "fair",
            after=i,
        )

    return st.builds(build, st.sampled_from(ctx.fair_decides), ids, st.integers(1, 9).filter(lambda n: n != FAIR_K))


def audit_index_out_of_range(ctx):
    def build(i, r, j):
        return Bad(
            dumps({"id": r, "model": "fair", "kind": "audit", "ref": ctx.events[i]["id"], "violations": [[0, j]]}),
            frozenset({"bad_field"}),
            "fair",
            after=i,
        )

    return st.builds(build, st.sampled_from(ctx.fair_decides), ids, st.integers(FAIR_K, 2**31 - 1))


def bandit_decide_with_actions(ctx):
    return st.builds(
        lambda e, n: Bad(dumps({**e, "actions": [[0.5] * 18] * n}), frozenset({"rejected_by_learner", "bad_actions"}), "bandit"),
        bandit_decide(expected_rewards=None).map(lambda e: {k: v for k, v in e.items() if k != "expected_rewards"}),
        st.integers(1, 9),
    )


def bandit_decide_without_context(ctx):
    return st.builds(
        lambda i: Bad(dumps({"id": i, "model": "bandit", "kind": "decide"}), frozenset({"rejected_by_learner", "missing_field"}), "bandit"),
        ids,
    )


def wrong_label_for_a_predict(ctx):
    def build(i, r, label):
        e = ctx.events[i]
        return Bad(
            dumps({"id": r, "model": "reg", "kind": "feedback", "key": e["key"], "ref": e["id"], "label": label}),
            frozenset({"bad_label"}),
            "reg",
            after=i,
        )

    return st.builds(
        build, st.sampled_from(ctx.reg_predicts), ids, st.text(max_size=5) | st.lists(st.sampled_from([0, 1, None]), max_size=4)
    )


def reward_for_a_fair_decide(ctx):
    def build(i, r):
        return Bad(
            dumps({"id": r, "model": "fair", "kind": "feedback", "ref": ctx.events[i]["id"], "reward": 1.0}),
            frozenset({"bad_label"}),
            "fair",
            after=i,
        )

    return st.builds(build, st.sampled_from(ctx.fair_decides), ids)


GENERATORS = [
    ("truncated", truncated),
    ("invalid_utf8", invalid_utf8),
    ("truncated_utf8", truncated_utf8),
    ("raw_null_bytes", raw_null_bytes),
    ("empty", empty),
    ("random_bytes", random_bytes),
    ("random_text", random_text),
    ("json_scalar", json_scalar),
    ("array_of_events", array_of_events),
    ("deep_array", deep_array),
    ("deep_object", deep_object),
    ("deep_in_field", deep_in_field),
    ("ten_megabytes", ten_megabytes),
    ("just_oversized", just_oversized),
    ("huge_string_id", huge_string("id", {"bad_field"})),
    ("huge_string_model", huge_string("model", {"unknown_model"}, model=UNKNOWN)),
    ("huge_string_key", huge_string("key", {"bad_field"})),
    ("huge_string_ref", huge_string("ref", {"bad_field"}, base=unknown_feedback("bandit"), model="bandit")),
    ("null_byte_in_model", null_byte_in("model", {"unknown_model"})),
    ("null_byte_in_kind", null_byte_in("kind", {"unknown_kind"})),
    ("null_byte_feature_name", null_byte_feature_name),
    ("non_finite_feature", non_finite_feature),
    ("non_finite_label", non_finite_label),
    ("non_finite_reward", non_finite_reward),
    ("huge_int_feature", huge_int_feature),
    ("huge_int_label", huge_int_label),
    ("huge_int_ts", huge_int_ts),
    ("big_int_feature", big_int_feature),
    ("u64_violation_index", u64_violation_index),
    ("extreme_feature", extreme_feature),
    ("extreme_named_feature", extreme_named_feature),
    ("extreme_label", extreme_label),
    ("extreme_reward", extreme_reward),
    ("extreme_feedback_label", extreme_feedback_label),
    ("extreme_context", extreme_context),
    ("extreme_action_row", extreme_action_row),
    ("extreme_expected_rewards", extreme_expected_rewards),
    *[(f"wrong_type_{field}", wrong_type(field, *spec)) for field, spec in WRONG_TYPES.items()],
    ("arrays_for_objects", arrays_for_objects),
    ("wrong_feature_values", wrong_feature_values),
    ("attribute_not_scalar", attribute_not_scalar),
    ("action_rows_wrong", action_rows_wrong),
    ("unknown_field", unknown_field),
    ("missing_field", missing_field),
    ("unknown_kind", unknown_kind),
    ("undeclared_model", undeclared_model),
    ("wrong_dimension", wrong_dimension),
    ("undeclared_feature_name", undeclared_feature_name),
    ("bool_feature", bool_feature),
    ("bad_id_length", bad_id_length),
    ("feedback_both_or_neither", feedback_both_or_neither),
    ("feedback_label_list_bad", feedback_label_list_bad),
    ("malformed_auditors", malformed_auditors),
    ("bad_panel_size", bad_panel_size),
    ("feedback_unknown_id", feedback_unknown_id),
    ("feedback_unknown_id_fresh_key", feedback_unknown_id_fresh_key),
    ("audit_unknown_id", audit_unknown_id),
    ("decide_to_regression", decide_to_regression),
    ("observe_to_bandit", observe_to_bandit),
    ("audit_to_non_fair", audit_to_non_fair),
    ("predict_to_fair", predict_to_fair),
    ("fair_decide_without_individuals", fair_decide_without_individuals),
    ("fair_decide_wrong_width", fair_decide_wrong_width),
    ("duplicate_predict_id", duplicate_predict_id),
    ("duplicate_decide_id", duplicate_decide_id),
    ("duplicate_feedback", duplicate_feedback),
    ("reward_for_a_predict", reward_for_a_predict),
    ("label_for_a_decide", label_for_a_decide),
    ("fair_labels_wrong_length", fair_labels_wrong_length),
    ("audit_index_out_of_range", audit_index_out_of_range),
    ("bandit_decide_with_actions", bandit_decide_with_actions),
    ("bandit_decide_without_context", bandit_decide_without_context),
    ("wrong_label_for_a_predict", wrong_label_for_a_predict),
    ("reward_for_a_fair_decide", reward_for_a_fair_decide),
]
