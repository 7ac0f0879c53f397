"""The per-batch metric calls: cached label children and the histogram's bucket search count what prometheus_client and numpy would."""

from __future__ import annotations

import numpy as np

from regretflow.engine.observability.metrics import LATENCY_BUCKETS, Metrics, WeightedHistogram


def test_cached_label_children_are_the_registry_s_children_and_a_removal_forgets_them():
    m = Metrics(["a", "b"], {"a": ["all"], "b": ["all"]})
    child = m.events.labels(model="a", kind="observe")
    assert m.events.labels(kind="observe", model="a") is child is m.events.labels("a", "observe")
    child.inc(2)
    m.events.labels(model="a", kind="observe").inc(3)
    m.events.labels(model="b", kind="observe").inc(1)
    assert m.registry.get_sample_value("regretflow_events_total", {"model": "a", "kind": "observe"}) == 5
    assert m.registry.get_sample_value("regretflow_events_total", {"model": "b", "kind": "observe"}) == 1
    m.events.remove("a", "observe")
    fresh = m.events.labels(model="a", kind="observe")
    assert fresh is not child and fresh._value.get() == 0
    m.events.clear()
    assert m.events.labels(model="b", kind="observe")._value.get() == 0


def test_the_weighted_histogram_puts_each_value_in_numpy_s_bucket():
    h = WeightedHistogram("regretflow_test_seconds", "A test.")
    bounds = np.array(LATENCY_BUCKETS)
    values = [
        0.0,
        *LATENCY_BUCKETS,
        *(np.nextafter(b, 0.0) for b in LATENCY_BUCKETS),
        *(np.nextafter(b, 9.0) for b in LATENCY_BUCKETS),
        7.0,
    ]
    expected = np.zeros(len(bounds) + 1, dtype=np.int64)
    for v in values:
        h.observe(float(v), 2)
        expected[np.searchsorted(bounds, v, side="left")] += 2
    assert h.counts.tolist() == expected.tolist()


def test_both_sink_series_exist_from_the_start_at_0():
    # an alert on rate(regretflow_sink_records_total{sink="dead_letters"}[5m]) needs the series before the first dead letter
    m = Metrics(["a"], {"a": ["all"]})
    for sink in ("answers", "dead_letters"):
        assert m.registry.get_sample_value("regretflow_sink_records_total", {"sink": sink}) == 0
