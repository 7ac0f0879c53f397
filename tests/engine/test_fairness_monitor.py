"""The fairness simulator's monitor through the engine: truth the learner never sees, exported on /metrics."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import orjson
import pytest

from regretflow.connectors.memory import MemorySink
from regretflow.connectors.simulators.loop import TeeSink
from regretflow.engine.cli.daemon import open_source
from regretflow.engine.config import ConfigError, load_config
from regretflow.engine.evaluation.fairness_lp import FairnessMonitor, FairRegretTracker, fair_comparator
from regretflow.engine.runtime.checkpoint import latest_checkpoint, write_checkpoint
from regretflow.engine.runtime.loop import Engine
from regretflow.learners import fair_kernels as K
from regretflow.learners.fair import aggregate_panel

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "fairness.toml"
ROUNDS = 600


def config_with(rounds=ROUNDS, checkpoint_dir=None, **source):
    config = load_config(EXAMPLE)
    options = {**config.source.options, "rounds": rounds, **source}
    return dataclasses.replace(
        config,
        metrics=dataclasses.replace(config.metrics, enabled=False),
        checkpoint=dataclasses.replace(config.checkpoint, dir=checkpoint_dir),
        source=dataclasses.replace(config.source, options=options),
    )


def run(config):
    """The daemon's own construction of the simulator source, then the engine until the loop ends."""
    source = open_source(config, config.source)
    answers = MemorySink()
    engine = Engine(config, source, TeeSink(source, answers), MemorySink(), serve_metrics=False)
    engine.run()
    return engine, source, answers


def sample(engine, name, **labels):
    return engine.metrics.registry.get_sample_value(f"regretflow_simulator_{name}", {"model": "lending", **labels})


@pytest.fixture(scope="module")
def straight():
    return run(config_with())


def test_monitor_figures_match_a_recomputation_from_the_answers(straight):
    engine, source, answers = straight
    sim = source.env.sim
    decided = [orjson.loads(r[1]) for r in answers.records]
    assert len(decided) == ROUNDS
    q = [np.array(a["probabilities"]) for a in decided]
    y = [sim.labels(t) for t in range(ROUNDS)]
    mistakes = sum(float(np.sum(y[t] + q[t] * (1 - 2 * y[t]))) for t in range(ROUNDS))
    assert sample(engine, "rounds") == ROUNDS
    assert sample(engine, "expected_mistakes") == pytest.approx(mistakes, rel=1e-12)

    # the fair comparator: the LP on every round, solved independently here
    learner = engine.router.shards[("lending", "")].learner
    V = []
    for t in range(ROUNDS):
        M = np.empty((learner.n_policies, sim.k))
        K.evaluate_class(learner.W_, learner.b_, sim.individuals(t), M)
        V.append(M.astype(np.int8))
    best = fair_comparator(V, y, [sim.panel_bounds(t, learner.gamma) for t in range(ROUNDS)])
    assert sample(engine, "fair_regret_rounds") == ROUNDS, "solved at the last round"
    assert sample(engine, "fair_comparator_mistakes") == pytest.approx(best.errors, rel=1e-9)
    assert sample(engine, "fair_regret") == pytest.approx(mistakes - best.errors, rel=1e-9, abs=1e-9)
    assert sample(engine, "comparator_available") == 1.0

    # every auditor of the pool, measured with its own metric on the answered probabilities
    per_auditor = sum(sim.auditor_violations(t, q[t]) for t in range(ROUNDS))
    for j, auditor in enumerate(sim.auditors):
        assert sample(engine, "auditor_violation_pairs", auditor=auditor.name) == per_auditor[j]
    assert sample(engine, "auditor_last_round_pairs", auditor=sim.auditors[0].name) == sim.auditor_violations(ROUNDS - 1, q[-1])[0]
    assert len({a.name for a in sim.auditors}) == 5


def test_panel_violations_seen_by_the_simulator_equal_what_the_learner_learned():
    config = config_with(rounds=1_500, lp_max_rounds=0)
    params = {k: v for k, v in config.models["lending"].params.items() if k not in ("fairness_scale", "cost_bound")}
    accuracy_only = dataclasses.replace(config.models["lending"], learner="one-sided-exp2", params=params)
    engine, _, _ = run(dataclasses.replace(config, models={"lending": accuracy_only}))
    learner_rounds = engine.metrics.registry.get_sample_value("regretflow_learner_violation_rounds", {"model": "lending"})
    assert sample(engine, "panel_violation_rounds") == learner_rounds > 0
    learner_pairs = engine.metrics.registry.get_sample_value("regretflow_learner_violation_pairs", {"model": "lending"})
    assert sample(engine, "panel_violation_pairs") == learner_pairs
    assert sample(engine, "comparator_available") == 0.0 and np.isnan(sample(engine, "fair_regret"))


def test_beyond_lp_max_rounds_the_comparator_says_it_is_unavailable(straight):
    engine, _, _ = run(config_with(lp_max_rounds=400))
    assert sample(engine, "comparator_available") == 0.0
    assert sample(engine, "fair_regret_rounds") == 400, "the last solve, at lp_max_rounds"
    assert np.isfinite(sample(engine, "fair_regret"))
    # the Lagrangian regret carries on past the LP: the same run without a limit agrees on it
    assert sample(engine, "rounds") == ROUNDS
    assert sample(engine, "lagrangian_regret") == sample(straight[0], "lagrangian_regret")


def test_lagrangian_regret_follows_the_models_anytime_c_schedule():
    """Without a horizon C grows every round; the monitor must use the C the learner used at each audit."""
    config = config_with(rounds=400, lp_max_rounds=0)
    params = {k: v for k, v in config.models["lending"].params.items() if k != "horizon"}
    params.update(fairness_scale=0.5, learning_rate_factor=32.0)  # a weak C and a sharp policy: pairs get kept
    spec = dataclasses.replace(config.models["lending"], params=params)
    engine, source, answers = run(dataclasses.replace(config, models={"lending": spec}))
    sim, learner = source.env.sim, engine.router.shards[("lending", "")].learner
    tracker = FairRegretTracker(learner.W_, learner.b_)
    kept_any = 0
    for t, record in enumerate(answers.records):
        q = np.array(orjson.loads(record[1])["probabilities"])
        kept = aggregate_panel(sim.reports(t, q), q, sim.panel_size, learner.gamma)
        kept_any += int(kept.sum() > 0)
        tracker.update(sim.individuals(t), sim.labels(t), q, kept, learner.fairness_weight_at(t + 1))
    assert kept_any > 0, "no kept pair: C never entered the cost"
    assert sample(engine, "lagrangian_regret") == pytest.approx(tracker.lagrangian_regret(), rel=1e-12, abs=1e-9)
    assert sample(engine, "mistake_regret_unconstrained") == pytest.approx(tracker.error_regret(), rel=1e-12, abs=1e-9)
    off_by_one = FairRegretTracker(learner.W_, learner.b_)
    for t, record in enumerate(answers.records):
        q = np.array(orjson.loads(record[1])["probabilities"])
        kept = aggregate_panel(sim.reports(t, q), q, sim.panel_size, learner.gamma)
        off_by_one.update(sim.individuals(t), sim.labels(t), q, kept, learner.fairness_weight_at(t))
    assert off_by_one.lagrangian_regret() != pytest.approx(tracker.lagrangian_regret(), rel=1e-9)


def test_a_run_that_never_solves_the_lp_checkpoints_and_restores(tmp_path):
    """NaN figures (no solve) go into checkpoints, whose scalars are strict JSON, and come back."""
    first, _, _ = run(config_with(rounds=150, checkpoint_dir=str(tmp_path), lp_max_rounds=0))
    assert np.isnan(sample(first, "fair_regret"))
    resumed, _, _ = run(config_with(rounds=300, checkpoint_dir=str(tmp_path), lp_max_rounds=0))
    straight, _, _ = run(config_with(rounds=300, lp_max_rounds=0))
    for name in FairnessMonitor.GAUGES:
        if name != "lp_seconds":
            a, b = sample(resumed, name), sample(straight, name)
            assert a == b or (np.isnan(a) and np.isnan(b)), name
    assert np.isnan(sample(resumed, "fair_regret")) and sample(resumed, "rounds") == 300


def test_monitor_state_before_the_first_solve_survives_a_checkpoint_file(tmp_path, straight):
    sim = straight[1].env.sim
    learner = straight[0].router.shards[("lending", "")].learner
    monitor = FairnessMonitor(sim, learner.W_, learner.b_, fairness_weight=learner.fairness_weight_at)
    for t in range(40):  # before lp_first = 250
        monitor.observe(t, np.full(sim.k, 0.25))
    write_checkpoint(str(tmp_path), 1, {"monitor": monitor.state_dict()})
    restored = FairnessMonitor(sim, learner.W_, learner.b_, fairness_weight=learner.fairness_weight_at)
    restored.load_state_dict(latest_checkpoint(str(tmp_path))[0]["monitor"])
    assert restored.gauges()["rounds"] == 40 and np.isnan(restored.gauges()["fair_regret"])
    assert {k: v for k, v in restored.gauges().items() if k != "fair_regret" and k != "fair_comparator_mistakes"} == {
        k: v for k, v in monitor.gauges().items() if k != "fair_regret" and k != "fair_comparator_mistakes"
    }


def test_a_restarted_run_continues_the_same_monitor(tmp_path, straight):
    first_half, _, _ = run(config_with(rounds=ROUNDS // 2, checkpoint_dir=str(tmp_path)))
    assert sample(first_half, "rounds") == ROUNDS // 2
    resumed, _, _ = run(config_with(rounds=ROUNDS, checkpoint_dir=str(tmp_path)))
    engine = straight[0]
    for name in FairnessMonitor.GAUGES:
        if name != "lp_seconds":
            assert sample(resumed, name) == sample(engine, name), name
    for auditor in ("merit", "record", "everything", "life-stage", "demographic"):
        labels = {"model": "lending", "auditor": auditor}
        for name in ("regretflow_fair_auditor_reported_pairs", "regretflow_fair_auditor_panels"):
            value = resumed.metrics.registry.get_sample_value(name, labels)
            assert value is not None and value == engine.metrics.registry.get_sample_value(name, labels), (name, auditor)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"lp_max_rounds": -1}, "lp_max_rounds"),
        ({"lp_max_rounds": "many"}, "lp_max_rounds"),
        ({"horizon": "many"}, "horizon"),
        ({"horizon": -5}, "horizon"),
        ({"horizon": 0}, "horizon"),
    ],
)
def test_bad_monitor_options_are_config_errors(change, message):
    with pytest.raises(ConfigError, match=message):
        open_source(config_with(**change), config_with(**change).source)


def test_the_fairness_simulator_refuses_a_model_that_is_not_fair():
    config = config_with()
    spec = dataclasses.replace(config.models["lending"], learner="ridge", params={})
    config = dataclasses.replace(config, models={"lending": spec})
    with pytest.raises(ConfigError, match="fair model"):
        open_source(config, config.source)


def test_more_rounds_than_the_schedule_holds_is_a_config_error():
    with pytest.raises(ConfigError, match="source.rounds"):
        open_source(config_with(rounds=2_000, horizon=1_000), config_with(rounds=2_000, horizon=1_000).source)


def test_the_fair_exposition_passes_promtool(straight):
    import os
    import shutil
    import subprocess

    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    assert os.path.exists(promtool), "promtool is required (Debian package prometheus; .ci/run installs it)"
    body = straight[0].metrics.exposition()
    assert b"regretflow_simulator_auditor_violation_pairs{" in body
    out = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), out.stdout + out.stderr


@pytest.mark.parametrize("family", ["fair-exp2", "fair-ftpl"])
def test_both_fair_learners_run_as_daemon_models_with_every_metric(family):
    config = config_with(rounds=400)
    params = {k: v for k, v in config.models["lending"].params.items() if k != "learning_rate_factor"}
    spec = dataclasses.replace(config.models["lending"], learner=family, params=params)
    engine, source, answers = run(dataclasses.replace(config, models={"lending": spec}))
    assert len(answers.records) == 400
    registry = engine.metrics.registry
    learner = {
        name: registry.get_sample_value(f"regretflow_learner_{name}", {"model": "lending"})
        for name in (
            "revealed_accuracy",
            "violation_rounds",
            "violation_pairs",
            "last_round_violations",
            "positive_decision_rate",
            "audited_rounds",
        )
    }
    assert learner["audited_rounds"] == 400 and 0.0 <= learner["revealed_accuracy"] <= 1.0, learner
    for group in ("sex=male", "sex=female"):
        rate = registry.get_sample_value("regretflow_learner_positive_decision_rate_by_group", {"model": "lending", "group": group})
        assert 0.0 <= rate <= 1.0
    assert sample(engine, "fair_regret_rounds") == 400 and np.isfinite(sample(engine, "fair_regret"))
    assert sample(engine, "panel_violation_rounds") == learner["violation_rounds"]
    assert sum(sample(engine, "auditor_violation_rounds", auditor=a.name) for a in source.env.sim.auditors) > 0


def test_audits_that_name_their_auditors_are_counted_per_auditor_by_the_engine(straight):
    """The engine's own per-auditor counts (what a deployment sees) agree with the simulator's reports."""
    engine, source, answers = straight
    sim = source.env.sim
    expected: dict[str, list[int]] = {}
    for t, record in enumerate(answers.records):
        q = np.array(orjson.loads(record[1])["probabilities"])
        reported = {(i, l, slot) for i, l, slot in sim.reports(t, q)}
        for slot, j in enumerate(sim.panel(t)):
            figures = expected.setdefault(sim.auditors[j].name, [0, 0])
            figures[0] += sum(1 for r in reported if r[2] == slot)
            figures[1] += 1
    registry = engine.metrics.registry
    for name, (pairs, panels) in expected.items():
        labels = {"model": "lending", "auditor": name}
        assert registry.get_sample_value("regretflow_fair_auditor_reported_pairs", labels) == pairs, name
        assert registry.get_sample_value("regretflow_fair_auditor_panels", labels) == panels, name
    assert sum(p for _, p in expected.values()) == ROUNDS * sim.panel_size
    assert sum(r for r, _ in expected.values()) > 0
