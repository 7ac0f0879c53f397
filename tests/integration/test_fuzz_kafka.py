"""The fuzz mixture on a real broker (tansu), through ``regretflow run``: nothing stops, nothing is lost.

The good traffic of ``tests/fuzz`` (regression sharded by key, a bandit, a fair
learner) is produced to a 3-partition topic, once alone and once with one bad payload
of every kind among it; each bad payload goes to the partition of the good event
before it, so every partition sees its events in the mixture's order. The daemon
exits 0 on both; its dead letters (on a Kafka topic) match, by reason and model, those
of the in-process engine on the same mixture; and every shard's checkpointed state is
bit-identical to the good-only run's.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from regretflow.engine.runtime.checkpoint import latest_checkpoint
from tests.conftest import REGRETFLOW, flat
from tests.fuzz.streams import config_dict
from tests.fuzz.test_fuzz_engine import mixture, reference, run_engine
from tests.integration.kafka_broker import Broker, consume_all, free_port, produce

pytestmark = pytest.mark.integration

PARTITIONS = 3
MAX_KAFKA_MESSAGE = 900_000  # the producer's default limit is 1 MB: the 10 MB kind stays in the in-process suite


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("broker") / "tansu.log")
    yield b
    b.stop()


def kafka_key(event: dict) -> bytes:
    return f"{event['model']}:{event.get('key', '')}".encode()


def keyed(stream: list[bytes], good: set[bytes]) -> list[tuple[bytes, bytes]]:
    """(Kafka key, payload): a good event by its model and shard key, a bad one with the good event before it."""
    out, last = [], b"start"
    for payload in stream:
        if payload in good:
            last = kafka_key(orjson.loads(payload))
        out.append((last, payload))
    return out


def toml(table: dict, prefix: str = "") -> str:
    """The subset of TOML the fuzz config needs: scalars, arrays, tables and arrays of tables."""
    lines, nested = [], []
    for key, value in table.items():
        if isinstance(value, dict):
            nested.append(f"\n[{prefix}{key}]\n" + toml(value, f"{prefix}{key}."))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            nested.extend(f"\n[[{prefix}{key}]]\n" + toml(item, f"{prefix}{key}.") for item in value)
        else:
            lines.append(f"{key} = {'true' if value is True else 'false' if value is False else json.dumps(value)}")
    return "\n".join(lines) + "".join(nested) + "\n"


def run_daemon(broker: Broker, tmp_path: Path, name: str, records: list[tuple[bytes, bytes]]) -> Path:
    topic = broker.create_topic(PARTITIONS, name)
    produce(broker.bootstrap, topic, records)
    raw = config_dict(60)
    raw.update(
        {
            "source": {
                "type": "kafka",
                "bootstrap_servers": broker.bootstrap,
                "topics": [topic],
                "group_id": f"{name}-{topic}",
                "session_timeout_ms": 2000,
                "heartbeat_interval_ms": 500,
                "request_timeout_ms": 5000,
            },
            "answers": {"type": "null"},
            "dead_letters": {"type": "kafka", "topic": f"{topic}-dead"},
            "runtime": {"batch_size": 64, "batch_timeout_ms": 50, "idle_exit_seconds": 4.0},
            "checkpoint": {"dir": f"{name}-state", "every_events": 10**9},
            "metrics": {"port": free_port()},
        }
    )
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(toml(raw))
    with open(tmp_path / f"{name}.log", "wb") as log:
        code = subprocess.run(
            [REGRETFLOW, "run", "--config", str(cfg)], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, timeout=300
        ).returncode
    assert code == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
    return tmp_path / f"{name}-state", topic


def shard_states(state_dir: Path) -> dict:
    """{(partition number, model, key): flattened shard state} over every partition's final checkpoint."""
    out = {}
    for part in sorted(p for p in state_dir.iterdir() if p.is_dir()):
        found = latest_checkpoint(part)
        if found:
            number = part.name.rsplit(".", 1)[-1]  # the directory is named after "topic:partition"
            for shard in found[0]["shards"].values():
                out[(number, shard["model"], shard["key"])] = flat(shard)
    return out


@settings(max_examples=1, deadline=None, derandomize=True, database=None, phases=(Phase.generate,), suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_the_daemon_on_a_real_broker_dead_letters_the_fuzz_mixture_and_learns_as_without_it(broker, tmp_path_factory, data):
    good, _, config, _ = reference()
    stream, order = mixture(data)
    stream = [p for p in stream if len(p) <= MAX_KAFKA_MESSAGE]
    order = [(name, bad) for name, bad in order if len(bad.payload) <= MAX_KAFKA_MESSAGE]
    in_process = run_engine(config, stream)
    expected = Counter((orjson.loads(v)["reason"], orjson.loads(v)["model"]) for _, v, _ in in_process.dead_letters.records)
    assert sum(expected.values()) == len(order) >= 80

    tmp_path = tmp_path_factory.mktemp("fuzz-kafka")
    good_set = set(good)
    clean_dir, _ = run_daemon(broker, tmp_path, "clean", keyed(list(good), good_set))
    fuzz_dir, topic = run_daemon(broker, tmp_path, "fuzz", keyed(stream, good_set))

    dead = consume_all(broker.bootstrap, f"{topic}-dead", len(order))
    letters = [orjson.loads(m.value()) for m in dead]
    got = Counter((d["reason"], d["model"]) for d in letters)
    assert got == expected, (f"on the broker only: {dict(got - expected)}", f"in-process only: {dict(expected - got)}")
    print(f"{len(letters)} dead letters on the broker, by reason: {dict(Counter(d['reason'] for d in letters))}")

    clean, fuzzed = shard_states(clean_dir), shard_states(fuzz_dir)
    assert len(clean) == 5
    # a bad event's shard (another key, or the same key on another partition) is test_fuzz_engine's
    # test_bad_payloads_create_no_shards; here: the good shards learned exactly as without the bad events
    fuzzed_good = {sid: s for sid, s in fuzzed.items() if sid in clean}
    print(f"shards: {len(clean)} in the good-only run, {len(fuzzed)} in the fuzzed run")
    assert fuzzed_good.keys() == clean.keys()
    for sid, state in clean.items():
        assert fuzzed_good[sid].keys() == state.keys(), sid
        for key, value in state.items():
            other = fuzzed_good[sid][key]
            if isinstance(value, np.ndarray):
                assert value.dtype == other.dtype and value.tobytes() == other.tobytes(), (sid, key)
            else:
                assert value == other, (sid, key)
