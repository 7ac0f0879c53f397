"""Labelled classification datasets for the contextual-bandit reproduction.

Six real datasets that load offline, each checked against its recorded SHA-256
before it is parsed (see ``LICENSE.bandit_datasets.txt`` and
``LICENSE.imbalanced.txt`` for provenance and licences, and
``tests/benchmarks/data_regen_neural_bandit.py`` for how the files were made):

===========  =======  ========  =======  ===========================================
name         rows     features  classes  file
===========  =======  ========  =======  ===========================================
mushroom     8,124    22        2        bandit_mushroom.csv.gz (R factor codes)
shuttle      58,000   9         7        shuttle.csv.gz (shared with ``imbalanced``)
vehicle      846      18        4        bandit_vehicle.csv.gz
segment      2,310    18        7        bandit_segment.csv.gz (River ImageSegments)
digits       1,797    64        10       digits.csv.gz (shared with ``imbalanced``)
fashion14    10,000   196       10       bandit_fashion14.npz (fashion-MNIST, 14x14)
===========  =======  ========  =======  ===========================================

Feed any of them to
:class:`regretflow.connectors.simulators.classification_bandit.ClassificationBandit`.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from importlib import resources

import numpy as np

from . import imbalanced
from .imbalanced import DatasetChecksumError, LabelledStream

CHECKSUM_FILE = "bandit_datasets.sha256"
DATASETS = ("mushroom", "shuttle", "vehicle", "segment", "digits", "fashion14")


def _read_verified(file_name: str) -> bytes:
    files = resources.files(__package__)
    sums = {}
    for line in files.joinpath(CHECKSUM_FILE).read_text().splitlines():
        if line.strip():
            digest, name = line.split()
            sums[name] = digest
    blob = files.joinpath(file_name).read_bytes()
    if file_name not in sums:
        raise DatasetChecksumError(f"{file_name}: no checksum recorded in {CHECKSUM_FILE}")
    actual = hashlib.sha256(blob).hexdigest()
    if actual != sums[file_name]:
        raise DatasetChecksumError(f"{file_name}: sha256 {actual} does not match the recorded {sums[file_name]}")
    return blob


def _csv(name: str, file_name: str) -> LabelledStream:
    reader = csv.reader(io.StringIO(gzip.decompress(_read_verified(file_name)).decode("ascii")))
    header = next(reader)
    rows = [row for row in reader if row]
    X = np.array([[float(v) for v in row[:-1]] for row in rows], dtype=np.float64)
    y = np.array([row[-1] for row in rows], dtype=str)
    return LabelledStream(name=name, X=X, y=y, feature_names=tuple(header[:-1]))


def load_fashion14() -> LabelledStream:
    """10,000 fashion-MNIST test images pooled to 14x14 (pixels 0..255), labels 0..9.

    Examples
    --------
    >>> from regretflow.connectors.datasets.bandit_classification import load_fashion14
    >>> data = load_fashion14()
    >>> data.X.shape, data.class_counts()[0]
    ((10000, 196), 1000)
    """
    with np.load(io.BytesIO(_read_verified("bandit_fashion14.npz")), allow_pickle=False) as archive:
        X = archive["X"].astype(np.float64)
        y = archive["y"].astype(np.int64)
    names = tuple(f"px_{r}_{c}" for r in range(14) for c in range(14))
    return LabelledStream(name="fashion14", X=X, y=y, feature_names=names)


def load(name: str) -> LabelledStream:
    """Load one of :data:`DATASETS` by name, checksum verified.

    Examples
    --------
    >>> from regretflow.connectors.datasets.bandit_classification import load
    >>> mushroom = load("mushroom")
    >>> mushroom.X.shape, mushroom.class_counts()
    ((8124, 22), {'edible': 4208, 'poisonous': 3916})
    >>> load("vehicle").X.shape, load("segment").X.shape
    ((846, 18), (2310, 18))
    """
    if name == "mushroom":
        return _csv(name, "bandit_mushroom.csv.gz")
    if name == "vehicle":
        return _csv(name, "bandit_vehicle.csv.gz")
    if name == "segment":
        return _csv(name, "bandit_segment.csv.gz")
    if name == "fashion14":
        return load_fashion14()
    if name == "shuttle":
        return imbalanced.load_shuttle()
    if name == "digits":
        return imbalanced.load_digits()
    raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
