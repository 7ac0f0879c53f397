"""SIGTERM and SIGINT during a run drain and checkpoint; after the run the process's own handlers are back.

Found when a test process that had run an engine in-process ignored SIGTERM: the engine's handler
stayed installed and only set ``stop_requested`` on an engine long finished.
"""

import signal

import pytest

from regretflow.connectors.memory import MemorySink, MemorySource
from regretflow.engine.cli import daemon
from regretflow.engine.config import load_config, parse_config
from regretflow.engine.runtime.loop import Engine
from tests.conftest import regression_config_dict, regression_stream

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def marker(signum, frame):  # a handler of the process's own, to tell apart from the engine's
    raise AssertionError("not called")


@pytest.fixture
def own_handlers():
    """The process's own handlers for the test (``marker``), and pytest's put back after it."""
    before = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig in SIGNALS:
        signal.signal(sig, marker)
    yield
    for sig, handler in before.items():
        signal.signal(sig, handler)


def handlers():
    return tuple(signal.getsignal(sig) for sig in SIGNALS)


def test_engine_run_installs_its_handlers_for_the_run_and_puts_the_previous_ones_back(own_handlers):
    raw = regression_config_dict()
    raw["metrics"] = {"enabled": False}
    engine = Engine(parse_config(raw), MemorySource(regression_stream(100)), MemorySink(), MemorySink(), serve_metrics=False)
    during = []
    engine.progress = lambda e: during.append(handlers())
    engine.run(install_signals=True)
    assert during and all(seen == (engine._on_signal, engine._on_signal) for seen in during)
    assert handlers() == (marker, marker)


def test_the_run_command_puts_the_previous_handlers_back(tmp_path, own_handlers):
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(regression_stream(50)) + b"\n")
    config_path = tmp_path / "run.toml"
    config_path.write_text(
        f"""
[source]
type = "jsonl"
path = "{events}"
[answers]
type = "null"
[dead_letters]
type = "null"
[metrics]
enabled = false
[models.m]
learner = "ridge"
features = ["x0", "x1", "x2"]
"""
    )
    assert daemon.run_daemon(load_config(config_path), summary="none") == 0
    assert handlers() == (marker, marker)
