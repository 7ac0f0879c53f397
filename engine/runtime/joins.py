"""Decisions and predictions waiting for their feedback.

A bounded store per model shard. Windows are measured on the event stream itself
(events of the shard since the request, and optionally the events' own ``ts``), never
on the wall clock, so a replay after a crash closes every window at the same event
and the learner state comes out bit for bit the same.

What an entry carries for its feedback is its task's :class:`JoinPayload` (a predict's
inputs and answer, a bandit decision, a fair panel); the store only knows its id and
its window. Payloads are checkpointed as the columns below, so the checkpoint keys
stay those of every earlier release.

>>> joins = PendingJoins(ttl_events=2, ttl_seconds=None, max_pending=10)
>>> evicted = joins.add(JoinEntry("d1", seq=1, ts=None, payload=JoinPayload()))
>>> [e.id for e in joins.expire(seq=3, ts=None)], [e.id for e in joins.expire(seq=4, ts=None)]
([], ['d1'])
>>> joins.take("d1") is None, joins.was_expired("d1")
(True, True)
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, ClassVar

import numpy as np

from regretflow.engine.runtime.dead_letters import BadEvent

# the checkpoint columns of a payload, with the value of a payload that has none
COLUMN_DEFAULTS: dict[str, Any] = {
    "x": None,
    "groups": None,
    "prediction": 0.0,
    "action": -1,
    "probability": 1.0,
    "n_choices": 0,
    "actions": None,
    "extra": None,
    "decision": -1,
}
_ARRAY_COLUMNS = ("x", "groups", "actions", "extra")
# payload classes by their checkpoint code (0: predict, 1: decide, 2: fair panel)
PAYLOADS: dict[int, type[JoinPayload]] = {}


class JoinPayload:
    """What a request leaves behind for its feedback; each task defines its own.

    A subclass names its checkpoint ``CODE`` (registered with :func:`register_payload`)
    and maps itself onto the checkpoint columns of :data:`COLUMN_DEFAULTS`.

    >>> JoinPayload().columns()
    {}
    """

    __slots__ = ()
    CODE: ClassVar[int] = -1

    def columns(self) -> dict[str, Any]:
        """The checkpoint columns this payload fills (the others keep their defaults)."""
        return {}

    @classmethod
    def from_columns(cls, columns: dict[str, Any]) -> JoinPayload:
        """The payload back from its checkpoint columns."""
        return cls()


def register_payload(cls: type[JoinPayload]) -> type[JoinPayload]:
    """Make ``cls`` loadable from checkpoints under its ``CODE`` (a class decorator)."""
    if PAYLOADS.get(cls.CODE, cls) is not cls:
        raise ValueError(f"join payload code {cls.CODE} is taken by {PAYLOADS[cls.CODE].__name__}")
    PAYLOADS[cls.CODE] = cls
    return cls


class JoinEntry:
    """A request waiting for its feedback: its id, where its window opened, its task's payload."""

    __slots__ = ("id", "seq", "ts", "payload", "flags")

    def __init__(self, id: str, seq: int, ts: float | None, payload: JoinPayload, flags: int = 0):
        self.id = id
        self.seq = seq
        self.ts = ts
        self.payload = payload
        self.flags = flags  # replies received so far, for requests that take more than one (a task's own bits)


class PendingJoins:
    """Insertion-ordered pending requests with event-count and event-time windows."""

    def __init__(self, ttl_events: int, ttl_seconds: float | None, max_pending: int):
        self.ttl_events = ttl_events
        self.ttl_seconds = ttl_seconds
        self.max_pending = max_pending
        self.pending: OrderedDict[str, JoinEntry] = OrderedDict()
        # ids whose window closed recently, to tell late feedback from unknown refs
        self.closed: OrderedDict[str, None] = OrderedDict()
        self.latest_ts: float | None = None
        self.evicted = 0

    def __len__(self) -> int:
        return len(self.pending)

    def __contains__(self, eid: str) -> bool:
        return eid in self.pending

    def add(self, entry: JoinEntry) -> list[JoinEntry]:
        """Store a request; returns entries evicted because the store is full."""
        self.pending[entry.id] = entry
        evicted = []
        while len(self.pending) > self.max_pending:
            _, old = self.pending.popitem(last=False)
            self._close(old.id)
            evicted.append(old)
        self.evicted += len(evicted)
        return evicted

    def expire(self, seq: int, ts: float | None) -> list[JoinEntry]:
        """Close the windows that event number ``seq`` (time ``ts``) ends, oldest first."""
        if ts is not None and (self.latest_ts is None or ts > self.latest_ts):
            self.latest_ts = ts
        out = []
        pending = self.pending
        while pending:
            first = next(iter(pending.values()))
            if seq - first.seq > self.ttl_events or (
                self.ttl_seconds is not None
                and first.ts is not None
                and self.latest_ts is not None
                and self.latest_ts - first.ts > self.ttl_seconds
            ):
                pending.popitem(last=False)
                self._close(first.id)
                out.append(first)
            else:
                break
        return out

    def would_expire(self, entry: JoinEntry, seq: int, ts: float | None) -> bool:
        """Whether ``entry``'s window is closed at event ``seq`` (time ``ts``), without changing anything."""
        if seq - entry.seq > self.ttl_events:
            return True
        if self.ttl_seconds is None or entry.ts is None:
            return False
        latest = self.latest_ts if ts is None else ts if self.latest_ts is None else max(ts, self.latest_ts)
        return latest is not None and latest - entry.ts > self.ttl_seconds

    def take(self, eid: str) -> JoinEntry | None:
        """Remove and return the request ``eid`` if its window is open."""
        return self.pending.pop(eid, None)

    def was_expired(self, eid: str) -> bool:
        return eid in self.closed

    def reply_target(
        self, ref: str, seq: int, ts: float | None, request: str = "predict or decide", reply: str = "feedback to"
    ) -> JoinEntry:
        """The pending request a reply (event ``seq`` at ``ts``) refers to, left in place; or
        BadEvent ``late_feedback`` if its window has closed, ``unknown_ref`` if there is none.

        ``request`` and ``reply`` name the two in the messages ("decide", "audit of").

        >>> joins = PendingJoins(ttl_events=1, ttl_seconds=None, max_pending=10)
        >>> _ = joins.add(JoinEntry("d1", seq=1, ts=None, payload=JoinPayload()))
        >>> joins.reply_target("d1", seq=2, ts=None).id
        'd1'
        >>> joins.reply_target("d1", seq=3, ts=None)
        Traceback (most recent call last):
        ...
        regretflow.engine.runtime.dead_letters.BadEvent: late_feedback: feedback to 'd1' arrived after its join window closed
        """
        entry = self.pending.get(ref)
        if entry is None and not self.was_expired(ref):
            raise BadEvent("unknown_ref", f"no pending {request} with id {ref!r}")
        if entry is None or self.would_expire(entry, seq, ts):
            raise BadEvent("late_feedback", f"{reply} {ref!r} arrived after its join window closed")
        return entry

    def _close(self, eid: str) -> None:
        self.closed[eid] = None
        while len(self.closed) > self.max_pending:
            self.closed.popitem(last=False)

    # -- checkpoint ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        entries = list(self.pending.values())
        columns = [{**COLUMN_DEFAULTS, **e.payload.columns()} for e in entries]
        state: dict[str, Any] = {
            "ids": np.array([e.id for e in entries], dtype=str),
            "seq": np.array([e.seq for e in entries], dtype=np.int64),
            "ts": np.array([np.nan if e.ts is None else e.ts for e in entries], dtype=np.float64),
            "kind": np.array([e.payload.CODE for e in entries], dtype=np.int8),
            # a classifier's prediction may be a class name: kept as text beside the numbers (NaN there)
            "prediction": np.array([np.nan if isinstance(c["prediction"], str) else c["prediction"] for c in columns], dtype=np.float64),
            "prediction_is_text": np.array([isinstance(c["prediction"], str) for c in columns], dtype=np.bool_),
            "prediction_text": np.array([c["prediction"] if isinstance(c["prediction"], str) else "" for c in columns], dtype=str),
            "action": np.array([c["action"] for c in columns], dtype=np.int64),
            "probability": np.array([c["probability"] for c in columns], dtype=np.float64),
            "n_choices": np.array([c["n_choices"] for c in columns], dtype=np.int64),
            "flags": np.array([e.flags for e in entries], dtype=np.int64),
            "decision": np.array([c["decision"] for c in columns], dtype=np.int64),
            "closed": np.array(list(self.closed), dtype=str),
            "latest_ts": self.latest_ts,
            "evicted": self.evicted,
        }
        for field in _ARRAY_COLUMNS:
            present = np.array([c[field] is not None for c in columns], dtype=np.bool_)
            rows = [np.asarray(c[field]) for c in columns if c[field] is not None]
            state[f"{field}_present"] = present
            state[f"{field}_shapes"] = np.array([r.shape + (1,) * (2 - r.ndim) for r in rows], dtype=np.int64).reshape(-1, 2)
            state[f"{field}_ndim"] = np.array([r.ndim for r in rows], dtype=np.int64)
            state[f"{field}_flat"] = np.concatenate([r.ravel().astype(np.float64) for r in rows]) if rows else np.zeros(0)
            state[f"{field}_bool"] = bool(rows and rows[0].dtype == np.bool_)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ids = [str(i) for i in state["ids"]]
        arrays: dict[str, list[np.ndarray | None]] = {}
        for field in _ARRAY_COLUMNS:
            present = np.asarray(state[f"{field}_present"], dtype=bool)
            shapes, ndims, flat = state[f"{field}_shapes"], state[f"{field}_ndim"], np.asarray(state[f"{field}_flat"])
            as_bool = bool(state[f"{field}_bool"])
            values: list[np.ndarray | None] = []
            at, k = 0, 0
            for has in present:
                if not has:
                    values.append(None)
                    continue
                rows, cols = (int(v) for v in shapes[k])
                size = rows * cols
                arr = flat[at : at + size].copy()
                arr = arr.reshape(rows, cols) if int(ndims[k]) == 2 else arr.reshape(-1) if int(ndims[k]) == 1 else arr.reshape(())
                values.append(arr.astype(np.bool_) if as_bool else arr)
                at += size
                k += 1
            arrays[field] = values
        is_text = state.get("prediction_is_text")  # absent from checkpoints written before class names were kept
        texts = state.get("prediction_text")
        self.pending = OrderedDict()
        for i, eid in enumerate(ids):
            ts = float(state["ts"][i])
            code = int(state["kind"][i])
            payload_cls = PAYLOADS.get(code)
            if payload_cls is None:
                raise ValueError(f"pending join {eid!r} is of kind {code}, which no registered task knows")
            columns: dict[str, Any] = {field: arrays[field][i] for field in _ARRAY_COLUMNS}
            columns.update(
                prediction=str(texts[i]) if is_text is not None and texts is not None and is_text[i] else float(state["prediction"][i]),
                action=int(state["action"][i]),
                probability=float(state["probability"][i]),
                n_choices=int(state["n_choices"][i]),
                decision=int(state["decision"][i]),
            )
            self.pending[eid] = JoinEntry(
                eid, int(state["seq"][i]), None if np.isnan(ts) else ts, payload_cls.from_columns(columns), flags=int(state["flags"][i])
            )
        self.closed = OrderedDict((str(i), None) for i in state["closed"])
        self.latest_ts = None if state["latest_ts"] is None else float(state["latest_ts"])
        self.evicted = int(state["evicted"])
