"""`regretflow reproduce neural-bandit --quick`: runs, prints its table, and its orderings hold."""

from __future__ import annotations

import json

from regretflow.engine.experiments import REPRODUCTIONS
from regretflow.engine.experiments import neural_bandit as repro


def test_quick_reproduction_holds_its_robust_orderings(capsys):
    assert REPRODUCTIONS["neural-bandit"] == "regretflow.engine.experiments.neural_bandit"
    code = repro.main(["--quick", "--json"])
    results = json.loads(capsys.readouterr().out)
    assert results["quick_failures"] == []
    assert code == 0
    assert set(results["datasets"]) == set(repro.QUICK_DATASETS)
    for entry in results["datasets"].values():
        learners = entry["learners"]
        assert set(learners) == {repro.RECOMMENDED, "NeuralFastCB", "NeuralSquareCB", "LinUCB", "EpsilonGreedy"}
        assert learners["NeuralFastCB"]["mean"] < learners["NeuralSquareCB"]["mean"]
        for learner in learners.values():
            assert len(learner["per_seed"]) == repro.QUICK_SEEDS
            assert 0.0 <= learner["mean"] <= entry["T"]
    assert set(results["claims"]) == set(repro.QUICK_DATASETS)


def test_table_names_the_paper_claim_and_each_verdict():
    results = {
        "horizon": 10,
        "seeds": [0, 1],
        "datasets": {
            "toy": {
                "T": 10,
                "K": 2,
                "uniform": 5.0,
                "learners": {
                    "NeuralFastCB": {"mean": 1.0, "stderr": 0.1, "std": 0.14, "seconds_per_run": 0.1, "us_per_round": 1e4},
                    "NeuralSquareCB": {"mean": 2.0, "stderr": 0.1, "std": 0.14, "seconds_per_run": 0.1, "us_per_round": 1e4},
                    "LinUCB": {"mean": 1.05, "stderr": 0.1, "std": 0.14, "seconds_per_run": 0.1, "us_per_round": 1e4},
                },
            }
        },
    }
    verdict = repro.claims(results)["toy"]
    assert verdict == {"FastCB < SquareCB": "yes", "FastCB < best linear": "inconclusive", "SquareCB < best linear": "no"}
    table = repro.format_table(results)
    assert "Deb et al., ICLR 2024" in table and "inconclusive" in table
    assert "Paper-faithful configuration" in table and "Recommended: NeuralRidgeCB(" in table and "Microseconds per round" in table
