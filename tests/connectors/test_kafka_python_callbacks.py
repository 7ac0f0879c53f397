"""kafka-python calls rebalance callbacks inside its ``poll`` and only logs what they raise;
the source raises it again from its own ``poll``, so a failed revoke (a checkpoint not
written) stops the worker as it does with confluent-kafka. A unit test with a stub client."""

import pytest
from kafka import TopicPartition

from regretflow.connectors.kafka import _KafkaPythonConsumer


class StubClient:
    """kafka-python's consumer, reduced to a poll that runs a rebalance and swallows the callback's error."""

    def __init__(self, consumer: _KafkaPythonConsumer):
        self.consumer = consumer

    def poll(self, timeout_ms: int, max_records: int) -> dict:
        try:
            self.consumer.rebalanced(self.consumer.on_revoke, [TopicPartition("events", 0)])
        except Exception:
            pass  # what kafka-python's coordinator does (it logs)
        return {}


def test_an_error_in_a_revoke_callback_is_raised_by_the_next_poll():
    consumer = object.__new__(_KafkaPythonConsumer)
    consumer.callback_error = None
    revoked = []

    def on_revoke(pids):
        revoked.append(pids)
        raise OSError("No space left on device")

    consumer.on_revoke = on_revoke
    consumer._consumer = StubClient(consumer)
    with pytest.raises(OSError, match="No space left"):
        consumer.poll(10, 0.1)
    assert revoked == [["events:0"]]
    consumer.on_revoke = lambda pids: None
    assert consumer.poll(10, 0.1) == []  # raised once, not again
