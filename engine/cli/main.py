"""The ``regretflow`` command line.

Its commands and options are defined once, by the argparse parser below:
``regretflow --help`` lists the commands, ``regretflow COMMAND --help`` the options of
one, and :func:`synopsis` (one usage line per command) is the reference docs' Command
line block.

Exit status: 0 done; 2 the config (or a command-line argument) is wrong, one line per
problem on stderr, a restart cannot help; 1 the worker stopped on an error a restart may
fix (one line "regretflow: error: ..."; an unexpected exception also prints its traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

# One BLAS thread per process: the engine's linear algebra is small (d x d), where
# threads only add contention, and scale-out is by worker processes. Set before numpy
# loads; an operator's own setting wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import orjson  # noqa: E402 (after the BLAS settings above)

from regretflow.engine.config import Config, ConfigError, check_config, describe, load_config  # noqa: E402
from regretflow.engine.errors import FatalError  # noqa: E402

EPILOG = """examples:
  regretflow demo                                   # no config, no broker: watch regret live at http://127.0.0.1:9108/
  regretflow run --config deploy/examples/daemon.toml
  regretflow run --check --config deploy/examples/daemon.toml   # exit 0 "config OK: ...", or 2 and the problems
  regretflow replay events.jsonl --config deploy/examples/replay.toml
  regretflow checkpoint inspect state/checkpoint-000000000003.npz
  regretflow reproduce groupwise --quick
  regretflow report metrics.jsonl --out report/     # or: regretflow report --demo
docs/configuration.md, docs/events.md and docs/metrics.md list every config key, event field and metric."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="regretflow",
        description="Streaming online learning with regret you can watch.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("demo", help="one model of every family, side by side on bundled data and simulators, with a live page")
    d.add_argument(
        "--passes", type=int, default=3, metavar="N", help="passes over the bundled data (and simulator rounds in proportion), default 3"
    )
    d.add_argument(
        "--family",
        action="append",
        metavar="NAME",
        help="run only this family (repeatable): groupwise, neural-bandit, analytic-ridge, dynamical-bandit, fair-onesided",
    )
    d.add_argument("--rate", type=float, default=1000.0, metavar="EV/S", help="events per second, 0 for as fast as possible (default 1000)")
    d.add_argument("--port", type=int, default=9108, metavar="P", help="live page and metrics port (default 9108, 0 picks a free one)")
    d.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="ADDR",
        help="address the live page listens on (default 127.0.0.1; 0.0.0.0 inside a container)",
    )
    d.add_argument(
        "--linger", type=float, default=0.0, metavar="S", help="keep serving the live page and /metrics this many seconds after the end"
    )
    d.add_argument("--seed", type=int, default=0, metavar="N")
    d.add_argument("--no-progress", action="store_true", help="no progress line")
    d.add_argument("--json", action="store_true", help="print the final summary as JSON")

    r = sub.add_parser(
        "run",
        help="run the daemon on the source of a config file",
        epilog="exit status: 0 a normal end; 2 the config cannot work here (one line per problem, "
        "nothing started: do not restart); 1 an error a restart may fix; 3 the Kafka broker stayed "
        "unreachable for source.connect_timeout_seconds",
    )
    r.add_argument("--config", required=True, metavar="FILE", help="TOML config (see docs/configuration.md)")
    r.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes in one consumer group (kafka sources)")
    r.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    r.add_argument(
        "--check", action="store_true", help="validate the config (schema, learners, ports, paths) on this host and exit: 0 OK, 2 problems"
    )
    r.add_argument("--json", action="store_true", help="end with the summary as JSON instead of the table")

    rp = sub.add_parser("replay", help="evaluate the config's models on a logged JSONL stream, offline")
    rp.add_argument("log", metavar="LOG.jsonl", help="JSONL file of events")
    rp.add_argument("--config", required=True, metavar="FILE")
    rp.add_argument("--answers", metavar="OUT.jsonl", help="write the answers to this JSONL file")
    rp.add_argument("--dead-letters", metavar="DL.jsonl", help="write dead letters to this JSONL file")
    rp.add_argument("--json", action="store_true", help="print the summary as JSON")
    rp.add_argument(
        "--logged-answers",
        metavar="A.jsonl",
        help="the answers the live system gave (JSONL): off-policy estimates of its bandit decisions, with bootstrap intervals",
    )
    rp.add_argument(
        "--bootstrap", type=int, default=500, metavar="N", help="bootstrap resamples for the off-policy intervals (default 500)"
    )

    c = sub.add_parser("checkpoint", help="checkpoint tools")
    csub = c.add_subparsers(dest="action", metavar="ACTION")
    ci = csub.add_parser("inspect", help="print what a checkpoint holds, after verifying it")
    ci.add_argument("path", metavar="PATH", help="a checkpoint file, or a checkpoint directory (its newest file)")
    ci.add_argument("--json", action="store_true")

    rep = sub.add_parser("reproduce", help="reproduce a paper's table (groupwise, analytic-ridge, dynamical-bandit, ...)")
    rep.add_argument("name", metavar="NAME")
    rep.add_argument("args", nargs=argparse.REMAINDER, help="--quick, --json, ...")

    rr = sub.add_parser("report", help="draw a run's regret, reward and off-policy curves (PNG files + one HTML page)")
    rr.add_argument(
        "run", nargs="?", metavar="RUN", help="a metrics log (JSONL written with metrics.log_path), or a directory holding metrics.jsonl"
    )
    rr.add_argument("--replay", metavar="EVENTS.jsonl", help="replay this event log through --config's models, recording as it goes")
    rr.add_argument("--config", metavar="FILE", help="the TOML config of --replay")
    rr.add_argument("--demo", action="store_true", help="record the demo's stream (Medical costs, offline, flat out)")
    rr.add_argument("--passes", type=int, default=3, metavar="N", help="--demo: passes over the data (default 3)")
    rr.add_argument("--seed", type=int, default=0, metavar="N", help="--demo: shuffle seed (default 0)")
    rr.add_argument("--every", type=int, default=100, metavar="N", help="--replay/--demo: events between two records (default 100)")
    rr.add_argument("--out", default="regretflow-report", metavar="DIR", help="output directory (default ./regretflow-report)")
    rr.add_argument("--title", metavar="TEXT", help="title of the HTML page")
    sub.add_parser("schema", help="print the event JSON Schema")
    return p


def synopsis() -> str:
    """One usage line per command, generated from the parser (the docs' Command line block).

    >>> print(synopsis().splitlines()[-1])
    regretflow schema
    """
    lines: list[str] = []

    def usage_lines(parser: argparse.ArgumentParser) -> None:
        commands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if commands:
            for child in commands[0].choices.values():
                usage_lines(child)
            return
        # argparse's own usage formatter, without "-h" and wide enough to keep a command on one line
        formatter = argparse.HelpFormatter(parser.prog, width=1_000)
        options = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
        formatter.add_usage(parser.usage, options, parser._mutually_exclusive_groups, prefix="")
        lines.append(formatter.format_help().strip())

    usage_lines(_parser())
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level), stream=sys.stderr, format="ts=%(asctime)s level=%(levelname)s %(message)s")
    logging.getLogger("kafka").setLevel(max(logging.WARNING, getattr(logging, args.log_level)))
    # group membership changes (joins, evictions, assignments) are rare and are what an
    # operator reads first when partitions move: keep the client's coordinator at INFO
    logging.getLogger("kafka.coordinator").setLevel(getattr(logging, args.log_level))
    try:
        if args.command == "demo":
            # the engine's learners (numba) load only for the commands that run them: --help and schema start fast
            from regretflow.engine.cli.demo import run_demo

            run_demo(
                passes=args.passes,
                rate=args.rate,
                port=args.port,
                host=args.host,
                linger=args.linger,
                progress=not args.no_progress,
                as_json=args.json,
                seed=args.seed,
                families=args.family,
            )
            return 0
        if args.command == "run":
            config = load_config(args.config)
            if args.worker_index is not None:
                config = _as_worker(config, args.worker_index)
            if args.check:
                check_config(config, args.workers)
                print(describe(config))
                return 0
            return _run(config, args.workers, args.config, "json" if args.json else "table")
        if args.command == "replay":
            return _replay(args)
        if args.command == "checkpoint":
            return _checkpoint(args, parser)
        if args.command == "reproduce":
            # the reproductions load their own learners and data sets
            from regretflow.engine.experiments import run

            return run(args.name, args.args)
        if args.command == "report":
            # the report draws with matplotlib and may replay through the engine (numba)
            from regretflow.engine.cli.report import run as run_report

            return run_report(args)
        if args.command == "schema":
            from regretflow.engine.runtime.events import schema  # numpy, without the learners: only this command needs it

            print(orjson.dumps(schema(), option=orjson.OPT_INDENT_2).decode())
            return 0
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"regretflow: config error: {problem}", file=sys.stderr)
        return 2
    except FatalError as exc:  # the worker cannot go on safely: one line, no traceback; exit_code says if a restart may help
        print(f"regretflow: error: {exc}", file=sys.stderr)
        return exc.exit_code
    parser.print_help()
    return 0


def _run(config: Config, workers: int, path: str, summary: str = "table") -> int:
    # the daemon loads the engine's learners (numba), a `run --check` does not
    from regretflow.engine.cli.daemon import run_daemon

    return run_daemon(config, workers=workers, config_path=path, summary=summary)


def _as_worker(config: Config, index: int) -> Config:
    """Worker ``index`` of a supervised group: its own metrics port."""
    import dataclasses

    port = config.metrics.port + index if config.metrics.port else 0
    return dataclasses.replace(config, metrics=dataclasses.replace(config.metrics, port=port))


def _replay(args) -> int:
    # numpy and the engine's learners (numba) load only for the commands that run them
    from regretflow.connectors.jsonl import JsonlSink, JsonlSource
    from regretflow.connectors.memory import MemorySink
    from regretflow.engine.evaluation.offline import logged_policy_values, offline_config
    from regretflow.engine.observability.summary_tables import summary_table
    from regretflow.engine.runtime.loop import Engine
    from regretflow.engine.tasks import shown_task

    config = offline_config(load_config(args.config))
    if not Path(args.log).is_file():
        print(f"regretflow: error: LOG: {args.log} is not a file", file=sys.stderr)
        return 2
    mode = config.runtime.file_mode
    answers = JsonlSink(args.answers, fsync=False, file_mode=mode) if args.answers else MemorySink(keep=False)
    dead = JsonlSink(args.dead_letters, fsync=False, file_mode=mode) if args.dead_letters else MemorySink(keep=False)
    engine = Engine(config, JsonlSource(args.log, max_line_bytes=config.runtime.max_event_bytes), answers, dead, serve_metrics=False)
    engine.run()
    summary = engine.summary()
    summary["_stream"] = {"events": engine.events_seen, "valid": engine.valid_events, "dead_letters": engine.dead_count}
    if args.logged_answers:
        summary["_logged_policies"] = logged_policy_values(args.log, args.logged_answers, config, n_bootstrap=args.bootstrap)
    if args.json:
        print(orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode())
    else:
        print(f"replayed {engine.events_seen:,} events ({engine.dead_count:,} dead-lettered)")
        print(summary_table(summary))
        for model, s in summary.items():
            if model == "_logged_policies":
                for name, table in s.items():
                    print(
                        f"\nlogged decisions of {name}: {table['rounds']} joined rounds, observed mean reward {table['logged']['observed']['value']:.4f}"
                    )
                    for policy in ("greedy", "uniform", "best_constant"):
                        for est, v in table[policy].items():
                            print(f"  {policy:<14}{est.upper():<6}{v['value']:.4f}  95% bootstrap [{v['low']:.4f}, {v['high']:.4f}]")
            elif isinstance(s, dict) and not model.startswith("_"):
                for line in shown_task(s.get("task")).replay_lines(model, s):
                    print(line)
    engine.close()
    return 0


def _checkpoint(args, parser) -> int:
    from regretflow.engine.runtime.checkpoint import CheckpointError, describe, list_checkpoints  # numpy: only this command reads arrays

    if args.action != "inspect":
        parser.parse_args(["checkpoint", "--help"])
        return 2
    path = Path(args.path)
    if path.is_dir():
        files = list_checkpoints(path)
        if not files:
            print(f"regretflow: no checkpoint in {path}", file=sys.stderr)
            return 1
        path = files[-1]
    try:
        info = describe(path)
    except CheckpointError as exc:
        print(f"regretflow: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(orjson.dumps(info, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"{info['path']}\n  format {info['format_version']}, number {info['number']}, sha256 {info['sha256']}")
    print("  scalars:")
    for k, v in info["scalars"].items():
        print(f"    {k} = {v!r}")
    print("  arrays:")
    for k, v in info["arrays"].items():
        print(f"    {k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
