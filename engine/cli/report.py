"""``regretflow report``: draw a run's metrics log (:mod:`regretflow.engine.observability.report`),
or record one first by replaying a logged stream through a config's models
(``--replay``) or the demo's stream offline (``--demo``). Its options are in the
parser of :mod:`regretflow.engine.cli.main` (``regretflow report --help``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from regretflow.connectors.jsonl import JsonlSource
from regretflow.connectors.memory import MemorySource
from regretflow.engine.cli.demo import demo_config, demo_events
from regretflow.engine.config import ConfigError, load_config
from regretflow.engine.observability.metrics_log import MetricsLogError, parse_metrics_log, read_metrics_log
from regretflow.engine.observability.report import record_run, write_report


def run(args: argparse.Namespace) -> int:
    """Carry out ``regretflow report`` with parsed arguments; returns the exit code."""
    modes = sum(bool(x) for x in (args.run, args.replay, args.demo))
    if modes != 1:
        print("regretflow report: give exactly one of RUN, --replay EVENTS.jsonl --config FILE, or --demo", file=sys.stderr)
        return 2
    if args.every < 1:
        print("regretflow report: --every must be at least 1", file=sys.stderr)
        return 2
    out = Path(args.out)
    try:
        if args.run:
            records = read_metrics_log(args.run)
            source = str(args.run)
        else:
            if args.replay:
                if not args.config:
                    print("regretflow report: --replay needs --config FILE", file=sys.stderr)
                    return 2
                config = load_config(args.config)
                replay = JsonlSource(args.replay, max_line_bytes=config.runtime.max_event_bytes)
                lines = record_run(config, replay, args.every, progress=sys.stderr)
                source = f"replay of {args.replay} with {args.config}"
            else:
                config = demo_config(metrics=False, families=["groupwise"])
                events = demo_events(passes=args.passes, seed=args.seed, models=list(config.models))
                print(f"recording the demo's stream offline: {len(events):,} events", file=sys.stderr)
                lines = record_run(config, MemorySource(events), args.every, total=len(events), progress=sys.stderr)
                source = f"regretflow demo data, {args.passes} passes, seed {args.seed}"
            out.mkdir(parents=True, exist_ok=True)
            (out / "metrics.jsonl").write_bytes(b"".join(lines))
            records = parse_metrics_log(lines, source)
    except (MetricsLogError, ConfigError) as exc:
        print(f"regretflow report: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, MetricsLogError) else 2
    print(f"drawing {len(records)} records…", file=sys.stderr)
    written = write_report(records, out, title=args.title or "regretflow report", source=source)
    for path in written.values():
        print(path)
    return 0
