"""Config validation: every error names the key and what was expected."""

import pytest

from regretflow.engine.config import ConfigError, load_config, parse_config

BASE = {"models": {"m": {"learner": "ridge", "features": ["a"]}}}


@pytest.mark.parametrize("patch,key", [
    ({"models": {}}, "models"),
    ({"models": {"m": {"learner": "nope", "features": ["a"]}}}, "models.m.learner"),
    ({"models": {"m": {"learner": "ridge"}}}, "models.m.features"),
    ({"models": {"m": {"learner": "ridge", "features": ["a", "a"]}}}, "models.m.features"),
    ({"models": {"m": {"learner": "ridge", "features": ["a"], "colour": 1}}}, "models.m.colour"),
    ({"models": {"m": {"learner": "ridge", "features": ["a"], "groups": [{"field": "x"}]}}}, "models.m.groups[0]"),
    ({"models": {"m": {"learner": "ridge", "features": ["a"], "groups": [{"field": "x", "edges": [3, 1]}]}}}, "models.m.groups[0].edges"),
    ({"models": {"m": {"learner": "ridge", "features": ["a"], "joins": {"ttl_events": -1}}}}, "models.m.joins.ttl_events"),
    ({"models": {"m": {"learner": "ridge", "features": ["a"], "regret": {"lag": 2}}}}, "models.m.regret.lag"),
    ({"runtime": {"batch_size": "big"}}, "runtime.batch_size"),
    ({"metrics": {"port": "x"}}, "metrics.port"),
    ({"source": {"type": "ftp"}}, "source.type"),
    ({"source": {"type": "jsonl"}}, "source.path"),
    ({"checkpoint": {"every_seconds": -1}}, "checkpoint.every_seconds"),
    ({"unknown": 1}, "unknown"),
])
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
