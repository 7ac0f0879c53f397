"""A fairness environment on a real population: UCI Adult individuals and auditor panels.

The setting of the fair learners (learners/fair.py): each round ``k`` individuals are drawn from
the vendored UCI Adult training file (:func:`regretflow.connectors.datasets.adult.load_adult`,
32,561 people) with their true label (income > 50K). A learner answers, per
individual, the probability ``q_i`` of a positive decision under its randomised
policy and a decision; the label is revealed only for positive decisions. Then a
panel of ``panel_size`` auditors, drawn each round from a pool, reports every pair
it judges treated too differently: auditor ``j`` flags ``(i, l)`` when
``q_i - q_l > d_j(x_i, x_l) + alpha_j``. Reports are computed from the deployed ``q``
each round (the feedback reacts to the policy).

Each auditor has its own metric, a weighted Euclidean distance over its own subset of
the features, scaled and clipped to [0, 1], and its own margin; the default pool
(:data:`DEFAULT_AUDITORS`) holds five auditors who disagree: one looks only at
merit-like features, one at everything including the protected attributes, one
treats people of the same sex and race as alike whatever their record.

The features (:data:`FAIR_FEATURES`) are 10 columns of the Adult encoding, min-max
scaled to [0, 1]. Everything is seeded; the round schedule (who, which panel) does
not depend on the learner, so learners run on the same seed see the same people and
the same panels.

The stream can be emitted as engine events: ``decide`` (the k individuals as
``actions``), ``feedback`` (``label``: a list with the label of each positively
decided individual and ``None`` elsewhere) and ``audit`` (``violations``:
``[i, l, panel_slot]`` triples, ``panel_size``, and ``auditors``: the sitting auditors'
names by slot).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from regretflow.connectors.datasets.adult import load_adult

FAIR_FEATURES = (
    "age",
    "education-num",
    "hours-per-week",
    "capital-gain",
    "capital-loss",
    "marital-status_Married-civ-spouse",
    "sex_Male",
    "sex_Female",
    "race_White",
    "race_Black",
)
#: 0/1 feature columns that declare groups (for positive-decision rates per group).
FAIR_GROUPS = ("sex_Male", "sex_Female", "race_White", "race_Black")


@dataclass(frozen=True)
class Auditor:
    """One auditor: a weighted distance over a feature subset, a scale and a margin.

    ``d(x, x') = min(1, scale * sqrt(sum_f w_f (x_f - x'_f)^2 / sum_f w_f))`` over the
    features in ``weights``; the auditor flags ``(i, l)`` when
    ``q_i - q_l > d(x_i, x_l) + margin``.
    """

    name: str
    weights: tuple[tuple[str, float], ...]
    scale: float
    margin: float


#: The default pool: five auditors with different views of who is alike.
DEFAULT_AUDITORS = (
    Auditor(
        "merit",
        (("education-num", 2.0), ("hours-per-week", 1.0), ("capital-gain", 1.0), ("marital-status_Married-civ-spouse", 1.0)),
        6.0,
        0.10,
    ),
    Auditor(
        "record",
        (
            ("age", 1.0),
            ("education-num", 1.0),
            ("hours-per-week", 1.0),
            ("capital-gain", 1.0),
            ("capital-loss", 1.0),
            ("marital-status_Married-civ-spouse", 1.0),
        ),
        6.0,
        0.10,
    ),
    Auditor("everything", tuple((f, 1.0) for f in FAIR_FEATURES), 6.0, 0.05),
    Auditor("life-stage", (("age", 1.0), ("education-num", 1.0), ("marital-status_Married-civ-spouse", 1.0)), 5.0, 0.15),
    Auditor("demographic", (("sex_Male", 1.0), ("race_White", 1.0), ("race_Black", 1.0), ("age", 0.5)), 2.0, 0.10),
)


@functools.lru_cache(maxsize=1)
def _adult_columns() -> tuple[np.ndarray, np.ndarray]:
    data = load_adult()
    columns = [data.feature_names.index(name) for name in FAIR_FEATURES]
    X = np.array(data.X[:, columns], dtype=np.float64)
    low, high = X.min(axis=0), X.max(axis=0)
    X = (X - low) / np.where(high > low, high - low, 1.0)
    return X, np.array(data.y, dtype=np.float64)


class AdultPopulation:
    """The Adult individuals in the fairness feature encoding.

    Examples
    --------
    >>> from regretflow.connectors.simulators.fairness import AdultPopulation
    >>> pop = AdultPopulation.load()
    >>> pop.X.shape, round(float(pop.y.mean()), 4), float(pop.X.min()), float(pop.X.max())
    ((32561, 10), 0.2408, 0.0, 1.0)
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, feature_names: tuple[str, ...]):
        self.X = np.ascontiguousarray(X, dtype=np.float64)
        self.y = np.ascontiguousarray(y, dtype=np.float64)
        self.feature_names = tuple(feature_names)

    @classmethod
    def load(cls) -> AdultPopulation:
        """From the vendored UCI file (checksummed by the dataset loader; parsed once per process)."""
        X, y = _adult_columns()
        return cls(X.copy(), y.copy(), FAIR_FEATURES)

    def hypothesis_class(
        self, n_directions: int = 16, n_offsets: int = 13, seed: int = 0, sample: int = 4000
    ) -> tuple[np.ndarray, np.ndarray]:
        """A finite class of linear thresholds fitted to the population's scale.

        Directions: the standardised class-mean difference (a linear discriminant)
        blended with seeded Gaussian directions, from pure discriminant to nearly
        random; offsets: evenly spaced quantiles (5%..95%) of each direction's scores
        on a seeded sample, each moved to the midpoint between the two nearest distinct
        scores of the whole population, so that nobody sits on a threshold (the last
        bits of a score differ between CPUs; a decision must not). Plus all-0 and
        all-1. ``N = n_directions n_offsets + 2``.

        Examples
        --------
        >>> pop = AdultPopulation.load()
        >>> W, b = pop.hypothesis_class(4, 5)
        >>> W.shape, b.shape
        ((22, 10), (22,))
        """
        rng = np.random.default_rng(seed)
        rows = rng.choice(self.X.shape[0], size=min(sample, self.X.shape[0]), replace=False)
        Xs, ys = self.X[rows], self.y[rows]
        spread = Xs.std(axis=0) + 1e-3
        discriminant = (Xs[ys == 1].mean(axis=0) - Xs[ys == 0].mean(axis=0)) / spread
        discriminant /= np.linalg.norm(discriminant)
        directions = []
        for j in range(n_directions):
            blend = j / max(n_directions - 1, 1)
            noise = rng.normal(size=self.X.shape[1]) / spread
            noise /= np.linalg.norm(noise)
            w = (1.0 - 0.8 * blend) * discriminant + 0.8 * blend * noise
            directions.append(w / np.linalg.norm(w))
        levels = np.linspace(0.05, 0.95, n_offsets)
        W, b = [], []
        for w in directions:
            everyone = np.unique(self.X @ w)
            for c in np.quantile(Xs @ w, levels):
                above = int(np.searchsorted(everyone, c))  # the first distinct score >= c
                if above == 0:
                    c = everyone[0] - 1.0
                elif above == everyone.shape[0]:
                    c = everyone[-1] + 1.0
                else:
                    c = 0.5 * (everyone[above - 1] + everyone[above])
                W.append(w)
                b.append(c)
        W.extend([np.zeros(self.X.shape[1]), np.zeros(self.X.shape[1])])
        b.extend([1.0, 0.0])
        return np.array(W), np.array(b)

    def separator_candidates(self, n: int = 2000, seed: int = 1) -> np.ndarray:
        """A seeded sample of individuals, candidates for an FTPL separator set."""
        rows = np.random.default_rng(seed).choice(self.X.shape[0], size=min(n, self.X.shape[0]), replace=False)
        return self.X[rows].copy()


class FairnessSimulator:
    """Rounds of k Adult individuals, true labels, and a panel of auditors per round.

    Parameters
    ----------
    population
        The individuals (default: :meth:`AdultPopulation.load`).
    n_rounds
        T.
    k
        Individuals per round.
    auditors
        The pool (default :data:`DEFAULT_AUDITORS`).
    panel_size
        Auditors drawn (without replacement) from the pool each round.
    seed
        Seed of the schedule (who comes, which panel sits).
    model
        Model name written into emitted events.

    Examples
    --------
    >>> import numpy as np
    >>> from regretflow.connectors.simulators.fairness import FairnessSimulator
    >>> sim = FairnessSimulator(n_rounds=3, k=4, seed=0)
    >>> X, y = sim.individuals(0), sim.labels(0)
    >>> X.shape, sim.panel(0).shape
    ((4, 10), (3,))
    >>> q = np.array([1.0, 0.0, 0.5, 0.5])       # a harsh policy: someone gets flagged
    >>> reports = sim.reports(0, q)
    >>> bool(len(reports) > 0 and all(q[i] > q[l] for i, l, _ in reports))
    True
    >>> sim.reports(0, np.full(4, 0.3))          # equal treatment is never flagged
    []
    >>> fb = sim.feedback_event(0, np.array([1, 0, 0, 1]))
    >>> [v is None for v in fb["label"]]
    [False, True, True, False]
    """

    def __init__(
        self,
        population: AdultPopulation | None = None,
        n_rounds: int = 1000,
        k: int = 5,
        auditors: tuple[Auditor, ...] = DEFAULT_AUDITORS,
        panel_size: int = 3,
        seed: int = 0,
        model: str = "fair",
    ):
        self.population = population if population is not None else AdultPopulation.load()
        if not 1 <= panel_size <= len(auditors):
            raise ValueError(f"panel_size must be in 1..{len(auditors)}, got {panel_size}")
        if k < 2:
            raise ValueError(f"k must be >= 2 (fairness is about pairs), got {k}")
        self.n_rounds = int(n_rounds)
        self.k = int(k)
        self.auditors = tuple(auditors)
        self.panel_size = int(panel_size)
        self.seed = seed
        self.model = model
        names = self.population.feature_names
        M, d = len(self.auditors), len(names)
        self.metric_weights = np.zeros((M, d))
        for j, a in enumerate(self.auditors):
            for feature, w in a.weights:
                self.metric_weights[j, names.index(feature)] = w
            self.metric_weights[j] /= self.metric_weights[j].sum()
        self.scales = np.array([a.scale for a in self.auditors])
        self.margins = np.array([a.margin for a in self.auditors])
        rng = np.random.default_rng(seed)
        self.rows = rng.integers(0, self.population.X.shape[0], size=(self.n_rounds, self.k))
        self.panels = np.argsort(rng.random((self.n_rounds, M)), axis=1)[:, : self.panel_size]

    def __len__(self) -> int:
        return self.n_rounds

    @property
    def n_features(self) -> int:
        return self.population.X.shape[1]

    def individuals(self, t: int) -> np.ndarray:
        """The (k, d) feature rows of round t."""
        return self.population.X[self.rows[t]]

    def labels(self, t: int) -> np.ndarray:
        """The true 0/1 labels of round t (the simulator's knowledge, not the learner's)."""
        return self.population.y[self.rows[t]]

    def panel(self, t: int) -> np.ndarray:
        """Pool indices of round t's panel members (slot order)."""
        return self.panels[t]

    def distances(self, t: int, auditors: np.ndarray | None = None) -> np.ndarray:
        """``D[j, i, l] = d_j(x_i, x_l)`` for the given pool indices (default: all)."""
        idx = np.arange(len(self.auditors)) if auditors is None else np.asarray(auditors)
        X = self.individuals(t)
        diff2 = (X[:, None, :] - X[None, :, :]) ** 2
        raw = np.sqrt(np.einsum("jf,ilf->jil", self.metric_weights[idx], diff2))
        return np.minimum(1.0, self.scales[idx][:, None, None] * raw)

    def reports(self, t: int, probabilities: np.ndarray) -> list[tuple[int, int, int]]:
        """Every panel member's flagged pairs ``(i, l, slot)`` with ``q_i - q_l > d + margin``."""
        q = np.asarray(probabilities, dtype=np.float64)
        members = self.panel(t)
        D = self.distances(t, members)
        gap = q[:, None] - q[None, :]
        flagged = gap[None, :, :] > D + self.margins[members][:, None, None]
        return [(int(i), int(l), int(s)) for s, i, l in zip(*np.nonzero(flagged))]

    def auditor_violations(self, t: int, probabilities: np.ndarray) -> np.ndarray:
        """Per auditor of the whole pool, the pairs it would flag in round t (sat or not)."""
        q = np.asarray(probabilities, dtype=np.float64)
        gap = q[:, None] - q[None, :]
        flagged = gap[None, :, :] > self.distances(t) + self.margins[:, None, None]
        return flagged.sum(axis=(1, 2))

    def panel_bounds(self, t: int, gamma: float) -> np.ndarray:
        """``d_t^gamma``: per pair, the ``ceil(gamma m)``-th smallest panel distance (spec section 2)."""
        D = np.sort(self.distances(t, self.panel(t)), axis=0)
        required = max(1, int(math.ceil(gamma * self.panel_size - 1e-12)))
        return D[required - 1]

    # -- engine events ---------------------------------------------------------------
    def decision_id(self, t: int) -> str:
        return f"{self.model}-s{self.seed}-t{t}"

    def decide_event(self, t: int) -> dict:
        """The ``decide`` of round t: the k individuals as ``actions``."""
        return {"id": self.decision_id(t), "model": self.model, "kind": "decide", "actions": self.individuals(t).tolist()}

    def feedback_event(self, t: int, decisions: np.ndarray) -> dict:
        """Labels only for positively decided individuals (``None`` elsewhere)."""
        y = self.labels(t)
        label = [int(y[i]) if int(decisions[i]) == 1 else None for i in range(self.k)]
        return {"id": f"{self.decision_id(t)}-fb", "model": self.model, "kind": "feedback", "ref": self.decision_id(t), "label": label}

    def audit_event(self, t: int, probabilities: np.ndarray) -> dict:
        """The panel's reports on the deployed probabilities of round t."""
        return {
            "id": f"{self.decision_id(t)}-audit",
            "model": self.model,
            "kind": "audit",
            "ref": self.decision_id(t),
            "violations": [list(r) for r in self.reports(t, probabilities)],
            "panel_size": self.panel_size,
            "auditors": [self.auditors[j].name for j in self.panel(t)],
        }
