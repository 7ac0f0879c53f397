"""The Kafka sinks' ``headers`` option: checked when the config is read, off for answers and on for dead letters by default."""

import pytest

from regretflow.engine.config import ConfigError, parse_config


def config_with_answers(**answers):
    return {
        "models": {"m": {"learner": "ridge", "features": ["x"]}},
        "source": {"type": "kafka", "topics": ["events"]},
        "answers": {"type": "kafka", "topic": "answers", **answers},
    }


def test_headers_take_true_false_or_nothing():
    for value in (True, False):
        assert parse_config(config_with_answers(headers=value)).answers.options["headers"] is value
    assert "headers" not in parse_config(config_with_answers()).answers.options
    with pytest.raises(ConfigError, match=r"answers\.headers: expected true or false"):
        parse_config(config_with_answers(headers="yes"))
