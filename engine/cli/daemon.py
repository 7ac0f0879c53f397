"""``regretflow run``: build the configured source and sinks, run the engine until told to stop.

Start-up order: the config was validated whole when it was loaded (schema, endpoints,
every model's learner); :func:`run_daemon` then checks the host (metrics port, files,
checkpoint directory) and only after that opens the source, the sinks and the engine,
so a config problem ends the process (exit 2) before it joins a consumer group or
reports ready. SIGTERM or SIGINT: the batch in flight finishes, a checkpoint is
written, exit 0.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any

from regretflow.connectors.jsonl import JsonlSink, JsonlSource
from regretflow.connectors.kafka import KafkaSink, KafkaSource, OffsetResetError
from regretflow.connectors.memory import MemorySink
from regretflow.connectors.simulators.loop import ENVIRONMENTS, ClosedLoopSource, TeeSink
from regretflow.connectors.stdio import StdinSource, StreamSink
from regretflow.engine.config import Config, ConfigError, EndpointSpec, check_config
from regretflow.engine.errors import FatalError
from regretflow.engine.learner_factory import build_learner
from regretflow.engine.observability.live import LiveRecorder, announce_compile
from regretflow.engine.observability.summary_tables import family_tables
from regretflow.engine.runtime.loop import Engine, stop_signals_handled_by
from regretflow.engine.tasks import task_for
from regretflow.engine.tasks.fair import FairTask

if TYPE_CHECKING:
    import subprocess

    from regretflow.connectors import Sink
    from regretflow.connectors.jsonl import JsonlSource
    from regretflow.connectors.kafka import KafkaSource
    from regretflow.connectors.simulators.loop import ClosedLoopSource, FairnessEnv
    from regretflow.connectors.stdio import StdinSource
    from regretflow.engine.evaluation.fairness_lp import FairnessMonitor

log = logging.getLogger("regretflow")


def open_source(config: Config, spec: EndpointSpec) -> JsonlSource | StdinSource | ClosedLoopSource | KafkaSource:
    """The configured event source."""
    if spec.type == "jsonl":
        _only(spec, "source", {"path", "follow"})
        return JsonlSource(
            config.resolve(spec.options["path"]),
            follow=bool(spec.options.get("follow", False)),
            max_line_bytes=config.runtime.max_event_bytes,
        )
    if spec.type == "stdin":
        _only(spec, "source", set())
        return StdinSource(max_line_bytes=config.runtime.max_event_bytes)
    if spec.type == "simulator":
        options = dict(spec.options)
        name = options.pop("environment", None)
        if name not in ENVIRONMENTS:
            raise ConfigError(f"source.environment: {name!r} is not one of {', '.join(sorted(ENVIRONMENTS))}")
        rounds = options.pop("rounds", None)
        if rounds is not None and (isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1):
            raise ConfigError("source.rounds: expected a positive integer (omit it to run forever)")
        if options.get("model") not in config.models:
            raise ConfigError(f"source.model: {options.get('model')!r} is not a declared model")
        record = options.pop("record_path", None)
        if record is not None:
            record = str(config.resolve(record))
        lp_max_rounds = options.pop("lp_max_rounds", 100_000) if name == "fairness" else None
        horizon = options.get("horizon")
        if horizon is not None and (isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1):
            raise ConfigError("source.horizon: expected a positive integer (rounds in the simulator's schedule)")
        try:
            env = ENVIRONMENTS[name](**options)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"source: {exc}") from None
        if name == "fairness":
            # its schedule (who comes, which panel sits) is drawn once for its own horizon, so a run of any
            # length, or a restarted one, plays the same world
            horizon = env.sim.n_rounds
            if rounds is not None and rounds > horizon:
                raise ConfigError(f"source.rounds: the fairness schedule holds {horizon} rounds (raise source.horizon)")
            rounds = rounds if rounds is not None else horizon
            env.monitor = fairness_monitor(config, env, rounds, lp_max_rounds)
        return ClosedLoopSource(env, rounds=rounds, record_path=record)
    if spec.type == "kafka":
        try:
            return KafkaSource(spec.options, max_records=config.runtime.batch_size)
        except ValueError as exc:
            raise ConfigError(f"source.{exc}") from None
    raise ConfigError(f"source.type: {spec.type!r} is not available in this build")


def fairness_monitor(config: Config, env: FairnessEnv, rounds: int, lp_max_rounds: Any) -> FairnessMonitor:
    """The simulator-side monitor of the fair model the environment drives (its class, gamma, C schedule)."""
    # the comparator's linear program loads scipy: only a fairness simulator needs it
    from regretflow.engine.evaluation.fairness_lp import FairnessMonitor

    if isinstance(lp_max_rounds, bool) or not isinstance(lp_max_rounds, int) or lp_max_rounds < 0:
        raise ConfigError("source.lp_max_rounds: expected an integer >= 0 (0: never solve the fair-comparator LP)")
    spec = config.models[env.model]
    try:
        probe = build_learner(spec)  # the same class and schedules as the engine's learner (both seeded from the spec)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not isinstance(task_for(type(probe)), FairTask):
        raise ConfigError(f'source.environment = "fairness" drives a fair model; models.{env.model} is {spec.learner!r}')
    if probe.d_ != env.sim.n_features:
        raise ConfigError(f"models.{env.model}: its class has {probe.d_} features, the fairness simulator {env.sim.n_features}")
    return FairnessMonitor(
        env.sim,
        probe.W_,
        probe.b_,
        gamma=probe.gamma,
        fairness_weight=probe.fairness_weight_at,
        lp_max_rounds=lp_max_rounds,
        last_round=rounds,
    )


def open_sink(config: Config, spec: EndpointSpec, where: str) -> Sink:
    """The configured answer or dead-letter sink."""
    if spec.type == "jsonl":
        _only(spec, where, {"path", "fsync"})
        return JsonlSink(
            config.resolve(spec.options["path"]), fsync=bool(spec.options.get("fsync", True)), file_mode=config.runtime.file_mode
        )
    if spec.type in ("stdout", "stderr"):
        _only(spec, where, set())
        return StreamSink(sys.stdout.buffer if spec.type == "stdout" else sys.stderr.buffer)
    if spec.type == "null":
        return MemorySink(keep=False)
    if spec.type == "kafka":
        options = dict(spec.options)
        if config.source.type == "kafka":  # connection settings default to the source's
            for key in (
                "backend",
                "bootstrap_servers",
                "client_id",
                "security_protocol",
                "sasl_mechanism",
                "sasl_username",
                "sasl_password",
                "sasl_password_env",
                "ssl_cafile",
                "ssl_certfile",
                "ssl_keyfile",
                "connect_timeout_seconds",
            ):
                if key in config.source.options and key not in options:
                    options[key] = config.source.options[key]
        try:
            # per-record headers cost more than the rest of production; an Arrow message's
            # three headers (content-type among them) are paid once per batch of answers
            arrow_answers = where == "answers" and config.runtime.answer_format == "arrow"
            return KafkaSink(options, default_headers=where == "dead_letters" or arrow_answers)
        except ValueError as exc:
            raise ConfigError(f"{where}.{exc}") from None
    raise ConfigError(f"{where}.type: {spec.type!r} is not available in this build")


def _only(spec: EndpointSpec, where: str, allowed: set[str]) -> None:
    for key in spec.options:
        if key not in allowed:
            raise ConfigError(
                f"{where}.{key}: unknown key for type = {spec.type!r}; expected one of {', '.join(sorted(allowed)) or '(none)'}"
            )


def run_daemon(config: Config, workers: int = 1, config_path: str | None = None, summary: str = "table") -> int:
    """Run one worker in this process, or supervise ``workers`` worker processes.

    A worker serves the live page at ``/`` beside ``/metrics`` and ends by printing its
    summary (``summary``: ``"table"``, ``"json"`` or ``"none"``), to stdout unless a sink
    writes there.
    """
    if workers > 1:
        if config.source.type != "kafka":
            raise ConfigError('--workers > 1 needs source.type = "kafka" (workers share partitions through a consumer group)')
        check_config(config, workers)  # every worker's port, before any worker starts
        return _supervise(config, workers, config_path)
    check_config(config)
    source = open_source(config, config.source)
    answers = open_sink(config, config.answers, "answers")
    if config.source.type == "simulator":
        assert isinstance(source, ClosedLoopSource)  # what open_source builds for a simulator
        answers = TeeSink(source, answers)  # the simulator plays the engine's decisions
    dead = open_sink(config, config.dead_letters, "dead_letters")

    signalled = _SignalsDuringStart()  # a SIGTERM while the kernels compile ends the run cleanly, not with -15
    with signalled.installed():
        try:
            with announce_compile(config):
                engine = Engine(config, source, answers, dead)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            # the port was taken between check_config and the metrics server's bind: still a config problem (exit 2)
            raise ConfigError(f"metrics.port: cannot listen on {config.metrics.host}:{config.metrics.port} ({exc.strerror})") from None
        if engine.server is not None:
            env: Any = getattr(source, "env", None)  # a simulator's environment, whose monitor (if any) joins the live page
            monitor = getattr(env, "monitor", None)
            live = LiveRecorder(
                engine, monitors={env.model: monitor} if monitor is not None else None, title=f"regretflow run {config_path or ''}".strip()
            )
            engine.progress = live.chain(engine.progress)
            live.serve(engine.server)
            log.info(
                "event=start metrics=http://%s:%d/metrics live=http://%s:%d/ models=%s",
                engine.server.host,
                engine.server.port,
                engine.server.host,
                engine.server.port,
                ",".join(config.models),
            )

        signalled.hand_over(engine)
        try:
            engine.run(install_signals=True)
        except OffsetResetError as exc:
            # the loop ended without a checkpoint: nothing of the new log is in any checkpoint
            engine.close()
            raise FatalError(str(exc)) from None
        log.info("event=stop events=%d valid=%d dead_letters=%d", engine.events_seen, engine.valid_events, engine.dead_count)
        print_summary(engine, config, summary)
        engine.close()
        return 0


class _SignalsDuringStart:
    """Remembers a SIGTERM or SIGINT that arrives before the engine installs its own handlers.

    Building the engine can take seconds (kernels compiled on a cold cache, a checkpoint
    restored); an orchestrator stopping the process then expects the usual clean exit 0.
    Only the main thread can install handlers: elsewhere (tests) nothing is installed.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self.engine: Engine | None = None

    def installed(self) -> contextlib.AbstractContextManager[None]:
        """The block during which a signal is remembered (the handlers found are put back after it)."""
        if threading.current_thread() is not threading.main_thread():
            return contextlib.nullcontext()
        return stop_signals_handled_by(self._remember)

    def _remember(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if self.engine is not None:
            self.engine.stop_requested = True

    def hand_over(self, engine: Engine) -> None:
        """From now on a signal stops ``engine``; one already received stops it before it starts."""
        self.engine = engine
        if self.received:
            log.info("event=signal signal=%s action=stop-after-start-up", signal.Signals(self.received[0]).name)
            engine.stop_requested = True


def print_summary(engine: Engine, config: Config, how: str) -> None:
    """The end-of-run summary the demo prints (one table per task), or JSON; never into a sink's stream."""
    if how == "none":
        return
    stdout_taken = "stdout" in (config.answers.type, config.dead_letters.type)
    out = sys.stderr if stdout_taken else sys.stdout
    summary = engine.summary()
    summary["_stream"] = {"events": engine.events_seen, "valid": engine.valid_events, "dead_letters": engine.dead_count}
    monitor = getattr(getattr(engine.source, "env", None), "monitor", None)
    extras = {engine.source.env.model: monitor.gauges()} if monitor is not None else {}
    if how == "json":
        import orjson

        for model, figures in extras.items():
            summary[model]["simulator"] = figures
        out.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS).decode() + "\n")
    else:
        out.write(f"{engine.events_seen:,} events, {engine.valid_events:,} valid, {engine.dead_count:,} dead-lettered\n")
        out.write(family_tables(summary, extras=extras).lstrip("\n") + "\n")
    out.flush()


def _supervise(config: Config, workers: int, config_path: str | None) -> int:
    """N worker processes in one consumer group; SIGTERM is passed on; a crashed worker is restarted.

    Worker i serves its metrics on ``metrics.port + i`` (or a free port when the port is 0).
    A worker that exits 2 (its config cannot work here) or 3 (the broker stayed unreachable
    for ``connect_timeout_seconds``) is not restarted: the others are stopped and the
    supervisor exits with that status too, so systemd's RestartPreventExitStatus holds
    and an outer supervisor sees what a single worker would have said.
    """
    import os
    import signal
    import subprocess
    import time

    if config_path is None:
        raise ConfigError("--workers needs the config file path")
    stopping = False

    def spawn(i: int) -> subprocess.Popen[bytes]:
        env = {**os.environ, "REGRETFLOW_WORKER_INDEX": str(i)}
        return subprocess.Popen(
            [sys.executable, "-m", "regretflow.engine.cli.main", "run", "--config", config_path, "--worker-index", str(i)], env=env
        )

    procs = {i: spawn(i) for i in range(workers)}

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    log.info("event=supervise workers=%d pids=%s", workers, ",".join(str(p.pid) for p in procs.values()))
    worst = 0
    while procs:
        for i, p in list(procs.items()):
            rc = p.poll()
            if rc is None:
                continue
            if stopping or rc == 0:
                worst = max(worst, rc)
                del procs[i]
            elif rc in (2, 3):  # a config error, or the broker not there in time: the outer supervisor decides
                log.error("event=worker_%s worker=%d rc=%d action=stop_all", "config_error" if rc == 2 else "broker_unreachable", i, rc)
                del procs[i]
                forward(signal.SIGTERM, None)
                worst = max(worst, rc)
            else:
                log.warning("event=worker_died worker=%d rc=%d action=restart", i, rc)
                time.sleep(1.0)
                procs[i] = spawn(i)
        time.sleep(0.2)
    return worst
