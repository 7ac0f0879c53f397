"""Online regret, computed exactly where it can be.

:class:`HindsightRegret` (supervised models): per group, the learner's cumulative
squared loss minus the loss of the best fixed linear predictor in hindsight on that
group's rows. It keeps the sufficient statistics ``S = sum x x^T``, ``u = sum y x``,
``v = sum y^2`` (O(d^2) per event and group, in a numba kernel) and solves for the
comparator only when asked (O(d^3), once per micro-batch at most). The comparator is
least squares with minimum norm (an eigen-decomposition keeping eigenvalues above
``pinv_cutoff`` times the largest: one-hot blocks make ``S`` exactly singular, where
a plain solve fails and default ``lstsq`` can miss the minimum), or ridge with
``comparator_lambda > 0``; its loss is its squared error on the rows, penalty excluded.

:class:`BanditRegret` (bandit models): observed reward, exact pseudo-regret when the
source supplies expected rewards, and inverse-propensity (IPS) and self-normalised
(SNIPS) estimates, with 95% normal intervals, of the value of the uniform policy and
of every constant-action policy, from the logged propensities.

>>> import numpy as np
>>> t = HindsightRegret(n_features=1, group_labels=[])
>>> X = np.array([[1.0], [2.0]]); y = np.array([2.0, 4.0])
>>> t.update(X, y, losses=np.array([4.0, 1.0]), membership=None)
>>> t.summary()["all"]["regret"]  # the comparator y = 2x has zero loss
5.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, TypedDict

import numpy as np
from numba import njit
from numpy.typing import NDArray

from regretflow.engine.runtime.events import OTHER_AUDITOR
from regretflow.learners.contract import all_finite, expect_array

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@njit(cache=True, nogil=True)
def accumulate_hindsight(
    S: FloatArray,
    u: FloatArray,
    v: FloatArray,
    n: FloatArray,
    loss: FloatArray,
    last_x: FloatArray,
    last_y: FloatArray,
    X: FloatArray,
    y: FloatArray,
    losses: FloatArray,
    member: BoolArray,
) -> None:
    """Add rows to the statistics of every group they belong to (column 0 is 'all')."""
    d = X.shape[1]
    for r in range(X.shape[0]):
        for g in range(S.shape[0]):
            if g > 0 and not member[r, g - 1]:
                continue
            yr = y[r]
            for i in range(d):
                xi = X[r, i]
                u[g, i] += yr * xi
                last_x[g, i] = xi
                for j in range(d):
                    S[g, i, j] += xi * X[r, j]
            v[g] += yr * yr
            n[g] += 1.0
            loss[g] += losses[r]
            last_y[g] = yr


def comparator_loss(S: FloatArray, u: FloatArray, v: float, lam: float, cutoff: float) -> float:
    """Squared error of the best (min-norm least-squares, or ridge) linear fit on the rows."""
    if not np.any(S):
        return float(v)
    evals, evecs = np.linalg.eigh(S + lam * np.eye(S.shape[0]))
    keep = evals > cutoff * max(evals[-1], 0.0)
    coef = evecs[:, keep].T @ u / evals[keep]
    theta = evecs[:, keep] @ coef
    if lam == 0.0:
        # v - u^T theta is the residual of the exact projection
        sse = v - float(u @ theta)
    else:
        sse = v - 2.0 * float(u @ theta) + float(theta @ S @ theta)
    return max(sse, 0.0)


class HindsightRegret:
    """Exact per-group regret against the best fixed linear predictor in hindsight.

    ``lag = 1`` compares the loss on ``n`` rows with the comparator fitted on the
    first ``n - 1`` (how the groupwise paper's tables were computed); the product
    metric uses ``lag = 0``.

    Examples
    --------
    >>> import numpy as np
    >>> t = HindsightRegret(n_features=2, group_labels=["g=a"])
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(50, 2)); y = X @ np.array([1.0, -1.0])
    >>> t.update(X, y, losses=np.ones(50), membership=(X[:, :1] > 0))
    >>> s = t.summary(); round(s["all"]["regret"], 6), s["g=a"]["count"] == int((X[:, 0] > 0).sum())
    (50.0, True)
    """

    def __init__(self, n_features: int, group_labels: list[str], lam: float = 0.0, lag: int = 0, cutoff: float = 1e-10):
        self.labels = ["all", *group_labels]
        self.lam, self.lag, self.cutoff = lam, lag, cutoff
        G, d = len(self.labels), n_features
        self.S = np.zeros((G, d, d))
        self.u = np.zeros((G, d))
        self.v = np.zeros(G)
        self.n = np.zeros(G)
        self.loss = np.zeros(G)
        self.last_x = np.zeros((G, d))
        self.last_y = np.zeros(G)
        self._empty_member = np.zeros((0, max(G - 1, 1)), dtype=np.bool_)

    def update(self, X: np.ndarray, y: np.ndarray, losses: np.ndarray, membership: np.ndarray | None) -> None:
        """Account rows ``X, y`` whose learner losses are ``losses``; ``membership`` (rows x groups) or None."""
        if membership is None:
            membership = np.zeros((X.shape[0], max(len(self.labels) - 1, 1)), dtype=np.bool_)
        accumulate_hindsight(
            self.S,
            self.u,
            self.v,
            self.n,
            self.loss,
            self.last_x,
            self.last_y,
            np.ascontiguousarray(X, dtype=np.float64),
            np.ascontiguousarray(y, dtype=np.float64),
            np.ascontiguousarray(losses, dtype=np.float64),
            np.ascontiguousarray(membership, dtype=np.bool_),
        )

    def group_summary(self, g: int) -> dict[str, float]:
        S, u, v = self.S[g], self.u[g], float(self.v[g])
        if self.lag == 1 and self.n[g] > 0:
            x, yl = self.last_x[g], float(self.last_y[g])
            S, u, v = S - np.outer(x, x), u - yl * x, v - yl * yl
        comp = comparator_loss(S, u, v, self.lam, self.cutoff)
        return {
            "count": int(self.n[g]),
            "loss": float(self.loss[g]),
            "comparator_loss": comp,
            "regret": float(self.loss[g]) - comp,
        }

    def summary(self) -> dict[str, dict[str, float]]:
        """Per group label: count, cumulative loss, comparator loss and regret."""
        return {label: self.group_summary(g) for g, label in enumerate(self.labels)}

    def state_dict(self) -> dict[str, Any]:
        return {
            "S": self.S.copy(),
            "u": self.u.copy(),
            "v": self.v.copy(),
            "n": self.n.copy(),
            "loss": self.loss.copy(),
            "last_x": self.last_x.copy(),
            "last_y": self.last_y.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("S", "u", "v", "n", "loss", "last_x", "last_y"):
            setattr(self, key, expect_array(state, key, getattr(self, key).shape, "HindsightRegret"))


_POLICY_SUMS = ("n", "w", "wr", "w2", "w2r", "w2r2")
_DR_SUMS = ("n", "dr", "dr2")


class BanditRegret:
    """Reward, pseudo-regret and off-policy values of reference policies for a bandit model.

    Reference policies: ``uniform``, every constant action (``best_constant`` is the
    one with the highest SNIPS value) and ``greedy`` (the action the model's own
    probability vector ranked first at each decision: what the model would play
    without exploring). For each, inverse-propensity (IPS) and self-normalised (SNIPS)
    estimates from the logged propensities, and doubly-robust (DR) ones when the
    learner logs its predicted rewards, all with 95% normal intervals, kept in
    streaming sums (``regretflow replay`` gives bootstrap intervals on a log).

    Pseudo-regret when the source supplies expected rewards: ``pseudo_regret`` sums
    ``max mu - mu[chosen]``; ``expected_pseudo_regret`` sums ``max mu - p . mu``, its
    expectation over the decision's own randomisation (lower variance).

    Examples
    --------
    >>> import numpy as np
    >>> t = BanditRegret(n_actions=2)
    >>> t.update(actions=np.array([0, 1]), probabilities=np.array([0.5, 0.5]),
    ...          rewards=np.array([1.0, 0.0]), n_choices=np.array([2, 2]))
    >>> s = t.summary(); s["uniform"]["ips"], s["best_constant"]["action"]
    (0.5, 0)
    """

    def __init__(self, n_actions: int | None = None):
        self.n_actions = n_actions or 0
        self.count = 0
        self.reward = 0.0
        self.pseudo_regret = 0.0
        self.expected_pseudo_regret = 0.0
        self.pseudo_count = 0
        self.uniform = np.zeros(len(_POLICY_SUMS))
        self.greedy = np.zeros(len(_POLICY_SUMS))
        self.constant = np.zeros((self.n_actions, len(_POLICY_SUMS)))
        self.dr_uniform = np.zeros(len(_DR_SUMS))
        self.dr_greedy = np.zeros(len(_DR_SUMS))
        self.dr_constant = np.zeros((self.n_actions, len(_DR_SUMS)))
        # whether a sum may have changed since nonfinite_state() last found them all finite
        self._unchecked = True

    def nonfinite_state(self) -> str | None:
        """The first sum holding NaN or +-inf, else None; only after an update (the engine asks every micro-batch).

        >>> t = BanditRegret(2); t.nonfinite_state()
        >>> t.update_one(0, 0.5, float("inf"), 2); t.nonfinite_state()
        'reward'
        """
        if not self._unchecked:
            return None
        for name in ("reward", "pseudo_regret", "expected_pseudo_regret"):
            if not math.isfinite(getattr(self, name)):
                return name
        for name in ("uniform", "greedy", "constant", "dr_uniform", "dr_greedy", "dr_constant"):
            if not all_finite(getattr(self, name).reshape(-1)):
                return name
        self._unchecked = False
        return None

    def _grow(self, k: int) -> None:
        if k > self.constant.shape[0]:
            for name, width in (("constant", len(_POLICY_SUMS)), ("dr_constant", len(_DR_SUMS))):
                old = getattr(self, name)
                grown = np.zeros((k, width))
                grown[: old.shape[0]] = old
                setattr(self, name, grown)
            self.n_actions = k

    def record_decision(self, expected: np.ndarray | None, action: int, probabilities: np.ndarray | None = None) -> None:
        """Exact pseudo-regret of one decision, when the source knows the expected rewards."""
        if expected is not None:
            self._unchecked = True
            best = float(expected.max())
            self.pseudo_regret += best - float(expected[action])
            if probabilities is not None and len(probabilities) == len(expected):
                self.expected_pseudo_regret += best - float(probabilities @ expected)
            else:
                self.expected_pseudo_regret += best - float(expected[action])
            self.pseudo_count += 1

    def update(
        self,
        actions: np.ndarray,
        probabilities: np.ndarray,
        rewards: np.ndarray,
        n_choices: np.ndarray,
        prob_vectors: np.ndarray | None = None,
        reward_estimates: np.ndarray | None = None,
    ) -> None:
        """Account joined feedback: chosen action, its logged probability, reward, number of actions
        offered; optionally the logged probability vectors (greedy policy) and predicted rewards (DR)."""
        if len(actions) == 0:
            return
        if len(actions) == 1:  # one feedback (a closed loop): the same sums, with scalars
            self.update_one(
                actions[0],
                probabilities[0],
                rewards[0],
                n_choices[0],
                None if prob_vectors is None else prob_vectors[0],
                None if reward_estimates is None else reward_estimates[0],
            )
            return
        rows = max(self.constant.shape[0], int(n_choices.max()))  # (as many as after _grow: checked before anything changes)
        if not ((actions >= 0) & (actions < rows)).all():
            raise IndexError(f"actions {actions.tolist()} are not all among the {rows} actions")
        self._grow(rows)
        self._unchecked = True
        self.count += len(actions)
        self.reward += float(rewards.sum())
        w_uniform = 1.0 / (n_choices * probabilities)
        self.uniform += _sums(w_uniform, rewards)
        w_const = 1.0 / probabilities
        for a in np.unique(actions):
            mask = actions == a
            # rows where another action was played have weight 0 for policy "always a":
            # they add to n but not to the weighted sums
            s = _sums(w_const[mask], rewards[mask])
            s[0] = 0.0
            self.constant[a] += s
        self.constant[:, 0] += len(actions)
        if prob_vectors is None:
            return
        for i, (a, p, r, k) in enumerate(zip(actions, probabilities, rewards, n_choices)):
            greedy = int(np.argmax(prob_vectors[i]))
            self.greedy += _sums_of_one(1.0 / p if a == greedy else 0.0, r)
            if reward_estimates is None:
                continue
            rhat = reward_estimates[i]
            residual = (r - rhat[a]) / p
            self.dr_uniform += _dr(float(rhat[:k].mean()) + residual / k)
            self.dr_greedy += _dr(float(rhat[greedy]) + (residual if a == greedy else 0.0))
            # every constant policy at once, element by element the same sums as one policy at a time
            m = min(k, self.dr_constant.shape[0])
            terms = np.asarray(rhat[:m], dtype=np.float64) + 0.0
            if 0 <= a < m:
                terms[a] = float(rhat[a]) + residual
            self.dr_constant[:m] += np.stack((np.ones(m), terms, terms * terms), axis=1)

    def update_one(
        self,
        action: int,
        probability: float,
        reward: float,
        n_choices: int,
        prob_vector: np.ndarray | None = None,
        reward_estimate: np.ndarray | None = None,
    ) -> None:
        """:meth:`update` of one joined feedback, the same sums bit for bit, without arrays of one element
        (a closed loop accounts each feedback in a micro-batch of its own).

        >>> t = BanditRegret(n_actions=2)
        >>> t.update_one(1, 0.5, 1.0, 2, np.array([0.5, 0.5]), np.array([0.25, 0.75]))
        >>> t.summary()["uniform"]["dr"]  # the mean prediction, 0.5, plus the weighted residual of action 1
        0.75
        """
        a, p, r, k = int(action), float(probability), float(reward), int(n_choices)
        # every check before anything changes (the kernel reads without bounds checks); rows: as many as after _grow
        if not (p > 0.0 and k > 0):
            raise ValueError(f"a feedback needs a logged probability > 0 and at least one action, got {p!r} and {k}")
        rows = max(self.constant.shape[0], k)
        if not 0 <= a < rows:
            raise IndexError(f"action {a} is not one of the {rows} actions")
        greedy, rhat, rhat_mean = -1, _NO_ESTIMATES, 0.0
        if prob_vector is not None:
            greedy = int(prob_vector.argmax())
            if reward_estimate is not None:
                rhat = np.ascontiguousarray(reward_estimate, dtype=np.float64).reshape(-1)
                needed = max(min(k, rows), a + 1, greedy + 1)
                if len(rhat) < needed:
                    raise ValueError(f"{len(rhat)} reward estimates for {k} actions (action {a}, greedy action {greedy})")
                # numpy's mean is its pairwise sum divided by the count: the same value as rhat[:k].mean()
                rhat_mean = float(np.add.reduce(np.asarray(reward_estimate)[:k])) / k  # (in the estimates' own dtype)
        self._grow(k)
        self._unchecked = True
        self.count += 1
        self.reward += r
        _account_one(
            self.uniform, self.greedy, self.constant, self.dr_uniform, self.dr_greedy, self.dr_constant, a, p, r, k, greedy, rhat, rhat_mean
        )

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "count": self.count,
            "reward": self.reward,
            "mean_reward": self.reward / self.count if self.count else 0.0,
            "pseudo_regret": self.pseudo_regret,
            "expected_pseudo_regret": self.expected_pseudo_regret,
            "pseudo_count": self.pseudo_count,
            "uniform": {**_estimates(self.uniform), **_dr_estimates(self.dr_uniform)},
        }
        if self.greedy[0]:
            out["greedy"] = {**_estimates(self.greedy), **_dr_estimates(self.dr_greedy)}
        if self.constant.shape[0]:
            per_action = [{**_estimates(row), **_dr_estimates(dr)} for row, dr in zip(self.constant, self.dr_constant)]
            best = int(np.argmax([p["snips"] for p in per_action]))
            out["constant"] = per_action
            out["best_constant"] = {"action": best, **per_action[best]}
            out["regret_vs_best_constant"] = per_action[best]["snips"] * self.count - self.reward
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "n_actions": self.n_actions,
            "count": self.count,
            "reward": self.reward,
            "pseudo_regret": self.pseudo_regret,
            "expected_pseudo_regret": self.expected_pseudo_regret,
            "pseudo_count": self.pseudo_count,
            "uniform": self.uniform.copy(),
            "greedy": self.greedy.copy(),
            "constant": self.constant.copy(),
            "dr_uniform": self.dr_uniform.copy(),
            "dr_greedy": self.dr_greedy.copy(),
            "dr_constant": self.dr_constant.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.n_actions = int(state["n_actions"])
        self.count = int(state["count"])
        self.reward = float(state["reward"])
        self.pseudo_regret = float(state["pseudo_regret"])
        self.expected_pseudo_regret = float(state["expected_pseudo_regret"])
        self.pseudo_count = int(state["pseudo_count"])
        n = len(_POLICY_SUMS)
        self.uniform = expect_array(state, "uniform", (n,), "BanditRegret")
        self.greedy = expect_array(state, "greedy", (n,), "BanditRegret")
        self.constant = expect_array(state, "constant", (self.n_actions, n), "BanditRegret")
        self.dr_uniform = expect_array(state, "dr_uniform", (len(_DR_SUMS),), "BanditRegret")
        self.dr_greedy = expect_array(state, "dr_greedy", (len(_DR_SUMS),), "BanditRegret")
        self.dr_constant = expect_array(state, "dr_constant", (self.n_actions, len(_DR_SUMS)), "BanditRegret")
        self._unchecked = True


_NO_ESTIMATES = np.zeros(0)


@njit(cache=True)
def _account_one(
    uniform: FloatArray,
    greedy_sums: FloatArray,
    constant: FloatArray,
    dr_uniform: FloatArray,
    dr_greedy: FloatArray,
    dr_constant: FloatArray,
    a: int,
    p: float,
    r: float,
    k: int,
    greedy: int,
    rhat: FloatArray,
    rhat_mean: float,
) -> None:
    """:meth:`BanditRegret.update_one`'s sums in one call: the same operations, in the same order, as
    :func:`_sums_of_one` and :func:`_dr` added to each array (bit for bit; a test holds it to the general formulas).
    ``greedy`` < 0: no probability vector; an empty ``rhat``: no reward estimates."""
    _add_sums(uniform, 1.0 / (k * p), r)
    w = 1.0 / p
    constant[a, 0] += 0.0
    constant[a, 1] += w
    constant[a, 2] += w * r
    constant[a, 3] += w * w
    constant[a, 4] += w * w * r
    constant[a, 5] += w * w * r * r
    for c in range(constant.shape[0]):
        constant[c, 0] += 1.0
    if greedy < 0:
        return
    _add_sums(greedy_sums, 1.0 / p if a == greedy else 0.0, r)
    if rhat.shape[0] == 0:
        return
    residual = (r - rhat[a]) / p
    _add_dr(dr_uniform, rhat_mean + residual / k)
    _add_dr(dr_greedy, rhat[greedy] + (residual if a == greedy else 0.0))
    for c in range(min(k, dr_constant.shape[0])):
        term = rhat[a] + residual if c == a else rhat[c] + 0.0
        dr_constant[c, 0] += 1.0
        dr_constant[c, 1] += term
        dr_constant[c, 2] += term * term


@njit(cache=True)
def _add_sums(sums: FloatArray, w: float, r: float) -> None:
    sums[0] += 1.0
    sums[1] += w
    sums[2] += w * r
    sums[3] += w * w
    sums[4] += w * w * r
    sums[5] += w * w * r * r


@njit(cache=True)
def _add_dr(sums: FloatArray, term: float) -> None:
    sums[0] += 1.0
    sums[1] += term
    sums[2] += term * term


def _dr(term: float) -> FloatArray:
    return np.array([1.0, term, term * term])


def _dr_estimates(s: FloatArray) -> dict[str, float]:
    n, total, squares = (float(v) for v in s)
    if n == 0:
        return {}
    mean = total / n
    half = 1.959963984540054 * math.sqrt(max(squares / n - mean * mean, 0.0) / n)
    return {"dr": mean, "dr_low": mean - half, "dr_high": mean + half}


def _sums_of_one(w: float, r: float) -> FloatArray:
    """:func:`_sums` of one weight and reward (the same values, without five reductions of one element)."""
    return np.array([1.0, w, w * r, w * w, w * w * r, w * w * r * r])


def _sums(w: FloatArray, r: FloatArray) -> FloatArray:
    return np.array([len(w), w.sum(), (w * r).sum(), (w * w).sum(), (w * w * r).sum(), (w * w * r * r).sum()])


def _estimates(s: FloatArray) -> dict[str, float]:
    n, w, wr, w2, w2r, w2r2 = (float(v) for v in s)
    if n == 0:
        return {"ips": 0.0, "ips_low": 0.0, "ips_high": 0.0, "snips": 0.0, "snips_low": 0.0, "snips_high": 0.0}
    ips = wr / n
    ips_var = max(w2r2 / n - ips * ips, 0.0) / n
    snips = wr / w if w > 0 else 0.0
    snips_var = max(w2r2 - 2 * snips * w2r + snips * snips * w2, 0.0) / (w * w) if w > 0 else 0.0
    z = 1.959963984540054
    h_ips, h_snips = z * math.sqrt(ips_var), z * math.sqrt(snips_var)
    return {
        "ips": ips,
        "ips_low": ips - h_ips,
        "ips_high": ips + h_ips,
        "snips": snips,
        "snips_low": snips - h_snips,
        "snips_high": snips + h_snips,
    }


class AccuracyCounts(TypedDict):
    """Rounds, correct predictions and their ratio, of one class or group in :meth:`ClassAccuracy.summary`.

    Examples
    --------
    >>> counts: AccuracyCounts = {"count": 4, "correct": 3, "accuracy": 0.75}
    >>> counts["correct"] / counts["count"] == counts["accuracy"]
    True
    """

    count: int
    correct: int
    accuracy: float


class ClassAccuracy:
    """Prequential accuracy of a classification model, overall, per class and per group.

    Class labels come from the stream, so at most ``max_classes`` are tracked by name
    (metric labels stay bounded); later ones count under ``"_other_"``.

    Examples
    --------
    >>> t = ClassAccuracy([])
    >>> t.update(["a", "b", "a"], ["a", "a", "a"], None)
    >>> t.summary()["per_class"]["a"], t.summary()["accuracy"]
    ({'count': 2, 'correct': 2, 'accuracy': 1.0}, 0.6666666666666666)
    """

    def __init__(self, group_labels: list[str], max_classes: int = 64):
        self.labels = ["all", *group_labels]
        self.max_classes = max_classes
        self.classes: list[str] = []
        self.class_counts = np.zeros((0, 2))
        self.group_counts = np.zeros((len(self.labels), 2))

    def _class_index(self, label: Any) -> int:
        name = str(label)
        try:
            return self.classes.index(name)
        except ValueError:
            pass
        if len(self.classes) >= self.max_classes:
            name = "_other_"
            if name in self.classes:
                return self.classes.index(name)
        self.classes.append(name)
        self.class_counts = np.vstack([self.class_counts, np.zeros((1, 2))])
        return len(self.classes) - 1

    def update(self, labels: Iterable[Any], predictions: Iterable[Any], membership: np.ndarray | None) -> None:
        for r, (y, p) in enumerate(zip(labels, predictions)):
            ok = float(str(y) == str(p))
            c = self._class_index(y)
            self.class_counts[c] += (1.0, ok)
            self.group_counts[0] += (1.0, ok)
            if membership is not None:
                self.group_counts[1:][membership[r]] += (1.0, ok)

    def summary(self) -> dict[str, Any]:
        def acc(row: FloatArray) -> AccuracyCounts:
            return {"count": int(row[0]), "correct": int(row[1]), "accuracy": float(row[1] / row[0]) if row[0] else 0.0}

        per_class = {name: acc(row) for name, row in zip(self.classes, self.class_counts)}
        return {
            "count": int(self.group_counts[0, 0]),
            "accuracy": acc(self.group_counts[0])["accuracy"],
            "mean_per_class_accuracy": float(np.mean([v["accuracy"] for v in per_class.values()])) if per_class else 0.0,
            "per_class": per_class,
            "per_group": {label: acc(row) for label, row in zip(self.labels, self.group_counts)},
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "classes": np.array(self.classes, dtype=str),
            "class_counts": self.class_counts.copy(),
            "group_counts": self.group_counts.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.classes = [str(c) for c in np.asarray(state["classes"])]
        self.class_counts = expect_array(state, "class_counts", (len(self.classes), 2), "ClassAccuracy")
        self.group_counts = expect_array(state, "group_counts", self.group_counts.shape, "ClassAccuracy")


class FairnessTracker:
    """What the engine sees of a fair model: decisions, revealed labels, audits, and who reported what.

    When audits name their auditors (``auditors``, by panel slot), each auditor's
    reports are counted: the distinct pairs it flagged and the panels it sat on. Names
    come from the event stream, so at most :attr:`MAX_AUDITORS` are kept per model; later
    ones are counted together as ``_other_``.

    Examples
    --------
    >>> import numpy as np
    >>> t = FairnessTracker()
    >>> t.record_decisions(np.array([1, 0, 1]))
    >>> t.record_labels(np.array([1, 0, 1]), np.array([1.0, -1.0, 0.0]))
    >>> t.record_audit(flagged_pairs=2, violations=np.array([[0, 1, 0], [0, 1, 1], [2, 1, 1]]), auditors=["ann", "bo"])
    >>> s = t.summary(); s["positive_rate"], s["revealed_accuracy"], s["violations_per_round"]
    (0.6666666666666666, 0.5, 2.0)
    >>> s["auditors"]
    {'ann': {'reported_pairs': 1, 'panels': 1}, 'bo': {'reported_pairs': 2, 'panels': 1}}
    """

    FIELDS = ("rounds", "individuals", "positives", "revealed", "revealed_positive", "audits", "violation_pairs", "violation_rounds")
    MAX_AUDITORS = 64
    OTHER = OTHER_AUDITOR

    def __init__(self) -> None:
        self.counts = np.zeros(len(self.FIELDS))
        self.auditor_index: dict[str, int] = {}
        self.auditor_counts = np.zeros((0, 2))  # per auditor: distinct reported pairs, panels sat on

    def _add(self, **counts: float) -> None:
        for name, value in counts.items():
            self.counts[self.FIELDS.index(name)] += value

    def record_decisions(self, decisions: np.ndarray) -> None:
        self._add(rounds=1, individuals=len(decisions), positives=int(np.sum(decisions)))

    def record_labels(self, decisions: np.ndarray, labels: np.ndarray) -> None:
        shown = (decisions == 1) & (labels >= 0)
        self._add(revealed=int(shown.sum()), revealed_positive=int((labels[shown] == 1).sum()))

    def record_audit(self, flagged_pairs: int, violations: np.ndarray | None = None, auditors: list[str] | None = None) -> None:
        self._add(audits=1, violation_pairs=flagged_pairs, violation_rounds=int(flagged_pairs > 0))
        if not auditors:
            return
        rows = [self._auditor_row(name) for name in auditors]
        reported = np.zeros(len(auditors))
        if violations is not None and len(violations):
            # a pair in either order is one pair (as the learner's panel rule counts it)
            distinct = {(int(min(i, l)), int(max(i, l)), int(a)) for i, l, a in violations if i != l}
            for _, _, slot in distinct:
                reported[slot] += 1
        for slot, row in enumerate(rows):
            self.auditor_counts[row, 0] += reported[slot]
            self.auditor_counts[row, 1] += 1

    def _auditor_row(self, name: str) -> int:
        row = self.auditor_index.get(name)
        if row is None:
            if len(self.auditor_index) >= self.MAX_AUDITORS:
                name = self.OTHER
                row = self.auditor_index.get(name)
            if row is None:
                row = self.auditor_index[name] = self.auditor_counts.shape[0]
                self.auditor_counts = np.vstack([self.auditor_counts, np.zeros((1, 2))])
        return row

    def summary(self) -> dict[str, Any]:
        c = dict(zip(self.FIELDS, (float(v) for v in self.counts)))
        return {
            **{k: int(v) for k, v in c.items()},
            "positive_rate": c["positives"] / c["individuals"] if c["individuals"] else 0.0,
            "revealed_accuracy": c["revealed_positive"] / c["revealed"] if c["revealed"] else 0.0,
            "violations_per_round": c["violation_pairs"] / c["audits"] if c["audits"] else 0.0,
            "violation_round_rate": c["violation_rounds"] / c["audits"] if c["audits"] else 0.0,
            "auditors": {
                name: {"reported_pairs": int(self.auditor_counts[row, 0]), "panels": int(self.auditor_counts[row, 1])}
                for name, row in self.auditor_index.items()
            },
        }

    def state_dict(self) -> dict[str, Any]:
        names = sorted(self.auditor_index, key=self.auditor_index.__getitem__)
        return {"counts": self.counts.copy(), "auditor_names": np.array(names, dtype=str), "auditor_counts": self.auditor_counts.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.counts = expect_array(state, "counts", (len(self.FIELDS),), "FairnessTracker")
        names = [str(n) for n in state.get("auditor_names", [])]  # absent in checkpoints older than auditor names
        if len(set(names)) != len(names):
            raise ValueError("FairnessTracker: the checkpoint's auditor names are not distinct")
        self.auditor_index = {name: row for row, name in enumerate(names)}
        self.auditor_counts = expect_array(state, "auditor_counts", (len(names), 2), "FairnessTracker") if names else np.zeros((0, 2))
