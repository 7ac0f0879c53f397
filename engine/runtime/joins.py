"""Decisions and predictions waiting for their feedback.

A bounded store per model shard. Windows are measured on the event stream itself
(events of the shard since the request, and optionally the events' own ``ts``), never
on the wall clock, so a replay after a crash closes every window at the same event
and the learner state comes out bit for bit the same.

>>> joins = PendingJoins(ttl_events=2, ttl_seconds=None, max_pending=10)
>>> evicted = joins.add(JoinEntry("d1", seq=1, ts=None, kind="decide", action=0, probability=0.5))
>>> [e.id for e in joins.expire(seq=3, ts=None)], [e.id for e in joins.expire(seq=4, ts=None)]
([], ['d1'])
>>> joins.take("d1") is None, joins.was_expired("d1")
(True, True)
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from regretflow.engine.runtime.dead_letters import BadEvent

_KIND_CODES = {"predict": 0, "decide": 1, "fair": 2}
_KIND_NAMES = {v: k for k, v in _KIND_CODES.items()}


class JoinEntry:
    """What a request left behind for its feedback: inputs, what was answered, when."""

    __slots__ = ("id", "seq", "ts", "kind", "x", "groups", "prediction", "action", "probability", "n_choices", "actions", "extra", "flags",
                 "decision")

    # flags of a fair decision: which of its two replies have arrived
    FEEDBACK, AUDIT = 1, 2

    def __init__(self, id, seq, ts, kind, x=None, groups=None, prediction=0.0, action=-1, probability=1.0, n_choices=0, actions=None,
                 extra=None, flags=0, decision=-1):
        self.id = id
        self.seq = seq
        self.ts = ts
        self.kind = kind
        self.x = x
        self.groups = groups
        self.prediction = prediction
        self.action = action
        self.probability = probability
        self.n_choices = n_choices
        self.actions = actions
        self.extra = extra
        self.flags = flags
        self.decision = decision  # the learner's decision number (late feedback selects its draw)


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
                self.ttl_seconds is not None and first.ts is not None and self.latest_ts is not None
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

    def reply_target(self, ref: str, seq: int, ts: float | None, request: str = "predict or decide",
                     reply: str = "feedback to") -> JoinEntry:
        """The pending request a reply (event ``seq`` at ``ts``) refers to, left in place; or
        BadEvent ``late_feedback`` if its window has closed, ``unknown_ref`` if there is none.

        ``request`` and ``reply`` name the two in the messages ("decide", "audit of").

        >>> joins = PendingJoins(ttl_events=1, ttl_seconds=None, max_pending=10)
        >>> _ = joins.add(JoinEntry("d1", seq=1, ts=None, kind="decide"))
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
        state: dict[str, Any] = {
            "ids": np.array([e.id for e in entries], dtype=str),
            "seq": np.array([e.seq for e in entries], dtype=np.int64),
            "ts": np.array([np.nan if e.ts is None else e.ts for e in entries], dtype=np.float64),
            "kind": np.array([_KIND_CODES[e.kind] for e in entries], dtype=np.int8),
            "prediction": np.array([e.prediction for e in entries], dtype=np.float64),
            "action": np.array([e.action for e in entries], dtype=np.int64),
            "probability": np.array([e.probability for e in entries], dtype=np.float64),
            "n_choices": np.array([e.n_choices for e in entries], dtype=np.int64),
            "flags": np.array([e.flags for e in entries], dtype=np.int64),
            "decision": np.array([e.decision for e in entries], dtype=np.int64),
            "closed": np.array(list(self.closed), dtype=str),
            "latest_ts": self.latest_ts,
            "evicted": self.evicted,
        }
        for field in ("x", "groups", "actions", "extra"):
            present = np.array([getattr(e, field) is not None for e in entries], dtype=np.bool_)
            rows = [np.asarray(getattr(e, field)) for e in entries if getattr(e, field) is not None]
            state[f"{field}_present"] = present
            state[f"{field}_shapes"] = np.array([r.shape + (1,) * (2 - r.ndim) for r in rows], dtype=np.int64).reshape(-1, 2)
            state[f"{field}_ndim"] = np.array([r.ndim for r in rows], dtype=np.int64)
            state[f"{field}_flat"] = (np.concatenate([r.ravel().astype(np.float64) for r in rows]) if rows else np.zeros(0))
            state[f"{field}_bool"] = bool(rows and rows[0].dtype == np.bool_)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ids = [str(i) for i in state["ids"]]
        columns = {}
        for field in ("x", "groups", "actions", "extra"):
            present = np.asarray(state[f"{field}_present"], dtype=bool)
            shapes, ndims, flat = state[f"{field}_shapes"], state[f"{field}_ndim"], np.asarray(state[f"{field}_flat"])
            as_bool = bool(state[f"{field}_bool"])
            values, at, k = [], 0, 0
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
            columns[field] = values
        self.pending = OrderedDict()
        for i, eid in enumerate(ids):
            ts = float(state["ts"][i])
            self.pending[eid] = JoinEntry(
                eid, int(state["seq"][i]), None if np.isnan(ts) else ts, _KIND_NAMES[int(state["kind"][i])],
                x=columns["x"][i], groups=columns["groups"][i], prediction=float(state["prediction"][i]),
                action=int(state["action"][i]), probability=float(state["probability"][i]),
                n_choices=int(state["n_choices"][i]), actions=columns["actions"][i], extra=columns["extra"][i],
                flags=int(state["flags"][i]), decision=int(state["decision"][i]),
            )
        self.closed = OrderedDict((str(i), None) for i in state["closed"])
        self.latest_ts = None if state["latest_ts"] is None else float(state["latest_ts"])
        self.evicted = int(state["evicted"])
