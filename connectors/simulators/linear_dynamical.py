"""Linear dynamical system whose actions linger: the environment of DynLin-UCB.

::

    x_{t+1} = A x_t + B u_t + sigma eps_t          hidden state, x_0 = 0
    y_t     = w^T (C x_t + D u_t + sigma nu_t)     observed reward

(``omega = C^T w``, ``theta = D^T w``; ``w`` is all ones in the official test
cases.) The reward of round ``t`` is computed from the current state, then the
state advances. Noise is drawn on the fly from a seeded ``numpy.random.Generator``:
each round draws ``n + m`` standard normals, the state noise first, then the output
noise.

For a constant action ``u`` the mean reward settles at ``J(u) = h^T u`` with
``h = w^T (D + C (I - A)^{-1} B)``, so the simulator knows the steady-state value of
every action and the engine gets the steady-state pseudo-regret
``J* - J(u_t)`` exactly (``expected_reward`` and ``best_expected_reward`` of each
feedback event).

:func:`test_case` builds the two official systems of Mussi et al. (ICML 2023):
``"synthetic"`` and ``"real-data"`` (identified from advertising data on three
platforms).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

__all__ = ["LinearDynamicalSystem", "test_case", "OFFICIAL_BUDGET_ACTIONS", "TEST_CASES", "warm_up"]

# Permutations of (1, 0.5, 0): the vertices of {u in [0, 1]^3 : sum u = 1.5}, in the
# order np.unique sorts them (the official scripts/main.py).
OFFICIAL_BUDGET_ACTIONS = np.array(
    [
        [0.0, 0.5, 1.0],
        [0.0, 1.0, 0.5],
        [0.5, 0.0, 1.0],
        [0.5, 1.0, 0.0],
        [1.0, 0.0, 0.5],
        [1.0, 0.5, 0.0],
    ]
)

TEST_CASES: dict[str, dict[str, Any]] = {
    # config/testcase_synt_sigma0dot01.json of marcomussi/DLB
    "synthetic": {
        "A": [[0.2, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.1]],
        "B": [[0.45, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.1]],
        "C": [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.1]],
        "D": [[0.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.1]],
        "noise_sigma": 0.01,
        "expert": None,
    },
    # config/testcase_realdata.json of marcomussi/DLB (Ho-Kalman identification)
    "real-data": {
        "A": [[0.38, 0.33, 0.60], [0.07, 0.76, -0.54], [0.18, 0.34, 0.05]],
        "B": [[0.14, 0.34, -0.05], [-0.17, 0.03, -0.01], [0.04, -0.09, 0.17]],
        "C": [[0.25, -0.14, 0.01], [-0.55, 0.20, -0.13], [-0.31, -0.10, -0.01]],
        "D": [[0.11, 0.10, 0.01], [0.01, 0.36, 0.01], [0.01, -0.05, 0.00]],
        "noise_sigma": 0.01,
        "expert": [1641952.0, 259591273.0, 716354611.0],  # historical spend per platform
    },
}


@njit(cache=True)
def system_step(
    A: FloatArray,
    B: FloatArray,
    C: FloatArray,
    D: FloatArray,
    w: FloatArray,
    x: FloatArray,
    u: FloatArray,
    noise: FloatArray,
    sigma: float,
    x_next: FloatArray,
) -> float:
    """One round: return ``w^T (C x + D u + sigma nu)``, then ``x <- A x + B u + sigma eps``.

    ``noise`` holds ``n + m`` standard normals (``eps`` first, then ``nu``);
    ``x_next`` (n) is scratch.
    """
    n = x.shape[0]
    m = C.shape[0]
    p = u.shape[0]
    y = 0.0
    for i in range(m):
        out = 0.0
        for j in range(n):
            out += C[i, j] * x[j]
        for j in range(p):
            out += D[i, j] * u[j]
        out += sigma * noise[n + i]
        y += w[i] * out
    for i in range(n):
        s = 0.0
        for j in range(n):
            s += A[i, j] * x[j]
        for j in range(p):
            s += B[i, j] * u[j]
        x_next[i] = s + sigma * noise[i]
    for i in range(n):
        x[i] = x_next[i]
    return y


@njit(cache=True)
def draw_noise(rng: np.random.Generator, noise: FloatArray) -> None:
    """Fill ``noise`` with standard normals from ``rng`` (same stream as ``rng.standard_normal(len)``)."""
    for i in range(noise.shape[0]):
        noise[i] = rng.standard_normal()


@njit(cache=True)
def environment_step(environment: tuple[Any, ...], u: np.ndarray) -> float:
    """:func:`system_step` with fresh noise, in the form a learner's compiled ``play`` loop calls."""
    A, B, C, D, w, sigma, rng, x, noise, x_next = environment
    draw_noise(rng, noise)
    return system_step(A, B, C, D, w, x, u, noise, sigma, x_next)


class LinearDynamicalSystem:
    """A linear dynamical system as a bandit environment with a finite action set.

    Parameters
    ----------
    A, B, C, D
        System matrices, shapes (n, n), (n, p), (m, n), (m, p); ``A`` must be stable.
    noise_sigma
        Standard deviation of the state and output noise.
    actions
        The (K, p) action set the steady-state values are reported for; default
        :data:`OFFICIAL_BUDGET_ACTIONS` when ``p == 3``.
    output_weights
        ``w`` (m); the reward is ``w^T`` times the output. Default all ones.
    seed
        Seeds the noise generator.

    Examples
    --------
    >>> from regretflow.connectors.simulators.linear_dynamical import test_case
    >>> sim = test_case("synthetic", seed=0)
    >>> sim.best_action, round(sim.best_value, 4)
    (5, 0.8125)
    >>> [round(float(v), 5) for v in sim.steady_state_values]
    [0.36111, 0.55556, 0.39236, 0.78125, 0.61806, 0.8125]
    >>> ys = [sim.step(5) for _ in range(200)]
    >>> round(float(np.mean(ys[100:])), 2)
    0.81
    """

    def __init__(
        self,
        A: ArrayLike,
        B: ArrayLike,
        C: ArrayLike,
        D: ArrayLike,
        noise_sigma: float,
        actions: ArrayLike | None = None,
        output_weights: ArrayLike | None = None,
        seed: int = 0,
    ) -> None:
        self.A = np.ascontiguousarray(A, dtype=np.float64)
        self.B = np.ascontiguousarray(B, dtype=np.float64)
        self.C = np.ascontiguousarray(C, dtype=np.float64)
        self.D = np.ascontiguousarray(D, dtype=np.float64)
        n, p, m = self.A.shape[0], self.B.shape[1], self.C.shape[0]
        if self.A.shape != (n, n) or self.B.shape != (n, p) or self.C.shape != (m, n) or self.D.shape != (m, p):
            raise ValueError(f"inconsistent shapes A{self.A.shape} B{self.B.shape} C{self.C.shape} D{self.D.shape}")
        self.spectral_radius = float(np.max(np.abs(np.linalg.eigvals(self.A))))
        if not self.spectral_radius < 1:
            raise ValueError(f"A is not stable: spectral radius {self.spectral_radius:.6g} >= 1")
        if not noise_sigma >= 0:
            raise ValueError(f"noise_sigma must be >= 0, got {noise_sigma!r}")
        self.noise_sigma = float(noise_sigma)
        self.output_weights = np.ones(m) if output_weights is None else np.ascontiguousarray(output_weights, dtype=np.float64)
        if self.output_weights.shape != (m,):
            raise ValueError(f"output_weights must have {m} entries")
        if actions is None:
            if p != 3:
                raise ValueError("pass actions: the default action set is for p = 3 inputs")
            actions = OFFICIAL_BUDGET_ACTIONS
        self.actions = np.ascontiguousarray(actions, dtype=np.float64)
        if self.actions.ndim != 2 or self.actions.shape[1] != p:
            raise ValueError(f"actions must be a (K, {p}) matrix, got shape {self.actions.shape}")
        self.seed = seed
        self.markov = self.D + self.C @ np.linalg.solve(np.eye(n) - self.A, self.B)
        self.steady_state_gain = self.output_weights @ self.markov
        self.steady_state_values = self.actions @ self.steady_state_gain
        self.best_action = int(np.argmax(self.steady_state_values))
        self.best_value = float(self.steady_state_values[self.best_action])
        self._noise = np.empty(n + m)
        self._scratch = np.empty(n)
        self.reset(seed)

    @property
    def omega(self) -> np.ndarray:
        """State-to-reward weights ``C^T w``."""
        return self.output_weights @ self.C

    @property
    def theta(self) -> np.ndarray:
        """Action-to-reward weights ``D^T w`` (the immediate effect)."""
        return self.output_weights @ self.D

    @property
    def pseudo_regrets(self) -> np.ndarray:
        """``J* - J(u_k)`` per action."""
        return self.best_value - self.steady_state_values

    def reset(self, seed: int | None = None) -> None:
        """State back to 0, round counter to 0, noise generator reseeded."""
        self.rng = np.random.default_rng(self.seed if seed is None else seed)
        self.x = np.zeros(self.A.shape[0])
        self.t = 0

    def _action_vector(self, action: Any) -> np.ndarray:
        if isinstance(action, (int, np.integer)):
            if not 0 <= int(action) < self.actions.shape[0]:
                raise ValueError(f"action index {action} outside 0..{self.actions.shape[0] - 1}")
            return self.actions[int(action)]
        u = np.ascontiguousarray(action, dtype=np.float64).reshape(-1)
        if u.shape != (self.B.shape[1],):
            raise ValueError(f"action vector must have {self.B.shape[1]} entries, got {u.shape[0]}")
        return u

    def step(self, action: Any) -> float:
        """Play ``action`` (an index into :attr:`actions` or a vector) for one round; return the reward."""
        u = self._action_vector(action)
        # numpy fills the buffer with the same standard-normal stream draw_noise reads in
        # jitted loops (and avoids boxing the Generator into numba on every round)
        self.rng.standard_normal(out=self._noise)
        y = system_step(self.A, self.B, self.C, self.D, self.output_weights, self.x, u, self._noise, self.noise_sigma, self._scratch)
        self.t += 1
        return float(y)

    def play(self, policy: Any, n_rounds: int) -> np.ndarray:
        """Play ``n_rounds`` of ``policy`` in one compiled loop; return its arms.

        ``policy`` is a bandit with ``play(step, environment, n_rounds)`` (DynLinUCB, the
        LinUCB baselines, Exp3) over this system's action set. System and policy end as
        ``policy.decide``, :meth:`step` and ``policy.learn`` round by round would leave them.
        """
        offered = np.array([policy.describe_action(a) for a in range(policy.n_arms)], dtype=np.float64)
        if not np.array_equal(offered, self.actions):
            raise ValueError("policy and system have different action sets")
        environment = (self.A, self.B, self.C, self.D, self.output_weights, self.noise_sigma, self.rng, self.x, self._noise, self._scratch)
        arms = policy.play(environment_step, environment, int(n_rounds))
        self.t += int(n_rounds)
        return arms

    def steady_state_value(self, action: Any) -> float:
        """``J(u) = h^T u``: the mean reward of holding ``u`` forever."""
        return float(self.steady_state_gain @ self._action_vector(action))

    def events(self, model: str, rounds: int | None = None, id_prefix: str | None = None) -> Iterator[dict[str, Any]]:
        """Decide/feedback event dicts for the engine, driven by the chosen actions.

        A generator that alternates: it yields a ``decide`` event; ``send()`` it the
        chosen action (index or vector) and it returns the ``feedback`` event of that
        round (the observed reward and the exact steady-state values); the next
        ``next()`` yields the next ``decide``.

        >>> sim = test_case("real-data", seed=3)
        >>> stream = sim.events(model="ads", rounds=2)
        >>> for decide in stream:
        ...     feedback = stream.send(4)
        ...     print(decide["kind"], decide["id"], feedback["kind"], feedback["id"],
        ...           round(feedback["expected_reward"], 4), feedback["best_expected_reward"] > 0.3)
        decide ads-0 feedback ads-0 0.3046 True
        decide ads-1 feedback ads-1 0.3046 True
        """
        prefix = model if id_prefix is None else id_prefix
        produced = 0
        while rounds is None or produced < rounds:
            event_id = f"{prefix}-{self.t}"
            action = yield {"kind": "decide", "model": model, "id": event_id, "round": self.t}
            if action is None:
                raise ValueError("send() the chosen action for each decide event before asking for the next one")
            u = self._action_vector(action)
            expected = float(self.steady_state_gain @ u)
            reward = self.step(u)
            produced += 1
            yield {
                "kind": "feedback",
                "model": model,
                "id": event_id,
                "reward": reward,
                "expected_reward": expected,
                "best_expected_reward": self.best_value,
            }

    def state_dict(self) -> dict[str, Any]:
        """Hidden state, round counter and the noise generator's state (JSON scalars and arrays)."""
        st = self.rng.bit_generator.state
        return {
            "x": self.x.copy(),
            "t": int(self.t),
            "rng_state": str(st["state"]["state"]),
            "rng_inc": str(st["state"]["inc"]),
            "rng_has_uint32": int(st["has_uint32"]),
            "rng_uinteger": int(st["uinteger"]),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        x = np.array(state["x"], dtype=np.float64, copy=True)
        if x.shape != self.x.shape:
            raise ValueError(f"state['x'] has shape {x.shape}, expected {self.x.shape}")
        bitgen = np.random.PCG64()
        bitgen.state = {
            "bit_generator": "PCG64",
            "state": {"state": int(state["rng_state"]), "inc": int(state["rng_inc"])},
            "has_uint32": int(state["rng_has_uint32"]),
            "uinteger": int(state["rng_uinteger"]),
        }
        self.rng = np.random.Generator(bitgen)
        self.x = x
        self.t = int(state["t"])

    def expert_action(self, spend: Any, max_global: float = 1.5, min_action: float = 0.0, max_action: float = 1.0) -> np.ndarray:
        """The official ``ExpertAgent`` allocation: historical spend shares, clipped and rescaled.

        >>> [round(float(v), 4) for v in test_case("real-data").expert_action(TEST_CASES["real-data"]["expert"])]
        [0.0031, 0.4969, 1.0]
        """
        frac = np.asarray(spend, dtype=float)
        frac = frac / frac.sum()
        lo, hi = min_action / max_action, max_action / max_global
        clipped = (frac < lo) | (frac > hi)
        frac = np.clip(frac, lo, hi)
        free = ~clipped
        frac[free] *= (1 - frac[clipped].sum()) / frac[free].sum()
        return frac * max_global


def test_case(name: str, seed: int = 0, noise_sigma: float | None = None) -> LinearDynamicalSystem:
    """One of the official systems: ``"synthetic"`` or ``"real-data"``."""
    if name not in TEST_CASES:
        raise ValueError(f"unknown test case {name!r}; known: {', '.join(TEST_CASES)}")
    tc = TEST_CASES[name]
    sigma = tc["noise_sigma"] if noise_sigma is None else noise_sigma
    return LinearDynamicalSystem(tc["A"], tc["B"], tc["C"], tc["D"], sigma, OFFICIAL_BUDGET_ACTIONS, seed=seed)


test_case.__dict__["__test__"] = False  # not a pytest test despite its name (set through __dict__: a function has no declared __test__)


def warm_up() -> None:
    """Compile (or load from cache) the simulator kernels."""
    sim = test_case("synthetic")
    sim.step(0)
