"""DynLin-UCB and its baselines: schedule, constants, kernels against numpy, state."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from regretflow.connectors.simulators.linear_dynamical import OFFICIAL_BUDGET_ACTIONS, test_case
from regretflow.learners import dynamical_kernels as K
from regretflow.learners.dynamical import BudgetPolytope, DynLinUCB, SystemBounds, action_matrix, epoch_schedule
from regretflow.learners.linear_bandits import ActionVectorLinUCB, BatchedExp3, DiscountedLinUCB, Exp3

T6 = 10**6


def bounds_of(name: str) -> SystemBounds:
    sim = test_case(name)
    return SystemBounds.from_matrices(sim.A, sim.B, sim.C, sim.D, sim.noise_sigma)


@pytest.fixture(scope="module", autouse=True)
def _compiled():
    K.warm_up()


# -- reference implementations (plain numpy, as the official agents compute) -------------
def reference_beta_oracle(t, d, c1, c2, s2, lam, log_inv_delta, u_sq, gamma=1.0):
    growth = t * u_sq / (d * lam)
    if gamma < 1:
        growth = growth * (1 - gamma ** (2 * t)) / (1 - gamma**2)
    return c1 * np.sqrt(lam) + c2 / np.sqrt(lam) * np.log(np.e * (t + 1)) + np.sqrt(2 * s2 * (log_inv_delta + d / 2 * np.log(1 + growth)))


class ReferenceLinearAgent:
    """The official LinearAgent's logic in plain numpy (explicit inverse, list schedule)."""

    def __init__(self, actions, horizon, lam, rho, c1, c2, s2, log_inv_delta, u_sq, every_round):
        self.actions, self.lam = actions, lam
        self.c1, self.c2, self.s2, self.log_inv_delta, self.u_sq = c1, c2, s2, log_inv_delta, u_sq
        d = actions.shape[1]
        self.V = lam * np.eye(d)
        self.b = np.zeros(d)
        self.h = np.zeros(d)
        if every_round:
            self.ends = list(range(horizon))
        else:
            self.ends, m, total = [], 0, 0
            while total < horizon:
                m += 1
                total += 1 + math.floor(np.log(m) / np.log(1 / rho))
                self.ends.append(total)
        self.starts = [e + 1 for e in self.ends]
        self.t, self.arm = 0, None

    def scores(self):
        """The optimistic indices if this round is a decision round, else None."""
        if self.t == 0 or self.t not in self._starts_set():
            return None
        d = self.actions.shape[1]
        beta = reference_beta_oracle(self.t, d, self.c1, self.c2, self.s2, self.lam, self.log_inv_delta, self.u_sq)
        Vinv = np.linalg.inv(self.V)
        return np.array([self.h @ u + beta * np.sqrt(u @ Vinv @ u) for u in self.actions])

    def follow(self, arm):
        self.arm = arm

    def _starts_set(self):
        if not hasattr(self, "_ss"):
            self._ss = set(self.starts)
        return self._ss

    def learn(self, y):
        if self.t in self._ends_set():
            u = self.actions[self.arm]
            self.V = self.V + np.outer(u, u)
            self.b = self.b + y * u
            self.h = np.linalg.inv(self.V) @ self.b
        self.t += 1

    def _ends_set(self):
        if not hasattr(self, "_es"):
            self._es = set(self.ends)
        return self._es


def play(learner, sim, rounds):
    arms, rewards = [], []
    for _ in range(rounds):
        arm, _ = learner.act()
        y = sim.step(arm)
        learner.learn(None, arm, y)
        arms.append(arm)
        rewards.append(y)
    return np.array(arms), np.array(rewards)


# -- action sets -------------------------------------------------------------------------
def brute_force_vertices(lower, upper, total, spend_all):
    """Vertices by solving every choice of d active constraints (slow, obvious)."""
    d = len(lower)
    rows, rhs = [], []
    for i in range(d):
        e = np.eye(d)[i]
        rows += [e, e]
        rhs += [lower[i], upper[i]]
    rows.append(np.ones(d))
    rhs.append(total)
    rows, rhs = np.array(rows), np.array(rhs)
    found = set()
    budget_row = len(rows) - 1
    for active in itertools.combinations(range(len(rows)), d):
        if spend_all and budget_row not in active:
            continue
        M = rows[list(active)]
        if abs(np.linalg.det(M)) < 1e-12:
            continue
        u = np.linalg.solve(M, rhs[list(active)])
        ok = np.all(u >= np.array(lower) - 1e-9) and np.all(u <= np.array(upper) + 1e-9) and u.sum() <= total + 1e-9
        if spend_all:
            ok = ok and abs(u.sum() - total) < 1e-9
        if ok:
            found.add(tuple(np.round(u, 9)))
    return sorted(found)


def test_budget_polytope_gives_the_official_six_actions_in_np_unique_order():
    verts = BudgetPolytope(lower=0.0, upper=1.0, total=1.5, dim=3).vertices()
    assert np.array_equal(verts, OFFICIAL_BUDGET_ACTIONS)


@pytest.mark.parametrize("spend_all", [True, False])
@pytest.mark.parametrize(
    "lower,upper,total",
    [([0, 0, 0], [1, 1, 1], 1.5), ([0.1, 0, 0.2], [1, 0.7, 0.9], 1.2), ([0, 0, 0, 0], [1, 2, 1, 0.5], 2.25), ([0, 0], [1, 1], 3.0)],
)
def test_budget_polytope_vertices_match_brute_force_enumeration(lower, upper, total, spend_all):
    if spend_all and total > sum(upper):
        with pytest.raises(ValueError):
            BudgetPolytope(lower, upper, total, len(lower), spend_all).vertices()
        return
    verts = BudgetPolytope(lower, upper, total, len(lower), spend_all).vertices()
    got = sorted(tuple(np.round(v, 9)) for v in verts)
    assert got == brute_force_vertices(lower, upper, total, spend_all)


def test_action_matrix_accepts_config_dict_and_rejects_nan():
    assert np.array_equal(action_matrix({"lower": 0, "upper": 1, "total": 1.5, "dim": 3}), OFFICIAL_BUDGET_ACTIONS)
    with pytest.raises(ValueError, match="actions: expected a non-empty 2-d array of finite numbers"):
        action_matrix([[0.0, float("nan")]])


# -- schedule and constants ---------------------------------------------------------------
def test_schedule_for_rho_0_2_matches_the_spec():
    ends = epoch_schedule(0.2, T6)
    lengths = np.diff(np.concatenate([[0], ends]))
    assert ends[:12].tolist() == [1, 2, 3, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    assert lengths[:4].tolist() == [1, 1, 1, 1]
    assert np.all(lengths[4:24] == 2) and np.all(lengths[24:124] == 3) and lengths[124] == 4
    assert len(ends) == 137_206 and lengths.max() == 8


def test_schedule_for_the_real_data_system_matches_the_spec():
    ends = epoch_schedule(bounds_of("real-data").rho_bar, T6)
    assert ends[:12].tolist() == [1, 3, 6, 10, 14, 19, 24, 30, 36, 42, 48, 55]
    assert len(ends) == 41_212 and np.diff(ends).max() == 27 and ends[-1] == 1_000_024


def test_bounds_and_constants_match_the_spec():
    syn, real = bounds_of("synthetic"), bounds_of("real-data")
    assert (round(syn.rho_bar, 6), round(syn.phi_bar, 6)) == (0.2, 1.0)
    assert (round(real.rho_bar, 6), round(real.phi_bar, 6)) == (0.666891, 2.781215)
    assert [round(v, 6) for v in (real.omega_norm, real.theta_norm, real.b_norm)] == [0.62498, 0.430581, 0.385606]
    syn_l = DynLinUCB(OFFICIAL_BUDGET_ACTIONS, syn, T6)
    real_l = DynLinUCB(OFFICIAL_BUDGET_ACTIONS, real, T6)
    assert [round(syn_l.constants_[k], 6) for k in ("c1", "c2")] == [1.075207, 2.276925]
    assert syn_l.constants_["sigma_bar_sq"] == pytest.approx(2.05208e-4, rel=1e-5)
    assert [round(real_l.constants_[k], 6) for k in ("c1", "c2")] == [2.442723, 9.037838]
    assert real_l.constants_["sigma_bar_sq"] == pytest.approx(6.44137e-4, rel=1e-5)


@pytest.mark.parametrize(
    "name,lam,expected,digits",
    [
        ("synthetic", "log_horizon", (5.1091, 10.3471, 13.1818), 4),
        ("synthetic", 1.0, (5.0071, 24.4275, 34.9258), 4),
        ("real-data", "log_horizon", (13.330, 34.076, 45.298), 3),
        ("real-data", 1.0, (17.881, 94.907, 136.550), 3),
    ],
)
def test_confidence_radius_matches_the_spec_table(name, lam, expected, digits):
    learner = DynLinUCB(OFFICIAL_BUDGET_ACTIONS, bounds_of(name), T6, lam=lam)
    assert tuple(round(learner.beta(t), digits) for t in (1, 10**4, 10**6)) == expected


def test_confidence_radius_kernel_matches_numpy_reference():
    rng = np.random.default_rng(0)
    for _ in range(50):
        c1, c2, s2, lam, lid, usq = rng.uniform(0.1, 3, 6)
        gamma = rng.choice([1.0, 0.999, 0.999999])
        t = int(rng.integers(0, 10**6))
        params = np.array([1.0, c1, c2, s2, lam, lid, usq, gamma])
        got = K.confidence_radius(t, 3, K.RULE_ORACLE, params)
        assert got == pytest.approx(reference_beta_oracle(t, 3, c1, c2, s2, lam, lid, usq, gamma), rel=1e-9)
        theta, sigma = rng.uniform(0.1, 2, 2)
        g = gamma if gamma < 1 else 0.9999
        t = t % 100_000
        lam_t = g ** (-t) * lam
        ref = theta * np.sqrt(lam_t) + sigma * np.sqrt(2 * lid + 3 * np.log(1 + usq * (1 - g ** (2 * t)) / (3 * lam_t * (1 - g**2))))
        got = K.confidence_radius(t, 3, K.RULE_DISCOUNTED, np.array([1.0, theta, sigma, lam, lid, usq, g, 0.0]))
        assert got == pytest.approx(ref, rel=1e-9)


# -- kernels against numpy ------------------------------------------------------------------
def test_sherman_morrison_tracks_the_explicit_inverse_over_1e5_updates():
    rng = np.random.default_rng(1)
    d = 3
    V = np.log(1e6) * np.eye(d)
    Vinv = np.linalg.inv(V)
    scratch = np.empty(d)
    for k in rng.integers(0, 6, size=100_000):
        u = OFFICIAL_BUDGET_ACTIONS[k]
        V += np.outer(u, u)
        K.sherman_morrison(Vinv, u, scratch)
    ref = np.linalg.inv(V)
    assert np.abs(Vinv - ref).max() <= 1e-9 * np.abs(ref).max()
    assert np.array_equal(Vinv, Vinv.T)


def test_ucb_argmax_matches_numpy_and_breaks_ties_to_the_lowest_index():
    rng = np.random.default_rng(2)
    for _ in range(100):
        A = rng.normal(size=(3, 3))
        M = A @ A.T + 0.1 * np.eye(3)
        h = rng.normal(size=3)
        beta = rng.uniform(0, 5)
        means, scores = np.empty(6), np.empty(6)
        arm = K.ucb_argmax(h, M, OFFICIAL_BUDGET_ACTIONS, beta, means, scores)
        ref = [h @ u + beta * np.sqrt(u @ M @ u) for u in OFFICIAL_BUDGET_ACTIONS]
        assert np.allclose(scores, ref, rtol=1e-9, atol=1e-12)
        assert arm == int(np.argmax(scores))
    tied = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert K.ucb_argmax(np.zeros(2), np.eye(2), tied, 1.0, np.empty(3), np.empty(3)) == 0


def test_spd_inverse_matches_numpy():
    rng = np.random.default_rng(3)
    for d in (1, 2, 3, 5):
        A = rng.normal(size=(d, d))
        V = A @ A.T + 0.5 * np.eye(d)
        out, work = np.empty((d, d)), np.empty((d, d))
        K.spd_inverse(V, out, work)
        assert np.allclose(out, np.linalg.inv(V), rtol=1e-9, atol=1e-12)


def test_discounted_learn_matches_the_official_update():
    rng = np.random.default_rng(4)
    actions = OFFICIAL_BUDGET_ACTIONS
    lam, gamma, d = 1.0, 0.99, 3
    learner = DiscountedLinUCB(actions, bounds_of("synthetic"), 1000, discount=gamma, lam=lam, seed=0)
    V, Vt, b = lam * np.eye(d), lam * np.eye(d), np.zeros(d)
    for t in range(300):
        arm, _ = learner.act()
        u = actions[arm]
        y = float(rng.normal())
        lam_t = gamma ** (-t) * lam
        V = gamma * V + np.outer(u, u) + (1 - gamma) * lam_t * np.eye(d)
        Vt = gamma**2 * Vt + np.outer(u, u) + (1 - gamma**2) * lam_t * np.eye(d)
        b = gamma * b + u * y
        learner.learn(None, arm, y)
    st = learner.state_dict()
    Vinv = np.linalg.inv(V)
    assert np.allclose(st["h"], Vinv @ b, rtol=1e-9, atol=1e-12)
    assert np.allclose(st["M"], Vinv @ Vt @ Vinv, rtol=1e-9, atol=1e-15)


def test_exp3_kernels_match_numpy():
    rng = np.random.default_rng(5)
    for _ in range(50):
        G = rng.uniform(0, 100, 6)
        eta, gamma = rng.uniform(0.001, 0.1), rng.uniform(0.01, 0.5)
        probs = np.empty(6)
        K.exp3_probabilities(G, eta, gamma, probs)
        w = np.exp(eta * G)
        ref = (1 - gamma) * w / w.sum() + gamma / 6
        assert np.allclose(probs, ref, rtol=1e-9)
        u = rng.random()
        assert K.sample_index(probs, u) == int(np.searchsorted(np.cumsum(probs) / probs.sum(), u, side="right"))


# -- DynLin-UCB behaviour ------------------------------------------------------------------
def follow_reference(learner, ref, sim, rounds):
    """Step learner and reference side by side; the reference plays the learner's arm.

    Exact ties (symmetric actions) may be broken differently by the last bit of two
    float computations, so the check is: at each decision the learner's arm is an
    argmax of the reference's scores to 1e-9, the arm never changes elsewhere, and
    the estimates agree to 1e-9.
    """
    previous = None
    for t in range(rounds):
        arm, _ = learner.act()
        scores = ref.scores()
        if scores is not None:
            assert scores[arm] >= scores.max() - 1e-9 * (1 + abs(scores.max())), f"round {t}"
            assert np.allclose(np.sort(learner._scores), np.sort(scores), rtol=1e-9, atol=1e-12)
        elif t > 0:
            assert arm == previous, f"arm changed outside a decision round at {t}"
        ref.follow(arm)
        y = sim.step(arm)
        learner.learn(None, arm, y)
        ref.learn(y)
        assert np.allclose(learner.estimate, ref.h, rtol=1e-9, atol=1e-12), f"round {t}"
        previous = arm


@pytest.mark.parametrize("name", ["synthetic", "real-data"])
def test_dynlinucb_follows_the_numpy_reference_of_the_official_agent(name):
    sim = test_case(name, seed=11)
    b = bounds_of(name)
    learner = DynLinUCB(sim.actions, b, T6, seed=3, exploration=0.0)
    c = learner.constants_
    ref = ReferenceLinearAgent(
        sim.actions,
        5000,
        np.log(T6),
        b.rho_bar,
        c["c1"],
        c["c2"],
        c["sigma_bar_sq"],
        np.log(T6),
        learner._beta_params[6],
        every_round=False,
    )
    follow_reference(learner, ref, sim, 5000)


def test_linucb_oracle_follows_the_numpy_reference_of_the_official_agent():
    sim = test_case("real-data", seed=12)
    b = bounds_of("real-data")
    learner = ActionVectorLinUCB(sim.actions, b, T6, radius="oracle", seed=4, exploration=0.0)
    c = learner._beta_params
    ref = ReferenceLinearAgent(sim.actions, 3000, np.log(T6), b.rho_bar, c[1], 0.0, c[3], c[5], c[6], every_round=True)
    follow_reference(learner, ref, sim, 3000)


def test_regression_changes_only_at_epoch_ends_and_action_only_after_them():
    b = bounds_of("real-data")
    ends = set(epoch_schedule(b.rho_bar, 2000).tolist())
    rng = np.random.default_rng(6)
    learner = DynLinUCB(OFFICIAL_BUDGET_ACTIONS, b, T6, seed=0)
    twin = DynLinUCB(OFFICIAL_BUDGET_ACTIONS, b, T6, seed=0)
    previous_arm = None
    for t in range(2000):
        arm, probs = learner.act()
        twin_arm, _ = twin.act()
        assert arm == twin_arm
        if previous_arm is not None and arm != previous_arm:
            assert (t - 1) in ends, f"action changed at round {t}, not right after an epoch end"
        before = (learner._Vinv.copy(), learner._b.copy(), learner._h.copy())
        y = float(rng.normal())
        learner.learn(None, arm, y)
        # the twin gets garbage on rounds that are not epoch ends, the same reward on ends
        twin.learn(None, arm, y if t in ends else 1e6 * float(rng.normal()))
        if t not in ends:
            assert all(np.array_equal(x, y_) for x, y_ in zip(before, (learner._Vinv, learner._b, learner._h)))
        previous_arm = arm
    assert np.array_equal(learner._h, twin._h) and np.array_equal(learner._Vinv, twin._Vinv)
    assert learner.n_updates == sum(1 for e in ends if e < 2000)


def test_round_zero_is_uniform_then_the_epoch_holds_its_draw_with_the_exploration_floor():
    counts = np.zeros(6)
    for seed in range(600):
        learner = DynLinUCB(OFFICIAL_BUDGET_ACTIONS, bounds_of("synthetic"), T6, seed=seed)
        arm, probs = learner.act()
        assert np.allclose(probs, 1 / 6)
        counts[arm] += 1
    assert counts.min() > 60  # each arm ~100 times
    learner.learn(None, arm, 0.5)
    assert learner.act() == (arm, pytest.approx(np.full(6, 1 / 6)))  # round 1 still in epoch 1: its draw was uniform
    learner.learn(None, arm, 0.5)
    arm2, probs2 = learner.act()  # epoch 2's decision: the optimistic arm, with the floor mixed in
    best = int(np.argmax(probs2))
    assert probs2.tolist() == pytest.approx([0.99 + 0.01 / 6 if k == best else 0.01 / 6 for k in range(6)])
    assert learner.act()[0] == arm2  # act twice in a round: same arm
    deterministic = DynLinUCB(OFFICIAL_BUDGET_ACTIONS, bounds_of("synthetic"), T6, seed=0, exploration=0.0)
    for _ in range(2):
        deterministic.learn(None, deterministic.act()[0], 0.5)
    arm3, probs3 = deterministic.act()
    assert probs3.tolist() == [1.0 if k == arm3 else 0.0 for k in range(6)]


def test_learn_rejects_bad_feedback_without_touching_state():
    learner = DynLinUCB(OFFICIAL_BUDGET_ACTIONS, bounds_of("synthetic"), T6, seed=0)
    learner.act()
    before = learner.state_dict()
    for bad in (
        lambda: learner.learn(None, 0, float("nan")),
        lambda: learner.learn(None, 0, 1.0, probability=0.0),
        lambda: learner.learn(None, 0, 1.0, probability=1.5),
        lambda: learner.learn(None, 6, 1.0),
    ):
        with pytest.raises(ValueError):
            bad()
    after = learner.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_dynlinucb_finds_the_steady_state_optimum_that_linucb_misses():
    sim_d, sim_l = test_case("real-data", seed=5), test_case("real-data", seed=5)
    dyn = DynLinUCB(sim_d.actions, bounds_of("real-data"), T6, seed=0, exploration=0.0)
    lin = ActionVectorLinUCB(sim_l.actions, bounds_of("real-data"), T6, seed=0, exploration=0.0)
    arms_d, _ = play(dyn, sim_d, 20_000)
    arms_l, _ = play(lin, sim_l, 20_000)
    regret_d = sim_d.pseudo_regrets[arms_d].sum()
    regret_l = sim_l.pseudo_regrets[arms_l].sum()
    myopic = int(np.argmax(sim_l.actions @ sim_l.theta))
    assert np.mean(arms_l[-5000:] == myopic) > 0.5  # LinUCB drifts to the myopic arm
    assert regret_d < 0.7 * regret_l


def test_gauges_are_declared_finite_and_the_envelope_covers_the_true_regret():
    sim = test_case("synthetic", seed=8)
    learner = DynLinUCB(sim.actions, bounds_of("synthetic"), T6, seed=0)
    arms, _ = play(learner, sim, 5000)
    g = learner.gauges()
    assert set(g) == set(DynLinUCB.GAUGES)
    assert all(math.isfinite(v) for v in g.values())
    assert g["dynlin_epoch"] == learner.epoch and g["dynlin_regression_samples"] == learner.n_updates
    assert g["dynlin_estimated_gap"] >= 0
    assert g["dynlin_regret_envelope"] >= sim.pseudo_regrets[arms].sum()
    assert g["dynlin_regret_envelope"] > g["dynlin_estimated_regret"] >= 0


def test_settling_check_flags_a_too_small_rho_bar():
    """Equal steady states, different transients: a learner that keeps switching.

    With rho_bar far below the true 0.9 the epochs end before the system settles,
    so the last two rewards of an epoch differ by far more than the noise.
    """
    from regretflow.connectors.simulators.linear_dynamical import LinearDynamicalSystem

    A, B = np.diag([0.9, 0.5]), np.diag([1.0, 5.0])
    C, D = np.array([[1.0, 1.0]]), np.zeros((1, 2))
    actions = [[1.0, 0.0], [0.0, 1.0]]
    true = SystemBounds.from_matrices(A, B, C, D, 0.01)
    ratio = {}
    for rho_bar in (0.9, 0.05):
        sim = LinearDynamicalSystem(A, B, C, D, 0.01, actions=actions, seed=1)
        bounds = SystemBounds(rho_bar, true.phi_bar, true.omega_norm, true.theta_norm, true.b_norm, 0.01)
        learner = DynLinUCB(actions, bounds, 10**5, beta_scale=30.0, residual_window=200, seed=0)
        arms, _ = play(learner, sim, 20_000)
        assert np.sum(np.diff(arms) != 0) > 300  # it does keep switching
        ratio[rho_bar] = learner.gauges()["dynlin_settling_ratio"]
    assert ratio[0.05] > 5 * ratio[0.9]


# -- determinism and state ------------------------------------------------------------------
def make_all(sim_name="real-data", seed=7):
    b = bounds_of(sim_name)
    acts = OFFICIAL_BUDGET_ACTIONS
    return [
        DynLinUCB(acts, b, T6, seed=seed),
        DynLinUCB(acts, b, T6, lam=1.0, epoch_threshold=1e-6, seed=seed),
        ActionVectorLinUCB(acts, b, T6, radius="oracle", seed=seed),
        ActionVectorLinUCB(acts, b, T6, lam=1.0, radius="standard", norm_bound=1.5, seed=seed),
        DiscountedLinUCB(acts, b, T6, discount=0.999999, lam="log_horizon", statistics="radius-only", seed=seed),
        DiscountedLinUCB(acts, b, T6, discount=0.999, lam=1.0, statistics="discounted", seed=seed),
        Exp3(acts, T6, reward_offset=2.0, reward_scale=4.0, seed=seed),
        BatchedExp3(acts, T6, batch_size=5, reward_offset=2.0, reward_scale=4.0, seed=seed),
    ]


def states_equal(a, b):
    assert set(a) == set(b)
    for k in a:
        if isinstance(a[k], np.ndarray):
            assert np.array_equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k


@pytest.mark.parametrize("index", range(8))
def test_same_rewards_and_seed_give_identical_actions_and_state(index):
    runs = []
    for _ in range(2):
        learner = make_all()[index]
        sim = test_case("real-data", seed=21)
        arms, _ = play(learner, sim, 1500)
        runs.append((arms, learner.state_dict()))
    assert np.array_equal(runs[0][0], runs[1][0])
    states_equal(runs[0][1], runs[1][1])


@pytest.mark.parametrize("index", range(8))
def test_state_round_trip_through_npz_continues_bit_for_bit(index, tmp_path):
    straight = make_all()[index]
    sim = test_case("real-data", seed=22)
    arms_a, _ = play(straight, sim, 2000)

    first = make_all()[index]
    sim2 = test_case("real-data", seed=22)
    arms_1, _ = play(first, sim2, 777)
    path = tmp_path / "state.npz"
    np.savez(path, **first.state_dict())
    with np.load(path, allow_pickle=False) as f:
        loaded = {k: (f[k] if f[k].ndim else f[k].item()) for k in f.files}
    resumed = make_all(seed=999)[index]  # a different seed: everything must come from the state
    resumed.load_state_dict(loaded)
    arms_2, _ = play(resumed, sim2, 2000 - 777)
    assert np.array_equal(arms_a, np.concatenate([arms_1, arms_2]))
    states_equal(straight.state_dict(), resumed.state_dict())


def test_load_state_dict_rejects_another_action_set():
    learner = DynLinUCB(OFFICIAL_BUDGET_ACTIONS, bounds_of("synthetic"), T6)
    other = DynLinUCB(OFFICIAL_BUDGET_ACTIONS[::-1], bounds_of("synthetic"), T6)
    with pytest.raises(ValueError, match="action set"):
        other.load_state_dict(learner.state_dict())


# -- Exp3 ----------------------------------------------------------------------------------------
def test_exp3_reports_the_distribution_it_drew_from_and_learns_the_best_arm():
    learner = Exp3(3, horizon=20_000, seed=1)
    rng = np.random.default_rng(0)
    for _ in range(20_000):
        arm, probs = learner.act()
        assert probs.sum() == pytest.approx(1.0) and probs.min() >= learner._gamma / 3 - 1e-12
        learner.learn(None, arm, float(rng.random() < [0.2, 0.8, 0.5][arm]), probs[arm])
    assert int(np.argmax(learner.probabilities)) == 1


def test_batched_exp3_holds_each_draw_for_a_batch_and_updates_on_batch_means():
    learner = BatchedExp3(4, horizon=4000, batch_size=4, seed=3)
    arms = []
    for t in range(4000):
        arm, probs = learner.act()
        if t % 4 == 0:
            drawn_from = probs
        assert np.array_equal(probs, drawn_from)  # every round of a batch reports the batch's draw
        arms.append(arm)
        learner.learn(None, arm, 0.3)
    arms = np.array(arms).reshape(-1, 4)
    assert np.all(arms == arms[:, :1])
    assert learner.n_updates == 1000
    assert BatchedExp3.batch_size_for(0.2, T6) == 8
