"""The Kafka source's ``fetch_queue_backoff_ms``: checked when the config is read, and handed to librdkafka.

librdkafka stops prefetching for ``fetch.queue.backoff.ms`` once its local queue passes its thresholds; its own
default (1000 ms) let a queue of large Arrow messages run dry, so a worker polled an empty queue a third of the
time (docs/benchmarks.md, the Arrow path). The engine's default is 10 ms.
"""

import pytest

from regretflow.connectors import kafka as kafka_module
from regretflow.connectors.kafka import SOURCE_OPTIONS, kafka_settings
from regretflow.engine.config import ConfigError, parse_config


def config_with_source(**source):
    return {
        "models": {"m": {"learner": "ridge", "features": ["x"]}},
        "source": {"type": "kafka", "topics": ["events"], **source},
    }


def test_the_backoff_defaults_to_10_ms_and_takes_milliseconds_from_0():
    assert kafka_settings({"topics": ["events"]}, SOURCE_OPTIONS)["fetch_queue_backoff_ms"] == 10
    assert parse_config(config_with_source(fetch_queue_backoff_ms=0)).source.options["fetch_queue_backoff_ms"] == 0
    for bad in (-1, 2.5, "10", True, 300_001):
        with pytest.raises(ConfigError, match=r"source\.fetch_queue_backoff_ms: expected an integer number of milliseconds"):
            parse_config(config_with_source(fetch_queue_backoff_ms=bad))


def test_the_confluent_consumer_hands_the_backoff_to_librdkafka(monkeypatch):
    import confluent_kafka

    seen = []

    class RecordingConsumer(confluent_kafka.Consumer):  # a real librdkafka consumer: an unknown property would raise
        def __init__(self, conf):
            seen.append(conf)
            super().__init__(conf)

    monkeypatch.setattr(confluent_kafka, "Consumer", RecordingConsumer)
    settings = kafka_settings({"topics": ["events"], "backend": "confluent", "fetch_queue_backoff_ms": 25}, SOURCE_OPTIONS)
    consumer = kafka_module._ConfluentConsumer(settings, 512, 1.0)
    try:
        assert seen[0]["fetch.queue.backoff.ms"] == 25
    finally:
        consumer._consumer.close()
