"""Arrow batches of events: the same state, answers and dead letters as the same events sent as JSON,
row positions inside a message, and a restart in the middle of one."""

from __future__ import annotations

import dataclasses
import gzip
from collections import defaultdict
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pytest

from regretflow.connectors.arrow import encode_batch, from_events, read_batch, to_record_batch
from regretflow.connectors.memory import MemorySink, MemorySource
from regretflow.engine.config import ConfigError, parse_config
from regretflow.engine.runtime.checkpoint import latest_checkpoint
from regretflow.engine.runtime.loop import Engine
from tests.conftest import assert_same_bits, regression_config_dict, regression_stream, shard_state

FIXTURE = Path(__file__).resolve().parent / "data" / "checkpoint-0.1.0"


def run(config, payloads, batch_size=None):
    if batch_size is not None:
        config = dataclasses.replace(config, runtime=dataclasses.replace(config.runtime, batch_size=batch_size))
    answers, dead = MemorySink(), MemorySink()
    engine = Engine(config, MemorySource(payloads), answers, dead, serve_metrics=False)
    engine.run()
    return engine, answers.records, dead.records


def arrow_messages(payloads: list[bytes], rows_per_message: int) -> list[bytes]:
    """The same events as Arrow messages: each model's events in their order, ``rows_per_message`` a
    message (one model per message, so that its features are one fixed-size list), the models' messages interleaved."""
    by_model: dict[str, list[dict]] = defaultdict(list)
    for p in payloads:
        obj = orjson.loads(p)
        by_model[obj["model"]].append(obj)
    queues = [
        [encode_batch(from_events(events[i : i + rows_per_message])) for i in range(0, len(events), rows_per_message)]
        for events in by_model.values()
    ]
    out = []
    for i in range(max(len(q) for q in queues)):
        out += [q[i] for q in queues if i < len(q)]
    return out


def by_id(records) -> dict[str, dict]:
    return {a["id"]: a for a in (orjson.loads(r[1]) for r in records)}


def test_every_family_reaches_the_same_state_and_answers_as_with_json():
    """Ridge, groupwise, an analytic-ridge classifier, bandits (decide/feedback) and a fair model (audits):
    the demo's recorded stream as JSON and as Arrow messages cut across micro-batches give the same bits."""
    raw = orjson.loads((FIXTURE / "config.json").read_bytes())
    for spec in raw["models"].values():
        if spec["learner"] == "analytic-ridge":
            spec["params"]["expansion_dim"] = 128
    # digits-ridge-pfg answers each micro-batch from the state before it (its losses depend on where batches
    # fall, by design, in JSON too); digits-ridge is the same family without that
    del raw["models"]["digits-ridge-pfg"]
    config = parse_config({**raw, "checkpoint": {}})
    payloads = [
        p for p in gzip.decompress((FIXTURE / "events.jsonl.gz").read_bytes()).splitlines()[:2000] if b'"digits-ridge-pfg"' not in p
    ]
    json_engine, json_answers, json_dead = run(config, payloads, batch_size=64)
    messages = arrow_messages(payloads, rows_per_message=150)
    assert len(messages) < len(payloads) / 20
    arrow_engine, arrow_answers, arrow_dead = run(config, messages, batch_size=64)
    families = {spec.learner for spec in config.models.values()}
    assert {"ridge", "groupwise", "analytic-ridge", "neural-fastcb", "linucb-disjoint", "dynlin-ucb", "fair-exp2"} <= families
    a, b = shard_state(json_engine), shard_state(arrow_engine)
    assert a.keys() == b.keys()
    for sid in a:
        assert_same_bits(a[sid], b[sid], str(sid))
    assert by_id(arrow_answers) == by_id(json_answers) and len(arrow_answers) == len(json_answers)
    assert by_id(arrow_dead) == by_id(json_dead)
    assert arrow_engine.events_seen == json_engine.events_seen == len(payloads)
    assert arrow_engine.arrow_decoder.fallbacks == 0  # the column-wise path never gave up on a batch


def test_a_regression_stream_with_groups_is_bit_identical_whatever_the_batch_and_message_sizes(regression_config):
    payloads = regression_stream(900, seed=5)
    ref, ref_answers, _ = run(regression_config, payloads, batch_size=512)
    for rows_per_message, batch_size in ((1000, 7), (64, 512), (33, 50)):
        engine, answers, dead = run(regression_config, arrow_messages(payloads, rows_per_message), batch_size=batch_size)
        assert not dead and engine.arrow_decoder.fallbacks == 0
        assert_same_bits(shard_state(ref), shard_state(engine))
        assert [orjson.loads(r[1]) for r in answers] == [orjson.loads(r[1]) for r in ref_answers]


GOOD = {"model": "m", "kind": "observe", "features": [0.5, 1.0, -1.0], "label": 1.0, "attributes": {"segment": "a", "age": 30.0}}
BAD_ROWS = [
    ({"model": "ghost"}, "unknown_model"),
    ({"features": [1.0, float("nan"), 2.0]}, "non_finite"),
    ({"label": float("inf")}, "non_finite"),
    ({"features": [1.0, 2.0]}, "missing_features"),
    ({"features": [1.0, 2.0, 3.0, 4.0]}, "extra_features"),
    ({"features": [1.0, None, 3.0]}, "wrong_type"),
    ({"features": [1.0, 2e13, 3.0]}, "out_of_range"),
    ({"label": 1e300}, "out_of_range"),
    ({"label": "high"}, "bad_label"),
    ({"label": None}, "missing_field"),
    ({"kind": "guess"}, "unknown_kind"),
    ({"kind": None}, "missing_field"),
    ({"kind": "predict"}, "unknown_field"),  # a predict carrying a label
    ({"kind": "decide", "label": None}, "unsupported_kind"),
    ({"id": "x" * 300}, "bad_field"),
    ({"key": "k" * 300}, "bad_field"),
    ({"ts": "yesterday"}, "bad_field"),
    ({"attributes": {"segment": ["a"]}}, "bad_field"),
    ({"extra": 1}, "unknown_field"),
    ({"kind": "feedback", "ref": "nothing", "features": None, "attributes": None}, "unknown_ref"),
]


@pytest.mark.parametrize("change, reason", BAD_ROWS, ids=[r for _, r in BAD_ROWS])
def test_a_bad_row_is_dead_lettered_alone_with_the_json_reason_and_its_row_index(regression_config, change, reason):
    rows = [{"id": f"g{i}", **GOOD} for i in range(3)]
    rows[1] = {k: v for k, v in {**rows[1], **change}.items() if v is not None}
    json_payloads = [
        orjson.dumps(r, option=orjson.OPT_SERIALIZE_NUMPY) if "nan" not in repr(r) and "inf" not in repr(r) else None for r in rows
    ]
    if json_payloads[1] is None:  # JSON spells NaN and Infinity as literals orjson does not write
        json_payloads[1] = orjson.dumps(rows[1]).replace(b"null", b"NaN" if "nan" in repr(rows[1]) else b"Infinity")
    _, _, json_dead = run(regression_config, json_payloads)
    assert [orjson.loads(r[1])["reason"] for r in json_dead] == [reason]
    try:
        batch = from_events(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a column of mixed types: the bad row in a message of its own
        batch = None
    messages = [encode_batch(batch)] if batch is not None else [encode_batch(from_events([r])) for r in rows]
    _, answers, dead = run(regression_config, messages)
    (letter,) = [orjson.loads(r[1]) for r in dead]
    assert letter["reason"] == reason
    assert f"(row {1 if batch is not None else 0} of " in letter["detail"]
    assert orjson.loads(letter["raw"])["id"] == rows[1]["id"]
    assert sorted(orjson.loads(r[1])["id"] for r in answers) == ["g0", "g2"]


def test_a_message_that_is_not_an_arrow_stream_is_one_dead_letter(regression_config):
    good = encode_batch(from_events([{"id": "a", **GOOD}]))
    _, answers, dead = run(regression_config, [b"\xff\xff\xff\xff garbage", good])
    assert [orjson.loads(r[1])["reason"] for r in dead] == ["not_json"] and len(answers) == 1


def test_the_position_names_the_row_and_a_restart_inside_a_message_gives_the_uninterrupted_state(tmp_path):
    """Killed after a checkpoint taken inside a message (no shutdown: what follows the checkpoint is lost),
    then restarted: the run resumes at the checkpointed row and ends where an uninterrupted run does."""
    payloads = regression_stream(2000, seed=9)
    messages = arrow_messages(payloads, rows_per_message=250)
    raw = regression_config_dict(
        runtime={"batch_size": 40}, checkpoint={"dir": str(tmp_path / "state"), "every_events": 300, "every_seconds": 3600}
    )
    config = parse_config(raw)
    clean, clean_answers, _ = run(parse_config(regression_config_dict(runtime={"batch_size": 40})), messages)

    answers = MemorySink()
    engine = Engine(config, MemorySource(messages), answers, MemorySink(), serve_metrics=False)
    while engine.events_seen < 1100:
        engine.process(engine.source.poll(40, 0.0))
        engine._maybe_checkpoint()
    state, _ = latest_checkpoint(str(tmp_path / "state"))
    position = state["position"]
    assert position.get("row", 0) > 0, position  # the checkpoint is inside a message
    assert state["events_seen"] == position["index"] * 250 + position["row"]  # messages of 250 rows
    del engine  # the kill: no shutdown, no checkpoint of what came after

    resumed_answers = MemorySink()
    resumed = Engine(config, MemorySource(messages), resumed_answers, MemorySink(), serve_metrics=False)
    resumed.run()
    assert_same_bits(shard_state(clean), shard_state(resumed))
    assert resumed.events_seen == clean.events_seen
    tail = [orjson.loads(r[1]) for r in clean_answers][-len(resumed_answers.records) :]
    assert [orjson.loads(r[1]) for r in resumed_answers.records] == tail


def test_a_checkpoint_of_todays_format_without_a_row_still_restores():
    source = MemorySource([b"a", b"b", b"c"])
    source.seek({"index": 1})
    assert source.poll(5, 0.0) == [b"b", b"c"] and source.position() == {"index": 3}


def test_answers_can_be_arrow_messages_one_per_model_and_kind(regression_config):
    config = parse_config(regression_config_dict(runtime={"answer_format": "arrow"}, answers={"type": "memory"}))
    payloads = regression_stream(300, seed=2)
    _, json_answers, _ = run(regression_config, payloads)
    _, answers, _ = run(config, arrow_messages(payloads, 100), batch_size=128)
    rows = []
    for key, payload, headers in answers:
        assert key == "m" and dict(headers)["content-type"] == "application/vnd.apache.arrow.stream"
        batch = read_batch(payload)
        assert int(dict(headers)["rows"]) == batch.num_rows
        rows += batch.to_pylist()
    assert {r["id"]: r for r in rows} == by_id(json_answers)
    assert len(rows) == len(json_answers)


def test_arrow_answers_need_a_binary_sink():
    with pytest.raises(ConfigError, match="answer_format"):
        parse_config(regression_config_dict(runtime={"answer_format": "arrow"}, answers={"type": "jsonl", "path": "a.jsonl"}))


def test_a_frame_with_one_column_per_feature_and_attribute_columns(regression_config):
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(50, 3)), columns=["x0", "x1", "x2"])
    frame["y"] = frame.sum(axis=1)
    frame["attributes.segment"] = ["abc"[i % 3] for i in range(50)]
    packed = encode_batch(to_record_batch(frame, model="m", kind="observe", features=["x0", "x1", "x2"], label="y", id_prefix="r"))
    named = encode_batch(
        to_record_batch(
            frame.rename(columns={f"x{i}": f"features.x{i}" for i in range(3)}), model="m", kind="observe", label="y", id_prefix="r"
        )
    )
    a, answers_a, dead_a = run(regression_config, [packed])
    b, answers_b, dead_b = run(regression_config, [named])
    assert not dead_a and not dead_b and len(answers_a) == 50
    assert_same_bits(shard_state(a), shard_state(b))


def test_features_are_read_from_the_message_without_a_copy(regression_config):
    from regretflow.connectors.arrow import ArrowRows
    from regretflow.engine.runtime.arrow_batches import ArrowBlock, ArrowDecoder
    from regretflow.engine.runtime.events import EventDecoder
    from regretflow.engine.tasks import model_tasks

    payload = encode_batch(from_events([{"id": f"o{i}", **GOOD} for i in range(4)]))
    batch = read_batch(payload)
    (block,) = ArrowDecoder(EventDecoder(regression_config, model_tasks(regression_config))).decode(ArrowRows(batch, 1, 4, "t:0@0"))
    assert type(block) is ArrowBlock and len(block) == 3 and block.row == 1  # valid rows go together, no Event per row
    assert not block.X.flags.writeable and not block.X.flags.owndata  # a view of the message's buffer
    assert np.shares_memory(block.X, np.frombuffer(payload, dtype=np.uint8))
    assert block.groups[0].tolist() == [True, False, False, True, False, False]  # segment a, age 30 in [18, 40)
    assert block.ids == ["o1", "o2", "o3"] and block.labels == [1.0, 1.0, 1.0]


def test_a_row_its_shard_refuses_inside_a_block_is_dead_lettered_alone_with_its_row(regression_config):
    predict = {k: v for k, v in GOOD.items() if k != "label"} | {"kind": "predict"}
    rows = [{"id": "p1", **predict}, {"id": "p2", **predict}, {"id": "p1", **predict}, {"id": "p3", **predict}]
    _, json_answers, json_dead = run(regression_config, [orjson.dumps(r) for r in rows])
    _, answers, dead = run(regression_config, [encode_batch(from_events(rows))])
    (letter,) = [orjson.loads(r[1]) for r in dead]
    assert letter["reason"] == orjson.loads(json_dead[0][1])["reason"] == "duplicate_id"
    assert letter["detail"].endswith("(row 2 of 0)") and orjson.loads(letter["raw"])["id"] == "p1"
    assert [orjson.loads(r[1]) for r in answers] == [orjson.loads(r[1]) for r in json_answers]


def test_the_arrow_benchmark_runs_in_process_on_a_tiny_size():
    """A smoke run of tests/benchmarks/bench_arrow.py (no timing is asserted): the engine's answers equal
    the bare learner's predictions."""
    import subprocess
    import sys

    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_arrow.py"
    args = ["--events", "1500", "--rows-per-message", "400", "--batch", "256", "--repeat", "1", "--no-kafka"]
    out = subprocess.run([sys.executable, str(bench), *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "agree: yes" in out.stdout and "Arrow engine / bare:" in out.stdout


def arrow_answer_rows(answers) -> list[dict]:
    return [r for _, payload, _ in answers for r in read_batch(payload).to_pylist()]


def test_arrow_answers_come_from_the_run_s_columns_with_the_json_answers_types(regression_config):
    """Runs answer in columns (prediction float64, model_version int64, ids from the message); the rows
    equal the JSON answers."""
    config = parse_config(regression_config_dict(runtime={"answer_format": "arrow"}, answers={"type": "memory"}))
    payloads = regression_stream(400, seed=3)
    json_engine, json_answers, _ = run(regression_config, payloads, batch_size=64)
    engine, answers, _ = run(config, arrow_messages(payloads, 90), batch_size=64)
    for _, payload, _ in answers:
        schema = read_batch(payload).schema
        assert schema.field("prediction").type == pa.float64() and schema.field("model_version").type == pa.int64()
        assert schema.names == ["id", "model", "kind", "prediction", "model_version"]
    got, expected = arrow_answer_rows(answers), [orjson.loads(r[1]) for r in json_answers]
    for kind in ("observe", "predict"):  # (a message holds one model and kind: each kind's answers keep their order)
        assert [r for r in got if r["kind"] == kind] == [r for r in expected if r["kind"] == kind]
    assert len(got) == len(expected)
    assert_same_bits(shard_state(json_engine), shard_state(engine))
    assert engine.metrics.sink_records.labels(sink="answers")._value.get() == len(json_answers)


def test_one_message_of_keys_kinds_and_models_mixed_cuts_into_blocks_as_json_would(regression_config):
    """Rows of two keys (one run of nulls among them), observe and predict, cut into blocks where any of
    model, kind or key changes: the same answers, dead letters and state as the events one by one as JSON."""
    raw = regression_config_dict()
    raw["models"]["m"]["params"]["shard_by_key"] = True
    raw["models"]["n"] = {**raw["models"]["m"], "params": {"lam": 2.0}}
    cfg = parse_config(raw)
    rng = np.random.default_rng(7)
    rows = []
    for i in range(120):
        row = {"id": f"r{i}", "model": "mn"[(i // 7) % 2], "kind": "observe", "features": rng.normal(size=3).tolist()}
        row["attributes"] = {"segment": "abc"[i % 3], "age": 30.0}
        if (i // 5) % 4 == 3:
            row["kind"] = "predict"
        else:
            row["label"] = float(rng.normal())
        if (i // 11) % 3:
            row["key"] = f"k{(i // 11) % 3}"
        rows.append(row)
    json_engine, json_answers, json_dead = run(cfg, [orjson.dumps(r) for r in rows], batch_size=50)
    engine, answers, dead = run(cfg, [encode_batch(from_events(rows[:70])), encode_batch(from_events(rows[70:]))], batch_size=50)
    assert [orjson.loads(r[1]) for r in answers] == [orjson.loads(r[1]) for r in json_answers]
    assert not dead and not json_dead
    assert_same_bits(shard_state(json_engine), shard_state(engine))

    arrow_cfg = dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, answer_format="arrow"))
    _, arrow_answers, _ = run(arrow_cfg, [encode_batch(from_events(rows))], batch_size=50)
    got = arrow_answer_rows(arrow_answers)
    expected = [orjson.loads(r[1]) for r in json_answers]
    # an answer message holds one model and kind; a row without a key has a null key where another row has one
    assert sorted((r["id"], r.get("key")) for r in got) == sorted((r["id"], r.get("key")) for r in expected)
    assert {r["id"]: {k: v for k, v in r.items() if v is not None} for r in got} == {r["id"]: r for r in expected}


def test_ids_are_measured_in_characters_not_bytes(regression_config):
    rows = [{"id": "é" * 256, **GOOD}, {"id": "e" * 257, **GOOD}, {"id": "ü" * 200, **GOOD}]
    _, json_answers, json_dead = run(regression_config, [orjson.dumps(r) for r in rows])
    _, answers, dead = run(regression_config, [encode_batch(from_events(rows))])
    assert [orjson.loads(r[1]) for r in answers] == [orjson.loads(r[1]) for r in json_answers] and len(answers) == 2
    assert [orjson.loads(r[1])["reason"] for r in dead] == [orjson.loads(r[1])["reason"] for r in json_dead] == ["bad_field"]


def test_a_run_answered_in_columns_whose_state_goes_non_finite_is_dead_lettered_not_answered(regression_config, monkeypatch):
    from regretflow.learners.ridge import OnlineRidge

    real = OnlineRidge.observe_many

    def poisoned(self, X, y, groups=None):
        preds = real(self, X, y, groups)
        if (y == 123.0).any():
            self.__dict__[next(k for k, v in vars(self).items() if isinstance(v, np.ndarray) and v.dtype.kind == "f")][...] = np.nan
        return preds

    monkeypatch.setattr(OnlineRidge, "observe_many", poisoned)
    config = parse_config(regression_config_dict(runtime={"answer_format": "arrow"}, answers={"type": "memory"}))
    good = [orjson.loads(p) for p in regression_stream(60, seed=5, with_joins=False)]
    bad = {"id": "nan-maker", "model": "m", "kind": "observe", "features": [0.1, 0.2, 0.3], "label": 123.0}
    messages = [encode_batch(from_events(good[:30])), encode_batch(from_events([*good[30:40], bad, *good[40:]]))]
    engine, answers, dead = run(config, messages, batch_size=30)
    assert [r["id"] for r in arrow_answer_rows(answers)] == [r["id"] for r in good[:30]]
    letters = [orjson.loads(r[1]) for r in dead]
    assert [d["reason"] for d in letters] == ["model_unhealthy"] * 31
    assert orjson.loads(letters[10]["raw"])["id"] == "nan-maker"
    assert engine.router.shards[("m", "")].quarantined


def test_group_memberships_read_column_wise_match_the_json_events():
    """Declared values, bins of a number, a grouping read from a feature when the attribute is absent, a
    null attributes struct, values outside the groups, and a dictionary-encoded column: the same memberships
    (so the same regret per group and state) as the events one by one as JSON."""
    raw = regression_config_dict()
    raw["models"]["m"]["groups"].append({"name": "x0", "field": "x0", "edges": [-1.0, 0.0, 1.0]})
    cfg = parse_config(raw)
    rng = np.random.default_rng(11)
    rows = []
    for i in range(90):
        attributes = {"segment": "abcz"[i % 4] if i % 7 else None, "age": [25.0, 45.0, 85.0, None][i % 4]}
        if i % 5 == 0:
            attributes["x0"] = [-0.5, 0.5, 3.0][i % 3]
        row = {"id": f"r{i}", "model": "m", "kind": "observe", "features": rng.normal(size=3).tolist(), "label": float(i % 3)}
        if i % 9:
            row["attributes"] = {k: v for k, v in attributes.items() if v is not None}
        rows.append(row)
    json_engine, json_answers, _ = run(cfg, [orjson.dumps(r) for r in rows], batch_size=40)
    batch = from_events(rows)
    struct = batch.column("attributes")
    fields = [struct.field(k) for k in range(struct.type.num_fields)]
    names = [struct.type.field(k).name for k in range(struct.type.num_fields)]
    fields[names.index("segment")] = fields[names.index("segment")].dictionary_encode()
    attributes = pa.StructArray.from_arrays(fields, names=names, mask=struct.is_null())
    batch = batch.set_column(batch.schema.get_field_index("attributes"), "attributes", attributes)
    engine, answers, dead = run(cfg, [encode_batch(batch)], batch_size=40)
    assert not dead and engine.arrow_decoder.fallbacks == 0  # (the column-wise path read every row)
    assert [orjson.loads(r[1]) for r in answers] == [orjson.loads(r[1]) for r in json_answers]
    assert_same_bits(shard_state(json_engine), shard_state(engine))
