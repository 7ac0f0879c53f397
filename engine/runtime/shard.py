"""Routing events to model shards, and what a shard does with each kind of event.

A shard is one learner with its pending joins and its tracker. Each declared model
has one shard, or one per ``key`` when ``params.shard_by_key`` is on (e.g. one
learner per campaign). Within a shard, consecutive ``observe`` or ``predict`` events
are processed as one vectorised run; every other event first flushes the run, so the
state is a function of the event order alone, never of where micro-batches fall.
What each kind of event does is the model's task's (:mod:`regretflow.engine.tasks`);
the shard keeps what every task shares: runs, join windows, quarantine and state.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import orjson

from regretflow.engine.config import ModelSpec
from regretflow.engine.errors import FatalError
from regretflow.engine.learner_factory import build_learner
from regretflow.engine.runtime.events import BadEvent, Event
from regretflow.engine.runtime.joins import JoinEntry, JoinPayload, PendingJoins
from regretflow.engine.tasks import Task, task_for

# Test hook: the N-th vectorised run of this process raises after its learner call
# (state changed, nothing answered), as a kernel bug would. Never set in production.
_FAIL_AT_RUN = int(os.environ.get("REGRETFLOW_TEST_FAIL_AT_RUN", "0") or 0)
_runs_done = 0


class RunFailed(FatalError):
    """A vectorised run raised: its events cannot be told apart, so the worker ends
    without a checkpoint past the last one (the run is replayed after the restart)."""


def nonfinite_state(*objects: Any) -> str | None:
    """Name of the first float array (or float) attribute holding NaN or +-inf, else None.

    Looks at the objects' attributes and one level into lists, tuples and dicts (where
    learners keep per-action or per-group arrays), and into nested objects' attributes;
    read-only arrays are derived caches and skipped.

    >>> class L: pass
    >>> l = L(); l.w = np.array([1.0, np.nan]); nonfinite_state(l)
    'L.w'
    """
    for obj in objects:
        found = _nonfinite_in(obj, type(obj).__name__, 2)
        if found:
            return found
    return None


_SKIP = (str, int, bool, type(None), bytes)


def _nonfinite_in(value: Any, name: str, depth: int) -> str | None:
    if type(value) is np.ndarray:
        # read-only arrays are caches derived from the state (e.g. a fair learner's class
        # scores per decision), which is scanned itself. One reduction, no temporary: NaN
        # and +-inf propagate into the sum (a finite array whose sum overflows is ~1e308
        # and as good as broken anyway)
        if value.dtype.kind in "fc" and value.size and value.flags.writeable and not np.isfinite(np.add.reduce(value, axis=None)):
            return name
        return None
    if type(value) is float:
        return None if math.isfinite(value) else name
    if depth <= 0 or isinstance(value, _SKIP):
        return None
    if isinstance(value, (list, tuple)):
        if not value or isinstance(value[0], _SKIP):
            return None  # feature names, labels: nothing numeric to watch
        items = enumerate(value[:1024])
    elif isinstance(value, dict):
        first = next(iter(value.values()), None)
        if type(first) is np.ndarray and not first.flags.writeable:
            return None  # a cache of derived, read-only arrays
        items = list(value.items())[:1024]
    else:
        attrs = getattr(value, "__dict__", None)
        if attrs is None or isinstance(value, type):
            return None
        items = attrs.items()
    for k, v in items:
        if isinstance(v, _SKIP):
            continue
        found = _nonfinite_in(v, f"{name}.{k}" if type(k) is str and not isinstance(value, dict) else f"{name}[{k!r}]", depth - 1)
        if found:
            return found
    return None


class Shard:
    """One learner, its joins and its tracker; its task decides what each kind of event does."""

    def __init__(self, spec: ModelSpec, key: str):
        self.spec = spec
        self.key = key
        self.learner = build_learner(spec, key)
        self.task: Task = task_for(type(self.learner))
        j = spec.joins
        self.joins = PendingJoins(j.ttl_events, j.ttl_seconds, j.max_pending)
        self.seq = 0
        self.tracker = self.task.make_tracker(spec)
        self.run_kind: str | None = None
        self.run: list[Event] = []
        self.run_ids: set[str] = set()
        self.expired = 0
        self.evicted_reported = 0
        self.dirty = False
        # why the shard stopped learning and answering (its state went non-finite, or a
        # learner raised mid-update); the engine then puts its last good state back
        self.quarantined: str | None = None
        self.reverted = True

    # -- per event ------------------------------------------------------------------
    def admit(self, ev: Event, out) -> None:
        """Take one event: check it, close the join windows it ends, then run or process it.

        :meth:`check` raises before anything changes, so a rejected event leaves the
        shard exactly as it was.
        """
        if ev.kind != self.run_kind:
            # the one place a run ends: any other kind of event (a feedback may refer to a
            # predict still in the run) first has the run processed
            self.flush(out)
        self.check(ev)
        self.seq += 1
        self.dirty = True
        expired = self.joins.expire(self.seq, ev.ts)
        if expired:
            self._on_expired(expired, out)
        kind = ev.kind
        if kind in self.task.run_kinds:
            self.run_kind = kind
            self.run.append(ev)
            if kind == "predict":
                self.run_ids.add(ev.id)
            return
        try:
            self.task.handle(self, ev, out)
        except (BadEvent, FatalError):
            raise
        except ValueError as exc:
            # learners check their inputs before they change anything
            self.seq -= 1
            raise BadEvent("rejected_by_learner", str(exc)[:300]) from None
        except Exception as exc:
            # the learner raised part-way: its state can no longer be trusted
            detail = f"{type(exc).__name__}: {exc}"[:300]
            self.quarantine(f"the learner raised on {kind} {ev.id!r}: {detail}")
            raise BadEvent("internal_error", detail) from exc

    def check_outputs(self, where: str, outputs: Any) -> None:
        """Quarantine the shard (and refuse the event) if the learner answered non-finite values.

        Outputs are checked at every call (cheap); the state once per micro-batch, by the
        engine (:meth:`check_state`), before any answer of the batch leaves the process.
        """
        if not np.isfinite(np.asarray(outputs, dtype=np.float64)).all():
            self.quarantine(f"non-finite outputs after {where}")
            raise BadEvent("model_unhealthy", self.quarantined[:300])

    def check_state(self) -> bool:
        """Quarantine the shard if its learner or tracker holds non-finite values; True if healthy."""
        if self.quarantined is None:
            bad = nonfinite_state(self.learner, self.tracker)
            if bad:
                self.quarantine(f"non-finite values in {bad}")
        return self.quarantined is None

    def quarantine(self, why: str) -> None:
        """Stop learning and answering: every later event of the shard is dead-lettered as
        ``model_unhealthy`` until the process restarts; the engine restores its last good state."""
        if self.quarantined is None:
            self.quarantined = why
            self.reverted = False

    def check(self, ev: Event) -> None:
        """Raise BadEvent if the shard cannot take ``ev``; changes nothing."""
        if self.quarantined is not None:
            raise BadEvent("model_unhealthy", f"model {self.spec.name!r} key {self.key!r} is quarantined: {self.quarantined}"[:300])
        if ev.kind not in self.task.kinds:
            raise BadEvent("unsupported_kind", f"model {self.spec.name!r} ({self.spec.learner}) takes no {ev.kind} events")
        self.task.check(self, ev)

    def check_new_id(self, ev: Event) -> None:
        """A request (predict, decide) must not reuse the id of one still waiting for feedback."""
        if ev.id in self.joins or ev.id in self.run_ids:
            raise BadEvent("duplicate_id", f"a {ev.kind} with id {ev.id!r} is still waiting for feedback")

    def pending_reply(self, ev: Event, request: str, late: str) -> JoinEntry:
        """The open request a reply (feedback, audit) refers to, or BadEvent (``unknown_ref``, ``late_feedback``).

        ``request`` names what the reply may refer to, ``late`` how the reply is named
        ("no pending {request} with id ...", "{late} ... arrived after its join window closed").
        """
        return self.joins.reply_target(ev.ref, self.seq + 1, ev.ts, request, late)

    def request(self, ev: Event, payload: JoinPayload, out) -> None:
        """Keep a request for its feedback; requests the full store evicts are treated as expired."""
        evicted = self.joins.add(JoinEntry(ev.id, self.seq, ev.ts, payload))
        if evicted:
            self._on_expired(evicted, out)

    def _on_expired(self, entries: list[JoinEntry], out) -> None:
        self.expired += len(entries)
        self.task.on_expired(self, entries, out)

    # -- runs -------------------------------------------------------------------------
    def flush(self, out) -> None:
        """Process the pending run of events (observe or predict) as one vectorised call."""
        global _runs_done
        if not self.run:
            return
        run, kind = self.run, self.run_kind
        self.run, self.run_kind = [], None
        self.run_ids.clear()
        try:
            self.task.run(self, kind, run, out)
            if _FAIL_AT_RUN and kind == "observe":  # the hook counts learning runs only
                _runs_done += 1
                if _runs_done == _FAIL_AT_RUN:
                    raise RuntimeError("injected fault (REGRETFLOW_TEST_FAIL_AT_RUN)")
        except Exception as exc:
            raise RunFailed(f"model {self.spec.name!r}: {type(exc).__name__}: {exc} (in a run of {len(run)} {kind} events)") from exc

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.spec.name,
            "key": self.key,
            "seq": self.seq,
            "learner": self.learner.state_dict(),
            "tracker": self.tracker.state_dict(),
            "joins": self.joins.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seq = int(state["seq"])
        self.learner.load_state_dict(state["learner"])
        self.tracker.load_state_dict(state["tracker"])
        self.joins.load_state_dict(state["joins"])
        self.evicted_reported = self.joins.evicted


class Router:
    """Finds (or creates) the shard of an event."""

    def __init__(self, models: dict[str, ModelSpec]):
        self.models = models
        self.shards: dict[tuple[str, str], Shard] = {}
        self.by_key = {name: bool(spec.params.get("shard_by_key", False)) for name, spec in models.items()}
        self.counts = dict.fromkeys(models, 0)
        # one empty shard per model, built on first need: an event for a new key is checked
        # against it, so a shard (learner and tracker arrays) exists only for valid events
        self._blank: dict[str, Shard] = {}

    def shard(self, ev: Event) -> Shard:
        key = (ev.key or "") if self.by_key[ev.model] else ""
        sid = (ev.model, key)
        shard = self.shards.get(sid)
        if shard is None:
            spec = self.models[ev.model]
            blank = self._blank.get(ev.model)
            if blank is None:
                blank = self._blank[ev.model] = Shard(spec, "")
            if self.counts[ev.model] >= spec.max_shards:
                raise BadEvent("too_many_keys", f"model {ev.model!r} holds max_shards = {spec.max_shards} keys; {key!r} is new")
            blank.check(ev)
            shard = self.shards[sid] = Shard(spec, key)
            self.counts[ev.model] += 1
        return shard

    def flush(self, out) -> None:
        for shard in self.shards.values():
            shard.flush(out)

    def state_dict(self) -> dict[str, Any]:
        return {str(i): shard.state_dict() for i, shard in enumerate(self.shards.values())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.shards = {}
        for i in sorted(state, key=int):
            s = state[i]
            if s["model"] not in self.models:
                raise ValueError(f"checkpoint holds model {s['model']!r}, which the config no longer declares")
            shard = Shard(self.models[s["model"]], s["key"])
            shard.load_state_dict(s)
            self.shards[(s["model"], s["key"])] = shard
        self.counts = dict.fromkeys(self.models, 0)
        for model, _ in self.shards:
            self.counts[model] += 1


def dumps(record: dict) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY)
