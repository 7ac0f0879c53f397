"""The image of deploy/Dockerfile, built and run with podman: what an operator does with it.

The base image is made here, without a registry, from Debian's archive
(deploy/container/build-base.sh); the Dockerfile is built as it is, given only that base
(``--build-arg BASE_IMAGE``). Then the container runs the demo behind a published port,
and the daemon against a tansu broker on the host's network, with a read-only root
filesystem and an arbitrary UID in group 0 (as OpenShift runs images): it answers,
serves /readyz and /metrics, reads numba's baked cache instead of compiling, checkpoints
and exits 0 on ``podman stop``, restores on the next start, and exits 2 on a bad config.

CI installs podman, runc and mmdebstrap (tests/install-services.sh runs
deploy/container/install-host.sh). Outside CI, without podman, these tests are skipped;
in CI a missing tool fails them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import orjson
import pytest

from regretflow.engine.runtime.checkpoint import latest_checkpoint
from tests.conftest import REPO
from tests.integration.kafka_broker import Broker, consume_all, free_port, produce

PODMAN = shutil.which("podman")
IMAGE = "localhost/regretflow:test"

pytestmark = [pytest.mark.container, pytest.mark.slow]
if PODMAN is None and not os.environ.get("CI"):
    pytestmark.append(pytest.mark.skip(reason="podman is not installed (bash deploy/container/install-host.sh installs it)"))


def podman(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([PODMAN or "podman", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if check and out.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


@pytest.fixture(scope="module")
def image() -> str:
    assert PODMAN, "podman is missing: CI must run deploy/container/install-host.sh (tests/install-services.sh does)"
    base = subprocess.run(["bash", str(REPO / "deploy" / "container" / "build-base.sh")], capture_output=True, text=True, timeout=1200)
    assert base.returncode == 0, base.stderr[-3000:]
    base_image = base.stdout.strip().splitlines()[-1]
    # the Dockerfile as it is, given only its base; host networking for pip, as in docs/container.md
    podman(
        "build",
        "--pull=never",
        "--format",
        "docker",
        "--network=host",
        "--build-arg",
        f"BASE_IMAGE={base_image}",
        "-f",
        "deploy/Dockerfile",
        "-t",
        IMAGE,
        ".",
        timeout=1800,
    )
    return IMAGE


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("broker") / "tansu.log")
    yield b
    b.stop()


@pytest.fixture
def names():
    """Unique container and volume names, removed after the test."""
    made: list[tuple[str, str]] = []

    def make(kind: str, prefix: str) -> str:
        name = f"regretflow-test-{prefix}-{uuid.uuid4().hex[:8]}"
        made.append((kind, name))
        return name

    yield make
    for kind, name in reversed(made):
        if kind == "container":
            podman("rm", "--force", "--volumes", "--time", "0", name, check=False)  # and its anonymous /var/lib/regretflow volume
        else:
            podman("volume", "rm", "--force", name, check=False)


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return 0, ""


def wait_for(url: str, container: str, want: str = "", timeout: float = 180) -> str:
    """The body of ``url`` once it answers 200 (and contains ``want``); fails with the container's log if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = http_get(url)
        if status == 200 and want in body:
            return body
        if podman("inspect", "--format", "{{.State.Running}}", container).stdout.strip() != "true":
            break
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered 200 with {want!r}; container log:\n{logs(container)[-4000:]}")


def wait_for_log(container: str, text: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = logs(container)
        if text in log:
            return log
        time.sleep(0.3)
    raise AssertionError(f"{text!r} never logged:\n{logs(container)[-4000:]}")


def logs(container: str) -> str:
    out = podman("logs", container, check=False)
    return out.stdout + out.stderr


def metric(port: int, name: str) -> float:
    _, text = http_get(f"http://127.0.0.1:{port}/metrics")
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith((name + " ", name + "{")))


def test_demo_is_reachable_through_a_published_port(image, names):
    port = free_port()
    demo = names("container", "demo")
    podman(
        "run",
        "--detach",
        "--name",
        demo,
        "--publish",
        f"127.0.0.1:{port}:9108",
        image,
        "demo",
        "--host",
        "0.0.0.0",
        "--passes",
        "1",
        "--rate",
        "500",
        "--linger",
        "300",
        "--no-progress",
    )
    # the live page is routed once the demo's warm-up is done, /metrics from the start
    assert "<html" in wait_for(f"http://127.0.0.1:{port}/", demo).lower()
    body = wait_for(f"http://127.0.0.1:{port}/metrics", demo, want="regretflow_events_total")
    assert "regretflow_regret" in body


def daemon_config(broker: Broker, topic: str, port: int) -> str:
    return f"""
[source]
type = "kafka"
bootstrap_servers = "{broker.bootstrap}"
topics = ["{topic}"]
group_id = "{topic}"
session_timeout_ms = 2000
heartbeat_interval_ms = 500
[answers]
type = "kafka"
topic = "{topic}-answers"
[dead_letters]
type = "kafka"
topic = "{topic}-dead"
[runtime]
batch_size = 64
batch_timeout_ms = 20
[checkpoint]
dir = "/var/lib/regretflow/state"
every_events = 1000000
every_seconds = 3600
[metrics]
host = "127.0.0.1"
port = {port}
[models.m]
learner = "ridge"
features = ["x0", "x1", "x2"]
params = {{ lam = 1.0 }}
"""


def stream(n: int, start: int = 0) -> tuple[list[tuple[bytes, bytes]], int]:
    """n events for model m: observations, and every fifth a predict request (returned: the events and the number of requests)."""
    events, requests = [], 0
    for i in range(start, start + n):
        x = [((i * 7) % 11) / 11.0, ((i * 3) % 5) / 5.0, 1.0]
        if i % 5 == 4:
            events.append({"id": f"p{i}", "model": "m", "kind": "predict", "features": x})
            requests += 1
        else:
            events.append({"id": f"o{i}", "model": "m", "kind": "observe", "features": x, "label": 2.0 * x[0] - x[1]})
    return [(b"m", orjson.dumps(e)) for e in events], requests


def volume_path(volume: str) -> Path:
    return Path(podman("volume", "inspect", "--format", "{{.Mountpoint}}", volume).stdout.strip())


def test_daemon_on_tansu_read_only_arbitrary_uid_answers_stops_with_a_checkpoint_and_restores(image, broker, names, tmp_path):
    topic = broker.create_topic(2, "container")
    for suffix in ("-answers", "-dead"):
        broker.create_topic(1, name=topic + suffix)
    port = free_port()
    config = tmp_path / "regretflow.toml"
    config.write_text(daemon_config(broker, topic, port))
    config.chmod(0o644)
    state = names("volume", "state")
    podman("volume", "create", state)
    daemon = names("container", "daemon")
    # OpenShift style: an arbitrary UID in group 0, nothing writable but the state volume
    # (and the tmpfs podman mounts on /tmp); NUMBA_DEBUG_CACHE logs every cache load and save
    podman(
        "run",
        "--detach",
        "--name",
        daemon,
        "--network",
        "host",
        "--read-only",
        "--user",
        "1000770000:0",
        "--env",
        "NUMBA_DEBUG_CACHE=1",
        "--volume",
        f"{config}:/etc/regretflow/regretflow.toml:ro",
        "--volume",
        f"{state}:/var/lib/regretflow",
        image,
    )
    wait_for(f"http://127.0.0.1:{port}/readyz", daemon)

    events, requests = stream(300)
    produce(broker.bootstrap, topic, events)
    deadline = time.monotonic() + 120
    while metric(port, "regretflow_events_total") < len(events) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert metric(port, "regretflow_events_total") == len(events), logs(daemon)[-4000:]
    answers = consume_all(broker.bootstrap, topic + "-answers", expect=len(events))
    ids = [orjson.loads(a.value())["id"] for a in answers]
    assert sorted(ids) == sorted(orjson.loads(value)["id"] for _, value in events), "every event is answered once"
    predictions = [orjson.loads(a.value()) for a in answers if orjson.loads(a.value())["id"].startswith("p")]
    assert len(predictions) == requests

    log = logs(daemon)
    assert "[cache] data loaded from" in log, "numba did not read the baked cache"
    compiled = [line for line in log.splitlines() if "[cache] data saved to" in line or "[cache] index saved to" in line]
    assert not compiled, f"numba compiled at start-up instead of using the baked cache: {compiled[:5]}"

    podman("stop", "--time", "60", daemon, timeout=120)
    assert podman("inspect", "--format", "{{.State.ExitCode}}", daemon).stdout.strip() == "0", logs(daemon)[-4000:]
    checkpoints = [latest_checkpoint(p) for p in sorted((volume_path(state) / "state").iterdir()) if p.is_dir()]
    assert checkpoints and all(checkpoints), "podman stop must leave a checkpoint of every partition"
    assert sum(found[0]["events_seen"] for found in checkpoints) == len(events)

    podman("start", daemon)
    wait_for(f"http://127.0.0.1:{port}/readyz", daemon)
    # partitions are restored when the group assigns them, after the server is up
    wait_for_log(daemon, "event=restore status=ok")
    more, _ = stream(50, start=300)
    produce(broker.bootstrap, topic, more)
    deadline = time.monotonic() + 120
    while metric(port, "regretflow_events_total") < len(more) and time.monotonic() < deadline:
        time.sleep(0.2)
    podman("stop", "--time", "60", daemon, timeout=120)
    assert podman("inspect", "--format", "{{.State.ExitCode}}", daemon).stdout.strip() == "0", logs(daemon)[-4000:]
    checkpoints = [latest_checkpoint(p) for p in sorted((volume_path(state) / "state").iterdir()) if p.is_dir()]
    assert sum(found[0]["events_seen"] for found in checkpoints) == len(events) + len(more), "the restored run went on from the checkpoint"


def test_a_bad_config_exits_2_with_its_message(image, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[models.m]\nlearner = "nope"\nfeatures = ["x"]\n')
    bad.chmod(0o644)
    out = podman("run", "--rm", "--read-only", "--volume", f"{bad}:/etc/regretflow/regretflow.toml:ro", image, check=False, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "models.m.learner" in out.stderr
