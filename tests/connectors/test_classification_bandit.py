"""The classification -> bandit conversion, its datasets and the events it emits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from regretflow.connectors.datasets import bandit_classification
from regretflow.connectors.datasets.imbalanced import DatasetChecksumError
from regretflow.connectors.simulators.classification_bandit import ClassificationBandit

SCHEMA = Path(__file__).resolve().parents[2] / "engine" / "schema" / "event.schema.json"


def test_digits_stream_for_seed_zero_is_frozen():
    data = bandit_classification.load("digits")
    sim = ClassificationBandit(data.X, data.y, seed=0)
    assert sim.labels[:5].tolist() == [2, 8, 2, 6, 6]
    np.testing.assert_allclose(
        sim.contexts[0][:12],
        [
            0.0,
            0.0,
            0.167359670349,
            0.24343224778,
            0.228217732294,
            0.045643546459,
            0.0,
            0.0,
            0.0,
            0.076072577431,
            0.24343224778,
            0.182574185835,
        ],
        atol=1e-11,
    )
    assert sim.contexts[0].sum() == pytest.approx(5.14250623435406, abs=1e-11)


def test_shuffle_is_the_seeded_permutation_and_rows_are_unit_norm():
    X = np.arange(40, dtype=float).reshape(10, 4) + 1.0
    y = np.arange(10) % 3
    sim = ClassificationBandit(X, y, seed=5)
    order = np.random.RandomState(5).permutation(10)
    np.testing.assert_allclose(sim.contexts, X[order] / np.linalg.norm(X[order], axis=1, keepdims=True))
    np.testing.assert_array_equal(sim.labels, y[order])
    assert not np.array_equal(sim.labels, ClassificationBandit(X, y, seed=6).labels)


def test_missing_values_become_minus_one_and_labels_are_sorted_codes():
    X = np.array([[np.nan, 0.0], [3.0, 4.0]])
    sim = ClassificationBandit(X, np.array(["z", "a"]), seed=0, normalize="none")
    rows = {tuple(r) for r in sim.contexts.tolist()}
    assert rows == {(-1.0, 0.0), (3.0, 4.0)}
    assert sim.classes == ["a", "z"]
    assert dict(zip(map(tuple, sim.contexts.tolist()), sim.labels.tolist())) == {(-1.0, 0.0): 1, (3.0, 4.0): 0}


def test_rewards_expected_rewards_and_pseudo_regret():
    sim = ClassificationBandit(np.eye(3), np.array([0, 1, 2]), seed=1, horizon=2)
    assert len(sim) == 2 and len(list(sim)) == 2
    r = sim.round(0)
    assert r.reward(r.label) == 1.0 and r.reward((r.label + 1) % 3) == 0.0
    np.testing.assert_array_equal(r.expected_rewards, np.eye(3)[r.label])
    p = np.array([0.2, 0.3, 0.5])
    assert r.pseudo_regret(p) == pytest.approx(1.0 - p[r.label])


def test_action_features_are_the_disjoint_encoding():
    sim = ClassificationBandit(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([0, 1]), seed=0, normalize="none")
    feats = sim.action_features(0)
    x = sim.contexts[0]
    np.testing.assert_array_equal(feats, [[x[0], x[1], 0, 0], [0, 0, x[0], x[1]]])


def test_emitted_events_follow_the_engine_schema_and_join_by_ref():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    data = bandit_classification.load("vehicle")
    sim = ClassificationBandit(data.X, data.y, seed=0, model="vehicle-bandit")
    decide, feedback = sim.decide_event(3), sim.feedback_event(3, action=1)
    jsonschema.validate(decide, schema)
    jsonschema.validate(feedback, schema)
    assert feedback["ref"] == decide["id"]
    assert feedback["reward"] == float(sim.labels[3] == 1)
    assert decide["expected_rewards"] == sim.expected_rewards(3).tolist()
    json.dumps(decide)  # plain JSON types only


@pytest.mark.parametrize(
    "name,shape,k",
    [
        ("mushroom", (8124, 22), 2),
        ("shuttle", (58000, 9), 7),
        ("vehicle", (846, 18), 4),
        ("segment", (2310, 18), 7),
        ("digits", (1797, 64), 10),
        ("fashion14", (10000, 196), 10),
    ],
)
def test_every_dataset_loads_offline_with_its_shape_and_classes(name, shape, k):
    data = bandit_classification.load(name)
    assert data.X.shape == shape
    assert len(data.classes) == k
    assert np.all(np.isfinite(data.X))


def test_a_tampered_file_fails_its_checksum(monkeypatch):
    original = bandit_classification.resources.files

    class Tampered:
        def __init__(self, root):
            self.root = root

        def joinpath(self, name):
            inner = self.root.joinpath(name)
            if name != "bandit_vehicle.csv.gz":
                return inner

            class Blob:
                def read_bytes(self_inner):
                    blob = bytearray(inner.read_bytes())
                    blob[len(blob) // 2] ^= 0xFF  # one flipped byte
                    return bytes(blob)

            return Blob()

    monkeypatch.setattr(bandit_classification.resources, "files", lambda pkg: Tampered(original(pkg)))
    with pytest.raises(DatasetChecksumError, match="bandit_vehicle"):
        bandit_classification.load("vehicle")


def test_unknown_dataset_is_named():
    with pytest.raises(ValueError, match="mnist"):
        bandit_classification.load("mnist")
