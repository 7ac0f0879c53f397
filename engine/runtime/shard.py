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

import inspect
import math
import os
from typing import Any

import numpy as np
import orjson

from regretflow.engine.config import ModelSpec
from regretflow.engine.errors import FatalError
from regretflow.engine.learner_factory import build_learner
from regretflow.engine.runtime.dead_letters import BadEvent
from regretflow.engine.runtime.events import Event, Run
from regretflow.engine.runtime.joins import JoinEntry, JoinPayload, PendingJoins
from regretflow.engine.tasks import Task, task_for
from regretflow.engine.tasks.base import Output
from regretflow.learners.contract import all_finite

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
    read-only arrays are derived caches and skipped. An object whose class defines
    ``nonfinite_state()`` answers for its own attributes: it knows what its
    last update wrote (see :mod:`regretflow.learners.contract`).

    >>> class L: pass
    >>> l = L(); l.w = np.array([1.0, np.nan]); nonfinite_state(l)
    'L.w'
    """
    for obj in objects:
        own_check = getattr(type(obj), "nonfinite_state", None)
        if own_check is not None:  # (asked directly: the walk's calls cost more than its check, every batch)
            bad = own_check(obj)
            if bad is not None:
                return f"{type(obj).__name__}.{bad}"
            continue
        found = _nonfinite_in(obj, type(obj).__name__, 2)
        if found:
            return found
    return None


_SKIP = (str, int, bool, type(None), bytes)
_LEAVES = frozenset(_SKIP)


def _nonfinite_in(value: Any, name: str, depth: int) -> str | None:
    found = _nonfinite_path(value, depth)
    return None if found is None else name + "".join(reversed(found))


def _nonfinite_array(value: np.ndarray) -> bool:
    """Whether a float array the scan watches holds NaN or +-inf.

    Read-only arrays are caches derived from the state (e.g. a fair learner's class scores per
    decision), which is scanned itself, or constants (a network's initial weights): skipped.
    """
    kind = value.dtype.kind
    if kind not in "fc" or not value.size or not value.flags.writeable:
        return False
    if value.dtype.char == "d" and value.flags.c_contiguous:  # the learners' arrays: one vectorised pass, nothing allocated
        return not all_finite(value if value.ndim == 1 else value.reshape(-1))
    # other layouts and types: one reduction, no temporary; NaN and +-inf propagate into the
    # sum (a finite array whose sum overflows is ~1e308 and as good as broken anyway)
    total = np.add.reduce(value, axis=None)
    return not (math.isfinite(total) if kind == "f" else np.isfinite(total))  # (math's test: a third of numpy's cost)


def _nonfinite_path(value: Any, depth: int) -> list[str] | None:
    """The path to the first non-finite float array (or float) below ``value``, innermost step first; the
    names are made only for what is found (a scan runs every micro-batch, a find almost never)."""
    if type(value) is np.ndarray:
        return [] if _nonfinite_array(value) else None
    if type(value) is float:
        return None if math.isfinite(value) else []
    if depth <= 0 or isinstance(value, _SKIP):
        return None
    items: Any
    keyed = False
    if isinstance(value, (list, tuple)):
        if not value or isinstance(value[0], _SKIP):
            return None  # feature names, labels: nothing numeric to watch
        items = enumerate(value[:1024])
    elif isinstance(value, dict):
        first = next(iter(value.values()), None)
        if type(first) is np.ndarray and not first.flags.writeable:
            return None  # a cache of derived, read-only arrays
        items = list(value.items())[:1024]
        keyed = True
    else:
        attrs = getattr(value, "__dict__", None)
        if attrs is None or isinstance(value, type):
            return None
        own_check = getattr(type(value), "nonfinite_state", None)
        if own_check is not None:  # an object that knows what changed checks that itself (the learner contract)
            bad = own_check(value)
            return None if bad is None else [f".{bad}"]
        items = attrs.items()
    for k, v in items:
        # the leaves (floats, arrays, scalars to skip) are told apart here: most of what a
        # learner holds is one of them, and a call per attribute cost more than the checks
        kind = type(v)
        if kind is float:
            if math.isfinite(v):
                continue
            found: list[str] | None = []
        elif kind is np.ndarray:
            if not _nonfinite_array(v):
                continue
            found = []
        elif kind in _LEAVES or isinstance(v, _SKIP):
            continue
        else:
            found = _nonfinite_path(v, depth - 1)
            if found is None:
                continue
        assert found is not None
        found.append(f".{k}" if type(k) is str and not keyed else f"[{k!r}]")
        return found
    return None


class Shard:
    """One learner, its joins and its tracker; its task decides what each kind of event does."""

    def __init__(self, spec: ModelSpec, key: str) -> None:
        self.spec = spec
        self.key = key
        self.learner: Any = build_learner(spec, key)
        self.task: Task = task_for(type(self.learner))
        j = spec.joins
        self.joins = PendingJoins(j.ttl_events, j.ttl_seconds, j.max_pending)
        self.seq = 0
        self.tracker: Any = self.task.make_tracker(spec)
        self.run_kind: str | None = None
        # the pending run: decoded events, or runs already in columns (a columnar wire format), in stream order
        self.run: list[Event | Run] = []
        self.run_ids: set[str] = set()
        self.expired = 0
        self.evicted_reported = 0
        self.dirty = False
        # why the shard stopped learning and answering (its state went non-finite, or a
        # learner raised mid-update); the engine then puts its last good state back
        self.quarantined: str | None = None
        self.reverted = True

    # -- per event ------------------------------------------------------------------
    def admit(self, ev: Event, out: Output) -> None:
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
        if ev.ts is not None or self.joins.pending:  # nothing can expire otherwise (the common observe stream)
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

    def check_outputs(self, where: str, *outputs: Any) -> None:
        """Quarantine the shard (and refuse the event) if the learner answered non-finite values.

        Outputs are checked at every call (cheap); the state once per micro-batch, by the
        engine (:meth:`check_state`), before any answer of the batch leaves the process.
        ``None`` stands for an output the learner does not give.
        """
        for values in outputs:
            if values is None:
                continue
            if type(values) is np.ndarray and values.dtype.char == "d" and values.ndim == 1 and values.flags.c_contiguous:
                finite = all_finite(values)  # a decision's probabilities: one pass, nothing allocated
            else:
                finite = bool(np.isfinite(np.asarray(values, dtype=np.float64)).all())
            if not finite:
                self.quarantine(f"non-finite outputs after {where}")
                raise BadEvent("model_unhealthy", str(self.quarantined)[:300])

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
        return self.joins.reply_target(str(ev.ref), self.seq + 1, ev.ts, request, late)

    def request(self, ev: Event, payload: JoinPayload, out: Output) -> None:
        """Keep a request for its feedback; requests the full store evicts are treated as expired."""
        evicted = self.joins.add(JoinEntry(ev.id, self.seq, ev.ts, payload))
        if evicted:
            self._on_expired(evicted, out)

    def _on_expired(self, entries: list[JoinEntry], out: Output) -> None:
        self.expired += len(entries)
        self.task.on_expired(self, entries, out)

    # -- runs -------------------------------------------------------------------------
    def admit_columns(self, run: Run, out: Output) -> list[tuple[int, BadEvent]]:
        """Take a run already in columns (validated rows of one kind, in stream order).

        Each row goes through the checks :meth:`admit` makes (quarantine, kind, a
        predict's id); a row refused is left out and returned with its reason (the
        caller dead-letters it), the others join the pending run as one block.
        """
        kind = run.kind
        if kind not in self.task.run_kinds:
            raise ValueError(f"a {kind} run: the {self.task.name} task processes {sorted(self.task.run_kinds)} runs")
        if kind != self.run_kind:
            self.flush(out)
        # a quarantined shard refuses every row as model_unhealthy before its task looks at their values (as check does)
        refused_first = self.task.refused_rows(self, run) if self.quarantined is None else []
        if refused_first:  # rows the task refuses for their values: the rest is admitted as a run of its own
            out_of = {i for i, _ in refused_first}
            kept_rows = [i for i in range(len(run)) if i not in out_of]
            later = self.admit_columns(run.take(kept_rows), out) if kept_rows else []
            return sorted(refused_first + [(kept_rows[i], bad) for i, bad in later], key=lambda refused: refused[0])
        if kind in self.task.unchecked_kinds and self.quarantined is None and kind in self.task.kinds and not self.joins.pending:
            # nothing to refuse and no window to close: the rows are admitted together (the latest time still counts)
            stamps = [t for t in run.ts if t is not None]
            if stamps:
                self.joins.expire(self.seq + len(run), max(stamps))
            self.seq += len(run)
            self.dirty = True
            self.run_kind = kind
            self.run.append(run)
            return []
        refused: list[tuple[int, BadEvent]] = []
        kept: list[int] = []
        probe = Event("", run.model, kind)
        labels = run.labels or [None] * len(run)  # (the task's check may read the row's label)
        for i, eid in enumerate(run.ids):
            probe.id, probe.ts, probe.label = eid, run.ts[i], labels[i]
            try:
                self.check(probe)
            except BadEvent as bad:
                refused.append((i, bad))
                continue
            kept.append(i)
            self.seq += 1
            if probe.ts is not None or self.joins.pending:
                expired = self.joins.expire(self.seq, probe.ts)
                if expired:
                    self._on_expired(expired, out)
            if kind == "predict":
                self.run_ids.add(eid)
        if kept:
            self.dirty = True
            self.run_kind = kind
            self.run.append(run if len(kept) == len(run) else run.take(kept))
        return refused

    def flush(self, out: Output) -> None:
        """Process the pending run of events (observe or predict) as one vectorised call."""
        global _runs_done
        if not self.run:
            return
        pending, kind = self.run, self.run_kind
        assert kind is not None
        self.run, self.run_kind = [], None
        self.run_ids.clear()
        legacy = _takes_events(self.task)
        run = None if legacy and all(type(p) is Event for p in pending) else _as_run(kind, pending)
        try:
            if legacy:  # a task written for the earlier interface: run(shard, kind, events, out)
                events = pending if run is None else run.events()
                self.task.run(self, kind, events, out)  # type: ignore[call-arg, arg-type]
            else:
                assert run is not None
                self.task.run(self, run, out)
            if _FAIL_AT_RUN and kind == "observe":  # the hook counts learning runs only
                _runs_done += 1
                if _runs_done == _FAIL_AT_RUN:
                    raise RuntimeError("injected fault (REGRETFLOW_TEST_FAIL_AT_RUN)")
        except Exception as exc:
            raise RunFailed(f"model {self.spec.name!r}: {type(exc).__name__}: {exc} (in a run of {_count(pending)} {kind} events)") from exc

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

    def __init__(self, models: dict[str, ModelSpec]) -> None:
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

    def admit_run(self, run: Run, out: Output) -> list[tuple[int, BadEvent]]:
        """Hand a validated run in columns (rows of one model, kind and key) to its shard.

        The entry point of a columnar wire format: no per-row :class:`Event` is made.
        Returns the rows refused, with their reason (the caller dead-letters them).
        """
        probe = Event(run.ids[0], run.model, run.kind)
        probe.key = run.keys[0] if run.keys is not None else None
        if run.keys is not None and self.by_key[run.model] and any(k != probe.key for k in run.keys):
            raise ValueError("a run's rows belong to one shard: one key per run")
        return self.shard(probe).admit_columns(run, out)

    def flush(self, out: Output) -> None:
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


def dumps(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY)


def _count(pending: list[Event | Run]) -> int:
    return sum(1 if isinstance(p, Event) else len(p) for p in pending)


_LEGACY_RUN: dict[type[Task], bool] = {}


def _takes_events(task: Task) -> bool:
    """Whether a task's ``run`` takes ``(shard, kind, events, out)``, the interface before runs came as columns."""
    legacy = _LEGACY_RUN.get(type(task))
    if legacy is None:
        legacy = _LEGACY_RUN[type(task)] = len(inspect.signature(task.run).parameters) == 4
    return legacy


def _as_run(kind: str, pending: list[Event | Run]) -> Run:
    """The pending run in columns: consecutive decoded events converted together, blocks joined in order."""
    if all(type(p) is Event for p in pending):
        return Run.from_events(kind, pending)  # type: ignore[arg-type]  # all Events, checked just above
    runs: list[Run] = []
    events: list[Event] = []
    for p in pending:
        if isinstance(p, Event):
            events.append(p)
            continue
        if events:
            runs.append(Run.from_events(kind, events))
            events = []
        runs.append(p)
    if events:
        runs.append(Run.from_events(kind, events))
    return Run.concat(runs)
