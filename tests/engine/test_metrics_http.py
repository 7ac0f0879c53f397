"""The metrics endpoint of a running demo: promtool finds nothing wrong; health and readiness answer."""

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import REGRETFLOW

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture
def running_demo():
    port = free_port()
    proc = subprocess.Popen(
        [REGRETFLOW, "demo", "--passes", "2", "--rate", "400", "--port", str(port), "--no-progress", "--linger", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if get(base + "/readyz")[0] == 200:
                break
        except OSError:
            pass
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("demo never became ready: " + proc.stderr.read().decode()[-2000:])
    yield proc, base
    proc.terminate()
    proc.wait(timeout=30)


def test_demo_metrics_pass_promtool_while_it_runs(running_demo):
    assert os.path.exists(PROMTOOL), "promtool is required (Debian package prometheus; .ci/run installs it)"
    proc, base = running_demo
    time.sleep(1.5)
    assert proc.poll() is None, "the demo should still be streaming"
    status, body = get(base + "/metrics")
    assert status == 200
    text = body.decode()
    assert 'regretflow_regret{group="smoker=yes",model="ridge"}' in text
    assert 'regretflow_events_total{kind="observe",model="ridge"}' in text
    check = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check.stdout + check.stderr


def test_health_and_readiness_endpoints(running_demo):
    _, base = running_demo
    assert get(base + "/healthz") == (200, b"ok\n")
    assert get(base + "/readyz") == (200, b"ready\n")
    assert get(base + "/nope")[0] == 404


def test_sigterm_finishes_and_exits_zero(running_demo):
    proc, _ = running_demo
    proc.terminate()
    assert proc.wait(timeout=30) == 0
    out = proc.stdout.read()
    assert b"groupwise regret" in out and b"\n  ridge " in out  # the final table of the regression family
