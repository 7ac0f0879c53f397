"""Stream a pandas frame to a Kafka topic as Arrow batches of events (docs/arrow.md).

The frame is a synthetic regression problem: three features, a segment attribute and a
label. Every row becomes one ``observe`` event of model ``m``, sent in messages of
``--rows-per-message`` events. A config with a ``kafka`` source on this topic and a model ``m``
of features ``x0, x1, x2`` (a group may read ``segment``) learns from them; the test
``tests/integration/test_kafka_arrow.py`` runs this script and writes such a config.

    python deploy/examples/stream_frame.py --bootstrap 127.0.0.1:9092 --topic events --rows 100000
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from confluent_kafka import Producer

from regretflow.connectors.arrow import produce_frame


def synthetic_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """``rows`` labelled rows: features x0..x2, a segment (a, b, c) and y = x . w + noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 3))
    frame = pd.DataFrame(X, columns=["x0", "x1", "x2"])
    frame["y"] = X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=rows)
    frame["attributes.segment"] = np.array(["a", "b", "c"])[np.arange(rows) % 3]
    return frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="events")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rows-per-message", type=int, default=5_000)
    parser.add_argument("--model", default="m")
    args = parser.parse_args(argv)
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5})
    sent = produce_frame(
        producer,
        args.topic,
        synthetic_frame(args.rows),
        rows_per_message=args.rows_per_message,
        model=args.model,
        kind="observe",
        features=["x0", "x1", "x2"],
        label="y",
        id_prefix="row-",
    )
    left = producer.flush(30)
    print(f"{args.rows} events in {sent} Arrow messages to {args.topic}" + (f" ({left} undelivered)" if left else ""))
    return 1 if left else 0


if __name__ == "__main__":
    raise SystemExit(main())
