"""Every learner in LEARNERS off the happy path: bad parameters, non-finite checkpoints,
and 10,000 rounds of standardised and raw-scale features through every bandit and fair
learner's defaults."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

from regretflow.learners import LEARNERS

NAN, INF = float("nan"), float("inf")
BOUNDS = {"rho_bar": 0.5, "phi_bar": 1.0, "omega_norm": 1.0, "theta_norm": 1.0, "b_norm": 1.0, "noise_sigma": 0.1}
ARMS = [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]
N_FEATURES = 4
N_ACTIONS = 3
N_INDIVIDUALS = 4
FEATURES = [f"f{j}" for j in range(N_FEATURES)]

# The smallest valid construction of each family (its required arguments).
MINIMAL = {
    "ridge": {"features": FEATURES},
    "omd": {"features": FEATURES},
    "groupwise": {"features": FEATURES},
    "analytic-ridge": {"features": FEATURES},
    "neural": {"features": FEATURES},
    "neural-squarecb": {"n_actions": N_ACTIONS},
    "neural-fastcb": {"n_actions": N_ACTIONS},
    "neural-ridge-cb": {"n_actions": N_ACTIONS},
    "linucb-disjoint": {"n_actions": N_ACTIONS},
    "epsilon-greedy": {"n_actions": N_ACTIONS},
    "dynlin-ucb": {"actions": ARMS, "bounds": BOUNDS, "horizon": 10_000},
    "linucb": {"actions": ARMS, "bounds": BOUNDS, "horizon": 10_000},
    "action-vector-linucb": {"actions": ARMS, "bounds": BOUNDS, "horizon": 10_000},
    "d-linucb": {"actions": ARMS, "bounds": BOUNDS, "horizon": 10_000, "discount": 0.99},
    "exp3": {"n_arms_or_actions": N_ACTIONS, "horizon": 10_000},
    "batched-exp3": {"n_arms_or_actions": N_ACTIONS, "horizon": 10_000, "batch_size": 4},
    "fair-exp2": {"n_features": N_FEATURES},
    "fair-ftpl": {"n_features": N_FEATURES},
    "one-sided-exp2": {"n_features": N_FEATURES},
}

# -- 1. parameters --------------------------------------------------------------------
# Bad values by parameter name, each with the error it must raise; a family whose
# parameter of that name reads the value differently overrides it in FAMILY_BAD.
BAD = {
    "features": [("x", TypeError), (["a", "a"], ValueError), ([1, 2], TypeError)],
    "groups": [("g", TypeError), (["a", "a"], ValueError)],
    "lam": [(-5, ValueError), ("one", TypeError), (True, TypeError), (NAN, ValueError), (0, ValueError)],
    "forgetting": [(0, ValueError), (1.5, ValueError), (INF, ValueError)],
    "fit_intercept": [(1, TypeError), ("yes", TypeError)],
    "strict": [(1, TypeError), ("yes", TypeError)],
    "adaptive_diameter": [(1, TypeError), ("yes", TypeError)],
    "diameter": [(0, ValueError), (None, TypeError)],
    "grad_bound": [(-1, ValueError)],
    "delta": [(0, ValueError), ("x", TypeError)],
    "base": [("vaw", ValueError), (3, TypeError)],
    "mode": [("mix", ValueError)],
    "clip": [("no", TypeError)],
    "seed": [(-1, ValueError), (1.5, TypeError), (True, TypeError)],
    "omd_diameter": [(0, ValueError)],
    "omd_grad_bound": [(-1, ValueError)],
    "omd_delta": [(NAN, ValueError)],
    "classes": [("ab", TypeError), ([1, 1], ValueError)],
    "gamma": [(-1.0, ValueError), ("big", TypeError), (NAN, ValueError)],
    "expansion_dim": [(-1, ValueError), (2.5, TypeError)],
    "generator": [(True, ValueError), ("sometimes", ValueError)],
    "refresh_events": [(0, ValueError), (1.0, TypeError)],
    "refresh_seconds": [(-1, ValueError)],
    "noise": [(-0.1, ValueError)],
    "update": [("qr", ValueError)],
    "depth": [(0, ValueError), (1.5, TypeError)],
    "width": [(0, ValueError), ("100", TypeError)],
    "activation": [("sigmoid", ValueError)],
    "loss": [("hinge", ValueError)],
    "optimizer": [("adam", ValueError)],
    "learning_rate": [(-0.1, ValueError), ("fast", TypeError), (INF, ValueError)],
    "beta1": [(1.0, ValueError)],
    "beta2": [(-0.1, ValueError)],
    "eps": [(-1.0, ValueError)],
    "exadam_variant": [("v1", ValueError)],
    "projection_radius": [(0, ValueError)],
    "perturbation": [(-1, ValueError)],
    "init_scale": [(0, ValueError)],
    "n_actions": [(0, ValueError), (2.5, TypeError)],
    "gamma_schedule": [("cosine", ValueError)],
    "gamma0": [(-1, ValueError)],
    "gamma_exponent": [(NAN, ValueError)],
    "gamma_min": [(-1, ValueError)],
    "alpha": [(-1, ValueError)],
    "epsilon": [(1.5, ValueError), ("0.1", TypeError)],
    "actions": [([[0.0, NAN]], ValueError), ({"lower": 0}, TypeError), ({"lower": 0, "upper": 1, "total": 1, "dim": 0}, ValueError)],
    "bounds": [({**BOUNDS, "rho_bar": 1.5}, ValueError), ("tight", TypeError), ({"rho_bar": 0.5}, TypeError)],
    "horizon": [(0, ValueError), (10.5, TypeError)],
    "u_norm": [(0, ValueError)],
    "beta_scale": [(-1, ValueError)],
    "epoch_threshold": [(1.0, ValueError)],
    "residual_window": [(0.5, ValueError)],
    "radius": [("wide", ValueError)],
    "norm_bound": [(-1, ValueError)],
    "discount": [(1.0, ValueError), ("0.9", TypeError)],
    "statistics": [("full", ValueError)],
    "n_arms_or_actions": [(1, ValueError), ([[1.0, 0.0]], ValueError), ("three", TypeError)],
    "reward_offset": [(NAN, ValueError)],
    "reward_range": [((1.0, -1.0), ValueError), ((0.0, NAN), ValueError), ((0.0, 1.0, 2.0), ValueError)],
    "exploration": [(1.0, ValueError), (-0.1, ValueError), ("some", TypeError)],
    "objective": [("profit", ValueError)],
    "reward_scale": [(0, ValueError)],
    "eta": [(0, ValueError)],
    "batch_size": [(0, ValueError)],
    "n_features": [(0, ValueError)],
    "weights": [([[NAN, 1.0]], ValueError)],
    "offsets": [([0.0, 1.0], ValueError)],  # two offsets for the one row of weights below
    "n_directions": [(0, ValueError)],
    "n_offsets": [(0, ValueError)],
    "offset_range": [((1.0, -1.0), ValueError), ("wide", TypeError)],
    "fairness_weight": [(-1, ValueError)],
    "fairness_scale": [(-1, ValueError)],
    "learning_rate_factor": [(0, ValueError)],
    "mixing": [(1.0, ValueError)],
    "group_features": [(["a"], TypeError)],
    "cost_bound": [(0, ValueError)],
    "separator_points": [([[0.5]], ValueError)],  # one column for four features
    "n_candidates": [(0, ValueError)],
    "perturbation_scale": [(0, ValueError)],
    "perturbation_factor": [(-1, ValueError)],
    "n_samples": [(0, ValueError)],
    "max_resamples": [(0, ValueError)],
}
FAMILY_BAD = {  # a string lam is a named rule there, so a wrong string is a wrong value
    family: {
        "lam": [(-5, ValueError), ("one", ValueError), (True, TypeError), (NAN, ValueError)],
        "horizon": [(1, ValueError), (10.5, TypeError)],
    }
    for family in ("dynlin-ucb", "linucb", "action-vector-linucb", "d-linucb")
}
FAMILY_BAD["groupwise"] = {"groups": [*BAD["groups"], (["a", "always_on"], ValueError)]}
for family in ("fair-exp2", "fair-ftpl", "one-sided-exp2", "exp3", "batched-exp3"):
    FAMILY_BAD[family] = {"gamma": [*BAD["gamma"], (2.0, ValueError)]}
FAMILY_BAD["neural-ridge-cb"] = {  # width 0 is the ridge alone there
    "width": [(-1, ValueError), ("100", TypeError)],
    "ridge": [(0, ValueError), ("big", TypeError)],
    "grad_clip": [(0, ValueError), (NAN, ValueError)],
    "replay": [(-1, ValueError), (1.5, TypeError)],
    "input_clip": [(0, ValueError)],
    "optimism": [(-0.5, ValueError), (INF, ValueError)],
}
FAMILY_BAD["groupwise"]["serve"] = [("expected", ValueError), (1, ValueError)]
EXTRA = {"offsets": {"weights": [[1.0, 0.0, 0.0, 0.0]]}}  # what a bad value needs beside it


def parameters(family):
    return [name for name in inspect.signature(LEARNERS[family]).parameters]


def bad_cases():
    for family in LEARNERS:
        for name in parameters(family):
            for value, error in FAMILY_BAD.get(family, {}).get(name, BAD.get(name, [])):
                yield pytest.param(family, name, value, error, id=f"{family}-{name}={value!r}")


def test_every_parameter_of_every_learner_has_bad_values_in_this_test():
    missing = [
        f"{family}.{name}"
        for family in LEARNERS
        for name in parameters(family)
        if name not in BAD and name not in FAMILY_BAD.get(family, {})
    ]
    assert missing == []


@pytest.mark.parametrize("family", sorted(LEARNERS))
def test_minimal_arguments_build_every_learner(family):
    assert LEARNERS[family](**MINIMAL[family]).n_updates == 0


@pytest.mark.parametrize("family,name,value,error", list(bad_cases()))
def test_bad_parameter_raises_an_error_that_starts_with_its_name(family, name, value, error):
    kwargs = {**MINIMAL[family], **EXTRA.get(name, {}), name: value}
    with pytest.raises(error) as raised:
        LEARNERS[family](**kwargs)
    message = str(raised.value)
    assert message.startswith((f"{name}:", f"{name}.")), message
    assert "expected" in message, message


# -- streams ----------------------------------------------------------------------------
class Stream:
    """A seeded synthetic stream: standardised features, or the same at raw scale
    (each feature times its own magnitude, log-uniform in 1e3..1e5, around a positive
    level), with Bernoulli rewards in {0, 1} from a logistic model of the standardised
    features."""

    def __init__(self, raw: bool, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.raw = raw
        self.scales = 10.0 ** self.rng.uniform(3.0, 5.0, size=N_FEATURES)
        self.weights = self.rng.normal(size=(N_ACTIONS, N_FEATURES))

    def features(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(as the learner sees them, standardised)."""
        z = self.rng.normal(size=(n, N_FEATURES))
        return (self.scales * (2.0 + z) if self.raw else z), z

    def reward(self, standardised: np.ndarray, action: int) -> float:
        mean = 1.0 / (1.0 + math.exp(-float(self.weights[action] @ standardised)))
        return float(self.rng.random() < mean)


def arm_vectors(stream: Stream) -> list[list[float]]:
    """The non-contextual bandits' action vectors, at the stream's scale."""
    return (np.asarray(ARMS) * (stream.scales[:2] if stream.raw else 1.0)).tolist()


def build(family: str, stream: Stream):
    kwargs = dict(MINIMAL[family])
    if "actions" in kwargs:
        kwargs["actions"] = arm_vectors(stream)
    if family in ("exp3", "batched-exp3"):
        kwargs["n_arms_or_actions"] = arm_vectors(stream)
    return LEARNERS[family](**kwargs)


def check_distribution(probabilities, action) -> None:
    p = np.asarray(probabilities, dtype=np.float64)
    assert np.all(np.isfinite(p)) and np.all(p >= 0.0), p
    assert abs(p.sum() - 1.0) < 1e-9, p
    assert p[action] > 0.0, (p, action)


def play_round(learner, stream: Stream, t: int) -> None:
    """One decision and its feedback, checking the answer is a valid distribution."""
    task = learner.task
    if task == "bandit" and "n_actions" in inspect.signature(type(learner)).parameters:
        x, z = stream.features(1)
        action, p = learner.act(x[0])
        check_distribution(p, action)
        learner.learn(x[0], action, stream.reward(z[0], action), p[action])
    elif task == "bandit":  # non-contextual: the reward of an arm only
        action, p = learner.act()
        check_distribution(p, action)
        learner.learn(None, action, stream.reward(np.ones(N_FEATURES), action))
    elif task == "fair":
        people, z = stream.features(N_INDIVIDUALS)
        panel = learner.decide_panel(people)
        decisions, q = panel.decisions, panel.probabilities
        assert np.all(np.isfinite(q)) and np.all((q >= 0.0) & (q <= 1.0)), q
        assert set(np.unique(decisions)) <= {0, 1}
        labels = np.array([stream.reward(row, 0) for row in z])
        learner.learn_panel(decisions, labels, q, people)
        if t % 5 == 0:
            learner.audit(people, decisions, q, [(0, 1)])
    else:  # supervised: a small prequential batch
        X, z = stream.features(8)
        y = np.array([stream.reward(row, 0) for row in z])
        if task == "classification":
            y = y.astype(int)
        groups = np.zeros((len(y), 0), dtype=bool)
        learner.observe_many(X, y, groups)


def nonfinite_entries(state: dict) -> list[str]:
    bad = []
    for key, value in state.items():
        if isinstance(value, np.ndarray) and value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
            bad.append(key)
        elif isinstance(value, float) and not math.isfinite(value):
            bad.append(key)
    return bad


# -- 2. checkpoints holding NaN ----------------------------------------------------------
def learned(family: str):
    stream = Stream(raw=False, seed=3)
    learner = build(family, stream)
    for t in range(30):
        play_round(learner, stream, t)
    return learner


def float_array_keys(family: str) -> list[str]:
    state = learned(family).state_dict()
    return [key for key, value in state.items() if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.size > 0]


def poisoned_cases():
    for family in sorted(LEARNERS):
        for key in float_array_keys(family):
            yield pytest.param(family, key, id=f"{family}-{key}")


def assert_states_identical(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for key, value in before.items():
        if isinstance(value, np.ndarray):
            assert after[key].dtype == value.dtype and np.array_equal(after[key], value), key
        else:
            assert after[key] == value, key


def test_every_learner_has_a_float_array_in_its_state_to_poison():
    assert all(float_array_keys(family) for family in LEARNERS)


@pytest.mark.parametrize("family,key", list(poisoned_cases()))
def test_checkpoint_with_nan_is_refused_and_leaves_the_learner_bit_identical(family, key):
    learner = learned(family)
    before = learner.state_dict()
    poisoned = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in before.items()}
    poisoned[key].reshape(-1)[poisoned[key].size // 2] = np.nan
    with pytest.raises(ValueError, match=f"state\\[{key!r}\\]"):
        learner.load_state_dict(poisoned)
    assert_states_identical(before, learner.state_dict())


@pytest.mark.parametrize("family", sorted(LEARNERS))
def test_checkpoint_with_an_infinite_float_scalar_is_refused(family):
    learner = learned(family)
    before = learner.state_dict()
    scalars = [k for k, v in before.items() if isinstance(v, float)]
    if not scalars:  # this family keeps no float scalar: an extra key carries one
        scalars = ["extra_float"]
    poisoned = {**before, scalars[0]: INF}
    with pytest.raises(ValueError, match=f"state\\[{scalars[0]!r}\\]"):
        learner.load_state_dict(poisoned)
    assert_states_identical(before, learner.state_dict())


# -- 3./4. 10,000 rounds at both scales --------------------------------------------------
ROUNDS = 10_000
CHECK_EVERY = 2_000
# FairFTPL draws 200 perturbed leaders per decision by default: ~10 s per scale here
SLOW = {"fair-ftpl"}
DECIDING = [
    pytest.param(family, marks=[pytest.mark.slow] if family in SLOW else [])
    for family, cls in sorted(LEARNERS.items())
    if getattr(cls, "task", "") in ("bandit", "fair")
]


@pytest.mark.parametrize("raw", [False, True], ids=["standardised", "raw-scale"])
@pytest.mark.parametrize("family", DECIDING)
def test_defaults_stay_finite_for_ten_thousand_rounds(family, raw):
    stream = Stream(raw=raw, seed=11)
    learner = build(family, stream)
    for t in range(ROUNDS):
        play_round(learner, stream, t)
        if (t + 1) % CHECK_EVERY == 0:
            assert nonfinite_entries(learner.state_dict()) == [], f"round {t + 1}"
    assert learner.n_updates > 0
