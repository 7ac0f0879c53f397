"""Config validation: every error names the key and what was expected."""

import dataclasses
import socket
from pathlib import Path

import pytest

from regretflow.engine.config import ConfigError, check_config, check_host, describe, load_config, parse_config

BASE = {"models": {"m": {"learner": "ridge", "features": ["a"]}}}


@pytest.mark.parametrize(
    "patch,key",
    [
        ({"models": {}}, "models"),
        ({"models": {"m": {"learner": "nope", "features": ["a"]}}}, "models.m.learner"),
        ({"models": {"m": {"learner": "ridge"}}}, "models.m.features"),
        ({"models": {"m": {"learner": "ridge", "features": ["a", "a"]}}}, "models.m.features"),
        ({"models": {"m": {"learner": "ridge", "features": ["a"], "colour": 1}}}, "models.m.colour"),
        ({"models": {"m": {"learner": "ridge", "features": ["a"], "groups": [{"field": "x"}]}}}, "models.m.groups[0]"),
        (
            {"models": {"m": {"learner": "ridge", "features": ["a"], "groups": [{"field": "x", "edges": [3, 1]}]}}},
            "models.m.groups[0].edges",
        ),
        ({"models": {"m": {"learner": "ridge", "features": ["a"], "joins": {"ttl_events": -1}}}}, "models.m.joins.ttl_events"),
        ({"models": {"m": {"learner": "ridge", "features": ["a"], "regret": {"lag": 2}}}}, "models.m.regret.lag"),
        ({"runtime": {"batch_size": "big"}}, "runtime.batch_size"),
        ({"metrics": {"port": "x"}}, "metrics.port"),
        ({"source": {"type": "ftp"}}, "source.type"),
        ({"source": {"type": "jsonl"}}, "source.path"),
        ({"checkpoint": {"every_seconds": -1}}, "checkpoint.every_seconds"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_errors_name_the_key(patch, key):
    raw = {**BASE, **patch}
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert str(info.value).startswith(key), str(info.value)


def test_defaults_and_relative_paths(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[models.m]\nlearner = "ridge"\nfeatures = ["a"]\n[checkpoint]\ndir = "state"\n')
    cfg = load_config(path)
    assert cfg.runtime.batch_size == 512 and cfg.metrics.host == "127.0.0.1"
    assert cfg.base_dir == str(tmp_path.resolve()) and cfg.checkpoint.dir == "state"


def test_bad_toml_says_so(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[models\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_example_configs_in_the_repository_are_valid():
    from pathlib import Path

    examples = sorted((Path(__file__).resolve().parents[2] / "deploy" / "examples").glob("*.toml"))
    assert examples, "deploy/examples has no config"
    for path in examples:
        load_config(path)


# -- every problem at once, each naming its key -----------------------------------------------


def problems_of(raw, base_dir="."):
    with pytest.raises(ConfigError) as info:
        parse_config(raw, base_dir=base_dir)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def test_every_problem_is_reported_once_with_its_key():
    problems = problems_of(
        {
            "models": {"m": {"learner": "ridge", "features": ["a"], "params": {"lamda": 1.0}, "joins": {"ttl_seconds": "abc"}}},
            "runtime": {"max_event_bytes": 99_999_999_999_999_999, "batch_size": True},
            "metrics": {"port": 70_000, "log_path": 5},
            "checkpoint": {"keep": 0},
        }
    )
    assert sorted(p.split(":")[0] for p in problems) == [
        "checkpoint.keep",
        "metrics.log_path",
        "metrics.port",
        "models.m.joins.ttl_seconds",
        "models.m.params.lamda",
        "runtime.batch_size",
        "runtime.max_event_bytes",
    ]


def test_unknown_learner_parameter_is_answered_with_the_closest_name():
    (problem,) = problems_of({"models": {"m": {"learner": "ridge", "features": ["a"], "params": {"lamda": 1.0}}}})
    assert problem == "models.m.params.lamda: unknown parameter; did you mean 'lam'?"
    (problem,) = problems_of({"models": {"m": {"learner": "ridge", "features": ["a"], "params": {"zzz": 1}}}})
    assert problem.startswith("models.m.params.zzz: unknown parameter; OnlineRidge takes features, lam,")


def test_learner_parameter_types_are_checked_against_the_constructor():
    (problem,) = problems_of({"models": {"m": {"learner": "ridge", "features": ["a"], "params": {"lam": "one"}}}})
    assert problem == "models.m.params.lam: expected a number, got 'one'"
    (problem,) = problems_of({"models": {"m": {"learner": "ridge", "features": ["a"], "params": {"fit_intercept": 1}}}})
    assert problem == "models.m.params.fit_intercept: expected true or false, got 1"


def test_learner_errors_become_messages_naming_the_parameter(monkeypatch):
    from regretflow import learners
    from regretflow.learners.contract import SupervisedDefaults

    class Refusing(SupervisedDefaults):
        """Stands for a learner whose constructor validates its parameters."""

        task = "regression"

        def __init__(self, features=None, lam: float = 1.0, mode: str = "a", explode: bool = False):
            if explode:
                raise RuntimeError("kernel cache unreadable")
            if lam <= 0:
                raise ValueError(f"lam: expected a number > 0, got {lam!r}")
            if mode not in ("a", "b"):
                raise ValueError(f"mode must be one of ('a', 'b'), got {mode!r}")

    monkeypatch.setitem(learners.LEARNERS, "refusing", Refusing)
    spec = {"learner": "refusing", "features": ["a"]}
    assert problems_of({"models": {"m": {**spec, "params": {"lam": -5}}}}) == ["models.m.params.lam: expected a number > 0, got -5"]
    assert problems_of({"models": {"m": {**spec, "params": {"mode": "mix"}}}}) == [
        "models.m.params.mode: must be one of ('a', 'b'), got 'mix'"
    ]
    assert problems_of({"models": {"m": {**spec, "params": {"explode": True}}}}) == [
        "models.m.params: Refusing cannot be built: RuntimeError: kernel cache unreadable"
    ]
    parse_config({"models": {"m": {**spec, "params": {"lam": 2.0, "mode": "b"}}}})


def test_learner_params_are_checked_even_when_another_key_of_the_model_is_wrong():
    problems = problems_of({"models": {"m": {"learner": "ridge", "features": ["a"], "params": {"lam": -5}, "max_shards": 0}}})
    assert sorted(p.split(":")[0] for p in problems) == ["models.m.max_shards", "models.m.params.lam"]


def test_sizes_have_documented_upper_bounds():
    from regretflow.engine.config import MAX_ABS_VALUE_LIMIT, MAX_EVENT_BYTES_LIMIT

    raw = {**BASE, "runtime": {"max_event_bytes": MAX_EVENT_BYTES_LIMIT, "max_abs_value": MAX_ABS_VALUE_LIMIT}}
    assert parse_config(raw).runtime.max_event_bytes == MAX_EVENT_BYTES_LIMIT
    assert problems_of({**BASE, "runtime": {"max_event_bytes": MAX_EVENT_BYTES_LIMIT + 1}}) == [
        "runtime.max_event_bytes: expected an integer <= 16,777,216, got 16777217"
    ]
    assert problems_of({**BASE, "runtime": {"max_abs_value": 1e200}})[0].startswith("runtime.max_abs_value: expected a number <= 1e+150")
    reference = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    assert "16,777,216" in reference and "1e150" in reference


def test_strict_types_refuse_what_toml_would_not_write_for_them():
    for section, key, value in (
        ("runtime", "batch_size", "512"),
        ("runtime", "batch_size", 1.0),
        ("runtime", "stop_at_end", 1),
        ("metrics", "host", 127),
        ("runtime", "max_abs_value", float("nan")),
    ):
        (problem,) = problems_of({**BASE, section: {key: value}})
        assert problem.startswith(f"{section}.{key}: expected"), problem


def test_replace_validates_the_new_value():
    cfg = parse_config(BASE)
    assert dataclasses.replace(cfg.metrics, port=0).port == 0
    with pytest.raises(ValueError, match="port"):
        dataclasses.replace(cfg.metrics, port=70_000)


# -- the host ----------------------------------------------------------------------------------


def test_check_host_finds_unusable_paths_and_ports_and_creates_nothing(tmp_path):
    (tmp_path / "events.jsonl").write_text("")
    (tmp_path / "a_dir").mkdir()
    raw = {
        **BASE,
        "source": {"type": "jsonl", "path": "events.jsonl"},
        "answers": {"type": "jsonl", "path": "a_dir"},
        "dead_letters": {"type": "jsonl", "path": "events.jsonl/dead.jsonl"},
        "checkpoint": {"dir": "new/state"},
        "metrics": {"log_path": "logs/metrics.jsonl", "port": 0},
    }
    cfg = parse_config(raw, base_dir=str(tmp_path))
    assert check_host(cfg) == [
        f"answers.path: {tmp_path}/a_dir is a directory",
        f"dead_letters.path: {tmp_path}/events.jsonl/dead.jsonl cannot be created: {tmp_path}/events.jsonl is not a directory",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_dir", "events.jsonl"]


def test_check_host_tries_the_port_as_the_metrics_server_binds_it():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = parse_config({**BASE, "metrics": {"port": port}})
        (problem,) = check_host(cfg)
        assert problem.startswith(f"metrics.port: cannot listen on 127.0.0.1:{port}")
        assert check_host(dataclasses.replace(cfg, metrics=dataclasses.replace(cfg.metrics, enabled=False))) == []
    assert check_host(cfg) == []  # free again
    with pytest.raises(ConfigError, match="metrics.port"):
        check_config(dataclasses.replace(cfg, metrics=dataclasses.replace(cfg.metrics, port=65535)), workers=2)


def test_describe_says_what_will_run():
    cfg = parse_config({**BASE, "metrics": {"enabled": False}})
    assert describe(cfg) == ("config OK: 1 model m (ridge); source stdin, answers stdout, dead letters stderr; no checkpoints; metrics off")


def test_unknown_keys_are_answered_with_the_closest_name():
    problems = problems_of(
        {
            "models": {"m": {"learner": "ridgee", "features": ["a"]}},
            "runtime": {"batch_sise": 1},
            "metrik": {},
            "source": {"type": "jsonl", "path": "x", "folow": True},
        }
    )
    suggested = {p.split(":")[0]: p.split("did you mean ")[1].split("?")[0] for p in problems}
    assert suggested == {
        "metrik": "'metrics'",
        "models.m.learner": "'ridge'",
        "runtime.batch_sise": "'batch_size'",
        "source.folow": "'follow'",
    }
