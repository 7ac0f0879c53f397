"""Every learner in LEARNERS plays its declared role (learners/contract.py).

The engine calls the role's methods without looking first; this is where their
presence and signatures are checked, once, for every registered class.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import numpy as np
import pytest

import regretflow.learners
from regretflow.learners import LEARNERS, ROLES, BanditPolicy, Decision, FairPolicy, Observed, PanelDecision, SupervisedEstimator
from regretflow.learners.contract import Learner

N_FEATURES = 4
N_ACTIONS = 3
N_ROWS = 6
N_APPLICANTS = 5
FEATURES = [f"f{j}" for j in range(N_FEATURES)]
ARMS = [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]
BOUNDS = {"rho_bar": 0.5, "phi_bar": 1.0, "omega_norm": 1.0, "theta_norm": 1.0, "b_norm": 1.0, "noise_sigma": 0.1}

# the smallest valid construction of each family (the arguments it cannot do without)
SMALLEST = {
    "ridge": {"features": FEATURES},
    "omd": {"features": FEATURES},
    "groupwise": {"features": FEATURES, "groups": ["g"]},
    "analytic-ridge": {"features": FEATURES},
    "neural": {"features": FEATURES, "width": 4},
    "neural-squarecb": {"n_actions": N_ACTIONS, "width": 4},
    "neural-fastcb": {"n_actions": N_ACTIONS, "width": 4},
    "neural-ridge-cb": {"n_actions": N_ACTIONS, "width": 4},
    "linucb-disjoint": {"n_actions": N_ACTIONS},
    "epsilon-greedy": {"n_actions": N_ACTIONS},
    "dynlin-ucb": {"actions": ARMS, "bounds": BOUNDS, "horizon": 100},
    "linucb": {"actions": ARMS, "bounds": BOUNDS, "horizon": 100},
    "action-vector-linucb": {"actions": ARMS, "bounds": BOUNDS, "horizon": 100},
    "d-linucb": {"actions": ARMS, "bounds": BOUNDS, "horizon": 100, "discount": 0.99},
    "exp3": {"n_arms_or_actions": N_ACTIONS, "horizon": 100},
    "batched-exp3": {"n_arms_or_actions": N_ACTIONS, "horizon": 100, "batch_size": 2},
    "fair-exp2": {"n_features": N_FEATURES},
    "fair-ftpl": {"n_features": N_FEATURES, "n_candidates": 50},
    "one-sided-exp2": {"n_features": N_FEATURES},
}
FAMILIES = sorted(LEARNERS)
PROTOCOLS = (Learner, SupervisedEstimator, BanditPolicy, FairPolicy)


def build(family: str):
    return LEARNERS[family](**SMALLEST[family])


def context_of(learner) -> np.ndarray | None:
    """A shared context for the contextual bandits; None for those with a fixed action set."""
    return np.linspace(0.1, 0.4, N_FEATURES) if "n_actions" in vars(learner) else None


def exercise(learner) -> None:
    """One call of each kind the engine makes, so gauges and attributes reflect use."""
    rng = np.random.default_rng(0)
    if learner.task in ("regression", "classification"):
        X = rng.uniform(size=(N_ROWS, N_FEATURES))
        y = (X[:, 0] > 0.5).astype(int) if learner.task == "classification" else X[:, 0]
        learner.observe(X, y, np.ones((N_ROWS, 1), dtype=bool))
        learner.predict_many(X, None)
    elif learner.task == "bandit":
        x = context_of(learner)
        decision = learner.decide(x)
        learner.learn(x, decision.action, 1.0, float(decision.probabilities[decision.action]), None, decision.ticket)
    else:
        people = rng.uniform(size=(N_APPLICANTS, N_FEATURES))
        panel = learner.decide_panel(people)
        labels = np.where(panel.decisions == 1, 1.0, -1.0)
        learner.learn_panel(panel.decisions, labels, panel.probabilities, people)
        learner.audit(people, panel.decisions, panel.probabilities, [(0, 1, 0)], 1)


def protocol_methods(protocol: type) -> dict[str, object]:
    methods: dict[str, object] = {}
    for base in reversed(protocol.__mro__):
        if base in PROTOCOLS:
            methods.update({name: f for name, f in vars(base).items() if inspect.isfunction(f) and not name.startswith("_")})
    return methods


# -- roles -------------------------------------------------------------------------------
def test_every_task_has_a_role_and_every_learner_a_known_task():
    assert set(ROLES) == {"regression", "classification", "bandit", "fair"}
    assert {LEARNERS[f].task for f in FAMILIES} <= set(ROLES)
    assert len(FAMILIES) == 19 and set(SMALLEST) == set(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_learner_is_an_instance_of_its_role(family):
    learner = build(family)
    assert isinstance(learner, ROLES[learner.task])
    assert isinstance(learner.n_updates, int) and learner.n_updates == 0
    others = {p for p in (SupervisedEstimator, BanditPolicy, FairPolicy) if p is not ROLES[learner.task]}
    assert not any(isinstance(learner, p) for p in others)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_role_method_takes_the_declared_parameters(family):
    cls = LEARNERS[family]
    for name, declared in protocol_methods(ROLES[cls.task]).items():
        wanted = list(inspect.signature(declared).parameters.values())[1:]
        have = list(inspect.signature(getattr(cls, name)).parameters.values())[1:]
        named = [p for p in have if p.kind in (p.POSITIONAL_OR_KEYWORD, p.POSITIONAL_ONLY)]
        assert [p.name for p in named[: len(wanted)]] == [p.name for p in wanted], f"{cls.__name__}.{name}"
        for want, got in zip(wanted, named):  # a default the role declares is the learner's too
            assert want.default is want.empty or got.default == want.default, (
                f"{cls.__name__}.{name}({got.name}=...): default {got.default!r}, declared {want.default!r}"
            )
        extra = [p for p in named[len(wanted) :] if p.default is p.empty]
        assert not extra, f"{cls.__name__}.{name} requires parameters the role does not declare: {extra}"


# -- results -----------------------------------------------------------------------------
@pytest.mark.parametrize("family", [f for f in FAMILIES if LEARNERS[f].task in ("regression", "classification")])
def test_observe_returns_predictions_and_losses_of_every_row(family):
    learner = build(family)
    rng = np.random.default_rng(1)
    X = rng.uniform(size=(N_ROWS, N_FEATURES))
    y = (X[:, 0] > 0.5).astype(int) if learner.task == "classification" else X[:, 0]
    seen = learner.observe(X, y)
    assert isinstance(seen, Observed)
    assert len(seen.predictions) == N_ROWS
    if learner.task == "regression":
        assert seen.losses is not None and seen.losses.shape == (N_ROWS,) and np.all(seen.losses >= 0.0)
    else:
        assert seen.losses is None
    assert learner.n_updates == N_ROWS
    assert len(learner.predict_many(X)) == len(learner.predict_many(X, np.ones((N_ROWS, 1), dtype=bool))) == N_ROWS


@pytest.mark.parametrize("family", [f for f in FAMILIES if LEARNERS[f].task == "bandit"])
def test_decide_returns_a_distribution_over_the_offered_actions(family):
    learner = build(family)
    x = context_of(learner)
    for _ in range(3):
        decision = learner.decide(x)
        assert isinstance(decision, Decision) and isinstance(decision.action, int)
        p = decision.probabilities
        assert p.shape == (N_ACTIONS,) and np.all(p >= 0.0) and abs(p.sum() - 1.0) < 1e-12
        assert 0 <= decision.action < N_ACTIONS and p[decision.action] > 0.0
        assert decision.predicted_rewards is None or decision.predicted_rewards.shape == (N_ACTIONS,)
        assert isinstance(decision.ticket, int)
        learner.learn(x, decision.action, 0.5, None, None, decision.ticket)
    action, probabilities = learner.act(x)  # the shorthand
    assert 0 <= action < N_ACTIONS and probabilities.shape == (N_ACTIONS,)
    described = learner.describe_action(action)
    assert described is None or all(isinstance(v, float) for v in described)


@pytest.mark.parametrize("family", [f for f in FAMILIES if LEARNERS[f].task == "fair"])
def test_decide_panel_returns_a_decision_and_probability_per_applicant(family):
    learner = build(family)
    people = np.random.default_rng(2).uniform(size=(N_APPLICANTS, N_FEATURES))
    panel = learner.decide_panel(people)
    assert isinstance(panel, PanelDecision)
    assert panel.decisions.dtype == np.int64 and panel.decisions.shape == (N_APPLICANTS,)
    assert set(panel.decisions.tolist()) <= {0, 1}
    assert panel.probabilities.dtype == np.float64 and panel.probabilities.shape == (N_APPLICANTS,)
    assert np.all((panel.probabilities >= 0.0) & (panel.probabilities <= 1.0))
    labels = np.where(panel.decisions == 1, 0.0, -1.0)
    learner.learn_panel(panel.decisions, labels, panel.probabilities, people)
    kept = learner.audit(people, panel.decisions, panel.probabilities, [(0, 1, 0), (1, 0, 0)], panel_size=1)
    assert isinstance(kept, int) and kept >= 0


# -- gauges --------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_declared_gauges_are_the_gauges_reported(family):
    learner = build(family)
    exercise(learner)
    cls = type(learner)
    assert set(cls.GAUGES) == set(learner.gauges())
    assert set(cls.GROUP_GAUGES) == set(learner.group_gauges())
    assert all(isinstance(v, float) for v in learner.gauges().values())


# -- no outputs left behind ------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_a_used_learner_keeps_no_public_last_attribute(family):
    learner = build(family)
    exercise(learner)
    exposed = [name for name in vars(learner) if name.startswith("last_")]
    exposed += [name for klass in type(learner).__mro__ for name in vars(klass) if name.startswith("last_")]
    assert not exposed


def test_no_class_in_learners_defines_a_public_last_attribute():
    """A source scan, so that helpers (exploration rules, ...) are covered too."""
    found = []
    for path in sorted(Path(regretflow.learners.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and node.attr.startswith("last_"):
                found.append(f"{path.name}:{node.lineno} .{node.attr}")
            elif isinstance(node, ast.ClassDef):
                for statement in node.body:
                    targets = statement.targets if isinstance(statement, ast.Assign) else [getattr(statement, "target", None)]
                    found += [
                        f"{path.name}:{statement.lineno} {t.id}" for t in targets if isinstance(t, ast.Name) and t.id.startswith("last_")
                    ]
    assert not found
