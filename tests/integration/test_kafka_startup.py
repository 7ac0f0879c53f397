"""Start-up without a broker, with both Kafka backends, against a real broker started late.

The daemon's HTTP server answers before the broker exists: /healthz 200, /readyz 503
with the reason; the log says once per window that the broker is unreachable, with no
traceback; once tansu comes up on that address the daemon connects, consumes and
answers. With ``connect_timeout_seconds`` it gives up with exit status 3 and one line.
"""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from tests.conftest import REGRETFLOW
from tests.integration.kafka_broker import Broker, consume_all, free_port, produce
from tests.integration.test_kafka_daemon import metric

BACKENDS = ["kafka-python", "confluent"]


def config(directory: Path, bootstrap: str, port: int, backend: str, extra: str = "") -> Path:
    cfg = directory / f"{backend}.toml"
    cfg.write_text(f"""
[source]
type = "kafka"
backend = "{backend}"
bootstrap_servers = "{bootstrap}"
topics = ["events"]
group_id = "startup-{backend}"
session_timeout_ms = 2000
heartbeat_interval_ms = 500
request_timeout_ms = 5000
{extra}
[answers]
type = "kafka"
topic = "answers"
[dead_letters]
type = "kafka"
topic = "dead"
[runtime]
batch_size = 64
batch_timeout_ms = 50
stop_at_end = false
[metrics]
port = {port}
refresh_seconds = 0.2
[models.m]
learner = "ridge"
features = ["x0", "x1"]
""")
    return cfg


def http(port: int, path: str) -> tuple[int, str] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return None


def wait_for(condition, proc: subprocess.Popen, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.1)
    return False


def events(n: int) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(n):
        kind = "predict" if i % 2 else "observe"
        e = {"id": f"e{i}", "model": "m", "kind": kind, "features": [float(i % 7), 1.0]}
        if kind == "observe":
            e["label"] = float(i % 5)
        out.append((b"m", orjson.dumps(e)))
    return out


def start(cfg: Path, cwd: Path) -> tuple[subprocess.Popen, Path]:
    log = cwd / f"{cfg.stem}.log"
    proc = subprocess.Popen([REGRETFLOW, "run", "--config", str(cfg)], cwd=cwd, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    return proc, log


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_daemon_serves_health_while_the_broker_is_away_then_connects_and_answers(tmp_path, backend):
    broker_port, http_port = free_port(), free_port()
    bootstrap = f"127.0.0.1:{broker_port}"
    proc, log = start(config(tmp_path, bootstrap, http_port, backend), tmp_path)
    broker = None
    try:
        # before any broker: alive, not ready, and the reason names the broker
        reason = f"not ready: waiting for the Kafka broker at {bootstrap} (source"
        assert wait_for(lambda: reason in str(http(http_port, "/readyz")), proc), log.read_text()
        status, body = http(http_port, "/readyz")
        assert status == 503 and body.startswith(reason)
        assert http(http_port, "/healthz")[0] == 200
        assert wait_for(lambda: "event=broker_unreachable" in log.read_text(), proc), log.read_text()

        broker = Broker(tmp_path / "tansu.log", port=broker_port)
        produce(bootstrap, "events", events(40))
        assert wait_for(lambda: (http(http_port, "/readyz") or (0, ""))[0] == 200, proc, timeout=90), log.read_text()
        assert wait_for(lambda: (metric(http_port, "regretflow_events_total") or 0) >= 40, proc, timeout=90), log.read_text()
        answers = consume_all(bootstrap, "answers", expect=40)
        # every event answered (observe: its prequential prediction), through the Kafka sink that connected late too
        assert sorted(orjson.loads(m.value())["id"] for m in answers) == sorted(f"e{i}" for i in range(40))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        if broker is not None:
            broker.stop()
    text = log.read_text()
    assert "Traceback" not in text
    assert "event=broker_connected endpoint=source" in text
    # one warning per window, not one per attempt or per library retry
    assert 1 <= text.count("event=broker_unreachable") <= 3
    assert text.count("Connect to ipv4") <= 3 and text.count("Connection refused") <= 6


@pytest.mark.parametrize("backend", BACKENDS)
def test_past_connect_timeout_the_worker_exits_3_with_one_clear_line(tmp_path, backend):
    bootstrap = f"127.0.0.1:{free_port()}"
    proc, log = start(config(tmp_path, bootstrap, free_port(), backend, "connect_timeout_seconds = 3"), tmp_path)
    assert proc.wait(timeout=60) == 3
    text = log.read_text()
    assert "Traceback" not in text
    assert f"regretflow: error: the Kafka broker at {bootstrap} (source) stayed unreachable for 3 s (connect_timeout_seconds" in text


def test_sigterm_while_waiting_for_the_broker_exits_0(tmp_path):
    http_port = free_port()
    proc, log = start(config(tmp_path, f"127.0.0.1:{free_port()}", http_port, "confluent"), tmp_path)
    try:
        assert wait_for(lambda: "waiting for the Kafka broker" in str(http(http_port, "/readyz")), proc), log.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "event=stopped_before_connecting" in text and "Traceback" not in text


def test_a_mistyped_connect_timeout_is_a_config_error(tmp_path):
    cfg = config(tmp_path, "127.0.0.1:1", free_port(), "kafka-python", 'connect_timeout_seconds = "soon"')
    done = subprocess.run([REGRETFLOW, "run", "--check", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "source.connect_timeout_seconds: expected a positive number of seconds" in done.stderr + done.stdout
