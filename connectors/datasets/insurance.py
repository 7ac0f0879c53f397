"""Medical costs (``insurance.csv``): the groupwise-regret paper's first dataset.

1,338 rows of age, sex, bmi, children, smoker, region and the yearly medical
charges billed by a health insurer (US, simulated from census statistics; published
with B. Lantz, "Machine Learning with R", Packt 2013, and widely mirrored as the
"Medical Cost Personal" dataset). The copy beside this module is byte-identical to
the one in the official code of Acharya et al. (ICLR 2024), CRLF line endings, and
is checked against its sha256 before it is parsed. Nothing is fetched at run time.

:func:`load_insurance` gives what the paper's protocol and the demo need: the raw
rows with their attributes, the 12 groups (evaluated on raw values), the 18 features
in the paper's encoding min-max scaled with the full-dataset bounds, and the
min-max scaled target. The group definitions are data (:data:`MEDICAL_GROUPS`), in
the form :func:`evaluate_groups` reads, so a config can state the same groups.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

INSURANCE_FILE = "insurance.csv"
INSURANCE_SHA256 = "388eff679557d08ac19f463d025de5e0b4adc482537c8456d19934d78621fd47"

#: The paper's 12 groups without ``always_on`` (the learner adds it), on raw values.
#: Each is ``{"field": name}`` plus ``eq`` (equality) or bounds among ``gt``, ``ge``,
#: ``lt``, ``le``; a row belongs when every condition holds.
MEDICAL_GROUPS: dict[str, dict[str, Any]] = {
    "young": {"field": "age", "le": 35},
    "middle": {"field": "age", "gt": 35, "le": 50},
    "old": {"field": "age", "gt": 50},
    "underweight": {"field": "bmi", "lt": 18.5},
    "healthyweight": {"field": "bmi", "ge": 18.5, "lt": 25},
    "overweight": {"field": "bmi", "ge": 25, "lt": 30},
    "obese": {"field": "bmi", "ge": 30},
    "smoker": {"field": "smoker", "eq": "yes"},
    "non-smoker": {"field": "smoker", "eq": "no"},
    "male": {"field": "sex", "eq": "male"},
    "female": {"field": "sex", "eq": "female"},
}

#: The bucket groups that the paper also gives the model as indicator features.
MEDICAL_BUCKET_FEATURES = ("young", "middle", "old", "underweight", "healthyweight", "overweight", "obese")
MEDICAL_NUMERIC = ("age", "bmi", "children")
MEDICAL_CATEGORICAL = {
    "sex": ("female", "male"),
    "smoker": ("no", "yes"),
    "region": ("northeast", "northwest", "southeast", "southwest"),
}


class DatasetChecksumError(RuntimeError):
    """A bundled data file does not match its recorded sha256."""


@dataclass(frozen=True)
class GroupedRegressionData:
    """A regression stream with raw attributes, model features and group membership.

    Attributes
    ----------
    name
        Dataset name.
    rows
        The raw records, one dict per row (numbers as float, categories as str).
    feature_names
        Column names of ``X``.
    X
        float64 features in the paper's encoding, min-max scaled to [0, 1] with the
        full-dataset bounds (look-ahead, as the paper does).
    y
        float64 target, min-max scaled to [0, 1] with the full-dataset bounds.
    target_bounds
        ``(min, max)`` of the raw target: ``raw = min + y * (max - min)``.
    group_names
        The declared groups (without ``always_on``).
    membership
        bool matrix (rows x groups): row i belongs to group j.
    """

    name: str
    rows: list[dict[str, Any]]
    feature_names: tuple[str, ...]
    X: np.ndarray
    y: np.ndarray
    target_bounds: tuple[float, float]
    group_names: tuple[str, ...]
    membership: np.ndarray

    def __len__(self) -> int:
        return self.X.shape[0]

    def shuffled(self, seed: int) -> GroupedRegressionData:
        """The rows in the order of ``np.random.RandomState(seed).permutation(n)``.

        This is the order of ``DataFrame.sample(frac=1, random_state=seed)``, the
        paper's shuffle.
        """
        order = np.random.RandomState(seed).permutation(len(self))
        return GroupedRegressionData(
            name=self.name,
            rows=[self.rows[i] for i in order] if self.rows else [],
            feature_names=self.feature_names,
            X=self.X[order],
            y=self.y[order],
            target_bounds=self.target_bounds,
            group_names=self.group_names,
            membership=self.membership[order],
        )


def evaluate_groups(rows: list[dict[str, Any]], definitions: dict[str, dict[str, Any]]) -> np.ndarray:
    """Membership matrix (rows x definitions) of raw ``rows`` in the groups ``definitions``.

    >>> evaluate_groups([{"age": 35}, {"age": 36}], {"young": {"field": "age", "le": 35}})
    array([[ True],
           [False]])
    """
    out = np.zeros((len(rows), len(definitions)), dtype=bool)
    for j, (name, rule) in enumerate(definitions.items()):
        unknown = set(rule) - {"field", "eq", "gt", "ge", "lt", "le"}
        if "field" not in rule or unknown:
            raise ValueError(f"group {name!r}: needs 'field' and only eq/gt/ge/lt/le, got {sorted(rule)}")
        field = rule["field"]
        for i, row in enumerate(rows):
            value = row[field]
            ok = True
            if "eq" in rule:
                ok = ok and value == rule["eq"]
            if "gt" in rule:
                ok = ok and value > rule["gt"]
            if "ge" in rule:
                ok = ok and value >= rule["ge"]
            if "lt" in rule:
                ok = ok and value < rule["lt"]
            if "le" in rule:
                ok = ok and value <= rule["le"]
            out[i, j] = ok
    return out


def min_max_scale(values: np.ndarray) -> np.ndarray:
    """Columns scaled to [0, 1] with their own min and max (constant columns become 0)."""
    values = np.asarray(values, dtype=np.float64)
    low, high = values.min(axis=0), values.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    return (values - low) / span


def encode_features(
    rows: list[dict[str, Any]],
    numeric: tuple[str, ...],
    categorical: dict[str, tuple[str, ...]],
    buckets: np.ndarray,
    bucket_names: tuple[str, ...],
) -> tuple[np.ndarray, tuple[str, ...]]:
    """The paper's encoding: min-max scaled numerics, one-hot categoricals (no column
    dropped), then the bucket indicators."""
    columns = [min_max_scale(np.array([[row[f] for f in numeric] for row in rows], dtype=np.float64))]
    names = list(numeric)
    for field, levels in categorical.items():
        values = [row[field] for row in rows]
        unknown = set(values) - set(levels)
        if unknown:
            raise ValueError(f"{field}: unexpected levels {sorted(unknown)}")
        columns.append(np.array([[v == level for level in levels] for v in values], dtype=np.float64))
        names.extend(f"{field}_{level}" for level in levels)
    columns.append(buckets.astype(np.float64))
    names.extend(bucket_names)
    return np.ascontiguousarray(np.hstack(columns)), tuple(names)


def read_checked(package_file: str, sha256: str) -> bytes:
    """The bytes of a file beside this module, after checking its sha256."""
    data = resources.files(__package__).joinpath(package_file).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise DatasetChecksumError(f"{package_file}: sha256 {digest}, expected {sha256}")
    return data


def load_insurance() -> GroupedRegressionData:
    """Medical costs in the paper's encoding (18 features, 11 declared groups).

    Examples
    --------
    >>> from regretflow.connectors.datasets.insurance import load_insurance
    >>> data = load_insurance()
    >>> data.X.shape, len(data.group_names), int(data.membership[:, data.group_names.index("smoker")].sum())
    ((1338, 18), 11, 274)
    >>> data.rows[0]
    {'age': 19.0, 'sex': 'female', 'bmi': 27.9, 'children': 0.0, 'smoker': 'yes', 'region': 'southwest', 'charges': 16884.924}
    >>> round(float(data.y.min()), 6), round(float(data.y.max()), 6)
    (0.0, 1.0)
    """
    text = read_checked(INSURANCE_FILE, INSURANCE_SHA256).decode("utf-8")
    rows: list[dict[str, Any]] = []
    for record in csv.DictReader(io.StringIO(text, newline="")):
        rows.append(
            {
                "age": float(record["age"]),
                "sex": record["sex"],
                "bmi": float(record["bmi"]),
                "children": float(record["children"]),
                "smoker": record["smoker"],
                "region": record["region"],
                "charges": float(record["charges"]),
            }
        )
    membership = evaluate_groups(rows, MEDICAL_GROUPS)
    names = tuple(MEDICAL_GROUPS)
    buckets = membership[:, [names.index(b) for b in MEDICAL_BUCKET_FEATURES]]
    X, feature_names = encode_features(rows, MEDICAL_NUMERIC, MEDICAL_CATEGORICAL, buckets, MEDICAL_BUCKET_FEATURES)
    charges = np.array([row["charges"] for row in rows])
    return GroupedRegressionData(
        name="medical",
        rows=rows,
        feature_names=feature_names,
        X=X,
        y=min_max_scale(charges[:, None])[:, 0],
        target_bounds=(float(charges.min()), float(charges.max())),
        group_names=names,
        membership=membership,
    )
