"""A config that cannot work ends `regretflow run` with exit 2 before the source is opened.

Every bad config goes through the real command line, as `regretflow run --config F` and
as `regretflow run --check --config F`: exit 2, a message naming the key, no traceback,
and nothing the worker would write exists (answers, dead letters, checkpoints, metrics
log), nor did a Kafka source connect to its bootstrap address.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import pytest

from tests.conftest import REGRETFLOW, regression_stream

MODEL = '[models.m]\nlearner = "ridge"\nfeatures = ["x0", "x1", "x2"]\n'
GROUPWISE = (
    '[models.m]\nlearner = "groupwise"\nfeatures = ["x0", "x1", "x2"]\nparams = { mode = "mix" }\n'
    '[[models.m.groups]]\nname = "segment"\nfield = "segment"\nvalues = ["a", "b", "c"]\n'
)


def base(
    source: str = '[source]\ntype = "jsonl"\npath = "events.jsonl"\n',
    metrics: str = "port = 0\n",
    model: str = MODEL,
    runtime: str = "",
    checkpoint: str = 'dir = "state"\n',
) -> str:
    """A config that works, with one of its parts replaced by a case."""
    return (
        f'{source}[answers]\ntype = "jsonl"\npath = "out/answers.jsonl"\n'
        '[dead_letters]\ntype = "jsonl"\npath = "out/dead.jsonl"\n'
        f'[runtime]\n{runtime}[checkpoint]\n{checkpoint}[metrics]\nlog_path = "out/metrics.jsonl"\n{metrics}{model}'
    )


# (case id, config text, the key its message starts with, a word the message carries)
CASES = [
    ("unknown_param", base(model=MODEL + "params = { lamda = 1.0 }\n"), "models.m.params.lamda", "did you mean 'lam'?"),
    ("param_of_wrong_type", base(model=MODEL + 'params = { lam = "one" }\n'), "models.m.params.lam", "number"),
    ("param_out_of_range", base(model=MODEL + "params = { lam = -5 }\n"), "models.m.params.lam", "-5"),
    ("groupwise_mode_unknown", base(model=GROUPWISE), "models.m.params.mode", "mix"),
    ("shard_by_key_not_bool", base(model=MODEL + 'params = { shard_by_key = "yes" }\n'), "models.m.params.shard_by_key", "true or false"),
    ("unknown_learner", base(model='[models.m]\nlearner = "ridgee"\nfeatures = ["x0"]\n'), "models.m.learner", "ridge"),
    ("max_shards_zero", base(model=MODEL + "max_shards = 0\n"), "models.m.max_shards", ">= 1"),
    ("ttl_seconds_text", base(model=MODEL + '[models.m.joins]\nttl_seconds = "abc"\n'), "models.m.joins.ttl_seconds", "number"),
    (
        "edges_decreasing",
        base(model=MODEL + '[[models.m.groups]]\nfield = "age"\nedges = [60, 18]\n'),
        "models.m.groups[0].edges",
        "increasing",
    ),
    ("metrics_port_past_65535", base(metrics="port = 70000\n"), "metrics.port", "65535"),
    ("metrics_port_in_use", base(metrics="port = {busy_port}\n"), "metrics.port", "cannot listen"),
    ("metrics_host_not_here", base(metrics='host = "192.0.2.1"\nport = 9\n'), "metrics.host", "192.0.2.1"),
    (
        "metrics_log_path_number",
        base(metrics="log_path = 5\n").replace('log_path = "out/metrics.jsonl"\n', ""),
        "metrics.log_path",
        "string",
    ),
    (
        "metrics_log_path_under_a_file",
        base(metrics="port = 0\n").replace('"out/metrics.jsonl"', '"events.jsonl/metrics.jsonl"'),
        "metrics.log_path",
        "not a directory",
    ),
    ("source_file_missing", base(source='[source]\ntype = "jsonl"\npath = "nowhere.jsonl"\n'), "source.path", "does not exist"),
    (
        "source_follow_not_bool",
        base(source='[source]\ntype = "jsonl"\npath = "events.jsonl"\nfollow = "yes"\n'),
        "source.follow",
        "true or false",
    ),
    ("checkpoint_dir_is_a_file", base(checkpoint='dir = "events.jsonl"\n'), "checkpoint.dir", "not a directory"),
    ("checkpoint_dir_not_writable", base(checkpoint='dir = "/proc/regretflow-state"\n'), "checkpoint.dir", "cannot be created"),
    ("checkpoint_keep_zero", base(checkpoint='dir = "state"\nkeep = 0\n'), "checkpoint.keep", ">= 1"),
    ("max_event_bytes_huge", base(runtime="max_event_bytes = 99999999999999999\n"), "runtime.max_event_bytes", "16,777,216"),
    ("max_abs_value_inf", base(runtime="max_abs_value = inf\n"), "runtime.max_abs_value", "finite"),
    ("batch_size_bool", base(runtime="batch_size = true\n"), "runtime.batch_size", "integer"),
    ("unknown_section_key", base(runtime="batch_sise = 10\n"), "runtime.batch_sise", "batch_size"),
    (
        "kafka_option_typo",
        base(source='[source]\ntype = "kafka"\nbootstrap_servers = "{sentinel}"\ntopics = ["t"]\nbootstrap_server = "x"\n'),
        "source.bootstrap_server",
        "unknown Kafka option",
    ),
    (
        "kafka_sasl_without_user",
        base(
            source='[source]\ntype = "kafka"\nbootstrap_servers = "{sentinel}"\ntopics = ["t"]\n'
            'security_protocol = "SASL_SSL"\nsasl_mechanism = "PLAIN"\n'
        ),
        "source.sasl_username",
        "SASL",
    ),
    (
        "kafka_source_and_bad_learner",
        base(
            source='[source]\ntype = "kafka"\nbootstrap_servers = "{sentinel}"\ntopics = ["t"]\n',
            model=MODEL + "params = { lamda = 1.0 }\n",
        ),
        "models.m.params.lamda",
        "lam",
    ),
]


@pytest.fixture
def busy_port():
    """A port something else already listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


class Sentinel:
    """A TCP listener standing where a Kafka broker would be: counts the connections it is offered."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self.connected = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            self.connected.set()
            conn.close()

    def close(self):
        self._stop = True
        self._thread.join()
        self.sock.close()


@pytest.fixture
def sentinel():
    s = Sentinel()
    yield s
    s.close()


def write_case(tmp_path, text: str, **fill) -> str:
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(regression_stream(20)) + b"\n")
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text.replace("{busy_port}", str(fill.get("busy_port", ""))).replace("{sentinel}", fill.get("sentinel", "")))
    return str(cfg)


def nothing_written(tmp_path) -> list[str]:
    return [name for name in ("out", "state") if (tmp_path / name).exists()]


@pytest.mark.parametrize("mode", ["run", "check"])
@pytest.mark.parametrize("case,text,key,word", CASES, ids=[c[0] for c in CASES])
def test_bad_config_exits_2_naming_the_key_before_the_source_opens(tmp_path, busy_port, sentinel, mode, case, text, key, word):
    cfg = write_case(tmp_path, text, busy_port=busy_port, sentinel=sentinel.address)
    argv = [REGRETFLOW, "run", *(["--check"] if mode == "check" else []), "--config", cfg]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 2, (out.returncode, out.stderr)
    lines = out.stderr.splitlines()
    assert lines and all(line.startswith("regretflow: config error: ") for line in lines), out.stderr
    ours = [line for line in lines if line.startswith(f"regretflow: config error: {key}:")]
    assert ours and word in ours[0], out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
    assert nothing_written(tmp_path) == [], "the worker started writing before the config was checked"
    assert sentinel.connections == 0, "the Kafka source was contacted before the config was checked"


def test_all_problems_are_reported_at_once_one_per_line(tmp_path, busy_port):
    text = base(
        metrics="port = 70000\nlog_path = 5\n",
        runtime="max_event_bytes = 99999999999999999\n",
        model=MODEL + 'params = { lamda = 1.0 }\n[models.m.joins]\nttl_seconds = "abc"\n',
    ).replace('log_path = "out/metrics.jsonl"\n', "")
    out = subprocess.run([REGRETFLOW, "run", "--config", write_case(tmp_path, text)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    keys = sorted(line.removeprefix("regretflow: config error: ").split(":")[0] for line in out.stderr.splitlines())
    assert keys == ["metrics.log_path", "metrics.port", "models.m.joins.ttl_seconds", "models.m.params.lamda", "runtime.max_event_bytes"]


def test_check_of_a_good_config_says_ok_in_one_line_and_writes_nothing(tmp_path):
    out = subprocess.run(
        [REGRETFLOW, "run", "--check", "--config", write_case(tmp_path, base())], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [out.stdout.strip()] and out.stdout.startswith("config OK: 1 model m (ridge); source jsonl")
    assert nothing_written(tmp_path) == []


def test_the_same_good_config_runs(tmp_path):
    """The control for the cases above: with nothing wrong, the same config answers every event."""
    cfg = write_case(tmp_path, base())
    out = subprocess.run([REGRETFLOW, "run", "--config", cfg], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "out" / "answers.jsonl").read_bytes().count(b"\n") > 0 and (tmp_path / "state").is_dir()


def test_a_good_kafka_config_does_contact_the_sentinel(tmp_path, sentinel):
    """The control for the Kafka cases: the sentinel does see a worker whose config is valid."""
    text = base(source=f'[source]\ntype = "kafka"\nbootstrap_servers = "{sentinel.address}"\ntopics = ["t"]\n')
    proc = subprocess.Popen(
        [REGRETFLOW, "run", "--config", write_case(tmp_path, text)], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        assert sentinel.connected.wait(timeout=60), "a valid Kafka config never reached its bootstrap address"
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_workers_all_ports_are_checked_before_any_worker_starts(tmp_path, sentinel):
    with socket.socket() as low, socket.socket() as high:
        low.bind(("127.0.0.1", 0))
        port = low.getsockname()[1]
        low.close()
        try:
            high.bind(("127.0.0.1", port + 1))  # worker 1 would serve on port + 1
        except OSError:
            pytest.fail(f"port {port + 1} was not free to occupy for the test")
        high.listen()
        text = base(
            source=f'[source]\ntype = "kafka"\nbootstrap_servers = "{sentinel.address}"\ntopics = ["t"]\n', metrics=f"port = {port}\n"
        )
        out = subprocess.run(
            [REGRETFLOW, "run", "--workers", "2", "--config", write_case(tmp_path, text)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
    assert out.returncode == 2 and f"metrics.port: cannot listen on 127.0.0.1:{port + 1}" in out.stderr, out.stderr
    assert sentinel.connections == 0 and nothing_written(tmp_path) == []


def test_missing_or_broken_config_file_exits_2(tmp_path):
    missing = subprocess.run([REGRETFLOW, "run", "--config", str(tmp_path / "none.toml")], capture_output=True, text=True, timeout=120)
    (tmp_path / "broken.toml").write_text("[models\n")
    broken = subprocess.run(
        [REGRETFLOW, "run", "--check", "--config", str(tmp_path / "broken.toml")], capture_output=True, text=True, timeout=120
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    assert broken.returncode == 2 and "not valid TOML" in broken.stderr and "Traceback" not in broken.stderr


def test_supervisor_stops_all_workers_when_one_exits_2_instead_of_restarting_it(tmp_path, sentinel):
    """The workers re-read the file the supervisor was given: broken after the supervisor read it, they exit 2."""
    kafka = f'[source]\ntype = "kafka"\nbootstrap_servers = "{sentinel.address}"\ntopics = ["t"]\n'
    good = write_case(tmp_path, base(source=kafka))
    bad = tmp_path / "broken-later.toml"
    bad.write_text(base(source=kafka, model=MODEL + "params = { lamda = 1.0 }\n"))
    script = (
        "import sys; from regretflow.engine.config import load_config; from regretflow.engine.cli.daemon import _supervise; "
        "sys.exit(_supervise(load_config(sys.argv[1]), 2, sys.argv[2]))"
    )
    out = subprocess.run([sys.executable, "-c", script, good, str(bad)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "event=worker_config_error" in out.stderr and "event=worker_died" not in out.stderr, out.stderr
    assert "models.m.params.lamda: unknown parameter" in out.stderr and sentinel.connections == 0


def test_a_port_taken_after_the_check_is_still_a_config_error(tmp_path, monkeypatch, busy_port):
    """The race between the start-up check and the metrics server's bind ends as exit 2 too, not as a traceback."""
    from regretflow.engine.cli import daemon
    from regretflow.engine.config import ConfigError, load_config

    config = load_config(write_case(tmp_path, base(metrics=f"port = {busy_port}\n")))
    monkeypatch.setattr(daemon, "check_config", lambda config, workers=1: None)  # the port was free when it looked
    with pytest.raises(ConfigError, match=f"metrics.port: cannot listen on 127.0.0.1:{busy_port}"):
        daemon.run_daemon(config)
