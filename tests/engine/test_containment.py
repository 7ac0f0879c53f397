"""Off the happy path: one event's error stays that event's, shards are bounded, a shard
whose state goes non-finite is quarantined, a run that raises ends the worker without a
checkpoint past what was applied, and restored figures are exported before any event."""

from __future__ import annotations

import dataclasses
import os
import subprocess

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regretflow.connectors.memory import MemorySink, MemorySource
from regretflow.engine.config import parse_config
from regretflow.engine.runtime.checkpoint import latest_checkpoint
from regretflow.engine.runtime.dead_letters import REASONS
from regretflow.engine.runtime.loop import Engine
from tests.conftest import REGRETFLOW, flat, regression_config_dict, regression_stream
from tests.engine.test_crash_resume import write_config
from tests.engine.test_runtime import assert_same_bits, run, shard_state

# payloads that broke the decoder or the router before (and a few of their cousins)
POISON = [
    b'{"id": "x", "model": "m", "kind": ["observe"], "features": [1, 2, 3], "label": 1}',
    b'{"id": "x", "model": "m", "kind": {"a": 1}, "features": [1, 2, 3], "label": 1}',
    b'{"id": "x", "model": ["m"], "kind": "observe", "features": [1, 2, 3], "label": 1}',
    b'{"id": "x", "model": {"m": 1}, "kind": "observe", "features": [1, 2, 3], "label": 1}',
    b'{"id": "x", "model": "m", "kind": "observe", "features": [1, 2, 1e155], "label": 1}',
    b'{"id": "x", "model": "m", "kind": "observe", "features": [1, 2, 3], "label": 1e300}',
    b'{"id": "x", "model": "m", "kind": "observe", "features": [1, 2, ' + b"9" * 400 + b'], "label": 1}',
    b'{"id": "x", "model": "m", "kind": "feedback", "ref": ["p1"], "label": 1}',
    b'{"id": "x", "model": "m", "kind": "feedback", "ref": "p1", "label": [1]}',
    b'{"id": "x", "model": "m", "kind": "predict", "features": {"x0": [1], "x1": 2, "x2": 3}}',
    b'{"id": "x", "model": "m", "kind": "predict", "features": [1, 2, 3], "attributes": {"segment": ["a"]}}',
    b'{"id": "x", "model": "m", "kind": "decide", "features": [1, 2, 3]}',
    b'{"id": "x", "model": "m", "kind": "observe", "features": [1, 2, 3], "label": 1, "key": ["k"]}',
    b"[" * 5000 + b"]" * 5000,
    b"\xff\xfe\x00",
]


def _engine(config, payloads, directory=None):
    answers, dead = MemorySink(), MemorySink()
    if directory is not None:
        config = dataclasses.replace(config, checkpoint=dataclasses.replace(config.checkpoint, dir=str(directory)))
    return Engine(config, MemorySource(payloads), answers, dead, serve_metrics=False), answers, dead


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 600), st.sampled_from(POISON)), min_size=1, max_size=12))
def test_poison_at_random_positions_is_dead_lettered_once_and_never_touches_state(regression_config, injections):
    good = regression_stream(600, seed=3)
    clean, clean_answers, _ = run(regression_config, good, batch_size=64)
    mixed = list(good)
    for position, payload in sorted(injections, reverse=True):
        mixed.insert(position, payload)
    engine, answers, dead = run(regression_config, mixed, batch_size=64)
    assert_same_bits(shard_state(clean), shard_state(engine))
    assert answers == clean_answers
    assert len(dead) == len(injections)
    assert all(d["reason"] in REASONS for d in dead)
    assert engine.events_seen == len(mixed)


def test_an_exception_inside_one_event_is_its_dead_letter_and_the_batch_goes_on(regression_config, monkeypatch, caplog):
    """Whatever raises while one event is handled (here: the decoder, on purpose) is that
    event's dead letter, ``internal_error`` with the exception, logged once per minute."""
    from regretflow.engine.runtime import events

    real = events.EventDecoder.decode

    def flaky(self, payload):
        if b'"boom' in payload:
            raise KeyError("a bug the decoder did not expect")
        return real(self, payload)

    monkeypatch.setattr(events.EventDecoder, "decode", flaky)
    good = regression_stream(300, seed=4)
    clean, clean_answers, _ = run(regression_config, good, batch_size=50)
    mixed = list(good)
    for i in (250, 120, 7):
        mixed.insert(i, b'{"id": "boom%d", "model": "m"}' % i)
    with caplog.at_level("ERROR", logger="regretflow"):
        engine, answers, dead = run(regression_config, mixed, batch_size=50)
    assert_same_bits(shard_state(clean), shard_state(engine))
    assert answers == clean_answers
    assert [d["reason"] for d in dead] == ["internal_error"] * 3
    assert all(d["detail"].startswith("KeyError:") for d in dead)
    assert len([r for r in caplog.records if "event=internal_error" in r.message]) == 1  # rate-limited
    assert engine.metrics.dead_letters.labels(model="_unknown_", reason="internal_error")._value.get() == 3


def test_a_learner_raising_mid_update_quarantines_its_shard_with_the_last_good_state(uniform_bandit, tmp_path, monkeypatch):
    cfg = parse_config(
        {
            "models": {"b": {"learner": "uniform-test", "features": ["x"], "n_actions": 3, "params": {"shard_by_key": True}}},
            "checkpoint": {"every_events": 1_000_000},
        }
    )

    def decide(i, key):
        return orjson.dumps({"id": f"d{i}", "model": "b", "kind": "decide", "features": [0.1], "key": key})

    def feedback(i, key, reward=1.0):
        return orjson.dumps({"id": f"f{i}", "model": "b", "kind": "feedback", "ref": f"d{i}", "reward": reward, "key": key})

    first = [p for i in range(20) for p in (decide(i, "k1"), feedback(i, "k1"), decide(100 + i, "k2"), feedback(100 + i, "k2"))]
    engine, _, _ = _engine(cfg, first, tmp_path)
    engine.run()
    good = {sid: s.state_dict() for sid, s in engine.router.shards.items()}

    real_learn = uniform_bandit.learn

    def learn(self, context, action, reward, probability=None, actions=None, ticket=-1):
        real_learn(self, context, action, reward, probability, actions, ticket)
        if reward == 7.0:  # the state changed, then the learner fails
            raise TypeError("half-way")

    monkeypatch.setattr(uniform_bandit, "learn", learn)
    second = [
        decide(50, "k1"),
        feedback(50, "k1"),
        decide(51, "k1"),
        feedback(51, "k1", reward=7.0),
        decide(52, "k1"),
        decide(150, "k2"),
        feedback(150, "k2"),
    ]
    engine2, answers, dead = _engine(cfg, first + second, tmp_path)  # resumes after `first`
    engine2.run()
    reasons = [(orjson.loads(r[1])["reason"], dict(r[2])["event_id"]) for r in dead.records]
    # f51 is the error; d52 comes to a quarantined shard; d50 and d51 were answered in the
    # same micro-batch from the state that is now put back, so their answers are withdrawn
    assert reasons == [("internal_error", "f51"), ("model_unhealthy", "d52"), ("model_unhealthy", "d50"), ("model_unhealthy", "d51")]
    assert [orjson.loads(r[1])["id"] for r in answers.records][-1:] == ["d150"]
    k1 = engine2.router.shards[("b", "k1")]
    assert k1.quarantined and "half-way" in k1.quarantined
    # k1 is back at its checkpointed state; k2 goes on learning
    assert_same_bits(good[("b", "k1")]["learner"], k1.state_dict()["learner"])
    assert engine2.router.shards[("b", "k2")].learner.n_updates == 21
    assert engine2.metrics.quarantines.labels(model="b")._value.get() == 1
    assert engine2.metrics.quarantined_shards.labels(model="b")._value.get() == 1
    # the checkpoint holds the good state, which loads (a non-finite or half-updated one would not)
    state, _ = latest_checkpoint(tmp_path)
    k1_saved = next(s for s in state["shards"].values() if s["key"] == "k1")
    assert_same_bits(flat(good[("b", "k1")]["learner"]), flat(k1_saved["learner"]))


def test_a_run_whose_state_goes_non_finite_is_not_answered_and_the_shard_is_quarantined(regression_config, monkeypatch):
    from regretflow.learners.ridge import OnlineRidge

    real = OnlineRidge.observe_many

    def poisoned(self, X, y, groups=None):
        preds = real(self, X, y, groups)
        if (y == 123.0).any():
            self.__dict__[next(k for k, v in vars(self).items() if isinstance(v, np.ndarray) and v.dtype.kind == "f")][...] = np.nan
        return preds

    monkeypatch.setattr(OnlineRidge, "observe_many", poisoned)
    good = regression_stream(200, seed=5, with_joins=False)
    bad = orjson.dumps({"id": "nan-maker", "model": "m", "kind": "observe", "features": [0.1, 0.2, 0.3], "label": 123.0})
    engine, answers, dead = run(regression_config, good[:100] + [bad] + good[100:], batch_size=1)
    shard = engine.router.shards[("m", "")]
    assert shard.quarantined and "non-finite" in shard.quarantined
    assert [a["id"] for a in answers] == [orjson.loads(p)["id"] for p in good[:100]]
    assert [d["reason"] for d in dead] == ["model_unhealthy"] * 101
    assert dead[0]["raw"] == bad.decode()
    # no checkpoint dir: the shard starts over empty rather than keep a NaN state
    assert shard.learner.n_updates == 0
    for value in flat(shard.state_dict()).values():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            assert np.isfinite(value).all()


@pytest.mark.parametrize("batch_size", [1, 4])
def test_a_neural_step_that_leaves_nan_weights_quarantines_the_shard_before_its_batch_is_answered(batch_size, monkeypatch):
    """The network answers for its own weights (it looks at them after each step, not every batch):
    a step gone wrong is still caught in its micro-batch, whose answers are withdrawn."""
    from regretflow.learners import neural_kernels as NK

    real = NK.learn_one

    def step_gone_wrong(theta, theta0, grad, first, second, t, *args):
        loss = real(theta, theta0, grad, first, second, t, *args)
        if t == 30:  # the model's 30th step (the kernels' warm-up takes step 1 only)
            theta[7] = np.nan
        return loss

    monkeypatch.setattr(NK, "learn_one", step_gone_wrong)
    cfg = parse_config({"models": {"nb": {"learner": "neural-squarecb", "n_actions": 3, "features": ["a", "b"], "params": {"width": 4}}}})
    rng = np.random.default_rng(0)
    stream = []
    for t in range(40):
        stream.append(orjson.dumps({"id": f"d{t}", "model": "nb", "kind": "decide", "features": rng.normal(size=2).tolist()}))
        stream.append(orjson.dumps({"id": f"f{t}", "model": "nb", "kind": "feedback", "ref": f"d{t}", "reward": float(t % 2)}))
    engine, answers, dead = run(cfg, stream, batch_size=batch_size)
    shard = engine.router.shards[("nb", "")]
    assert shard.quarantined and "non-finite" in shard.quarantined and "_theta" in shard.quarantined
    poisoned_batch = 59 // batch_size  # f29 is the 60th event
    answered = {f"d{t}" for t in range(40) if 2 * t < poisoned_batch * batch_size}
    assert {a["id"] for a in answers} == answered
    assert {d["reason"] for d in dead} == {"model_unhealthy"}
    assert len(answers) + len(dead) == 40 + 10  # every decide answered or dead-lettered, and f30..f39
    assert shard.learner.n_updates == 0  # no checkpoint: an empty shard, not the NaN weights
    for value in flat(shard.state_dict()).values():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            assert np.isfinite(value).all()


def test_invalid_events_with_fresh_keys_create_no_shard_and_max_shards_bounds_the_rest():
    raw = regression_config_dict()
    raw["models"]["m"]["params"]["shard_by_key"] = True
    raw["models"]["m"]["max_shards"] = 3
    cfg = parse_config(raw)
    bad = []
    for i in range(3000):
        bad.append(orjson.dumps({"id": f"f{i}", "model": "m", "kind": "feedback", "ref": "nope", "label": 1.0, "key": f"k{i}"}))
        bad.append(orjson.dumps({"id": f"d{i}", "model": "m", "kind": "decide", "features": [1, 2, 3], "key": f"j{i}"}))
    good = [
        orjson.dumps({"id": f"o{i}", "model": "m", "kind": "observe", "features": [1, 2, 3], "label": 1.0, "key": f"g{i % 5}"})
        for i in range(50)
    ]
    engine, answers, dead = run(cfg, bad + good)
    assert sorted(key for _, key in engine.router.shards) == ["g0", "g1", "g2"]
    reasons = {}
    for d in dead:
        reasons[d["reason"]] = reasons.get(d["reason"], 0) + 1
    # the first 3 keys of invalid events create nothing; once 3 valid keys exist, any new key is too_many_keys
    assert reasons == {"unknown_ref": 3000, "unsupported_kind": 3000, "too_many_keys": 20}
    assert len(answers) == 30


def test_restored_figures_are_exported_before_the_first_event(tmp_path):
    cfg = parse_config(regression_config_dict(checkpoint={"dir": str(tmp_path), "every_events": 10_000}))
    engine, _, _ = _engine(cfg, regression_stream(400, seed=6))
    engine.run()
    engine.publish_all()
    before = engine.metrics.exposition().decode()
    restarted, _, _ = _engine(cfg, [])

    def samples(text):
        return {
            line.rsplit(" ", 1)[0]: line.rsplit(" ", 1)[1]
            for line in text.splitlines()
            if line.startswith(
                ("regretflow_regret{", "regretflow_group_rounds{", "regretflow_cumulative_loss{", "regretflow_model_version{")
            )
        }

    a, b = samples(before), samples(restarted.metrics.exposition().decode())
    assert a and a == b
    assert 'regretflow_group_rounds{group="all",model="m"} 0.0' not in b
    # counters with known label sets are there at 0 before anything happened
    text = restarted.metrics.exposition().decode()
    for name in ("regretflow_joins_expired_total", "regretflow_joins_evicted_total", "regretflow_quarantines_total"):
        assert f'{name}{{model="m"}} 0.0' in text


def test_dead_letters_carry_the_model_and_the_event_id_header(regression_config):
    payloads = [b'{"id": "e1", "model": "m", "kind": "observe", "features": [1, 2], "label": 1}', b"not json"]
    engine, answers, dead = _engine(regression_config, payloads)
    engine.run()
    headers = [dict(r[2]) for r in dead.records]
    assert headers[0] == {"model": "m", "reason": "missing_features", "event_id": "e1"}
    assert headers[1] == {"model": "_unknown_", "reason": "not_json"}


def test_a_run_that_raises_ends_the_worker_without_a_checkpoint_and_loses_nothing(tmp_path):
    """The test hook makes the 40th vectorised run raise after its learner call (state
    changed, nothing answered). The worker must end non-zero with the newest checkpoint
    that of applied events only; the restart then ends bit-identical to a clean run."""
    events = regression_stream(6000, seed=8)
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(events) + b"\n")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    clean_cfg = write_config(tmp_path, "clean", checkpoint_every=1_000_000)
    subprocess.run([REGRETFLOW, "run", "--config", str(clean_cfg)], check=True, env=env, cwd=tmp_path, timeout=300)

    cfg = write_config(tmp_path, "fault", checkpoint_every=500)
    failed = subprocess.run(
        [REGRETFLOW, "run", "--config", str(cfg)],
        env={**env, "REGRETFLOW_TEST_FAIL_AT_RUN": "400"},
        cwd=tmp_path,
        timeout=300,
        capture_output=True,
        text=True,
    )
    assert failed.returncode == 1, failed.stderr[-2000:]
    assert "injected fault" in failed.stderr
    assert "event=abort" in failed.stderr
    state, _ = latest_checkpoint(tmp_path / "fault-state")
    assert 0 < state["events_seen"] < len(events)
    subprocess.run([REGRETFLOW, "run", "--config", str(cfg)], check=True, env=env, cwd=tmp_path, timeout=300)

    clean_state, _ = latest_checkpoint(tmp_path / "clean-state")
    fault_state, _ = latest_checkpoint(tmp_path / "fault-state")
    assert_same_bits(clean_state["shards"], fault_state["shards"])
    assert clean_state["events_seen"] == fault_state["events_seen"] == len(events)


def test_a_large_step_on_raw_scale_data_no_longer_diverges_through_the_engine():
    """Before the capped gradient step, the online neural regressor with a large step on
    unscaled data went NaN within a few batches (the engine then quarantined it); now
    every answer is finite and the shard stays healthy."""
    cfg = parse_config(
        {"models": {"m": {"learner": "neural", "features": ["a", "b"], "params": {"learning_rate": 0.5}}}, "runtime": {"batch_size": 16}}
    )
    rng = np.random.default_rng(0)
    events = [
        orjson.dumps(
            {
                "id": str(i),
                "model": "m",
                "kind": "observe",
                "features": (rng.normal(size=2) * 1e5).tolist(),
                "label": float(rng.normal() * 1e6),
            }
        )
        for i in range(300)
    ]
    engine, answers, dead = run(cfg, events)
    assert engine.router.shards[("m", "")].quarantined is None
    assert dead == [] and len(answers) == 300
    assert all(np.isfinite(a["prediction"]) for a in answers)
    assert engine.metrics.quarantined_shards.labels(model="m")._value.get() == 0
