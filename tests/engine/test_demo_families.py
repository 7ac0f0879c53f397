"""``regretflow demo``: every family in one interleaved run, a table per family; and the feedback around it.

The runs are real (bundled data and simulators through the engine); only
:class:`Progress` is fed hand-made times, since its rate window is what is tested.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from regretflow.connectors.memory import MemorySink
from regretflow.engine.cli import main as cli
from regretflow.engine.cli.demo import FAMILIES, ROUNDS_PER_PASS, Progress, build_demo, demo_config, run_demo
from regretflow.engine.runtime.loop import Engine
from tests.conftest import REGRETFLOW, REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_runs_one_model_of_every_family_and_ends_with_a_table_per_family(capsys):
    summary = run_demo(passes=1, rate=0, port=0, progress=False, seed=0)
    out = capsys.readouterr().out
    for family in FAMILIES.values():
        assert family["title"] in out
        for model in family["models"]:
            assert f"\n  {model} " in out, f"no row for {model}"
    assert summary["ridge"]["groups"]["all"]["count"] == 1338
    assert summary["groupwise"]["task"] == "regression" and summary["groupwise"]["learner"] == "groupwise"
    for model in ("segment-fastcb", "segment-linucb"):
        bandit = summary[model]["bandit"]
        assert bandit["count"] == ROUNDS_PER_PASS["neural-bandit"] and bandit["pseudo_count"] == bandit["count"]
        assert bandit["uniform"]["snips"] > 0 and "greedy" in bandit  # off-policy estimates from logged propensities
    assert summary["segment-fastcb"]["learner"] == "neural-fastcb" and summary["segment-linucb"]["learner"] == "linucb-disjoint"
    assert summary["digits-ridge"]["classification"]["count"] == summary["digits-ridge-pfg"]["classification"]["count"] > 200
    assert summary["digits-ridge-pfg"]["learner_gauges"]["analytic_generator_refreshes"] > 0
    assert summary["digits-ridge"]["learner_gauges"]["analytic_generator_refreshes"] == 0
    assert summary["ads"]["bandit"]["count"] == ROUNDS_PER_PASS["dynamical-bandit"]
    assert summary["adult-lending"]["fair"]["rounds"] == ROUNDS_PER_PASS["fair-onesided"]
    assert summary["adult-lending"]["fair"]["audits"] == ROUNDS_PER_PASS["fair-onesided"]  # the auditor panel judged every round


def test_family_option_keeps_one_family(capsys):
    summary = run_demo(passes=1, rate=0, port=0, progress=False, families=["dynamical-bandit"])
    assert set(summary) == {"ads"}
    out = capsys.readouterr().out
    assert FAMILIES["dynamical-bandit"]["title"] in out and FAMILIES["groupwise"]["title"] not in out


def test_an_unknown_family_is_refused_with_the_known_ones(capsys):
    assert cli.main(["demo", "--family", "kalman", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "kalman" in err and "neural-bandit" in err


@pytest.mark.parametrize("rate", [0, 3000])
def test_families_progress_together(rate):
    """At every batch, each lane (streams and simulator loops) has done about the same share of its work, paced or not."""
    config = demo_config(metrics=False, families=["groupwise", "dynamical-bandit", "analytic-ridge"], passes=1)
    source, sink, _ = build_demo(config, passes=1, seed=0, rate=rate)
    spreads = []

    def watch(engine):
        done = source.progress()
        if not source.exhausted():
            spreads.append(max(done.values()) - min(done.values()))

    engine = Engine(config, source, sink, MemorySink(), serve_metrics=False, progress=watch)
    engine.run()
    assert len(spreads) > 100
    # one simulator round and 16 digits rows (the analytic ridge's micro-batch) are the units of release
    assert max(spreads) <= 16 / 298 + 1e-9, max(spreads)
    assert all(v == 1.0 for v in source.progress().values())


def test_progress_rate_is_measured_over_a_window_not_the_first_batch():
    bar = Progress(10_000, stream=io.StringIO(), window=5.0)
    assert bar.rate(100.0, 0) is None
    assert bar.rate(100.01, 64) is None  # one fast batch claims nothing
    assert bar.rate(102.0, 1064) == pytest.approx(532.0)
    for k in range(3, 20):  # later, only the last five seconds count
        bar.rate(100.0 + k, 1064 + (k - 2) * 100)
    assert bar.rate(120.0, 1064 + 18 * 100) == pytest.approx(100.0, rel=0.05)


def test_readyz_answers_200_while_the_demo_lingers():
    port = free_port()
    proc = subprocess.Popen(
        [
            REGRETFLOW,
            "demo",
            "--family",
            "dynamical-bandit",
            "--passes",
            "1",
            "--rate",
            "0",
            "--port",
            str(port),
            "--no-progress",
            "--linger",
            "30",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stderr:
            if "more seconds" in line:  # the stream has ended: it is lingering now
                break
        assert proc.poll() is None
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            assert r.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/live.json", timeout=5) as r:
            data = orjson.loads(r.read())
        assert data["models"]["ads"]["panels"][0]["series"]["cumulative reward"][-1] > 0
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def _simulator_config(tmp_path, answers: str = "null") -> str:
    text = (REPO / "deploy/examples/dynamical_bandit.toml").read_text()
    text = text.replace("rounds = 20000", "rounds = 300").replace('dir = "state-ads"', f'dir = "{tmp_path / "state"}"')
    text = text.replace("port = 9108", "port = 0").replace('[answers]\ntype = "null"', f'[answers]\ntype = "{answers}"')
    path = tmp_path / "ads.toml"
    path.write_text(text)
    return str(path)


def test_run_ends_with_the_demo_summary_table_and_as_json(tmp_path):
    config = _simulator_config(tmp_path)
    table = subprocess.run([REGRETFLOW, "--log-level", "WARNING", "run", "--config", config], capture_output=True, text=True, timeout=120)
    assert table.returncode == 0, table.stderr
    assert "600 valid" in table.stdout and "\n  ads " in table.stdout and "pseudo-regret" in table.stdout
    (tmp_path / "again").mkdir()
    as_json = subprocess.run(
        [REGRETFLOW, "--log-level", "WARNING", "run", "--config", _simulator_config(tmp_path / "again"), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert as_json.returncode == 0, as_json.stderr
    summary = orjson.loads(as_json.stdout)
    assert summary["ads"]["bandit"]["count"] == 300 and summary["_stream"]["valid"] == 600


def test_run_keeps_stdout_for_answers_when_they_go_there(tmp_path):
    config = _simulator_config(tmp_path, answers="stdout")
    done = subprocess.run([REGRETFLOW, "--log-level", "WARNING", "run", "--config", config], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    answers = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert len(answers) == 300 and all(a["kind"] == "decide" for a in answers)
    assert b"\n  ads " in done.stderr


def test_a_cold_kernel_cache_is_announced_with_its_duration_and_a_warm_one_is_not(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    command = [
        REGRETFLOW,
        "--log-level",
        "WARNING",
        "demo",
        "--family",
        "groupwise",
        "--passes",
        "1",
        "--rate",
        "0",
        "--port",
        "0",
        "--no-progress",
    ]
    cold = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert cold.returncode == 0, cold.stderr
    assert "compiling kernels (first run only)…" in cold.stderr
    assert "kernels compiled in " in cold.stderr
    warm = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert warm.returncode == 0 and "compiling kernels" not in warm.stderr


def test_sigterm_while_the_kernels_compile_exits_0_after_start_up(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}  # a cold cache: start-up takes seconds
    proc = subprocess.Popen(
        [REGRETFLOW, "run", "--config", _simulator_config(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        first = proc.stderr.readline()
        assert "compiling kernels (first run only)" in first, first
        proc.terminate()  # before the engine has installed its own handlers
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "action=stop-after-start-up" in err and "0 events" in out


def test_unknown_paths_still_answer_404_with_the_routes():
    port = free_port()
    config = demo_config(port=port, families=["groupwise"])
    source, sink, _ = build_demo(config, passes=1, seed=0, rate=0)
    engine = Engine(config, source, sink, MemorySink())
    try:
        from regretflow.engine.observability.live import LiveRecorder

        LiveRecorder(engine).serve(engine.server)
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/nothing", timeout=5)
        assert missing.value.code == 404 and b"/live.json" in missing.value.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            page = r.read()
        assert r.headers["Content-Type"].startswith("text/html") and b'<script src="live.js">' in page
    finally:
        engine.close()


def test_run_serves_the_live_page_and_prints_its_summary_after_sigterm(tmp_path):
    port = free_port()
    config = _simulator_config(tmp_path)
    text = Path(config).read_text().replace("rounds = 300", "rounds = 1000000").replace("port = 0", f"port = {port}")
    Path(config).write_text(text)
    proc = subprocess.Popen(
        [REGRETFLOW, "--log-level", "WARNING", "run", "--config", config], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        data = None
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/live.json", timeout=2) as r:
                    data = orjson.loads(r.read())
                if "ads" in data["models"] and len(data["t"]) >= 2:
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
        assert data is not None and "ads" in data["models"], data
        rewards = data["models"]["ads"]["panels"][0]["series"]["cumulative reward"]
        assert len(rewards) == len(data["t"]) and rewards[-1] > 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
            assert b"live.js" in r.read()
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "\n  ads " in out and "pseudo-regret" in out
