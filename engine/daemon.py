"""``regretflow run``: build the configured source and sinks, run the engine until told to stop.

SIGTERM or SIGINT: the batch in flight finishes, a checkpoint is written, exit 0.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from .config import Config, ConfigError, EndpointSpec
from .runtime import Engine

log = logging.getLogger("regretflow")


def _resolve(config: Config, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else Path(config.base_dir) / p


def open_source(config: Config, spec: EndpointSpec):
    """The configured event source."""
    if spec.type == "jsonl":
        from regretflow.connectors.jsonl import JsonlSource

        _only(spec, "source", {"path", "follow"})
        return JsonlSource(_resolve(config, spec.options["path"]), follow=bool(spec.options.get("follow", False)))
    if spec.type == "stdin":
        from regretflow.connectors.stdio import StdinSource

        _only(spec, "source", set())
        return StdinSource()
    raise ConfigError(f"source.type: {spec.type!r} is not available in this build")


def open_sink(config: Config, spec: EndpointSpec, where: str):
    """The configured answer or dead-letter sink."""
    if spec.type == "jsonl":
        from regretflow.connectors.jsonl import JsonlSink

        _only(spec, where, {"path", "fsync"})
        return JsonlSink(_resolve(config, spec.options["path"]), fsync=bool(spec.options.get("fsync", True)))
    if spec.type in ("stdout", "stderr"):
        from regretflow.connectors.stdio import StreamSink

        _only(spec, where, set())
        return StreamSink(sys.stdout.buffer if spec.type == "stdout" else sys.stderr.buffer)
    if spec.type == "null":
        from regretflow.connectors.memory import MemorySink

        return MemorySink(keep=False)
    raise ConfigError(f"{where}.type: {spec.type!r} is not available in this build")


def _only(spec: EndpointSpec, where: str, allowed: set[str]) -> None:
    for key in spec.options:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}: unknown key for type = {spec.type!r}; expected one of {', '.join(sorted(allowed)) or '(none)'}")


def run_daemon(config: Config, workers: int = 1) -> int:
    if workers != 1:
        raise ConfigError("--workers > 1 needs a kafka source (consumer groups); this source has one reader")
    source = open_source(config, config.source)
    answers = open_sink(config, config.answers, "answers")
    dead = open_sink(config, config.dead_letters, "dead_letters")
    engine = Engine(config, source, answers, dead)
    if engine.server is not None:
        log.info("event=start metrics=http://%s:%d/metrics models=%s", engine.server.host, engine.server.port, ",".join(config.models))
    engine.run(install_signals=True)
    log.info("event=stop events=%d valid=%d dead_letters=%d", engine.events_seen, engine.valid_events, engine.dead_count)
    engine.close()
    return 0
