"""Partition ids: how a source names one of its partitions ("topic:partition").

The engine keys its per-partition state, checkpoint directories and the
``topic``/``partition`` metric labels by these ids; sources build them with
:func:`pid_of` and turn them back with :func:`split_pid`, nowhere else.

>>> pid_of("events", 3)
'events:3'
>>> split_pid("my:topic:3")  # a topic name may hold ':'; the partition is after the last one
('my:topic', 3)
"""

from __future__ import annotations


def pid_of(topic: str, partition: int) -> str:
    """The id of ``partition`` of ``topic``."""
    return f"{topic}:{partition}"


def split_pid(pid: str) -> tuple[str, int]:
    """(topic, partition) of a partition id made by :func:`pid_of`."""
    topic, _, partition = pid.rpartition(":")
    return topic, int(partition)
