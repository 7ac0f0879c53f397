"""The metrics log: what the engine appends for ``regretflow report``, and how it is read.

A JSON Lines file (UTF-8), appended to by the engine when ``metrics.log_path`` is set:
one record every ``metrics.log_every_seconds`` and one at shutdown. Each line is one
JSON object, written by :func:`metrics_log_record`::

    {"format": "regretflow-metrics-log", "version": 1, "ts": 1733000000.125,
     "models": {"<model>": <summary>, ...}}

``ts`` is the wall-clock time of the record (Unix seconds). ``<summary>`` is the
engine's summary of the model (``Engine.summary()[model]``), always with ``task``
(``"regression"``, ``"bandit"``, ``"classification"`` or null before the model's first
event), ``learner``, ``shards``, ``model_version``, ``pending_joins``,
``joins_evicted``, ``events``, and by task:

- regression: ``"groups": {"<label>": {"count", "loss", "comparator_loss", "regret"}}``
  (label ``all`` and every declared group label; counts are labelled rounds);
- bandit: ``"bandit": {"count", "reward", "mean_reward", "pseudo_regret",
  "pseudo_count", "uniform": <estimates>, "best_constant": {"action", <estimates>},
  "regret_vs_best_constant", "constant": [<estimates> per action]}`` where
  ``<estimates>`` is ``{"ips", "ips_low", "ips_high", "snips", "snips_low", "snips_high"}``;
- classification: ``"classification": {"count", "accuracy", "mean_per_class_accuracy",
  "per_class": {"<class>": {"count", "correct", "accuracy"}}, "per_group": {...}}``;

and, when the learner declares gauges, ``"learner_gauges": {"<name>": number}`` and
``"learner_group_gauges": {"<name>": [number per declared group, then all]}``.
Non-finite numbers are written as null. Entries of the summary whose key starts with
``_`` are not models: ``_stream`` (events, valid, dead letters) is kept as ``"stream"``,
others are dropped. Readers ignore keys they do not know; a record of a newer
``version`` is refused with a message; a last line cut short by a crash is skipped.

>>> line = metrics_log_record({"m": {"task": "regression", "events": 3, "groups": {"all": {"count": 3, "loss": 1.5, "comparator_loss": 0.5, "regret": 1.0}}}}, now=1700000000.0)
>>> line[:64]
b'{"format":"regretflow-metrics-log","version":1,"ts":1700000000.0'
>>> parse_metrics_log([line, line])[1]["models"]["m"]["groups"]["all"]["regret"]
1.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from regretflow.connectors.jsonl import read_lines

LOG_FORMAT = "regretflow-metrics-log"
LOG_VERSION = 1


class MetricsLogError(ValueError):
    """A metrics log that cannot be read: not JSON, not a metrics log, or from a newer version."""


# -- writing --------------------------------------------------------------------------------


def metrics_log_record(summary: dict[str, Any], now: float) -> bytes:
    """One line of the metrics log (ending in a newline) for ``Engine.summary()`` at time ``now``."""
    models = {k: v for k, v in summary.items() if not str(k).startswith("_")}
    record: dict[str, Any] = {"format": LOG_FORMAT, "version": LOG_VERSION, "ts": float(now), "models": models}
    if "_stream" in summary:
        record["stream"] = summary["_stream"]
    return orjson.dumps(_finite(record), option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS) + b"\n"


def _finite(value: Any) -> Any:
    """Non-finite floats as None (JSON has no NaN); numpy arrays as lists."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, np.ndarray):
        return _finite(value.tolist())
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


# -- reading --------------------------------------------------------------------------------


def parse_metrics_log(lines: Iterable[bytes], source: str = "metrics log") -> list[dict[str, Any]]:
    """Records of a metrics log, oldest first; a last line cut short is skipped."""
    lines = [ln for ln in lines if ln.strip()]
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            if number == len(lines):
                break  # the engine was killed while writing it
            raise MetricsLogError(f"{source}: line {number} is not JSON") from None
        if not isinstance(record, dict) or record.get("format") != LOG_FORMAT:
            raise MetricsLogError(f"{source}: line {number} is not a regretflow metrics log record")
        if int(record.get("version", 0)) > LOG_VERSION:
            raise MetricsLogError(
                f"{source}: line {number} has format version {record['version']}; "
                f"this regretflow reads up to {LOG_VERSION}: upgrade regretflow"
            )
        records.append(record)
    if not records:
        raise MetricsLogError(f"{source}: no records")
    return records


def read_metrics_log(path: str | Path) -> list[dict[str, Any]]:
    """Read a metrics log file (or ``metrics.jsonl`` in a directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    try:
        lines = list(read_lines(path))
    except FileNotFoundError:
        raise MetricsLogError(f"{path}: no such file") from None
    return parse_metrics_log(lines, str(path))
