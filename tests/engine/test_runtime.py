"""The runtime loop: answers, joins, bad input, batching invariance, bandit path."""

import numpy as np
import orjson
import pytest

from regretflow.connectors.memory import MemorySink, MemorySource
from regretflow.engine.config import parse_config
from regretflow.engine.runtime.loop import Engine
from tests.conftest import assert_same_bits, regression_config_dict, regression_stream, shard_state


def run(config, payloads, batch_size=None):
    if batch_size is not None:
        import dataclasses

        config = dataclasses.replace(config, runtime=dataclasses.replace(config.runtime, batch_size=batch_size))
    answers, dead = MemorySink(), MemorySink()
    engine = Engine(config, MemorySource(payloads), answers, dead, serve_metrics=False)
    engine.run()
    return engine, [orjson.loads(r[1]) for r in answers.records], [orjson.loads(r[1]) for r in dead.records]


def test_every_request_is_answered_with_its_id_and_version(regression_config):
    stream = regression_stream(300)
    engine, answers, dead = run(regression_config, stream)
    requests = [orjson.loads(p) for p in stream]
    asked = [e["id"] for e in requests if e["kind"] in ("observe", "predict")]
    assert [a["id"] for a in answers] == asked and not dead
    versions = [a["model_version"] for a in answers if a["kind"] == "observe"]
    assert versions == sorted(versions) and versions[0] == 0


def test_feedback_to_a_predict_is_learned_with_the_served_prediction(regression_config):
    x = [1.0, 0.0, 0.0]
    stream = [
        orjson.dumps({"id": "p", "model": "m", "kind": "predict", "features": x}),
        orjson.dumps({"id": "f", "model": "m", "kind": "feedback", "ref": "p", "label": 2.0}),
    ]
    engine, answers, dead = run(regression_config, stream)
    shard = engine.router.shards[("m", "")]
    assert shard.learner.n_updates == 1 and not dead
    assert shard.tracker.summary()["all"]["loss"] == pytest.approx(4.0)  # served 0.0, label 2.0
    np.testing.assert_allclose(shard.learner.weights, [2 / 3, 0.0, 0.0, 2 / 3])  # ridge lam=1, intercept last: 2x/(1+|x|^2)


def test_unknown_late_duplicate_and_mismatched_feedback_are_dead_lettered(regression_config):
    cfg = parse_config(
        {**regression_config_dict(), "models": {"m": {**regression_config_dict()["models"]["m"], "joins": {"ttl_events": 2}}}}
    )
    obs = [orjson.dumps({"id": f"o{i}", "model": "m", "kind": "observe", "features": [0, 0, 1], "label": 1.0}) for i in range(3)]
    stream = [
        orjson.dumps({"id": "p", "model": "m", "kind": "predict", "features": [1, 0, 0]}),
        orjson.dumps({"id": "p", "model": "m", "kind": "predict", "features": [1, 0, 0]}),
        orjson.dumps({"id": "f0", "model": "m", "kind": "feedback", "ref": "p", "reward": 1.0}),
        *obs,
        orjson.dumps({"id": "f1", "model": "m", "kind": "feedback", "ref": "p", "label": 1.0}),
        orjson.dumps({"id": "f2", "model": "m", "kind": "feedback", "ref": "never", "label": 1.0}),
    ]
    engine, answers, dead = run(cfg, stream)
    assert [d["reason"] for d in dead] == ["duplicate_id", "feedback_mismatch", "late_feedback", "unknown_ref"]
    shard = engine.router.shards[("m", "")]
    assert shard.learner.n_updates == 3 and shard.seq == 4


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_state_does_not_depend_on_where_batches_fall(regression_config, batch_size):
    stream = regression_stream(500, seed=3)
    ref, _, _ = run(regression_config, stream, batch_size=512)
    other, _, _ = run(regression_config, stream, batch_size=batch_size)
    assert_same_bits(shard_state(ref), shard_state(other))


def malformed_events(rng, n):
    """n malformed events of many kinds (each with the reason it must get)."""
    makers = [
        (lambda i: b"not json at all %d" % i, "not_json"),
        (lambda i: b'{"id": "b%d", "model": "m", "kind": "observe", "features": [NaN, 1, 2], "label": 1}' % i, "non_finite"),
        (lambda i: b'{"id": "b%d", "model": "m", "kind": "observe", "features": [1, 2, 3], "label": Infinity}' % i, "non_finite"),
        (lambda i: orjson.dumps({"id": f"b{i}", "model": "ghost", "kind": "observe", "features": [1, 2, 3], "label": 1}), "unknown_model"),
        (lambda i: orjson.dumps({"id": f"b{i}", "model": "m", "kind": "observe", "features": [1, 2], "label": 1}), "missing_features"),
        (lambda i: orjson.dumps({"id": f"b{i}", "model": "m", "kind": "observe", "features": [1, 2, 3, 4], "label": 1}), "extra_features"),
        (lambda i: orjson.dumps({"id": f"b{i}", "model": "m", "kind": "observe", "features": [1, "2", 3], "label": 1}), "wrong_type"),
        (lambda i: orjson.dumps({"id": f"b{i}", "model": "m", "kind": "observe", "features": [1, 2, 3], "label": "high"}), "bad_label"),
        (
            lambda i: (
                b'{"id": "b%d", "model": "m", "kind": "observe", "features": [1, 2, 3], "label": 1, "pad": "%s"}' % (i, b"x" * 70_000)
            ),
            "oversized",
        ),
        (lambda i: orjson.dumps([i, "m", "observe"]), "not_object"),
        (lambda i: orjson.dumps({"id": f"b{i}", "model": "m", "features": [1, 2, 3], "label": 1}), "missing_field"),
        (lambda i: orjson.dumps({"id": f"b{i}", "model": "m", "kind": "guess", "features": [1, 2, 3]}), "unknown_kind"),
        (
            lambda i: orjson.dumps({"id": f"b{i}", "model": "m", "kind": "observe", "features": [1, 2, 3], "label": 1, "x": 1}),
            "unknown_field",
        ),
        (lambda i: orjson.dumps({"id": f"b{i}", "model": "m", "kind": "feedback", "ref": f"nothing-{i}", "label": 1.0}), "unknown_ref"),
        (lambda i: orjson.dumps({"id": f"b{i}", "model": "m", "kind": "decide"}), "unsupported_kind"),
    ]
    out = []
    for i in range(n):
        make, reason = makers[int(rng.integers(len(makers)))]
        out.append((make(i), reason))
    return out


def test_bad_input_never_touches_state_and_is_dead_lettered_with_reasons(regression_config):
    good = regression_stream(2000, seed=7)
    rng = np.random.default_rng(11)
    bad = malformed_events(rng, 1000)
    mixed, expected_reasons = list(good), []
    slots = sorted(rng.choice(len(good) + len(bad), size=len(bad), replace=False))
    for slot, (payload, _reason) in zip(slots, bad):
        mixed.insert(slot, payload)
    expected_reasons = [reason for _, (_, reason) in sorted(zip(slots, bad), key=lambda t: t[0])]
    clean, clean_answers, clean_dead = run(regression_config, good)
    dirty, dirty_answers, dirty_dead = run(regression_config, mixed)
    assert not clean_dead
    assert len({r for _, r in bad}) >= 10
    assert [d["reason"] for d in dirty_dead] == expected_reasons
    assert all(d["raw"] for d in dirty_dead)
    assert_same_bits(shard_state(clean), shard_state(dirty))
    assert clean_answers == dirty_answers
    # the counter by reason agrees
    for reason in set(expected_reasons):
        model = "_unknown_" if reason in ("not_json", "unknown_model", "oversized", "not_object") else "m"
        got = dirty.metrics.registry.get_sample_value("regretflow_dead_letters_total", {"model": model, "reason": reason})
        assert got == sum(1 for r in expected_reasons if r == reason and (model == "m") == _names_model(r)), reason


def _names_model(reason):
    return reason not in ("not_json", "unknown_model", "oversized", "not_object")


def test_bandit_decisions_log_propensities_and_feedback_updates_estimates(uniform_bandit):
    cfg = parse_config(
        {
            "models": {
                "b": {"learner": "uniform-test", "n_actions": 3, "params": {"seed": 5}, "joins": {"ttl_events": 4, "default_reward": 0.0}}
            }
        }
    )
    stream = []
    for i in range(300):
        stream.append(orjson.dumps({"id": f"d{i}", "model": "b", "kind": "decide", "expected_rewards": [0.1, 0.5, 0.9]}))
        if i % 3:  # every third decision never gets feedback: it learns the default reward when its window closes
            stream.append(orjson.dumps({"id": f"f{i}", "model": "b", "kind": "feedback", "ref": f"d{i}", "reward": 1.0}))
    engine, answers, dead = run(cfg, stream)
    assert not dead and len(answers) == 300
    a = answers[0]
    assert a["probabilities"] == [1 / 3] * 3 and a["probability"] == pytest.approx(1 / 3) and a["action"] in (0, 1, 2)
    shard = engine.router.shards[("b", "")]
    s = shard.tracker.summary()
    chosen = [ans["action"] for ans in answers]
    assert s["pseudo_regret"] == pytest.approx(sum(0.9 - [0.1, 0.5, 0.9][c] for c in chosen))
    assert s["count"] == shard.learner.n_updates == 300 - 1  # the last decision's window is still open
    assert s["uniform"]["ips"] == pytest.approx(s["reward"] / s["count"])  # uniform logging: IPS of uniform = mean reward
    assert engine.metrics.registry.get_sample_value("regretflow_joins_expired_total", {"model": "b"}) == 99


def test_keyed_shards_learn_separately():
    cfg = parse_config({"models": {"m": {"learner": "ridge", "features": ["x"], "params": {"shard_by_key": True, "fit_intercept": False}}}})
    stream = [
        orjson.dumps({"id": str(i), "model": "m", "kind": "observe", "key": k, "features": [1.0], "label": v})
        for i, (k, v) in enumerate([("a", 1.0), ("b", -1.0)] * 20)
    ]
    engine, answers, _ = run(cfg, stream)
    wa = engine.router.shards[("m", "a")].learner.weights[0]
    wb = engine.router.shards[("m", "b")].learner.weights[0]
    assert wa > 0.9 and wb < -0.9 and answers[0]["key"] == "a"
