"""NaN, infinities and None in features, labels and rewards are refused with a
ValueError by every learner API, before anything in the learner changes."""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest

from regretflow.learners import LEARNERS
from tests.learners.test_learner_guards import FEATURES, MINIMAL, N_FEATURES, N_INDIVIDUALS, assert_states_identical, learned

POISONS = [pytest.param(float("nan"), id="nan"), pytest.param(float("inf"), id="inf"), pytest.param(None, id="none")]
SUPERVISED = sorted(f for f, cls in LEARNERS.items() if cls.task in ("regression", "classification"))
BANDITS = sorted(f for f, cls in LEARNERS.items() if cls.task == "bandit")
FAIR = sorted(f for f, cls in LEARNERS.items() if cls.task == "fair")


def label(family: str):
    return 1 if LEARNERS[family].task == "classification" else 1.0


def poisoned_dict(poison) -> dict:
    return {name: (poison if name == FEATURES[1] else 0.5) for name in FEATURES}


def poisoned_frame(poison) -> pd.DataFrame:
    frame = pd.DataFrame(np.full((3, N_FEATURES), 0.5), columns=FEATURES).astype(object)
    frame.iloc[1, 2] = poison
    return frame


def supervised_calls(family: str, poison):
    y_ok = [label(family)] * 3
    X_ok = np.full((3, N_FEATURES), 0.5)
    X_bad = poisoned_frame(poison)
    y_bad = [label(family), poison, label(family)]
    yield "learn_one features", lambda m: m.learn_one(poisoned_dict(poison), label(family))
    yield "learn_one label", lambda m: m.learn_one(poisoned_dict(0.5), poison)
    yield "predict_one", lambda m: m.predict_one(poisoned_dict(poison))
    yield "learn_many features", lambda m: m.learn_many(X_bad, pd.Series(y_ok))
    yield "learn_many labels", lambda m: m.learn_many(pd.DataFrame(X_ok, columns=FEATURES), pd.Series(y_bad))
    yield "predict_many", lambda m: m.predict_many(X_bad)
    yield "observe_many features", lambda m: m.observe_many(X_bad.to_numpy(), np.array(y_ok))
    yield "observe_many labels", lambda m: m.observe_many(X_ok, np.array(y_bad, dtype=object))


def supervised_cases():
    for family in SUPERVISED:
        for poison in POISONS:
            for name, call in supervised_calls(family, poison.values[0]):
                yield pytest.param(family, call, id=f"{family}-{name}-{poison.id}")


@pytest.mark.parametrize("family,call", list(supervised_cases()))
def test_supervised_learner_refuses_non_finite_input_and_keeps_its_state(family, call):
    learner = learned(family)
    before = learner.state_dict()
    with pytest.raises(ValueError):
        call(learner)
    assert_states_identical(before, learner.state_dict())


@pytest.mark.parametrize("family", SUPERVISED)
@pytest.mark.parametrize("poison", [float("nan"), None])
def test_fresh_learner_refuses_a_poisoned_first_dict_without_fixing_its_features(family, poison):
    kwargs = {k: v for k, v in MINIMAL[family].items() if k != "features"}
    learner = LEARNERS[family](**kwargs)
    before = learner.state_dict()
    with pytest.raises(ValueError):
        learner.learn_one(poisoned_dict(poison), label(family))
    with pytest.raises(ValueError):
        learner.learn_many(poisoned_frame(poison), pd.Series([label(family)] * 3))
    with pytest.raises(ValueError):
        learner.learn_many(poisoned_frame(0.5), pd.Series([label(family), poison, label(family)], dtype=object))
    assert_states_identical(before, learner.state_dict())
    learner.learn_one(poisoned_dict(0.5), label(family))  # the learner still works
    assert learner.n_updates == 1


def bandit_calls(family: str, poison):
    contextual = "n_actions" in inspect.signature(LEARNERS[family]).parameters
    good = np.full(N_FEATURES, 0.5) if contextual else None
    bad = np.array([0.5, poison, 0.5, 0.5], dtype=object)
    yield "act context", lambda m: m.act(bad)
    yield "learn context", lambda m: m.learn(bad, 0, 1.0, 0.5)
    yield "learn reward", lambda m: m.learn(good, 0, poison, 0.5)
    yield "learn probability", lambda m: m.learn(good, 0, 1.0, poison) if poison is not None else m.learn(good, 0, 1.0, np.nan)


def bandit_cases():
    for family in BANDITS:
        for poison in POISONS:
            for name, call in bandit_calls(family, poison.values[0]):
                yield pytest.param(family, call, id=f"{family}-{name}-{poison.id}")


@pytest.mark.parametrize("family,call", list(bandit_cases()))
def test_bandit_refuses_non_finite_input_and_keeps_its_state(family, call):
    learner = learned(family)
    before = learner.state_dict()
    with pytest.raises(ValueError, match="finite"):
        call(learner)
    assert_states_identical(before, learner.state_dict())


def fair_calls(poison):
    people = np.full((N_INDIVIDUALS, N_FEATURES), 0.5)
    bad_people = people.astype(object)
    bad_people[2, 1] = poison
    decisions = np.array([1, 0, 1, 0])
    q = np.full(N_INDIVIDUALS, 0.5)
    labels = np.array([1.0, 0.0, 1.0, 0.0], dtype=object)
    bad_labels = labels.copy()
    bad_labels[0] = poison  # a label revealed by a positive decision (hidden ones may be NaN)
    yield "decide individuals", lambda m: m.decide_panel(bad_people)
    yield "learn individuals", lambda m: m.learn_panel(decisions, labels, q, bad_people)
    yield "learn labels", lambda m: m.learn_panel(decisions, bad_labels, q, people)
    yield "audit individuals", lambda m: m.audit(bad_people, decisions, q, [(0, 1)])


def fair_cases():
    for family in FAIR:
        for poison in POISONS:
            for name, call in fair_calls(poison.values[0]):
                yield pytest.param(family, call, id=f"{family}-{name}-{poison.id}")


@pytest.mark.parametrize("family,call", list(fair_cases()))
def test_fair_learner_refuses_non_finite_input_and_keeps_its_state(family, call):
    learner = learned(family)
    before = learner.state_dict()
    with pytest.raises(ValueError, match="finite|0/1 label"):
        call(learner)
    assert_states_identical(before, learner.state_dict())
