"""KafkaSource's position checks and on_offset_reset policies, on a scripted client (no broker).

The real-broker behaviour (tansu restarted, topic recreated) is in
tests/integration/test_kafka_offset_reset.py; these cover the branches a broker does not
produce on demand: the client's own out-of-range report, a log whose start moved past
us, a check that fails, a topic that vanished, ``latest``.
"""

from __future__ import annotations

import pytest

from regretflow.connectors import kafka
from regretflow.connectors.kafka import KafkaSource, OffsetResetError

PID = "events:0"


class ScriptedClient:
    """One partition's log (``low`` .. ``low + len(records)``) and a client position in it."""

    def __init__(self, settings, max_records, connect_timeout):
        self.low, self.records, self.topic_id, self.exists = 0, [b"r%d" % i for i in range(10)], "id-1", True
        self.position = 0
        self.fetched = None
        self.fail_checks = 0
        self.out_of_range: dict[str, int] = {}
        self.on_assign = self.on_revoke = self.on_lost = lambda pids: None

    def probe(self, timeout):
        pass

    def poll(self, max_records, timeout):
        end = self.low + len(self.records)
        self.fetched = end
        out = [(PID, off, self.records[off - self.low]) for off in range(max(self.position, self.low), end)][:max_records]
        if out:
            self.position = out[-1][1] + 1
        return out

    def seek(self, pid, offset):
        self.position = offset

    def topic_state(self, topic):
        if self.fail_checks:
            self.fail_checks -= 1
            raise ConnectionError("broker away")
        return self.exists, self.topic_id

    def fetched_end(self, pid):
        return self.fetched

    def log_range(self, pid):
        return self.low, self.low + len(self.records)

    def commit(self, offsets):
        pass

    def lag(self, positions):
        return {}

    def close(self):
        pass


@pytest.fixture
def source(monkeypatch):
    monkeypatch.setattr(kafka, "_KafkaPythonConsumer", ScriptedClient)
    monkeypatch.setattr(kafka, "POSITION_CHECK_SECONDS", 0.0)  # every poll checks every partition

    def make(policy: str = "fail", position: dict | None = None) -> KafkaSource:
        s = KafkaSource({"topics": ["events"], "on_offset_reset": policy})
        s.connect()
        s._assigned([PID])
        if position is not None:
            s.seek(PID, position)
        return s

    return make


def payloads(records):
    return [value for _, value in records]


def test_a_checked_position_hands_out_records_and_carries_the_topic_id(source):
    s = source()
    assert payloads(s.poll(4, 0.0)) == [b"r0", b"r1", b"r2", b"r3"]
    assert s.position(PID) == {"offset": 4, "topic_id": "id-1"}
    assert s.offset_resets == {("events", "0", "fail"): 0} and s.errors == 0


def test_an_out_of_range_report_of_the_client_goes_to_the_end_under_latest(source):
    s = source("latest", {"offset": 3, "topic_id": "id-1"})
    s._client.out_of_range[PID] = 3
    s._client.records.extend([b"r10", b"r11"])
    assert s.poll(100, 0.0) == []  # the records fetched before the reset are not handed out
    assert s.position(PID)["offset"] == 12 and s.offset_resets == {("events", "0", "latest"): 1}
    s._client.records.append(b"r12")
    assert payloads(s.poll(100, 0.0)) == [b"r12"]


def test_a_position_before_the_log_start_fails_and_keeps_the_position(source):
    s = source("fail", {"offset": 2, "topic_id": "id-1"})
    s._client.low = 5
    with pytest.raises(OffsetResetError) as failed:
        s.poll(100, 0.0)
    assert (failed.value.reason, failed.value.position, failed.value.low, failed.value.high) == ("before_log_start", 2, 5, 15)
    assert "events partition 0: our position 2 is not in its log (offsets 5..15" in str(failed.value)
    assert s.position(PID)["offset"] == 2  # a checkpoint written now stays at the last applied event


def test_a_recreated_topic_found_while_consuming_restarts_at_its_start_under_earliest(source):
    s = source("earliest")
    assert len(s.poll(100, 0.0)) == 10
    s._client.topic_id, s._client.records = "id-2", [b"n0", b"n1", b"n2"]
    assert payloads(s.poll(100, 0.0)) == []  # records of the new log are not handed out under the old position
    assert s.position(PID) == {"offset": 0, "topic_id": "id-2"}
    assert payloads(s.poll(100, 0.0)) == [b"n0", b"n1", b"n2"]
    assert s.offset_resets == {("events", "0", "earliest"): 1}


def test_a_position_past_the_fetched_end_is_a_reset_even_without_topic_ids(source):
    s = source("fail", {"offset": 50})  # an old checkpoint: no topic id
    s._client.topic_id = None
    with pytest.raises(OffsetResetError, match="past the end of the log"):
        s.poll(100, 0.0)


def test_a_fetched_end_older_than_the_assignment_is_not_taken_for_the_end_of_the_log(source):
    """A worker evicted from its group keeps, in librdkafka, the end its last fetch saw; another worker went on
    meanwhile. Back in the group it restores that worker's checkpoint, past the old end but inside the log (CI)."""
    s = source("fail", {"offset": 12, "topic_id": "id-1"})
    s._client.records.extend([b"r%d" % i for i in range(10, 15)])
    s._client.fetched = 8  # what this client saw before it was evicted; its first fetch after the seek is not back yet
    real_poll, s._client.poll = s._client.poll, lambda max_records, timeout: []
    assert s.poll(100, 0.0) == [] and s.offset_resets == {("events", "0", "fail"): 0}
    s._client.poll = real_poll
    assert payloads(s.poll(100, 0.0)) == [b"r12", b"r13", b"r14"]


def test_records_of_a_partition_that_cannot_be_checked_are_held_and_fetched_again(source):
    s = source("fail", {"offset": 1, "topic_id": "id-1"})
    s._client.fail_checks = 1
    assert s.poll(3, 0.0) == [] and s.errors == 1
    assert payloads(s.poll(3, 0.0)) == [b"r1", b"r2", b"r3"]


def test_a_vanished_topic_is_a_source_error_and_nothing_is_handed_out(source):
    s = source("fail", {"offset": 0, "topic_id": "id-1"})
    s._client.exists = False
    assert s.poll(100, 0.0) == [] and s.poll(100, 0.0) == []
    assert s.errors == 1 and s.position(PID)["offset"] == 0  # one error per absence, not per poll
    s._client.exists = True
    assert len(s.poll(100, 0.0)) == 10


def test_options_are_validated_with_their_names():
    with pytest.raises(ValueError, match="on_offset_reset: 'skip' is not one of fail, earliest, latest"):
        kafka.kafka_settings({"topics": ["t"], "on_offset_reset": "skip"}, kafka.SOURCE_OPTIONS)
    with pytest.raises(ValueError, match="auto_offset_reset: 'none' is not one of earliest, latest"):
        kafka.kafka_settings({"topics": ["t"], "auto_offset_reset": "none"}, kafka.SOURCE_OPTIONS)


def test_a_reset_whose_target_cannot_be_read_is_retried_at_the_next_poll(source, monkeypatch):
    s = source("earliest", {"offset": 50, "topic_id": "id-1"})
    s._client.fetched = 10
    real = s._client.log_range
    calls = iter([ConnectionError("broker away")])

    def flaky(pid):
        for exc in calls:
            raise exc
        return real(pid)

    monkeypatch.setattr(s._client, "log_range", flaky)
    assert s.poll(100, 0.0) == [] and s.offset_resets == {("events", "0", "earliest"): 0}
    assert payloads(s.poll(100, 0.0)) == []  # the reset happens here: position 0, fetched from the next poll
    assert s.offset_resets == {("events", "0", "earliest"): 1} and len(s.poll(100, 0.0)) == 10


def test_a_report_about_a_partition_given_up_meanwhile_is_ignored(source):
    s = source("fail", {"offset": 0, "topic_id": "id-1"})
    s._revoked([PID])
    s._client.out_of_range[PID] = 0
    s.poll(100, 0.0)  # no OffsetResetError: the partition is not ours any more
    assert s.offset_resets == {("events", "0", "fail"): 0} and s.errors == 0
