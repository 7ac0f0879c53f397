"""Checkpoints written by regretflow 0.1.0 keep loading: one is kept in tests/engine/data/checkpoint-0.1.0/.

The fixture holds, for one model of every learner family (the demo's models), a
checkpoint written half-way through a recorded stream, the stream itself, the config
(JSON, every parameter explicit) and the answers an uninterrupted 0.1.0 run gave to
the second half. The checkpoint is never regenerated: it is the old format that must
load. If a learner's behaviour changes on purpose, regenerate only the expected answers
with ``python tests/engine/test_checkpoint_compat.py --answers-only`` and say why in the
commit.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import shutil
import sys
from pathlib import Path

import orjson

from regretflow.connectors.memory import MemorySink, MemorySource
from regretflow.engine.config import parse_config
from regretflow.engine.runtime.checkpoint import list_checkpoints, read_checkpoint
from regretflow.engine.runtime.loop import Engine

FIXTURE = Path(__file__).resolve().parent / "data" / "checkpoint-0.1.0"
N_EVENTS = 6000  # the first events the demo's sources produce, every model among them
HALF = 47 * 64  # a whole number of the config's micro-batches, so both runs batch the second half alike
# answer fields added since 0.1.0 (compatible: a reader of 0.1.0 answers ignores them):
# "expert", the drawn expert of a groupwise model serving a draw (the fixture's mode="expected")
ADDED_ANSWER_FIELDS = {"expert"}
# The expected answers were computed on another machine. numpy picks its exp, log and tanh by the
# CPU (AVX-512 and AVX2 versions differ in the last bit for a few percent of inputs), so a run
# resumed on a CPU of another kind goes on as the uninterrupted one did up to rounding: floats
# agree to this relative tolerance, everything else (actions, ids, versions, classes) exactly.
# Runs on one machine stay bit-identical (tests/engine/test_crash_resume.py and the kill -9 tests).
FLOAT_REL_TOL = 1e-9


def _differences(got, want, path: str = "") -> list[str]:
    """Where ``got`` differs from ``want`` beyond rounding (floats to FLOAT_REL_TOL, all else exactly)."""
    if isinstance(want, float) and isinstance(got, float):
        return [] if math.isclose(got, want, rel_tol=FLOAT_REL_TOL, abs_tol=1e-300) else [f"{path}: {got!r} != {want!r}"]
    if isinstance(want, list) and isinstance(got, list) and len(got) == len(want):
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in _differences(g, w, f"{path}[{i}]")]
    if isinstance(want, dict) and isinstance(got, dict) and got.keys() == want.keys():
        return [d for k in want for d in _differences(got[k], want[k], f"{path}.{k}")]
    return [] if type(got) is type(want) and got == want else [f"{path}: {got!r} != {want!r}"]


def _config(raw: dict, directory: Path):
    return parse_config({**raw, "checkpoint": {"dir": str(directory), "every_events": 10**9, "every_seconds": 0, "keep": 1}})


def _run(config, payloads: list[bytes]) -> list[dict]:
    answers = MemorySink()
    engine = Engine(config, MemorySource(payloads), answers, MemorySink(), serve_metrics=False)
    engine.run()
    return [orjson.loads(r[1]) for r in answers.records]


def _resume(config, payloads: list[bytes]) -> tuple[Engine, list[dict]]:
    answers = MemorySink()
    engine = Engine(config, MemorySource(payloads), answers, MemorySink(), serve_metrics=False)
    engine.run()
    return engine, [orjson.loads(r[1]) for r in answers.records]


def _fixture() -> tuple[dict, list[bytes], list[dict]]:
    raw = orjson.loads((FIXTURE / "config.json").read_bytes())
    payloads = gzip.decompress((FIXTURE / "events.jsonl.gz").read_bytes()).splitlines()
    expected = [orjson.loads(line) for line in gzip.decompress((FIXTURE / "answers-second-half.jsonl.gz").read_bytes()).splitlines()]
    return raw, payloads, expected


def test_the_fixture_covers_every_learner_family():
    raw, payloads, _ = _fixture()
    learners = {spec["learner"] for spec in raw["models"].values()}
    assert {"ridge", "groupwise", "analytic-ridge", "neural-fastcb", "dynlin-ucb", "fair-exp2"} <= learners
    (path,) = list_checkpoints(FIXTURE / "state")
    state, _ = read_checkpoint(path)
    assert len(payloads) == N_EVENTS and state["position"] == {"index": HALF}


def test_a_0_1_0_checkpoint_loads_and_the_run_goes_on_as_the_uninterrupted_one_did(tmp_path):
    raw, payloads, expected = _fixture()
    state_dir = tmp_path / "state"
    shutil.copytree(FIXTURE / "state", state_dir)
    (path,) = list_checkpoints(state_dir)
    saved, _ = read_checkpoint(path)
    engine, answers = _resume(_config(raw, state_dir), payloads)
    # it resumed (not started afresh): only the second half was answered ...
    assert len(answers) == len(expected) > 0
    assert {a["model"] for a in answers} == set(raw["models"])
    # ... as the uninterrupted 0.1.0 run answered it, up to rounding (fields added since then aside)
    for got, want in zip(answers, expected):
        differences = _differences({k: got[k] for k in want if k in got}, want)
        assert not differences, (
            f"answer {want['id']!r} of model {want['model']!r} differs after loading the 0.1.0 checkpoint: {differences[:5]}"
        )
        assert set(got) - set(want) <= ADDED_ANSWER_FIELDS, f"answer {want['id']!r} has unknown new fields {set(got) - set(want)}"
    assert len(answers) == len(expected)
    assert saved["events_seen"] == HALF


def make_fixture(answers_only: bool = False) -> None:
    """Write the fixture with the code installed now (run from a checkout of the release the fixture is named after)."""
    from regretflow.engine.cli import demo

    config = demo.demo_config(metrics=False, passes=1)
    source, sink, _ = demo.build_demo(config, passes=1, seed=0, rate=0.0)
    recorded: list[bytes] = []
    poll = source.poll

    def recording_poll(max_records: int, timeout: float) -> list[bytes]:
        got = poll(max_records, timeout)
        recorded.extend(got)
        return got

    source.poll = recording_poll
    engine = Engine(
        dataclasses.replace(config, runtime=dataclasses.replace(config.runtime, stop_at_end=True)),
        source,
        sink,
        MemorySink(),
        serve_metrics=False,
    )
    while len(recorded) < N_EVENTS and not source.exhausted():
        records = source.poll(config.runtime.batch_size, 0.0)
        if records:
            engine.process(records)
    payloads = recorded[:N_EVENTS]
    raw = {
        "models": {name: _plain_spec(spec) for name, spec in config.models.items()},
        "runtime": {"batch_size": 64},
        "metrics": {"enabled": False},
    }
    for spec in raw["models"].values():
        if spec["learner"] == "analytic-ridge":
            spec["params"]["expansion_dim"] = 128  # the demo's 1024 makes a 26 MB checkpoint
    whole = _run(parse_config(raw), payloads)
    first_half = _run(parse_config(raw), payloads[:HALF])
    expected = whole[len(first_half) :]
    FIXTURE.mkdir(parents=True, exist_ok=True)
    (FIXTURE / "answers-second-half.jsonl.gz").write_bytes(gzip.compress(b"\n".join(orjson.dumps(a) for a in expected), mtime=0))
    if answers_only:
        return
    (FIXTURE / "config.json").write_bytes(orjson.dumps(raw, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    (FIXTURE / "events.jsonl.gz").write_bytes(gzip.compress(b"\n".join(payloads), mtime=0))
    shutil.rmtree(FIXTURE / "state", ignore_errors=True)
    _run(_config(raw, FIXTURE / "state"), payloads[:HALF])


def _plain_spec(spec) -> dict:
    """A model spec back as the dict a config file holds, with every JSON-able constructor default made explicit."""
    import inspect

    from regretflow.learners import LEARNERS

    params = {}
    for name, p in inspect.signature(LEARNERS[spec.learner]).parameters.items():
        if p.default is not inspect.Parameter.empty and isinstance(p.default, (int, float, str, bool)):
            params[name] = p.default
    params.update(spec.params)
    out = {
        "learner": spec.learner,
        "features": list(spec.features),
        "params": params,
        "groups": [{k: v for k, v in dataclasses.asdict(g).items() if v != ()} for g in spec.groups],
        "joins": {k: v for k, v in dataclasses.asdict(spec.joins).items() if v is not None},
        "regret": dataclasses.asdict(spec.regret),
    }
    if spec.n_actions is not None:
        out["n_actions"] = spec.n_actions
    return orjson.loads(orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY))


if __name__ == "__main__":
    make_fixture(answers_only="--answers-only" in sys.argv)
    print(f"wrote {FIXTURE}")
