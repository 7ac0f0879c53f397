"""One JSONL reader (connectors/jsonl.py) behind the offline evaluation and the report."""

from __future__ import annotations

import orjson
import pytest

from regretflow.connectors.jsonl import read_lines, read_objects
from regretflow.engine.evaluation.offline import logged_policy_values
from regretflow.engine.observability.metrics_log import MetricsLogError, metrics_log_record, read_metrics_log


def test_read_lines_bounds_a_long_line_and_keeps_the_next_one(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"x" * 1000 + b"\n" + b'{"a": 1}\n')
    assert list(read_lines(path, max_line_bytes=10)) == [b"x" * 11, b'{"a": 1}']


def test_read_objects_skips_what_is_not_an_object(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"a": 1}\r\n\n7\nnot json\n{"a": 2}\n{"a": ')
    assert list(read_objects(path)) == [{"a": 1}, {"a": 2}]


def test_the_report_skips_a_torn_last_record_and_refuses_a_torn_middle_one(tmp_path):
    line = metrics_log_record({"m": {"task": None, "events": 0}}, now=1.0)
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(line + line + line[:20])
    assert len(read_metrics_log(tmp_path)) == 2
    path.write_bytes(line + line[:20] + b"\n" + line)
    with pytest.raises(MetricsLogError, match="line 2 is not JSON"):
        read_metrics_log(path)


def test_offline_evaluation_ignores_a_torn_last_answer(tmp_path):
    answers, events = tmp_path / "answers.jsonl", tmp_path / "events.jsonl"
    decide = {"model": "b", "kind": "decide", "probability": 0.5, "probabilities": [0.5, 0.5]}
    answers.write_bytes(
        b"".join(orjson.dumps({**decide, "id": f"d{i}", "action": i % 2}) + b"\n" for i in range(20)) + b'{"id": "d20", "mo'
    )
    events.write_bytes(
        b"".join(orjson.dumps({"id": f"f{i}", "model": "b", "kind": "feedback", "ref": f"d{i}", "reward": 1.0}) + b"\n" for i in range(21))
    )
    assert logged_policy_values(str(events), str(answers), None, n_bootstrap=10)["b"]["rounds"] == 20
