"""JSON batches validated column-wise (runtime/json_batches.py) against each event validated alone.

The column-wise path only ever takes events the per-event path (``EventDecoder.decode``)
would accept, with the same values; everything else goes through that path. Random
corpora mixing good and bad events must give identical answers, dead letters (reason,
detail, model, raw, in the same places), counters and learner state, bit for bit.
"""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from regretflow.engine.config import parse_config
from regretflow.engine.runtime.events import EventDecoder, Run
from regretflow.engine.runtime.json_batches import JsonBatchDecoder
from regretflow.engine.runtime.loop import Engine
from regretflow.engine.tasks import model_tasks
from tests.conftest import assert_same_bits, engine_fed, shard_state
from tests.engine.test_task_registry import MedianTask, RunningMedian, registered

D = 3
CONFIG = {
    "models": {
        "m": {
            "learner": "ridge",
            "features": ["x0", "x1", "age"],
            "params": {"lam": 1.0},
            "groups": [
                {"name": "segment", "field": "segment", "values": ["a", "b", "1", "true"]},
                {"name": "age", "field": "age", "edges": [-1, 0, 1, 2]},
            ],
            "joins": {"ttl_events": 40},
        },
        "c": {
            "learner": "analytic-ridge",
            "features": ["x0", "x1", "x2"],
            "groups": [{"name": "plan", "field": "plan", "values": ["p", "q"]}],
        },
        "k": {"learner": "ridge", "features": ["x0", "x1", "x2"], "params": {"shard_by_key": True}, "max_shards": 3},
        "g": {
            "learner": "groupwise",
            "features": ["x0", "x1", "x2"],
            "groups": [{"name": "region", "field": "region", "values": ["n", "s"]}, {"name": "x0", "field": "x0", "edges": [-5, 0, 5]}],
        },
        "n": {"learner": "ridge", "features": ["x0", "x1", "x2"]},
    },
    "runtime": {"max_abs_value": 1000.0},
}

# values a feature, label, ts or attribute may be given in place of a good one
ODD_VALUES = [
    True,
    False,
    None,
    "1.5",
    [1.0],
    [[1.0]],
    {"a": 1},
    0,
    1,
    -0.0,
    0.0,
    1.0,
    7,
    2**53,
    2**53 + 1,
    2**63 - 1,
    2**64 - 1,
    -(2**63),
    1000.0,
    1000.0000001,
    -1001,
    1e300,
    5e-324,
    "",
]
RAW_LITERALS = ["NaN", "Infinity", "-Infinity", "1e999", "1" * 30, "-" + "9" * 400]


def good_event(rng: np.random.Generator, i: int) -> dict:
    model = str(pick(rng, ["m", "m", "m", "c", "k", "g", "n"]))
    # (no predicts for the classifier: a pending class prediction does not fit the join store's checkpoint columns)
    kind = "predict" if rng.random() < 0.2 and model != "c" else "observe"
    x = (rng.normal(size=D) * pick(rng, [0.5, 3.0])).round(int(rng.integers(0, 17))).tolist()
    event: dict = {"id": f"e{i}", "model": model, "kind": kind, "features": x}
    if kind == "observe":
        event["label"] = str(pick(rng, ["u", "v", "w"])) if model == "c" else float(rng.normal())
        if model != "c" and rng.random() < 0.2:
            event["label"] = int(rng.integers(-3, 4))
    if model == "m":
        event["attributes"] = {"segment": str(pick(rng, ["a", "b", "z"]))}
    if model == "c":
        event["attributes"] = {"plan": str(pick(rng, ["p", "q", "r"]))}
    if model == "g":
        event["attributes"] = {"region": str(pick(rng, ["n", "s"]))}
    if model == "k" or rng.random() < 0.05:
        event["key"] = str(pick(rng, ["k1", "k2", "k3", "k4"]))
    if rng.random() < 0.1:
        event["ts"] = float(i) if rng.random() < 0.5 else i
    return event


def pick(rng: np.random.Generator, options: list):
    """One of ``options`` as it is (``rng.choice`` would make numpy scalars of them)."""
    return options[int(rng.integers(len(options)))]


def odd(rng: np.random.Generator):
    return ODD_VALUES[int(rng.integers(len(ODD_VALUES)))]


def mutate(rng: np.random.Generator, event: dict, pending: list[str]) -> bytes | str | None:
    """A bad (or unusual but good) variant of ``event``, as its payload."""
    choice = int(rng.integers(32))
    if event["model"] == "c" and choice in (3, 16, 17):
        # no predicts for the classifier (as above), nor an integer label among its text ones: a run of
        # labels of both kinds fails in the learner (the engine stops), on either path
        choice = 0
    e = dict(event)
    literal = None
    if choice == 0:
        e["features"] = list(e["features"])
        e["features"][int(rng.integers(D))] = odd(rng)
    elif choice == 1:
        e["features"] = e["features"][: int(rng.integers(D))] if rng.random() < 0.5 else e["features"] + [1.5]
    elif choice == 2:
        e["features"] = dict(zip(["x0", "x1", "x2" if e["model"] != "m" else "age"], e["features"]))
    elif choice == 3:
        e["label"] = odd(rng)
    elif choice == 4:
        e.pop(str(pick(rng, ["id", "model", "kind", "features", "label"])), None)
    elif choice == 5:
        e["id"] = pick(rng, ["", "x" * 257, "é" * 256, 7, None, ["a"]])
    elif choice == 6:
        e["model"] = pick(rng, ["nope", 3, ["m"], {"m": 1}, None])
    elif choice == 7:
        e["kind"] = pick(rng, ["decide", "feedback", "audit", "observer", 1, ["observe"], None])
    elif choice == 8:
        e[str(pick(rng, ["extra", "ref", "reward", "actions", "violations"]))] = 1
    elif choice == 9:
        e["key"] = pick(rng, [None, "k9", "z" * 257, 3, True, "k5", "k6"])
    elif choice == 10:
        e["ts"] = odd(rng)
    elif choice == 11:
        e["attributes"] = pick(rng, [None, [], "a", {"segment": odd(rng)}, {"plan": odd(rng)}, {"region": odd(rng)}, {"age": odd(rng)}])
    elif choice == 12:
        e["attributes"] = {"age": float(rng.normal()), "segment": 1.0, "region": True, "x0": 3}
    elif choice == 13:
        e["features"] = list(e["features"])
        e["features"][int(rng.integers(D))] = float(pick(rng, [1000.0, -1000.0, 1000.5, 1e200]))
    elif choice == 14:
        literal = RAW_LITERALS[int(rng.integers(len(RAW_LITERALS)))]
        e["features"] = list(e["features"])
        e["features"][int(rng.integers(D))] = "@@RAW@@"
    elif choice == 15:
        return pick(rng, [b"not json", b"[1, 2]", b"", b'"text"', b"{", None, b"\xff\xfe", "{}"])
    elif choice == 16:
        e["kind"] = "predict"
        e["label"] = 1.0
    elif choice == 17 and pending:
        e["kind"] = "predict"
        e.pop("label", None)
        e["id"] = pending[-1]  # a predict reusing the id of one still waiting (duplicate_id from the shard)
    elif choice == 18 and pending:
        return orjson.dumps({"id": f"f{e['id']}", "model": "m", "kind": "feedback", "ref": pending.pop(0), "label": 0.5})
    elif choice == 19:
        e["features"] = [int(v * 10) for v in e["features"]]
    elif choice == 20:
        e["features"] = [0.0, 1.0, -0.0][:D]
    elif choice == 21:
        e["x"] = None
    elif choice == 22:
        e["features"] = [1, 0.5, 2**64 - 1]
    elif choice == 23:
        e["id"] = "untrue-false"  # the words true and false inside a string
    elif choice == 24:
        e["features"] = np.array(e["features"]).tolist() if e["model"] != "m" else [0.5, -2.0, 1.0]  # an age joining no bin
    elif choice == 25:
        e["attributes"] = {"segment": "1"} if rng.random() < 0.5 else {"segment": 1}
    elif choice == 26:
        e["features"] = [True, False, True]
    elif choice == 27:
        e["model"] = "m"
        e["attributes"] = {}  # age read from the features
    else:
        return None if choice == 28 and rng.random() < 0.3 else (orjson.dumps(e).decode() if choice == 29 else orjson.dumps(e))
    payload = orjson.dumps(e)
    if literal is not None:
        payload = payload.replace(b'"@@RAW@@"', literal.encode())
    return payload


def corpus(seed: int, n: int, bad_share: float) -> list:
    rng = np.random.default_rng(seed)
    out: list = []
    pending: list[str] = []
    for i in range(n):
        event = good_event(rng, i)
        if event["kind"] == "predict" and event["model"] == "m":
            pending.append(event["id"])
        out.append(mutate(rng, event, pending) if rng.random() < bad_share else orjson.dumps(event))
    return out


def column_decoder(config) -> JsonBatchDecoder:
    """A decoder that checks every batch in columns, however few its payloads."""
    decoder = JsonBatchDecoder(EventDecoder(config, model_tasks(config)))
    decoder.min_rows = 1
    return decoder


def run_engine(payloads: list, batch: int, column_wise: bool) -> Engine:
    return engine_fed(CONFIG, payloads, batch, column_wise)


def assert_same_outcome(a: Engine, b: Engine) -> None:
    assert a.dead_letters.records == b.dead_letters.records  # reason, detail, model, raw and headers, in order
    assert a.answers.records == b.answers.records
    assert (a.events_seen, a.valid_events, a.dead_count) == (b.events_seen, b.valid_events, b.dead_count)
    assert_same_bits(shard_state(a), shard_state(b))
    for family in ("events", "dead_letters", "answers"):
        counts = [{s.labels.get("model", "") + s.labels.get("kind", "") + s.labels.get("reason", ""): s.value
                   for m in getattr(e.metrics, family).collect() for s in m.samples if s.name.endswith("_total")} for e in (a, b)]  # fmt: skip
        assert counts[0] == counts[1], family


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("batch", [1, 7, 64, 512])
def test_a_random_corpus_meets_the_same_fate_column_wise_as_event_by_event(seed, batch):
    payloads = corpus(seed, 700, bad_share=[0.05, 0.3, 0.8][seed % 3])
    fast, reference = run_engine(payloads, batch, True), run_engine(payloads, batch, False)
    assert_same_outcome(fast, reference)
    assert reference.dead_count > 0 and reference.valid_events > 0


def test_the_corpus_reaches_every_reason_it_means_to():
    reference = run_engine([p for seed in range(6) for p in corpus(seed, 700, 0.5)], 64, False)
    reasons = {orjson.loads(r[1])["reason"] for r in reference.dead_letters.records}
    assert {
        "not_json",
        "not_object",
        "unknown_field",
        "missing_field",
        "bad_field",
        "unknown_kind",
        "unknown_model",
        "missing_features",
        "extra_features",
        "wrong_type",
        "out_of_range",
        "non_finite",
        "bad_label",
        "duplicate_id",
        "too_many_keys",
    } <= reasons


def test_the_common_events_are_taken_as_runs_and_only_the_others_go_one_by_one():
    config = parse_config(CONFIG)
    decoder = column_decoder(config)
    payloads = corpus(3, 600, bad_share=0.0)
    items = decoder.decode(payloads)
    runs = [item for item in items if type(item) is Run]
    left = [item for item in items if type(item) is not Run]
    assert sum(len(r) for r in runs) + len(left) == len(payloads)
    assert sum(len(r) for r in runs) > 0.9 * len(payloads)  # what stays one by one: features holding an exact 0 or 1 (checked), ...
    # the runs' rows are in stream order, one model and kind each, and a model sharded by key has one key per run
    order = [i for r in runs for i in r.ids]
    assert order == sorted(order, key=lambda eid: int(eid[1:]))
    assert all(len({k for k in (r.keys or [None])}) == 1 for r in runs if r.model == "k")


def test_a_batch_of_one_model_and_kind_is_one_run_and_x_holds_the_payloads_values():
    config = parse_config(CONFIG)
    decoder = column_decoder(config)
    rows = [[0.1 * i, -2.5, 3] for i in range(1, 50)]
    payloads = [orjson.dumps({"id": f"{i}", "model": "n", "kind": "observe", "features": x, "label": i}) for i, x in enumerate(rows)]
    (run,) = decoder.decode(payloads)
    assert run.X.dtype == np.float64 and run.X.tolist() == [[float(v) for v in x] for x in rows]
    assert run.labels == [float(i) for i in range(len(rows))] and type(run.labels[0]) is float


@pytest.mark.parametrize(
    "features",
    [[True, 2.5, 3.5], [1, 2.5, False], [2**53, 0.5, 0.5], [1.5, None, 2.5], [1.5, "2", 2.5], [1.5, [2.0], 2.5], [1.5, 2.5]],
)
def test_a_row_numpy_would_read_as_numbers_goes_one_by_one(features):
    config = parse_config(CONFIG)
    decoder = column_decoder(config)
    good = orjson.dumps({"id": "a", "model": "n", "kind": "observe", "features": [0.25, 0.5, 0.75], "label": 1.0})
    odd_one = orjson.dumps({"id": "b", "model": "n", "kind": "observe", "features": features, "label": 1.0})
    first, second, third = decoder.decode([good, odd_one, good])
    assert type(first) is Run and second == odd_one and type(third) is Run


def test_records_of_several_partitions_are_decoded_a_stretch_of_one_partition_at_a_time():
    config = parse_config(CONFIG)
    decoder = column_decoder(config)
    good = [orjson.dumps({"id": f"{i}", "model": "n", "kind": "observe", "features": [0.5, 1.5, 2.5], "label": 1.5}) for i in range(6)]
    records = [
        ("p0", good[0]),
        ("p0", good[1]),
        ("p1", good[2]),
        ("p1", None),
        ("p1", bytearray(good[3])),
        ("p0", good[4]),
        ("p0", good[5]),
    ]
    expanded = decoder.expand(records)
    assert [pid for pid, _ in expanded] == ["p0", "p1", "p1", "p1", "p0"]
    assert [r.ids for _, r in expanded if type(r) is Run] == [["0", "1"], ["2"], ["4", "5"]]
    assert [item for _, item in expanded if type(item) is not Run] == [None, bytearray(good[3])]  # left to the decoder


def test_a_batch_of_fewer_than_min_rows_payloads_goes_one_by_one():
    from regretflow.engine.runtime.json_batches import MIN_ROWS

    config = parse_config(CONFIG)
    decoder = JsonBatchDecoder(EventDecoder(config, model_tasks(config)))
    good = orjson.dumps({"id": "a", "model": "n", "kind": "observe", "features": [0.25, 0.5, 0.75], "label": 1.0})
    assert decoder.decode([good] * (MIN_ROWS - 1)) == [good] * (MIN_ROWS - 1)
    (run,) = decoder.decode([good] * MIN_ROWS)
    assert type(run) is Run and len(run) == MIN_ROWS


# -- found by an adversarial review: a quarantined classifier, a task's label check raising something else -----


def _reasons(engine) -> list[str]:
    return [orjson.loads(r[1])["reason"] for r in engine.dead_letters.records]


CLASSIFIER = {"models": {"c": {"learner": "analytic-ridge", "features": ["x0", "x1", "x2"]}}, "runtime": {"max_abs_value": 1e150}}


def _class_observe(i: int, label, x=(0.25, 0.5, 0.75)) -> bytes:
    return orjson.dumps({"id": f"e{i}", "model": "c", "kind": "observe", "features": list(x), "label": label})


def test_a_quarantined_classifier_refuses_a_label_of_the_other_kind_as_model_unhealthy_on_both_paths():
    # Batch 1 (3 events): features of 1e150 (within max_abs_value 1e150) overflow the classifier's state; at the
    # batch's end the shard is quarantined and replaced by a fresh, still quarantined shard.
    # Batch 2 (16 events, str and int labels alternating): per event every row is `model_unhealthy` (Shard.check
    # tests quarantine first). Column-wise, Shard.admit_columns asks ClassificationTask.refused_rows *before*
    # any quarantine check: the int-labelled rows are dead-lettered `bad_label` ("model 'c' learns str class
    # labels; got 7"), the others `model_unhealthy`.
    first = [_class_observe(i, "u", (1e150, 1e150, 1e150)) for i in range(3)]
    second = [_class_observe(10 + i, ["u", 7][i % 2]) for i in range(16)]
    fast = engine_fed(CLASSIFIER, first, 3, column_wise=True)
    reference = engine_fed(CLASSIFIER, first, 3, column_wise=False)
    fast.process(second)
    reference.process(second)
    assert set(_reasons(reference)) == {"model_unhealthy"}
    assert _reasons(fast) == _reasons(reference)  # fast: 8 of the 16 later rows are 'bad_label'
    assert_same_outcome(fast, reference)


# -- a registered task whose label check raises something else than BadEvent ------------------------------------------


class _LooseMedian(RunningMedian):
    task = "loose-median"


class _LooseMedianTask(MedianTask):
    name = "loose-median"

    def check_label(self, label):
        return float(label)  # (a ValueError or TypeError for a label it cannot read, not a BadEvent)


@pytest.fixture
def loose_median_task():
    with registered(_LooseMedianTask(), "loose_median", _LooseMedian) as task:
        yield task


def test_a_task_label_check_raising_a_plain_exception_is_one_dead_letter_on_both_paths(loose_median_task):
    # Per event, EventDecoder.decode raises the ValueError and Engine._process dead-letters the event as
    # `internal_error` ("one event's problem, never the process's end"). Column-wise, JsonBatchDecoder._labels
    # calls view.task.check_label row by row and catches only BadEvent: the ValueError leaves engine.process
    # and the worker stops on one bad payload.
    config = {"models": {"m": {"learner": "loose_median", "features": ["x"]}}}
    payloads = [orjson.dumps({"id": f"o{i}", "model": "m", "kind": "observe", "features": [0.5], "label": 1.5}) for i in range(16)]
    payloads[5] = orjson.dumps({"id": "o5", "model": "m", "kind": "observe", "features": [0.5], "label": "high"})
    reference = engine_fed(config, payloads, 16, column_wise=False)
    assert _reasons(reference) == ["internal_error"]
    fast = engine_fed(config, payloads, 16, column_wise=True)  # raises ValueError: could not convert string to float: 'high'
    assert_same_outcome(fast, reference)
