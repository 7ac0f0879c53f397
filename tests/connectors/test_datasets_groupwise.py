"""Medical costs and UCI Adult loaders for the groupwise-regret reproduction."""

from __future__ import annotations

import hashlib
from importlib import resources

import numpy as np
import pandas as pd
import pytest

from regretflow.connectors.datasets import insurance
from regretflow.connectors.datasets.adult import ADULT_GZ_SHA256, load_adult
from regretflow.connectors.datasets.insurance import (
    DatasetChecksumError,
    evaluate_groups,
    load_insurance,
    read_checked,
)

MEDICAL_SIZES = {
    "young": 574,
    "middle": 408,
    "old": 356,
    "underweight": 20,
    "healthyweight": 225,
    "overweight": 386,
    "obese": 707,
    "smoker": 274,
    "non-smoker": 1064,
    "male": 676,
    "female": 662,
}
ADULT_SIZES = {
    "young": 14925,
    "middle": 11176,
    "old": 6460,
    "HighSchool&less": 14754,
    "College&more": 17807,
    "Male": 21790,
    "Female": 10771,
    "White": 27816,
    "Asian-Pac-Islander": 1039,
    "Amer-Indian-Eskimo": 311,
    "Other": 271,
    "Black": 3124,
}


@pytest.fixture(scope="module")
def medical():
    return load_insurance()


@pytest.fixture(scope="module")
def adult():
    return load_adult()


def test_vendored_files_match_their_recorded_checksums():
    folder = resources.files("regretflow.connectors.datasets")
    assert hashlib.sha256(folder.joinpath("insurance.csv").read_bytes()).hexdigest() == insurance.INSURANCE_SHA256
    assert hashlib.sha256(folder.joinpath("adult.data.gz").read_bytes()).hexdigest() == ADULT_GZ_SHA256
    recorded = folder.joinpath("adult.sha256").read_text().split()
    assert recorded[:2] == [ADULT_GZ_SHA256, "adult.data.gz"]
    assert "CC BY 4.0" in folder.joinpath("LICENSE.adult.txt").read_text()


def test_a_wrong_checksum_is_refused():
    with pytest.raises(DatasetChecksumError, match="insurance.csv"):
        read_checked("insurance.csv", "0" * 64)


def test_medical_has_the_paper_groups_and_encoding(medical):
    assert medical.X.shape == (1338, 18) and medical.y.shape == (1338,)
    assert dict(zip(medical.group_names, medical.membership.sum(axis=0).tolist())) == MEDICAL_SIZES
    assert medical.X.min() == 0.0 and medical.X.max() == 1.0 and medical.y.min() == 0.0 and medical.y.max() == 1.0
    names = list(medical.feature_names)
    for prefix in ("sex_", "smoker_", "region_"):
        block = medical.X[:, [i for i, n in enumerate(names) if n.startswith(prefix)]]
        np.testing.assert_array_equal(block.sum(axis=1), 1.0)
    for bucket in ("young", "obese"):
        np.testing.assert_array_equal(medical.X[:, names.index(bucket)], medical.membership[:, medical.group_names.index(bucket)])
    low, high = medical.target_bounds
    assert low + medical.y[0] * (high - low) == pytest.approx(16884.924)


def test_medical_agrees_with_pandas_min_max_scaling(medical):
    frame = pd.read_csv(resources.files("regretflow.connectors.datasets").joinpath("insurance.csv"))
    for column in ("age", "bmi", "children"):
        scaled = (frame[column] - frame[column].min()) / (frame[column].max() - frame[column].min())
        np.testing.assert_allclose(medical.X[:, medical.feature_names.index(column)], scaled, atol=1e-15)


def test_groups_are_evaluated_on_raw_values_with_the_stated_bounds():
    rows = [{"bmi": 18.5}, {"bmi": 24.999}, {"bmi": 25.0}]
    got = evaluate_groups(rows, {"healthy": {"field": "bmi", "ge": 18.5, "lt": 25}})
    np.testing.assert_array_equal(got[:, 0], [True, True, False])
    with pytest.raises(ValueError, match="only eq"):
        evaluate_groups(rows, {"bad": {"field": "bmi", "between": (1, 2)}})


def test_shuffle_is_the_papers_permutation(medical):
    order = np.random.RandomState(473).permutation(1338)
    np.testing.assert_array_equal(order[:5], [526, 908, 1051, 822, 1330])
    frame = pd.DataFrame({"i": np.arange(1338)})
    np.testing.assert_array_equal(frame.sample(frac=1, random_state=473)["i"].to_numpy(), order)
    shuffled = medical.shuffled(473)
    np.testing.assert_array_equal(shuffled.X, medical.X[order])
    np.testing.assert_array_equal(shuffled.membership, medical.membership[order])
    assert shuffled.rows[0] == medical.rows[526]


def test_adult_substitute_has_96_features_and_the_spec_group_sizes(adult):
    assert adult.X.shape == (32561, 96)
    assert int(adult.y.sum()) == 7841 and int((adult.y == 0).sum()) == 24720
    assert dict(zip(adult.group_names, adult.membership.sum(axis=0).tolist())) == ADULT_SIZES
    assert "workclass_?" in adult.feature_names and "fnlwgt" not in adult.feature_names
    assert "education" not in adult.rows[0] and adult.rows[0]["race"] == "White"
    assert adult.X.min() == 0.0 and adult.X.max() == 1.0
