"""``play``: the bandits' compiled closed loop leaves the state that decide/learn round by round leaves."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from regretflow.connectors.simulators.linear_dynamical import test_case
from regretflow.learners import ActionVectorLinUCB, BatchedExp3, DiscountedLinUCB, DynLinUCB, Exp3, SystemBounds


@njit
def noisy_linear_reward(environment, u):
    """A memoryless environment: reward ``gain . u`` plus Gaussian noise (not the simulator's)."""
    gain, sigma, rng = environment
    return gain @ u + sigma * rng.standard_normal()


def learners():
    sim = test_case("synthetic")
    bounds = SystemBounds.from_matrices(sim.A, sim.B, sim.C, sim.D, sim.noise_sigma)
    actions = sim.actions
    return {
        # the paper's deterministic learners and Exp3's affine reward map run the jitted loop ...
        "DynLinUCB": lambda: DynLinUCB(actions, bounds, 10_000, seed=3, exploration=0.0),
        "LinUCB": lambda: ActionVectorLinUCB(actions, bounds, 10_000, seed=3, exploration=0.0),
        "DiscountedLinUCB": lambda: DiscountedLinUCB(actions, bounds, 10_000, discount=0.99, seed=3, exploration=0.0),
        "Exp3": lambda: Exp3(actions, 10_000, reward_offset=0.0, reward_scale=1.0, seed=3),
        "BatchedExp3": lambda: BatchedExp3(actions, 10_000, batch_size=4, reward_offset=0.0, reward_scale=1.0, seed=3),
        # ... the defaults (exploration floor, running reward range) run round by round
        "DynLinUCB (floor)": lambda: DynLinUCB(actions, bounds, 10_000, seed=3),
        "DiscountedLinUCB (floor)": lambda: DiscountedLinUCB(actions, bounds, 10_000, discount=0.99, seed=3),
        "BatchedExp3 (running range)": lambda: BatchedExp3(actions, 10_000, batch_size=4, seed=3),
    }


def same_state(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return set(sa) == set(sb) and all(np.array_equal(sa[k], sb[k]) if isinstance(sa[k], np.ndarray) else sa[k] == sb[k] for k in sa)


@pytest.mark.parametrize("name", list(learners()))
def test_play_equals_decide_and_learn_round_by_round(name):
    make = learners()[name]
    gain = np.array([0.3, -0.1, 0.5])
    by_hand, compiled = make(), make()
    rng_a, rng_b = np.random.default_rng(11), np.random.default_rng(11)
    arms_a = []
    for _ in range(700):
        arm = by_hand.decide(None).action
        arms_a.append(arm)
        by_hand.learn(None, arm, float(noisy_linear_reward((gain, 0.1, rng_a), np.array(by_hand.describe_action(arm)))))
    # two pieces: resuming mid-epoch (or mid-batch) must be seamless
    arms_b = np.concatenate(
        [compiled.play(noisy_linear_reward, (gain, 0.1, rng_b), 333), compiled.play(noisy_linear_reward, (gain, 0.1, rng_b), 367)]
    )
    assert arms_b.tolist() == arms_a
    assert same_state(by_hand, compiled)
    assert by_hand.gauges() == compiled.gauges()


def test_play_refuses_a_negative_round_count():
    with pytest.raises(ValueError, match="n_rounds"):
        learners()["Exp3"]().play(noisy_linear_reward, (np.zeros(3), 0.0, np.random.default_rng(0)), -1)
