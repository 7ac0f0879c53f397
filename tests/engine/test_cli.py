"""The command line as an operator uses it."""

import json
import subprocess

import orjson
import pytest

from tests.conftest import REGRETFLOW, regression_stream


def rf(*args, **kw):
    return subprocess.run([REGRETFLOW, *args], capture_output=True, text=True, timeout=300, **kw)


def test_help_lists_the_commands():
    out = rf("--help")
    assert out.returncode == 0
    for command in ("demo", "run", "replay", "checkpoint", "reproduce", "schema"):
        assert command in out.stdout


def test_config_errors_name_the_key_and_exit_2(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[models.m]\nlearner = "ridge"\nfeatures = ["a"]\n[runtime]\nbatch_size = 0\n')
    out = rf("run", "--config", str(cfg))
    assert out.returncode == 2 and "runtime.batch_size" in out.stderr


def test_replay_prints_per_group_regret_and_writes_answers(tmp_path):
    log = tmp_path / "events.jsonl"
    log.write_bytes(b"\n".join(regression_stream(500, seed=2)) + b"\nnot json\n")
    cfg = tmp_path / "replay.toml"
    cfg.write_text(
        '[models.m]\nlearner = "ridge"\nfeatures = ["x0", "x1", "x2"]\n'
        '[[models.m.groups]]\nname = "segment"\nfield = "segment"\nvalues = ["a", "b", "c"]\n'
    )
    out = rf("replay", str(log), "--config", str(cfg), "--json", "--answers", str(tmp_path / "a.jsonl"))
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["_stream"]["dead_letters"] == 1
    groups = summary["m"]["groups"]
    assert set(groups) == {"all", "segment=a", "segment=b", "segment=c"}
    assert groups["all"]["count"] == sum(groups[f"segment={s}"]["count"] for s in "abc")
    assert (tmp_path / "a.jsonl").read_bytes().count(b"\n") == 500
    table = rf("replay", str(log), "--config", str(cfg))
    assert "segment=b" in table.stdout and "regret" in table.stdout


def test_checkpoint_inspect_shows_what_the_daemon_wrote(tmp_path):
    events = regression_stream(200)
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(events) + b"\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[source]\ntype = "jsonl"\npath = "events.jsonl"\n[answers]\ntype = "null"\n[dead_letters]\ntype = "null"\n'
        '[checkpoint]\ndir = "state"\n[metrics]\nenabled = false\n'
        '[models.m]\nlearner = "ridge"\nfeatures = ["x0", "x1", "x2"]\n'
    )
    assert rf("run", "--config", str(cfg), cwd=tmp_path).returncode == 0
    out = rf("checkpoint", "inspect", str(tmp_path / "state"), "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["scalars"]["events_seen"] == len(events) and "shards/0/learner/P" in info["arrays"]
    (tmp_path / "state" / "junk.npz").write_bytes(b"no")
    bad = rf("checkpoint", "inspect", str(tmp_path / "state" / "junk.npz"))
    assert bad.returncode == 1 and "unreadable" in bad.stderr


def test_schema_command_prints_the_shipped_schema():
    out = rf("schema")
    assert json.loads(out.stdout)["title"] == "regretflow event"


def test_run_reads_stdin_and_answers_on_stdout(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[metrics]\nenabled = false\n[models.m]\nlearner = "ridge"\nfeatures = ["x0", "x1", "x2"]\n')
    events = b"\n".join(regression_stream(50, with_joins=False)) + b"\n"
    out = subprocess.run([REGRETFLOW, "run", "--config", str(cfg)], input=events, capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr
    answers = [orjson.loads(l) for l in out.stdout.splitlines()]
    assert len(answers) == 50 and answers[-1]["model_version"] == 49


def test_fatal_errors_end_in_one_line_with_their_exit_code(monkeypatch, capsys, tmp_path):
    from regretflow.engine.cli import main as cli
    from regretflow.engine.errors import FatalError

    class SourceGone(FatalError):
        exit_code = 3

    cfg = tmp_path / "c.toml"
    cfg.write_text('[metrics]\nenabled = false\n[models.m]\nlearner = "ridge"\nfeatures = ["x0"]\n')

    def stop(config, workers, path, summary="table"):
        raise SourceGone("topic events was deleted and recreated: offsets 0..41 are gone")

    monkeypatch.setattr(cli, "_run", stop)
    assert cli.main(["run", "--config", str(cfg)]) == 3
    err = capsys.readouterr().err
    assert err == "regretflow: error: topic events was deleted and recreated: offsets 0..41 are gone\n"


def test_unexpected_exceptions_are_not_swallowed(monkeypatch, tmp_path):
    """What nobody foresaw keeps its traceback (Python prints it, exit 1): main lets it through."""
    from regretflow.engine.cli import main as cli

    cfg = tmp_path / "c.toml"
    cfg.write_text('[metrics]\nenabled = false\n[models.m]\nlearner = "ridge"\nfeatures = ["x0"]\n')

    def crash(config, workers, path, summary="table"):
        raise KeyError("a bug")

    monkeypatch.setattr(cli, "_run", crash)
    with pytest.raises(KeyError, match="a bug"):
        cli.main(["run", "--config", str(cfg)])


def test_replay_of_a_missing_log_exits_2_in_one_line(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[metrics]\nenabled = false\n[models.m]\nlearner = "ridge"\nfeatures = ["x0"]\n')
    out = rf("replay", str(tmp_path / "missing.jsonl"), "--config", str(cfg))
    assert out.returncode == 2 and out.stderr == f"regretflow: error: LOG: {tmp_path / 'missing.jsonl'} is not a file\n"
