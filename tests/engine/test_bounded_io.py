"""Inputs and outputs are bounded: long lines, dead-letter raw, end of file, report strings."""

from __future__ import annotations

import io
import tracemalloc

import orjson
import pytest

from regretflow.connectors import jsonl as jsonl_module
from regretflow.connectors.jsonl import JsonlSource
from regretflow.connectors.memory import MemorySink, MemorySource
from regretflow.connectors.stdio import StdinSource
from regretflow.engine.config import parse_config
from regretflow.engine.runtime.loop import DEAD_RAW_BYTES, Engine
from tests.conftest import regression_config_dict

EVENT = orjson.dumps({"id": "ok", "model": "m", "kind": "observe", "features": [1.0, 2.0, 3.0], "label": 1.0})
HUGE = 32 * 1024 * 1024  # a 32 MiB line against a 1 KiB max_event_bytes


def _config(**runtime):
    return parse_config(regression_config_dict(runtime={"max_event_bytes": 1024, **runtime}))


def test_jsonl_source_never_holds_an_oversized_line_and_keeps_positions_exact(tmp_path):
    path = tmp_path / "events.jsonl"
    with open(path, "wb") as fh:
        fh.write(EVENT + b"\n")
        fh.write(b"x" * HUGE + b"\n")
        fh.write(EVENT + b"\n")
    src = JsonlSource(path, max_line_bytes=1024)
    tracemalloc.start()
    try:
        first = src.poll(10, 0.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert first == [EVENT, b"x" * 1025, EVENT]
    assert peak < 4 * 1024 * 1024, f"peak {peak} bytes while reading a {HUGE}-byte line"
    assert src.position() == {"offset": path.stat().st_size}
    src.seek({"offset": len(EVENT) + 1 + HUGE + 1})  # the resume position after the long line: the next event
    assert src.poll(10, 0.0) == [EVENT]


def test_engine_dead_letters_the_long_line_as_oversized_and_learns_the_next(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"y" * (5 * 1024 * 1024) + b"\n" + EVENT + b"\n")
    dead = MemorySink()
    engine = Engine(_config(), JsonlSource(path, max_line_bytes=1024), MemorySink(), dead, serve_metrics=False)
    engine.run()
    letters = [orjson.loads(r[1]) for r in dead.records]
    assert [d["reason"] for d in letters] == ["oversized"]
    assert len(letters[0]["raw"]) <= 1025
    assert engine.valid_events == 1


def test_following_source_waits_for_the_newline_of_a_long_line(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"z" * 10_000)
    src = JsonlSource(path, follow=True, poll_interval=0.001, max_line_bytes=100)
    assert src.poll(5, 0.0) == [] and src.position() == {"offset": 0}
    with open(path, "ab") as fh:
        fh.write(b"\n" + EVENT + b"\n")
    assert src.poll(5, 0.0) == [b"z" * 101, EVENT]
    assert src.position() == {"offset": 10_001 + len(EVENT) + 1}


def test_stdin_source_cuts_a_long_line_and_reads_on():
    stream = io.BytesIO(b"w" * HUGE + b"\n" + EVENT + b"\n")
    src = StdinSource(stream=stream, max_line_bytes=1024)
    got = []
    while not src.exhausted():
        got += src.poll(10, 1.0)
    assert got == [b"w" * 1025, EVENT]


def test_jsonl_source_at_end_of_file_waits_out_its_timeout_instead_of_spinning(tmp_path, monkeypatch):
    path = tmp_path / "events.jsonl"
    path.write_bytes(EVENT + b"\n")
    slept: list[float] = []
    monkeypatch.setattr(jsonl_module.time, "sleep", slept.append)
    src = JsonlSource(path)
    assert src.poll(10, 0.2) == [EVENT]
    assert slept == []  # records in hand: return at once
    # at the end of the file with nothing to return the poll waits (slept is recorded, not waited, so the
    # deadline never passes: the loop stops once the test has seen enough sleeping)
    calls = {"n": 0}

    def bounded_sleep(seconds):
        slept.append(seconds)
        calls["n"] += 1
        if calls["n"] >= 3:
            raise StopIteration

    monkeypatch.setattr(jsonl_module.time, "sleep", bounded_sleep)
    with pytest.raises(StopIteration):
        src.poll(10, 0.2)
    assert len(slept) == 3 and all(0 < s <= 0.2 for s in slept)


def test_replay_ends_even_when_the_config_says_not_to_stop_at_end(tmp_path, capsys):
    from regretflow.engine.cli.main import main

    log = tmp_path / "events.jsonl"
    log.write_bytes(EVENT + b"\n")
    config = tmp_path / "c.toml"
    config.write_text('[runtime]\nstop_at_end = false\n[models.m]\nlearner = "ridge"\nfeatures = ["a", "b", "c"]\n')
    assert main(["replay", str(log), "--config", str(config)]) == 0
    assert "replayed 1 events" in capsys.readouterr().out


@pytest.mark.parametrize("char", ["a", "é", "€", "😀"])
def test_dead_letter_raw_is_capped_in_bytes(char):
    payload = (char * (DEAD_RAW_BYTES + 10)).encode()
    config = parse_config(regression_config_dict(runtime={"max_event_bytes": 1_000_000}))
    dead = MemorySink()
    Engine(config, MemorySource([payload]), MemorySink(), dead, serve_metrics=False).run()
    raw = orjson.loads(dead.records[0][1])["raw"]
    assert DEAD_RAW_BYTES - 4 < len(raw.encode("utf-8")) <= DEAD_RAW_BYTES
    assert set(raw) == {char}  # a cut character is dropped, not replaced


def test_report_escapes_log_strings_and_never_parses_mathtext(tmp_path):
    pytest.importorskip("matplotlib")
    from regretflow.engine.observability.metrics_log import metrics_log_record, parse_metrics_log
    from regretflow.engine.observability.report import write_report

    def rec(t, n):
        return metrics_log_record(
            {
                "c<b>": {
                    "task": "classification",
                    "learner": "<script>alert(1)</script>",
                    "classification": {
                        "count": n,
                        "accuracy": 0.5,
                        "mean_per_class_accuracy": 0.5,
                        "per_class": {
                            "$\\frac{a}{$": {"count": n, "correct": 0, "accuracy": 0.5},
                            "$x^$": {"count": n, "correct": 0, "accuracy": 0.5},
                        },
                        "per_group": {
                            "all": {"count": n, "correct": 0, "accuracy": 0.5},
                            "g=$\\undefined$": {"count": n, "correct": 0, "accuracy": 0.5},
                        },
                    },
                }
            },
            t,
        )

    records = parse_metrics_log([rec(1.0, 10), rec(2.0, 20)])
    written = write_report(records, tmp_path)
    page = written["report.html"].read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page and "c&lt;b&gt;" in page
    assert written["accuracy-c<b>"].read_bytes()[:4] == b"\x89PNG"


def test_report_escapes_a_task_from_the_log(tmp_path):
    pytest.importorskip("matplotlib")
    from regretflow.engine.observability.metrics_log import metrics_log_record, parse_metrics_log
    from regretflow.engine.observability.report import _html, model_series

    records = parse_metrics_log([metrics_log_record({"m": {"task": "<img src=x onerror=alert(1)>", "learner": "l"}}, 1.0)])
    page = _html(records, model_series(records), {}, "t", "")
    assert "<img src=x" not in page


MARKER = "S3CRET-MARKER-5150"


@pytest.mark.parametrize("password", [5150, [MARKER], {"p": MARKER}])
def test_sasl_password_must_be_a_string_and_is_never_echoed(password):
    from regretflow.engine.config import ConfigError

    raw = regression_config_dict()
    raw["source"] = {
        "type": "kafka",
        "bootstrap_servers": "localhost:9092",
        "topics": ["events"],
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_username": "u",
        "sasl_password": password,
    }
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert "source.sasl_password: expected a string" in str(err.value)
    assert MARKER not in str(err.value) and "5150" not in str(err.value)


def test_a_valid_secret_is_not_echoed_by_other_config_errors():
    from regretflow.engine.config import ConfigError

    raw = regression_config_dict()
    raw["source"] = {
        "type": "kafka",
        "bootstrap_servers": "localhost:9092",
        "topics": ["events"],
        "backend": "nope",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_username": "u",
        "sasl_password": MARKER,
    }
    raw["answers"] = {"type": "kafka", "topic": 7}
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert "source.backend" in str(err.value) and MARKER not in str(err.value)
