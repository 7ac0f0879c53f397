"""GroupwiseRegressor: AdaNormalHedge over sleeping per-group experts (the groupwise learner's specification)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from regretflow.learners import groupwise_kernels as K
from regretflow.learners.groupwise import ALWAYS_ON, GroupwiseRegressor
from regretflow.learners.ridge import OnlineRidge


# -- plain numpy reference ---------------------------------------------------------------
def anh_weight_raw(R: float, C: float) -> float:
    """AdaNormalHedge W(R, C) = (Phi(R+1, C+1) - Phi(R-1, C+1)) / 2, Phi = exp([R]_+^2 / 3C)."""

    def phi(r, c):
        return math.exp(max(r, 0.0) ** 2 / (3.0 * c))

    return 0.5 * (phi(R + 1.0, C + 1.0) - phi(R - 1.0, C + 1.0))


def reference_probabilities(R: np.ndarray, C: np.ndarray) -> np.ndarray:
    w = np.array([anh_weight_raw(r, c) for r, c in zip(R, C)])
    return w / w.sum() if w.sum() > 0 else np.full(len(R), 1.0 / len(R))


def reference_groupwise(X, y, A_full, lam=1.0, uniforms=None, clip=False):
    """The algorithm of spec section 3 in numpy, ridge as in the official code (theta = P b)."""
    n, d = X.shape
    n_groups = A_full.shape[1]
    P = np.stack([np.eye(d) / lam] * n_groups)
    b = np.zeros((n_groups, d))
    theta = np.zeros((n_groups, d))
    R = np.zeros(n_groups)
    C = np.zeros(n_groups)
    served, expected, mixture = np.empty(n), np.empty(n), np.empty(n)
    for t in range(n):
        x = X[t]
        awake = np.flatnonzero(A_full[t])
        p = reference_probabilities(R[awake], C[awake])
        f = np.array([theta[g] @ x for g in awake])
        if clip:
            f = np.clip(f, 0.0, 1.0)
        for g in awake:
            u = P[g] @ x
            P[g] = P[g] - np.outer(u, u) / (1.0 + x @ u)
            b[g] = b[g] + y[t] * x
            theta[g] = P[g] @ b[g]
        losses = (f - y[t]) ** 2
        lhat = p @ losses
        R[awake] += lhat - losses
        C[awake] += np.abs(lhat - losses)
        expected[t] = lhat
        mixture[t] = p @ f
        if uniforms is None:
            served[t] = mixture[t]
        else:
            k = min(int(np.searchsorted(np.cumsum(p), uniforms[t], side="right")), len(awake) - 1)
            served[t] = f[k]
    return {"served": served, "expected": expected, "mixture": mixture, "R": R, "C": C, "theta": theta}


def random_stream(seed: int, n: int = 300, d: int = 6, n_groups: int = 4):
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, d))
    G = rng.uniform(size=(n, n_groups)) < 0.4
    coef = rng.normal(size=(n_groups, d))
    y = np.clip(0.5 + 0.1 * np.sum((X @ coef.T) * G, axis=1) + 0.05 * rng.normal(size=n), 0, 1)
    return X, y, G


def full_membership(G: np.ndarray) -> np.ndarray:
    return np.hstack([G, np.ones((G.shape[0], 1), dtype=bool)]).astype(np.uint8)


def make(d=6, n_groups=4, **kwargs) -> GroupwiseRegressor:
    """The paper's learner (no intercept, as the numpy reference); serving as asked (default: the mixture)."""
    kwargs.setdefault("fit_intercept", False)
    return GroupwiseRegressor(features=[f"f{i}" for i in range(d)], groups=[f"g{j}" for j in range(n_groups)], **kwargs)


# -- AdaNormalHedge weights ------------------------------------------------------------------
@pytest.mark.parametrize(
    "R, C, W",
    [
        (0, 0, 0.19780621254304476),
        (1, 0, 1.3968339473415887),
        (0.5, 2, 0.1420127083438707),
        (5, 10, 0.6765251235656355),
        (2, 2, 0.8003813798585907),
        (-0.5, 1, 0.02127345259499569),
        (-1, 3, 0.0),
    ],
)
def test_adanormalhedge_weight_matches_spec_table(R, C, W):
    assert anh_weight_raw(R, C) == pytest.approx(W, rel=1e-12, abs=0.0)


def test_log_space_probabilities_equal_raw_exp_weights():
    rng = np.random.default_rng(1)
    for _ in range(200):
        m = int(rng.integers(1, 8))
        C = rng.uniform(0, 60, size=m)
        R = rng.uniform(-1, 1, size=m) * C - rng.uniform(0, 2, size=m)
        awake = np.arange(m, dtype=np.int64)
        p = np.empty(m)
        K.anh_probabilities(R, C, awake, m, p)
        np.testing.assert_allclose(p, reference_probabilities(R, C), rtol=1e-12, atol=1e-15)


def test_log_space_probabilities_stay_finite_where_raw_exp_overflows():
    R = np.array([5000.0, 4990.0, -3.0])
    C = np.array([5000.0, 5000.0, 10.0])
    with pytest.raises(OverflowError):
        anh_weight_raw(R[0], C[0])
    p = np.empty(3)
    K.anh_probabilities(R, C, np.arange(3, dtype=np.int64), 3, p)
    assert np.all(np.isfinite(p)) and p.sum() == pytest.approx(1.0, abs=1e-15)
    assert p[0] > p[1] > p[2] == 0.0


def test_probabilities_fall_back_to_uniform_when_every_awake_regret_is_at_most_minus_one():
    p = np.empty(3)
    K.anh_probabilities(np.array([-1.0, -4.0, -2.5]), np.array([3.0, 9.0, 4.0]), np.arange(3, dtype=np.int64), 3, p)
    np.testing.assert_array_equal(p, np.full(3, 1 / 3))


def test_probabilities_are_a_distribution_over_awake_groups_only():
    X, y, G = random_stream(2)
    model = make()
    model.observe_many(X, y, G)
    for row in G[:50]:
        p = model.probabilities(row)
        assert np.all(p >= 0) and p.sum() == pytest.approx(1.0, abs=1e-12)
        assert np.all(p[:-1][~row] == 0.0)


# -- kernels against the numpy reference -----------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("clip", [False, True])
def test_kernel_matches_numpy_reference_in_mixture_mode(seed, clip):
    X, y, G = random_stream(seed)
    model = make(serve="mixture", clip=clip)
    seen = model.observe(X, y, G)
    served = seen.predictions
    ref = reference_groupwise(X, y, full_membership(G), clip=clip)
    np.testing.assert_allclose(served, ref["served"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(seen.expected_losses, ref["expected"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(model.expert_regret, ref["R"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(model.expert_abs_regret, ref["C"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(model._theta, ref["theta"], rtol=0, atol=1e-9)


@pytest.mark.parametrize("seed", [3, 4])
def test_kernel_matches_numpy_reference_when_sampling_an_expert(seed):
    X, y, G = random_stream(seed)
    model = make(serve="sampled", seed=11)
    seen = model.observe(X, y, G)
    served = seen.predictions
    uniforms = np.random.default_rng(11).random(len(y))
    ref = reference_groupwise(X, y, full_membership(G), uniforms=uniforms)
    np.testing.assert_allclose(served, ref["served"], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(seen.losses, (served - y) ** 2)  # the served prediction is what is scored
    np.testing.assert_allclose(seen.expected_losses, ref["expected"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(seen.mixture_predictions, ref["mixture"], rtol=0, atol=1e-9)


def test_each_expert_is_exactly_ridge_on_its_own_rounds():
    X, y, G = random_stream(5, n=200)
    model = make(lam=0.7)
    model.observe_many(X, y, G)
    for g in range(G.shape[1] + 1):
        rows = np.ones(len(y), bool) if g == G.shape[1] else G[:, g]
        Xg, yg = X[rows], y[rows]
        expected = np.linalg.solve(0.7 * np.eye(X.shape[1]) + Xg.T @ Xg, Xg.T @ yg)
        np.testing.assert_allclose(model._theta[g], expected, rtol=1e-9, atol=1e-12)


# -- properties of the algorithm ---------------------------------------------------------------
@pytest.mark.parametrize("seed", [6, 7])
def test_sleeping_groups_are_bit_identical_across_a_round_and_abs_regret_bounds_regret(seed):
    X, y, G = random_stream(seed, n=120)
    model = make()
    for t in range(len(y)):
        before = {k: np.copy(v) for k, v in model.state_dict().items() if isinstance(v, np.ndarray)}
        model.observe_many(X[t : t + 1], y[t : t + 1], G[t : t + 1])
        after = model.state_dict()
        asleep = np.flatnonzero(~G[t])
        for key in ("R", "C", "counts", "P", "theta"):
            if key in before:
                np.testing.assert_array_equal(before[key][asleep], after[key][asleep])
        assert np.all(np.abs(model.expert_regret) <= model.expert_abs_regret + 1e-12)


def test_only_always_on_reduces_to_the_baseline_ridge_bit_for_bit():
    X, y, _ = random_stream(8)
    model = GroupwiseRegressor(features=[f"f{i}" for i in range(X.shape[1])], groups=[], fit_intercept=False)
    seen = model.observe(X, y, np.zeros((len(y), 0), dtype=bool))
    baseline = OnlineRidge(features=[f"f{i}" for i in range(X.shape[1])], lam=1.0, fit_intercept=False)
    preds = baseline.observe_many(X, y)
    np.testing.assert_array_equal(seen.losses, (preds - y) ** 2)
    assert np.all(model.probabilities(np.zeros(0, bool)) == 1.0)


def test_identical_experts_leave_regret_unchanged():
    X, y, G = random_stream(9, n=50)
    G[:] = True  # every expert sees every row: all experts stay identical
    model = make()
    seen = model.observe(X, y, G)
    np.testing.assert_allclose(seen.expected_losses, (seen.mixture_predictions - y) ** 2, atol=1e-15)
    np.testing.assert_allclose(model.expert_regret, np.zeros(G.shape[1] + 1), rtol=0, atol=1e-14)


def test_a_group_first_seen_late_starts_cleanly():
    X, y, G = random_stream(10, n=200)
    G[:150, 0] = False
    model = make()
    model.observe_many(X[:150], y[:150], G[:150])
    assert model.expert_regret[0] == 0.0 and model.expert_abs_regret[0] == 0.0
    np.testing.assert_array_equal(model._theta[0], np.zeros(X.shape[1]))
    assert model.group_rounds[0] == 0 and model.group_gauges()["expert_regret_rate"][0] == 0.0
    model.observe_many(X[150:], y[150:], G[150:])
    assert model.group_rounds[0] == G[150:, 0].sum() > 0


def test_a_group_added_to_the_config_after_a_checkpoint_starts_cleanly():
    X, y, G = random_stream(11, n=100, n_groups=3)
    old = make(n_groups=3)
    old.observe_many(X, y, G)
    new = GroupwiseRegressor(features=[f"f{i}" for i in range(6)], groups=["g0", "new", "g1", "g2"])
    new.load_state_dict(old.state_dict())
    np.testing.assert_array_equal(new.expert_regret[[0, 2, 3, 4]], old.expert_regret)
    assert new.expert_regret[1] == 0.0 and new.group_rounds[1] == 0.0
    np.testing.assert_array_equal(new._P[1], np.eye(6))
    with pytest.raises(ValueError, match="not declared"):
        make(n_groups=2).load_state_dict(old.state_dict())


# -- serving modes -----------------------------------------------------------------------------
def test_serving_modes_share_the_state_update_and_score_what_they_serve():
    X, y, G = random_stream(12)
    runs = {}
    for serve in ("sampled", "mixture"):
        model = make(serve=serve, seed=3)
        runs[serve] = (model.observe(X, y, G), model)
    np.testing.assert_array_equal(runs["sampled"][1].expert_regret, runs["mixture"][1].expert_regret)
    sample_seen, mix_seen = runs["sampled"][0], runs["mixture"][0]
    np.testing.assert_array_equal(sample_seen.expected_losses, mix_seen.expected_losses)
    np.testing.assert_array_equal(sample_seen.losses, (sample_seen.predictions - y) ** 2)
    np.testing.assert_array_equal(mix_seen.predictions, mix_seen.mixture_predictions)
    np.testing.assert_array_equal(mix_seen.losses, (mix_seen.predictions - y) ** 2)
    assert np.all(mix_seen.losses <= mix_seen.expected_losses + 1e-12)  # Jensen
    assert mix_seen.answer_fields is None
    names = runs["sampled"][1].group_names
    fields = sample_seen.answer_fields
    assert fields is not None and len(fields) == len(y) and {f["expert"] for f in fields} <= set(names)
    drawn = sample_seen.drawn
    assert drawn is not None and np.all(G[drawn < 4, drawn[drawn < 4]])  # a drawn expert is awake


def test_the_draw_is_the_served_expert_prediction():
    X, y, G = random_stream(14, n=120)
    sampled = make(serve="sampled", seed=5)
    twin = make(serve="mixture")
    for t in range(len(y)):
        f = {g: twin._theta[g] @ X[t] for g in range(5)}
        seen = sampled.observe(X[t : t + 1], y[t : t + 1], G[t : t + 1])
        twin.observe(X[t : t + 1], y[t : t + 1], G[t : t + 1])
        assert seen.predictions[0] == pytest.approx(f[int(seen.drawn[0])], abs=1e-12)


@pytest.mark.filterwarnings("error::DeprecationWarning")
def test_the_0_1_0_mode_parameter_still_works_and_says_what_replaces_it():
    for mode, serve in (("expected", "sampled"), ("sample", "sampled"), ("mixture", "mixture")):
        with pytest.warns(DeprecationWarning, match=f"serve='{serve}'"):
            old = make(mode=mode, seed=2)
        new = make(serve=serve, seed=2)
        X, y, G = random_stream(15, n=40)
        np.testing.assert_array_equal(old.observe(X, y, G).predictions, new.observe(X, y, G).predictions)


def test_predict_one_is_the_pure_mixture_and_learn_one_reads_membership_from_flags():
    X, y, G = random_stream(13, n=80)
    names = [f"f{i}" for i in range(6)]
    by_dicts = make()
    for t in range(len(y)):
        x = dict(zip(names, X[t]))
        x.update({f"g{j}": bool(G[t, j]) for j in range(4)})
        before = by_dicts.state_dict()["R"].copy()
        prediction = by_dicts.predict_one(x)
        np.testing.assert_array_equal(by_dicts.state_dict()["R"], before)
        assert prediction == pytest.approx(float(by_dicts.predict_many(X[t : t + 1], G[t : t + 1])[0]), abs=1e-15)
        by_dicts.learn_one(x, y[t])
    by_matrix = make()
    by_matrix.observe_many(X, y, G)
    np.testing.assert_array_equal(by_dicts.expert_regret, by_matrix.expert_regret)


# -- determinism and state -------------------------------------------------------------------
@pytest.mark.parametrize("base", ["ridge", "omd"])
def test_same_events_and_seed_give_the_same_state_however_batched(base):
    X, y, G = random_stream(14)
    whole = make(base=base, seed=5)
    whole.observe_many(X, y, G)
    split = make(base=base, seed=5)
    for start, stop in [(0, 1), (1, 77), (77, 200), (200, 300)]:
        split.observe_many(X[start:stop], y[start:stop], G[start:stop])
    a, b = whole.state_dict(), split.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            np.testing.assert_array_equal(a[key], b[key])
        else:
            assert a[key] == b[key]


@pytest.mark.parametrize("base", ["ridge", "omd"])
def test_checkpoint_through_npz_then_continue_is_bit_identical(base):
    X, y, G = random_stream(15)
    straight = make(base=base, seed=9)
    straight.observe_many(X[:150], y[:150], G[:150])
    buffer = io.BytesIO()
    np.savez(buffer, **straight.state_dict())
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as saved:
        state = {k: saved[k] if saved[k].ndim else saved[k].item() for k in saved.files}
    restored = make(base=base, seed=123)
    restored.load_state_dict(state)
    expected = straight.observe(X[150:], y[150:], G[150:])
    got = restored.observe(X[150:], y[150:], G[150:])
    np.testing.assert_array_equal(got.predictions, expected.predictions)
    np.testing.assert_array_equal(got.losses, expected.losses)
    assert restored.n_updates == straight.n_updates == 300


def test_state_holds_only_arrays_and_json_scalars():
    model = make()
    model.observe_many(*random_stream(16, n=20))
    for value in model.state_dict().values():
        assert isinstance(value, (np.ndarray, str, int, float, bool)) and not (isinstance(value, np.ndarray) and value.dtype == object)


# -- bases --------------------------------------------------------------------------------------
def test_a_contract_regressor_as_base_matches_the_builtin_ridge_path():
    X, y, G = random_stream(17, n=150)
    builtin = make(serve="mixture")
    generic = make(serve="mixture", base=OnlineRidge(lam=1.0, fit_intercept=False))
    np.testing.assert_array_equal(generic.observe_many(X, y, G), builtin.observe_many(X, y, G))
    np.testing.assert_array_equal(generic.expert_regret, builtin.expert_regret)
    np.testing.assert_allclose(
        generic.predict_many(X[:10], G[:10]), builtin.predict_many(X[:10], G[:10]), rtol=0, atol=1e-12
    )  # summation order differs
    restored = make(serve="mixture", base=OnlineRidge(lam=1.0, fit_intercept=False))
    restored.load_state_dict(generic.state_dict())
    np.testing.assert_array_equal(restored.predict_many(X, G), generic.predict_many(X, G))


def reference_omd_groupwise(X, y, A_full, diameter=10.0, grad_bound=1.0, delta=1.0):
    n, d = X.shape
    n_groups = A_full.shape[1]
    xhat, hint, V = np.zeros((n_groups, d)), np.zeros((n_groups, d)), np.zeros(n_groups)
    R, C = np.zeros(n_groups), np.zeros(n_groups)
    mixture = np.empty(n)

    def proj(v):
        norm = np.linalg.norm(v)
        return v * (diameter / 2 / norm) if norm > diameter / 2 else v

    for t in range(n):
        x = X[t]
        awake = np.flatnonzero(A_full[t])
        p = reference_probabilities(R[awake], C[awake])
        f = np.empty(len(awake))
        for k, g in enumerate(awake):
            eta = diameter / np.sqrt(delta + 4 * grad_bound**2 + V[g])
            w = proj(xhat[g] - eta * hint[g])
            f[k] = w @ x
            grad = (f[k] - y[t]) * x
            xhat[g] = proj(xhat[g] - eta * grad)
            V[g] += np.sum((grad - hint[g]) ** 2)
            hint[g] = grad
        losses = (f - y[t]) ** 2
        lhat = p @ losses
        R[awake] += lhat - losses
        C[awake] += np.abs(lhat - losses)
        mixture[t] = p @ f
    return mixture, R


def test_omd_experts_match_the_numpy_reference():
    X, y, G = random_stream(18)
    model = make(base="omd", serve="mixture", omd_diameter=4.0)
    served = model.observe_many(X, y, G)
    mixture, R = reference_omd_groupwise(X, y, full_membership(G), diameter=4.0)
    np.testing.assert_allclose(served, mixture, rtol=0, atol=1e-9)
    np.testing.assert_allclose(model.expert_regret, R, rtol=0, atol=1e-9)


# -- monitoring and API ---------------------------------------------------------------------
def test_gauges_expose_expert_regret_per_declared_group_and_always_on():
    X, y, G = random_stream(19)
    model = make()
    model.observe_many(X, y, G)
    gauges, per_group = model.gauges(), model.group_gauges()
    assert set(gauges) == set(GroupwiseRegressor.GAUGES)
    assert set(per_group) == set(GroupwiseRegressor.GROUP_GAUGES)
    np.testing.assert_array_equal(per_group["expert_regret"], model.expert_regret[:4])
    np.testing.assert_allclose(per_group["expert_regret_rate"], model.expert_regret[:4] / G.sum(axis=0))
    assert gauges["always_on_expert_regret"] == model.expert_regret[-1]
    assert model.group_names == ["g0", "g1", "g2", "g3", ALWAYS_ON]


def test_bad_arguments_are_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match="serve"):
        GroupwiseRegressor(serve="best")
    with pytest.raises(ValueError, match="always_on"):
        GroupwiseRegressor(groups=["a", "always_on"])
    with pytest.raises(ValueError, match="base"):
        GroupwiseRegressor(base="vaw")
    model = make()
    with pytest.raises(ValueError, match="groups must be"):
        model.observe_many(np.zeros((2, 6)), np.zeros(2), np.zeros((2, 5), bool))


def test_runs_in_a_river_pipeline_with_progressive_validation():
    from river import compose, datasets, evaluate, metrics, preprocessing

    model = compose.Pipeline(preprocessing.StandardScaler(), GroupwiseRegressor())
    metric = evaluate.progressive_val_score(datasets.TrumpApproval().take(300), model, metrics.MAE())
    assert metric.get() < 5.0


def test_engine_path_gives_the_same_losses_as_direct_learner_calls(monkeypatch):
    """The Medical stream as JSON observe events through the runtime = direct observe_many calls."""
    orjson = pytest.importorskip("orjson")
    from regretflow.connectors.datasets.insurance import load_insurance
    from regretflow.connectors.memory import MemorySink, MemorySource
    from regretflow.engine.config import parse_config
    from regretflow.engine.runtime.loop import Engine
    from regretflow.learners import LEARNERS

    monkeypatch.setitem(LEARNERS, "groupwise", GroupwiseRegressor)
    data = load_insurance().shuffled(473)
    features = list(data.feature_names)
    groups = [
        {"name": "smoker", "field": "smoker", "values": ["yes", "no"]},
        {"name": "age", "field": "age", "edges": [18, 36, 51, 65]},
    ]
    config = parse_config(
        {
            "models": {"gw": {"learner": "groupwise", "features": features, "groups": groups, "params": {"lam": 1.0}}},
            "runtime": {"batch_size": 100, "batch_timeout_ms": 10.0},
            "metrics": {"enabled": False},
        }
    )
    events = [
        orjson.dumps(
            {
                "id": str(i),
                "model": "gw",
                "kind": "observe",
                "features": dict(zip(features, data.X[i].tolist())),
                "attributes": {"smoker": row["smoker"], "age": row["age"]},
                "label": float(data.y[i]),
            }
        )
        for i, row in enumerate(data.rows)
    ]
    engine = Engine(config, MemorySource([]), MemorySink(keep=False), MemorySink(), serve_metrics=False)
    for start in range(0, len(events), 100):
        engine.process(events[start : start + 100])
    served = next(iter(engine.shards())).learner

    age = np.array([row["age"] for row in data.rows])
    G = np.column_stack(
        [
            [row["smoker"] == "yes" for row in data.rows],
            [row["smoker"] == "no" for row in data.rows],
            (age >= 18) & (age < 36),
            (age >= 36) & (age < 51),
            (age >= 51) & (age < 65),
        ]
    )
    direct = GroupwiseRegressor(features=features, groups=served.group_names[:-1], lam=1.0, seed=0)
    losses = np.concatenate(
        [direct.observe(data.X[s : s + 100], data.y[s : s + 100], G[s : s + 100]).losses for s in range(0, len(data), 100)]
    )
    np.testing.assert_array_equal(served.expert_regret, direct.expert_regret)
    summary = engine.summary()["gw"]["groups"]
    assert summary["all"]["loss"] == pytest.approx(losses.sum(), rel=1e-12)
    assert summary["smoker=yes"]["loss"] == pytest.approx(losses[G[:, 0]].sum(), rel=1e-12)
    assert summary["smoker=yes"]["count"] == int(G[:, 0].sum())


# -- feature policy, intercept, 0.1.0 states ---------------------------------------------------
def flag_stream(n: int, seed: int = 0):
    """Dicts with a, the group flag b, and c from row 100 on; y depends strongly on c."""
    rng = np.random.default_rng(seed)
    for t in range(n):
        x = {"a": rng.normal(), "b": float(rng.uniform() < 0.5)}
        if t >= 100:
            x["c"] = rng.normal()
        yield x, 0.5 * x["a"] + 3.0 * x.get("c", 0.0) + x["b"]


@pytest.mark.parametrize("kwargs", [{}, {"base": "omd"}, {"fit_intercept": False}, {"serve": "sampled"}])
def test_a_new_key_grows_every_expert_as_if_it_had_been_zero(kwargs):
    grown = GroupwiseRegressor(groups=["b"], **kwargs)
    declared = GroupwiseRegressor(features=["a", "b", "c"], groups=["b"], **kwargs)
    for x, y in flag_stream(300):
        grown.learn_one(x, y)
        declared.learn_one(x, y)
    assert grown._features == ["a", "b", "c"]
    mine, theirs = grown.state_dict(), declared.state_dict()
    assert mine.keys() == theirs.keys()
    for key in mine:
        np.testing.assert_array_equal(mine[key], theirs[key], err_msg=key)


def test_learn_many_grows_on_new_columns_counts_absent_ones_as_zero_and_predict_many_agrees():
    import pandas as pd

    rows = list(flag_stream(300))
    by_frames, by_dicts = GroupwiseRegressor(groups=["b"]), GroupwiseRegressor(groups=["b"])
    for start in range(0, 300, 50):
        chunk = rows[start : start + 50]
        if start == 250:
            chunk = [({k: v for k, v in x.items() if k != "a"}, y) for x, y in chunk]
        by_frames.learn_many(pd.DataFrame([x for x, _ in chunk]).fillna(0.0), pd.Series([y for _, y in chunk]))
        for x, y in chunk:
            by_dicts.learn_one(x, y)
    np.testing.assert_allclose(by_frames.state_dict()["theta"], by_dicts.state_dict()["theta"], rtol=1e-9, atol=1e-12)
    probe = pd.DataFrame({"b": [1.0], "c": [2.0]})  # no "a": it counts as 0
    assert by_frames.predict_many(probe)[0] == pytest.approx(by_frames.predict_one({"b": 1.0, "c": 2.0}))


@pytest.mark.parametrize("change", ["new key", "missing key"])
def test_strict_refuses_any_change_of_keys_and_keeps_its_state(change):
    import pandas as pd

    model = GroupwiseRegressor(groups=["b"], strict=True)
    for x, y in list(flag_stream(50)):
        model.learn_one({"a": x["a"], "b": x["b"]}, y)
    before = model.state_dict()
    x = {"a": 1.0, "b": 1.0, "z": 3.0} if change == "new key" else {"a": 1.0}
    for call in (
        lambda: model.learn_one(x, 1.0),
        lambda: model.predict_one(x),
        lambda: model.learn_many(pd.DataFrame([x]), pd.Series([1.0])),
        lambda: model.predict_many(pd.DataFrame([x])),
        lambda: model.observe(pd.DataFrame([x]), np.ones(1)),
    ):
        with pytest.raises(ValueError, match="strict=True"):
            call()
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_the_intercept_is_on_by_default_and_fits_a_constant_offset():
    model = GroupwiseRegressor(features=["x"], groups=["g"])
    without = GroupwiseRegressor(features=["x"], groups=["g"], fit_intercept=False)
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(400, 1))
    y = 5.0 + X[:, 0]
    G = rng.uniform(size=(400, 1)) < 0.5
    late = model.observe(X, y, G).losses[300:].mean()
    assert late < 1e-3 < without.observe(X, y, G).losses[300:].mean()
    assert model.state_dict()["theta"].shape == (2, 2)  # x, then the intercept


def test_a_0_1_0_state_without_intercept_goes_on_without_one():
    X, y, G = random_stream(17, n=120)
    old = make(serve="sampled", seed=4)  # what 0.1.0 had: no intercept
    old.observe(X[:60], y[:60], G[:60])
    state = {k: v for k, v in old.state_dict().items() if k != "fit_intercept"}
    restored = make(serve="sampled", seed=0, fit_intercept=True)
    restored.load_state_dict(state)
    np.testing.assert_array_equal(restored.observe(X[60:], y[60:], G[60:]).predictions, old.observe(X[60:], y[60:], G[60:]).predictions)


@pytest.mark.parametrize("poison", [float("nan"), float("inf")])
def test_non_finite_features_and_labels_are_refused_by_every_api(poison):
    model = make()
    X, y, G = random_stream(18, n=10)
    model.observe(X, y, G)
    before = model.state_dict()
    bad = X.copy()
    bad[3, 2] = poison
    bad_y = y.copy()
    bad_y[4] = poison
    for call in (
        lambda: model.observe(bad, y, G),
        lambda: model.observe(X, bad_y, G),
        lambda: model.learn_one({"f0": poison}, 1.0),
        lambda: model.learn_one({"f0": 1.0}, poison),
        lambda: model.predict_one({"f0": poison}),
        lambda: model.predict_many(bad, G),
    ):
        with pytest.raises(ValueError):
            call()
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_engine_answers_carry_the_scored_prediction_and_the_drawn_expert():
    from regretflow.connectors.memory import MemorySink, MemorySource
    from regretflow.engine.config import parse_config
    from regretflow.engine.runtime.loop import Engine

    orjson = pytest.importorskip("orjson")
    answers: dict[str, list] = {}
    for serve in ("mixture", "sampled"):
        config = parse_config(
            {
                "models": {
                    "gw": {
                        "learner": "groupwise",
                        "features": ["x"],
                        "groups": [{"name": "g", "field": "g", "values": ["a", "b"]}],
                        "params": {"serve": serve},
                    }
                },
                "metrics": {"enabled": False},
            }
        )
        rng = np.random.default_rng(1)
        events = [
            orjson.dumps(
                {
                    "id": str(i),
                    "model": "gw",
                    "kind": "observe",
                    "features": {"x": float(v)},
                    "attributes": {"g": "ab"[i % 2]},
                    "label": float(v * (1 + i % 2)),
                }
            )
            for i, v in enumerate(rng.uniform(size=60))
        ]
        sink = MemorySink()
        engine = Engine(config, MemorySource([]), sink, MemorySink(), serve_metrics=False)
        engine.process(events)
        answers[serve] = [orjson.loads(r[1]) for r in sink.records]
        labels = np.array([orjson.loads(e)["label"] for e in events])
        served = np.array([a["prediction"] for a in answers[serve]])
        assert engine.summary()["gw"]["groups"]["all"]["loss"] == pytest.approx(float(((served - labels) ** 2).sum()), rel=1e-12)
    assert all("expert" not in a for a in answers["mixture"])
    assert {a["expert"] for a in answers["sampled"]} <= {"g=a", "g=b", "always_on"} and len(answers["sampled"]) == 60
