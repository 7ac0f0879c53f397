"""kill -9 at random points, restart each time: the end state equals one uninterrupted run, bit for bit."""

import os
import signal
import subprocess
import time

import numpy as np
import orjson

from regretflow.engine.runtime.checkpoint import latest_checkpoint
from tests.conftest import REGRETFLOW, flat, regression_stream

N_EVENTS = 30_000


def write_config(directory, name, checkpoint_every):
    cfg = directory / f"{name}.toml"
    cfg.write_text(f"""
[source]
type = "jsonl"
path = "events.jsonl"
[answers]
type = "jsonl"
path = "{name}-answers.jsonl"
[dead_letters]
type = "jsonl"
path = "{name}-dead.jsonl"
[runtime]
batch_size = 32
[checkpoint]
dir = "{name}-state"
every_events = {checkpoint_every}
every_seconds = 3600
[metrics]
enabled = false
[models.m]
learner = "ridge"
features = ["x0", "x1", "x2"]
params = {{ lam = 1.0, forgetting = 0.999 }}
[[models.m.groups]]
name = "segment"
field = "segment"
values = ["a", "b", "c"]
[models.m.joins]
ttl_events = 3
""")
    return cfg


def lines(path):
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_sigkill_at_random_points_then_resume_is_bit_identical(tmp_path):
    events = regression_stream(N_EVENTS, seed=21)
    # a few bad events and late feedbacks too: dead letters must replay the same way
    events[100:100] = [b"garbage", b'{"id": "x", "model": "m", "kind": "feedback", "ref": "nope", "label": 1}']
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(events) + b"\n")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    clean_cfg = write_config(tmp_path, "clean", checkpoint_every=1_000_000)
    subprocess.run([REGRETFLOW, "run", "--config", str(clean_cfg)], check=True, env=env, cwd=tmp_path, timeout=300)

    crash_cfg = write_config(tmp_path, "crash", checkpoint_every=997)
    answers = tmp_path / "crash-answers.jsonl"
    rng = np.random.default_rng(5)
    kills = 0
    targets = sorted(rng.integers(2_000, N_EVENTS - 2_000, size=6))
    for target in targets:
        proc = subprocess.Popen(
            [REGRETFLOW, "run", "--config", str(crash_cfg)], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 120
        while proc.poll() is None and lines(answers) < target and time.monotonic() < deadline:
            time.sleep(0.002)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
    assert kills >= 5, "the run finished before the kills: make the stream longer"
    subprocess.run([REGRETFLOW, "run", "--config", str(crash_cfg)], check=True, env=env, cwd=tmp_path, timeout=300)

    clean_state, _ = latest_checkpoint(tmp_path / "clean-state")
    crash_state, _ = latest_checkpoint(tmp_path / "crash-state")
    a, b = flat(clean_state["shards"]), flat(crash_state["shards"])
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            assert a[key].dtype == b[key].dtype and a[key].tobytes() == b[key].tobytes(), key
        else:
            assert a[key] == b[key], key
    assert clean_state["position"] == crash_state["position"]
    assert clean_state["events_seen"] == crash_state["events_seen"] == len(events)

    # answers are at-least-once: every clean answer is there, and replays repeat it exactly
    clean_answers = {orjson.loads(l)["id"]: l for l in (tmp_path / "clean-answers.jsonl").read_bytes().splitlines()}
    crash_lines = answers.read_bytes().splitlines()
    seen = {}
    for line in crash_lines:
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # the last line a killed writer left half-written
        assert line == clean_answers[record["id"]], record["id"]
        seen[record["id"]] = line
    assert seen.keys() == clean_answers.keys()
    assert len(crash_lines) > len(clean_answers), "no answer was replayed: the kills did not land mid-stream"
