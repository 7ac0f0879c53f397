"""A neural bandit through the daemon: propensities with every answer, regret and off-policy values on /metrics,
and offline evaluation of the logged decisions."""

import json
import subprocess
from pathlib import Path

import orjson
import pytest

from tests.conftest import REGRETFLOW

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "neural_bandit.toml"
ROUNDS = 800


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bandit")
    text = (
        EXAMPLE.read_text().replace("rounds = 2310", f'rounds = {ROUNDS}\nrecord_path = "events.jsonl"').replace("port = 9108", "port = 0")
    )
    text = text.replace("[metrics]", '[metrics]\nlog_path = "metrics.jsonl"\nlog_every_seconds = 0.05')
    (d / "c.toml").write_text(text)
    out = subprocess.run([REGRETFLOW, "run", "--config", str(d / "c.toml")], cwd=d, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return d


def test_every_decision_is_answered_with_its_propensity_and_probability_vector(run_dir):
    answers = [orjson.loads(l) for l in (run_dir / "segments-answers.jsonl").read_bytes().splitlines()]
    assert len(answers) == ROUNDS and len({a["id"] for a in answers}) == ROUNDS
    for a in answers:
        assert abs(sum(a["probabilities"]) - 1.0) < 1e-9 and min(a["probabilities"]) >= 0
        assert a["probability"] == a["probabilities"][a["action"]] > 0
        assert len(a["predicted_rewards"]) == 7


def test_metrics_log_holds_exact_pseudo_regret_and_off_policy_values(run_dir):
    last = orjson.loads((run_dir / "metrics.jsonl").read_bytes().splitlines()[-1])
    b = last["models"]["segments"]["bandit"]
    events = [orjson.loads(l) for l in (run_dir / "events.jsonl").read_bytes().splitlines()]
    decides = {e["id"]: e for e in events if e["kind"] == "decide"}
    answers = [orjson.loads(l) for l in (run_dir / "segments-answers.jsonl").read_bytes().splitlines()]
    regret = sum(max(decides[a["id"]]["expected_rewards"]) - decides[a["id"]]["expected_rewards"][a["action"]] for a in answers)
    assert b["pseudo_count"] == ROUNDS and b["pseudo_regret"] == pytest.approx(regret)
    assert b["count"] == ROUNDS and b["mean_reward"] > 1 / 7 + 0.1  # it learned something
    for policy in ("greedy", "uniform", "best_constant"):
        for est in ("ips", "snips", "dr"):
            assert b[policy][f"{est}_low"] <= b[policy][est] <= b[policy][f"{est}_high"], (policy, est)
    # the uniform policy's value is 1/7 here (one right class of seven): every estimator's interval holds it
    for est in ("ips", "snips", "dr"):
        assert b["uniform"][f"{est}_low"] - 0.02 < 1 / 7 < b["uniform"][f"{est}_high"] + 0.02, est
    gauges = last["models"]["segments"]["learner_gauges"]
    assert gauges["exploration_cost"] >= 0 and gauges["gamma"] > 0


def test_replay_evaluates_the_logged_decisions_with_bootstrap_intervals(run_dir):
    out = subprocess.run(
        [
            REGRETFLOW,
            "replay",
            str(run_dir / "events.jsonl"),
            "--config",
            str(run_dir / "c.toml"),
            "--logged-answers",
            str(run_dir / "segments-answers.jsonl"),
            "--bootstrap",
            "200",
            "--json",
        ],
        cwd=run_dir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    table = json.loads(out.stdout)["_logged_policies"]["segments"]
    assert table["rounds"] == ROUNDS
    for policy in ("greedy", "uniform", "best_constant"):
        for est in ("ips", "snips", "dr"):
            v = table[policy][est]
            assert v["low"] <= v["value"] <= v["high"]
    assert table["uniform"]["ips"]["low"] < 1 / 7 < table["uniform"]["ips"]["high"]
    text = subprocess.run(
        [
            REGRETFLOW,
            "replay",
            str(run_dir / "events.jsonl"),
            "--config",
            str(run_dir / "c.toml"),
            "--logged-answers",
            str(run_dir / "segments-answers.jsonl"),
            "--bootstrap",
            "50",
        ],
        cwd=run_dir,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    assert "greedy" in text and "bootstrap" in text
