"""``regretflow report``: the metrics log format, and the PNG + HTML report drawn from it."""

from __future__ import annotations

import base64
import re

import numpy as np
import orjson
import pytest

from regretflow.connectors.memory import MemorySource
from regretflow.engine.cli.demo import demo_config, demo_events
from regretflow.engine.cli.main import main as regretflow_main
from regretflow.engine.config import parse_config
from regretflow.engine.observability.metrics_log import (
    LOG_VERSION,
    MetricsLogError,
    metrics_log_record,
    parse_metrics_log,
    read_metrics_log,
)
from regretflow.engine.observability.report import model_series, record_run, write_report

pytest.importorskip("matplotlib", reason="the report draws with matplotlib (the plot extra; the test extra includes it)")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_metrics_log_record_is_one_json_line_with_format_version_time_and_models():
    summary = {
        "m": {
            "task": "regression",
            "model_version": np.int64(4),
            "weights": np.array([1.0, 2.0]),
            "groups": {"all": {"count": 4, "loss": np.float64(2.0), "comparator_loss": float("nan"), "regret": 1.5}},
        },
        "_stream": {"events": 5, "valid": 4, "dead_letters": 1},
        "_other": {"x": 1},
    }
    line = metrics_log_record(summary, now=1700000000.5)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    record = orjson.loads(line)
    assert record["format"] == "regretflow-metrics-log" and record["version"] == LOG_VERSION
    assert record["ts"] == 1700000000.5
    assert list(record["models"]) == ["m"]
    assert record["models"]["m"]["groups"]["all"]["comparator_loss"] is None  # NaN is not JSON
    assert record["models"]["m"]["weights"] == [1.0, 2.0] and record["models"]["m"]["model_version"] == 4
    assert record["stream"] == {"events": 5, "valid": 4, "dead_letters": 1}


def test_reader_skips_a_last_line_cut_by_a_crash_but_not_a_bad_middle_line(tmp_path):
    good = metrics_log_record({"m": {"task": None}}, 1.0)
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(good + good + good[:20])
    assert len(read_metrics_log(path)) == 2
    assert len(read_metrics_log(tmp_path)) == 2  # a directory means its metrics.jsonl
    with pytest.raises(MetricsLogError, match="line 2 is not JSON"):
        parse_metrics_log([good, b"{oops", good])


def test_reader_refuses_other_files_newer_versions_and_empty_logs():
    with pytest.raises(MetricsLogError, match="not a regretflow metrics log"):
        parse_metrics_log([b'{"id": "e1", "model": "m", "kind": "observe"}'])
    newer = orjson.dumps({"format": "regretflow-metrics-log", "version": LOG_VERSION + 1, "ts": 0, "models": {}})
    with pytest.raises(MetricsLogError, match="upgrade regretflow"):
        parse_metrics_log([newer])
    with pytest.raises(MetricsLogError, match="no records"):
        parse_metrics_log([b"", b"  "])


def test_log_records_round_trip_the_engine_summary():
    config = demo_config(metrics=False, families=["groupwise"])
    lines = record_run(config, MemorySource(demo_events(passes=1, models=list(config.models))[:300]), every=100)
    assert len(lines) == 4  # after 100, 200, 300 events, and at the end
    records = parse_metrics_log(lines)
    last = records[-1]["models"]["ridge"]
    assert last["groups"]["all"]["count"] == 300 // len(config.models)
    assert records[-1]["stream"] == {"events": 300, "valid": 300, "dead_letters": 0}
    counts = [r["models"]["ridge"]["groups"]["all"]["count"] for r in records]
    assert counts == sorted(counts) and counts[0] > 0


def test_demo_report_draws_regret_per_group_into_pngs_and_one_self_contained_page(tmp_path):
    config = demo_config(metrics=False, families=["groupwise"])
    lines = record_run(config, MemorySource(demo_events(passes=1, models=list(config.models))), every=200)
    records = parse_metrics_log(lines)
    series = model_series(records)["ridge"]
    assert series.task == "regression"
    assert {"all", "smoker=yes", "smoker=no", "age=[18,36)"} <= set(series.groups)
    final = records[-1]["models"]["ridge"]["groups"]
    assert series.groups["smoker=yes"]["regret"][-1] == final["smoker=yes"]["regret"]
    assert series.groups["all"]["count"][-1] == 1338
    written = write_report(records, tmp_path / "out", title="demo")
    png = written["regret-ridge"].read_bytes()
    width, height = png_size(png)
    assert width >= 1000 and height >= 300
    page = written["report.html"].read_text()
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert base64.b64decode(images[0]) == png
    # self-contained: nothing is fetched from elsewhere
    assert not re.search(r"(src|href)=['\"](?!data:)", page)
    assert "smoker=yes" in page and "<h2>model ridge" in page


def test_bandit_report_shows_reward_regret_and_off_policy_estimates(tmp_path, uniform_bandit):
    config = parse_config({"models": {"offers": {"learner": "uniform-test", "n_actions": 3}}})
    rng = np.random.default_rng(1)
    events = []
    for t in range(400):
        mu = rng.random(3)
        events.append(orjson.dumps({"id": f"d{t}", "model": "offers", "kind": "decide", "expected_rewards": mu.tolist()}))
        events.append(orjson.dumps({"id": f"f{t}", "model": "offers", "kind": "feedback", "ref": f"d{t}", "reward": float(rng.random())}))
    records = parse_metrics_log(record_run(config, MemorySource(events), every=100))
    s = model_series(records)["offers"]
    assert s.task == "bandit" and s.rounds[-1] == 400
    # logged uniformly, the uniform policy's IPS weight is 1: its estimate is the observed mean reward
    np.testing.assert_allclose(s.values["uniform.ips"], s.values["mean_reward"], rtol=0, atol=1e-12)
    assert np.all(s.values["best_constant.snips_low"] <= s.values["best_constant.snips"])
    assert s.values["pseudo_regret"][-1] > 0
    written = write_report(records, tmp_path)
    assert png_size(written["bandit-offers"].read_bytes())[0] >= 1000
    assert "uniform SNIPS [95%]" in written["report.html"].read_text()


def test_classification_and_learner_gauges_are_drawn(tmp_path):
    def rec(t, n, acc):
        return metrics_log_record(
            {
                "c": {
                    "task": "classification",
                    "learner": "test",
                    "classification": {
                        "count": n,
                        "accuracy": acc,
                        "mean_per_class_accuracy": acc,
                        "per_class": {
                            "a": {"count": n // 2, "correct": 0, "accuracy": acc},
                            "b": {"count": n // 2, "correct": 0, "accuracy": 1 - acc},
                        },
                        "per_group": {
                            "all": {"count": n, "correct": 0, "accuracy": acc},
                            "g=x": {"count": n, "correct": 0, "accuracy": acc / 2},
                        },
                    },
                    "learner_gauges": {"classes_seen": 2.0},
                    "learner_group_gauges": {"rows": [n / 2, n]},
                }
            },
            t,
        )

    records = parse_metrics_log([rec(1.0, 10, 0.5), rec(2.0, 20, 0.6), rec(3.0, 30, 0.7)])
    s = model_series(records)["c"]
    assert s.values["class.b"].tolist() == pytest.approx([0.5, 0.4, 0.3])
    assert s.values["learner_group.rows.1"].tolist() == [10, 20, 30]
    written = write_report(records, tmp_path)
    assert set(written) == {"accuracy-c", "learner-c", "report.html"}


def test_command_line_reads_a_log_replays_and_reports_errors(tmp_path, capsys):
    events = tmp_path / "events.jsonl"
    events.write_bytes(
        b"\n".join(
            orjson.dumps(
                {
                    "id": str(i),
                    "model": "m",
                    "kind": "observe",
                    "features": [float(i % 7)],
                    "attributes": {"seg": "a" if i % 2 else "b"},
                    "label": float(i % 5),
                }
            )
            for i in range(120)
        )
        + b"\n"
    )
    config = tmp_path / "replay.toml"
    config.write_text(
        '[models.m]\nlearner = "ridge"\nfeatures = ["x"]\n[[models.m.groups]]\nname = "seg"\nfield = "seg"\nvalues = ["a", "b"]\n'
    )
    out = tmp_path / "replayed"
    assert regretflow_main(["report", "--replay", str(events), "--config", str(config), "--out", str(out), "--every", "30"]) == 0
    assert (out / "regret-m.png").exists() and (out / "report.html").exists()
    assert len(read_metrics_log(out / "metrics.jsonl")) == 5
    again = tmp_path / "again"
    assert regretflow_main(["report", str(out / "metrics.jsonl"), "--out", str(again)]) == 0
    assert (again / "regret-m.png").read_bytes()[:8] == PNG_MAGIC
    assert regretflow_main(["report", "--out", str(again)]) == 2
    assert regretflow_main(["report", str(tmp_path / "nope.jsonl")]) == 1
    assert regretflow_main(["report", "--replay", str(events)]) == 2
    assert "needs --config" in capsys.readouterr().err
