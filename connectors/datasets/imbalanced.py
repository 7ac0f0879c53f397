"""Bundled imbalanced classification streams: digits, shuttle and rainfall.

Three small public datasets shipped as gzip'd CSV files beside this module, each
checked against ``imbalanced.sha256`` before it is parsed; nothing is fetched from
the network. Provenance and licences: ``LICENSE.imbalanced.txt``; how the files
were made: ``tests/benchmarks/data_regen_analytic_ridge.py``.

========  =======  ========  =======  =====================================================
name      rows     features  classes  character
========  =======  ========  =======  =====================================================
digits    1,797    64        10       balanced 8x8 digit images (made long-tailed by callers)
shuttle   58,000   9         7        naturally imbalanced: 78.6% one class, 10 rows the least
rainfall  18,159   8         2        NOAA weather, 31.4% rain, drift from row 12,000
========  =======  ========  =======  =====================================================
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources

import numpy as np

CHECKSUM_FILE = "imbalanced.sha256"
DATASETS = ("digits", "shuttle", "rainfall")


class DatasetChecksumError(RuntimeError):
    """A bundled data file does not match its recorded sha256."""


@dataclass(frozen=True)
class LabelledStream:
    """A dense labelled dataset in its original row order.

    Attributes
    ----------
    name
        Dataset name (``"digits"``, ``"shuttle"`` or ``"rainfall"``).
    X
        float64 matrix, one row per example.
    y
        Labels: ``int64`` for digits and rainfall, ``str`` (numpy unicode) for shuttle.
    feature_names
        Column names of ``X``.
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]

    @property
    def classes(self) -> list:
        """The distinct labels, sorted."""
        return [c.item() for c in np.unique(self.y)]

    def class_counts(self) -> dict:
        """Rows per label."""
        labels, counts = np.unique(self.y, return_counts=True)
        return {label.item(): int(count) for label, count in zip(labels, counts)}

    def stream(self) -> Iterator[tuple[dict[str, float], object]]:
        """``(features dict, label)`` pairs in row order, as River datasets yield them."""
        names = self.feature_names
        for row, label in zip(self.X, self.y):
            yield dict(zip(names, row.tolist())), label.item()


def _recorded_checksums() -> dict[str, str]:
    text = resources.files(__package__).joinpath(CHECKSUM_FILE).read_text()
    sums = {}
    for line in text.splitlines():
        if line.strip():
            digest, name = line.split()
            sums[name] = digest
    return sums


def _read_verified(file_name: str) -> bytes:
    blob = resources.files(__package__).joinpath(file_name).read_bytes()
    expected = _recorded_checksums().get(file_name)
    if expected is None:
        raise DatasetChecksumError(f"{file_name}: no checksum recorded in {CHECKSUM_FILE}")
    actual = hashlib.sha256(blob).hexdigest()
    if actual != expected:
        raise DatasetChecksumError(f"{file_name}: sha256 {actual} does not match the recorded {expected}")
    return blob


def _parse(file_name: str) -> tuple[list[str], list[list[str]]]:
    text = gzip.decompress(_read_verified(file_name)).decode("ascii")
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    return header, list(reader)


def _numeric(name: str, label_type: type) -> LabelledStream:
    header, rows = _parse(f"{name}.csv.gz")
    X = np.array([[float(v) for v in row[:-1]] for row in rows], dtype=np.float64)
    if label_type is int:
        y = np.array([int(row[-1]) for row in rows], dtype=np.int64)
    else:
        y = np.array([row[-1] for row in rows], dtype=str)
    return LabelledStream(name=name, X=X, y=y, feature_names=tuple(header[:-1]))


def load_digits() -> LabelledStream:
    """The 1,797 8x8 handwritten digits (pixel counts 0..16), labels 0..9.

    Examples
    --------
    >>> from regretflow.connectors.datasets.imbalanced import load_digits
    >>> digits = load_digits()
    >>> digits.X.shape, digits.classes[:3], float(digits.X.max())
    ((1797, 64), [0, 1, 2], 16.0)
    """
    return _numeric("digits", int)


def load_shuttle() -> LabelledStream:
    """Statlog shuttle: 58,000 rows, 9 integer features, 7 named classes.

    Examples
    --------
    >>> from regretflow.connectors.datasets.imbalanced import load_shuttle
    >>> shuttle = load_shuttle()
    >>> shuttle.X.shape, shuttle.class_counts()["Rad.Flow"], shuttle.class_counts()["Bpv.Close"]
    ((58000, 9), 45586, 10)
    """
    return _numeric("shuttle", str)


def load_rainfall() -> LabelledStream:
    """NOAA rainfall: 18,159 days, 8 standardised features, label 1 = rain.

    The rows are in time order; the concept drifts from row 12,000 on.

    Examples
    --------
    >>> from regretflow.connectors.datasets.imbalanced import load_rainfall
    >>> rain = load_rainfall()
    >>> rain.X.shape, round(float(rain.y.mean()), 3)
    ((18159, 8), 0.314)
    """
    return _numeric("rainfall", int)


def load(name: str) -> LabelledStream:
    """Load a bundled dataset by name (one of :data:`DATASETS`)."""
    loaders = {"digits": load_digits, "shuttle": load_shuttle, "rainfall": load_rainfall}
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    return loaders[name]()
