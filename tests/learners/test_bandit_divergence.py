"""No divergence: with their defaults, the contextual bandits and the online neural
regressor keep finite outputs and finite state over 10,000 rounds (or the whole set)
of every bundled bandit dataset, unit-norm rows and raw scale alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from regretflow.connectors.datasets.bandit_classification import DATASETS, load
from regretflow.connectors.simulators.classification_bandit import ClassificationBandit
from regretflow.learners import EpsilonGreedy, LinUCBDisjoint, NeuralFastCB, NeuralRidgeCB, NeuralSquareCB, OnlineNeuralRegressor

pytestmark = pytest.mark.slow  # about 66,000 rounds per learner

ROUNDS = 10_000
BANDITS: dict[str, Callable[[int], Any]] = {
    "NeuralRidgeCB": lambda k: NeuralRidgeCB(n_actions=k),
    "NeuralSquareCB": lambda k: NeuralSquareCB(n_actions=k),
    "NeuralFastCB": lambda k: NeuralFastCB(n_actions=k),
    "LinUCBDisjoint": lambda k: LinUCBDisjoint(n_actions=k),
    "EpsilonGreedy": lambda k: EpsilonGreedy(n_actions=k),
}


def _finite_state(state: dict[str, Any]) -> list[str]:
    """The keys of ``state`` that hold a non-finite float."""
    bad = []
    for key, value in state.items():
        array = np.asarray(value)
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            bad.append(key)
    return bad


@pytest.fixture(scope="module")
def streams() -> list[tuple[str, ClassificationBandit]]:
    out = []
    for name in DATASETS:
        data = load(name)
        for normalize in ("l2", "none"):
            out.append((f"{name}/{normalize}", ClassificationBandit(data.X, data.y, seed=0, horizon=ROUNDS, normalize=normalize)))
    return out


@pytest.mark.parametrize("name", sorted(BANDITS))
def test_bandit_defaults_stay_finite_on_every_bundled_dataset(name, streams):
    failures = []
    for label, sim in streams:
        bandit = BANDITS[name](sim.n_actions)
        for t in range(len(sim)):
            x = sim.contexts[t]
            decision = bandit.decide(x)
            predicted = np.zeros(1) if decision.predicted_rewards is None else np.asarray(decision.predicted_rewards, dtype=float)
            if not (np.all(np.isfinite(decision.probabilities)) and np.all(np.isfinite(predicted))):
                failures.append(f"{label} round {t}: non-finite decision")
                break
            bandit.learn(x, decision.action, float(decision.action == sim.labels[t]), decision.probabilities[decision.action])
        bad = _finite_state(bandit.state_dict())
        if bad:
            failures.append(f"{label}: non-finite state {bad}")
    assert failures == []


def test_neural_regressor_defaults_stay_finite_on_every_bundled_dataset(streams):
    for label, sim in streams:
        regressor = OnlineNeuralRegressor()
        predictions = regressor.observe_many(sim.contexts, (sim.labels == 0).astype(float))
        assert np.all(np.isfinite(predictions)), label
        assert _finite_state(regressor.state_dict()) == [], label
