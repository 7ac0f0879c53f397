"""JSON answers built a column at a time (``AnswerColumns.json_rows``) are the bytes a dict per row gives."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from regretflow.connectors.arrow import AnswerColumns, _json_cells

TEXTS = ["e1", 'a"b', "back\\slash", "tab\there", "nul\x00", "\x1f", "é", "\u2028", "%s", "%%", "", "x" * 300, "emoji \U0001f600"]
NUMBERS = [0.0, -0.0, 1e-5, 1e16, 1.5e300, -2.5, 3, -(2**63), 2**63 - 1, float("nan"), float("inf"), None]


def by_dict(columns: dict, rows: int) -> list[bytes]:
    values = {k: [v] * rows if isinstance(v, str) else (v.tolist() if isinstance(v, np.ndarray) else list(v)) for k, v in columns.items()}
    return [orjson.dumps(dict(zip(values, row))) for row in zip(*values.values())]


@pytest.mark.parametrize("seed", range(40))
def test_json_rows_match_a_dict_per_row_on_random_columns(seed):
    rng = np.random.default_rng(seed)
    rows = int(rng.integers(0, 40))  # (below 8 rows: a dict per row)
    plain_text = bool(rng.integers(0, 2))  # half the runs: ids that need no escape (the column-wise path)
    texts = [t for t in TEXTS if not plain_text or t.isalnum() or t in ("%s", "%%", "é", "")]
    ids = [texts[i] for i in rng.integers(0, len(texts), rows)]
    numbers = [NUMBERS[i] for i in rng.integers(0, len(NUMBERS), rows)]
    columns = {
        "id": ids,
        "model": 'm%s"',
        "kind": "observe",
        "prediction": np.array(rng.normal(size=rows) * 10.0 ** rng.integers(-8, 8, rows)) if seed % 2 else numbers,
        "model_version": np.arange(seed, seed + rows, dtype=np.int64),
    }
    assert AnswerColumns("m", "observe", columns, rows).json_rows() == by_dict(columns, rows)
    if plain_text:
        assert _json_cells(ids) is not None  # these took the column-wise path


def test_text_predictions_and_a_row_without_columns():
    columns = {"id": ["1", "2"], "prediction": ["cat", 'say "hi"']}
    assert AnswerColumns("m", "observe", columns, 2).json_rows() == by_dict(columns, 2)
    assert AnswerColumns("m", "observe", {"kind": "observe"}, 3).json_rows() == [b'{"kind":"observe"}'] * 3


@pytest.mark.parametrize("rows", [1, 10])
def test_a_value_orjson_refuses_raises_as_a_dict_per_row_would(rows):
    with pytest.raises(orjson.JSONEncodeError):
        AnswerColumns("m", "observe", {"id": ["1"] * rows, "prediction": [2**70] * rows}, rows).json_rows()
    with pytest.raises(orjson.JSONEncodeError):
        AnswerColumns("m", "observe", {"id": ["\ud800"] * rows, "prediction": [1.0] * rows}, rows).json_rows()


@pytest.mark.parametrize("keyed", [False, True])
@pytest.mark.parametrize("batch", [1, 5, 20])
def test_an_answer_with_no_prediction_yet_writes_null_keyed_or_not(keyed, batch):
    """A classifier knows no class before its first label: its first answer says ``"prediction": null``
    (a keyed run's answers were once built from records that leave a None out)."""
    from tests.conftest import engine_fed

    params = {"generator": False, "shard_by_key": keyed}
    config = {"models": {"c": {"learner": "analytic-ridge", "features": ["a", "b"], "params": params}}}
    payloads = []
    for i in range(20):
        event = {"id": f"o{i}", "model": "c", "kind": "observe", "features": [i % 3, 1.0], "label": "cat" if i % 2 else "dog"}
        if keyed:
            event["key"] = "k1"
        payloads.append(orjson.dumps(event))
    for column_wise in (True, False):
        first = orjson.loads(engine_fed(config, payloads, batch, column_wise).answers.records[0][1])
        assert "prediction" in first and first["prediction"] is None
        assert first.get("key") == ("k1" if keyed else None)
