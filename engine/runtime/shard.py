"""Routing events to model shards, and what a shard does with each kind of event.

A shard is one learner with its pending joins and regret tracker. Each declared model
has one shard, or one per ``key`` when ``params.shard_by_key`` is on (e.g. one
learner per campaign). Within a shard, consecutive ``observe`` or ``predict`` events
are processed as one vectorised run; every other event first flushes the run, so the
state is a function of the event order alone, never of where micro-batches fall.
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
from regretflow.engine.runtime.events import BadEvent, Event, check_label
from regretflow.engine.runtime.joins import JoinEntry, PendingJoins
from regretflow.engine.evaluation.regret import BanditRegret, ClassAccuracy, FairnessTracker, HindsightRegret

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
        if (value.dtype.kind in "fc" and value.size and value.flags.writeable
                and not np.isfinite(np.add.reduce(value, axis=None))):
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
    """One learner, its joins and its regret tracker."""

    def __init__(self, spec: ModelSpec, key: str):
        self.spec = spec
        self.key = key
        self.learner = build_learner(spec, key)
        self.task = getattr(self.learner, "task", "regression")
        j = spec.joins
        self.joins = PendingJoins(j.ttl_events, j.ttl_seconds, j.max_pending)
        self.seq = 0
        labels = spec.group_labels
        if self.task == "regression":
            r = spec.regret
            self.tracker = HindsightRegret(len(spec.features), labels, r.comparator_lambda, r.lag, r.pinv_cutoff)
        elif self.task == "classification":
            self.tracker = ClassAccuracy(labels)
        elif self.task == "fair":
            self.tracker = FairnessTracker()
        else:
            self.tracker = BanditRegret(spec.n_actions)
        learn = getattr(self.learner, "learn", None)
        self._learn_takes_decision = learn is not None and "decision" in inspect.signature(learn).parameters
        predict_many = getattr(self.learner, "predict_many", None)
        self._predict_takes_groups = predict_many is not None and "groups" in inspect.signature(predict_many).parameters
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
        if kind == "observe" or kind == "predict":
            self.run_kind = kind
            self.run.append(ev)
            if kind == "predict":
                self.run_ids.add(ev.id)
            return
        try:
            if kind == "decide":
                self._fair_decide(ev, out) if self.task == "fair" else self._decide(ev, out)
            elif kind == "feedback":
                entry = self.joins.pending[ev.ref]
                if entry.kind == "fair":
                    self._fair_feedback(entry, ev)
                else:
                    self.joins.take(ev.ref)
                    if entry.kind == "decide":
                        self._learn_reward(entry, ev.reward)
                    else:
                        self._learn_label(entry, ev.label)
            else:
                self._fair_audit(self.joins.pending[ev.ref], ev)
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

    def _check_outputs(self, where: str, outputs: Any) -> None:
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
        kind, task, name = ev.kind, self.task, self.spec.name
        if self.quarantined is not None:
            raise BadEvent("model_unhealthy", f"model {name!r} key {self.key!r} is quarantined: {self.quarantined}"[:300])
        if kind == "predict" or kind == "decide":
            if (kind == "decide") != (task in ("bandit", "fair")):
                raise BadEvent("unsupported_kind", f"model {name!r} ({self.spec.learner}) takes no {kind} events")
            if kind == "decide" and task == "fair":
                if ev.actions is None:
                    raise BadEvent("missing_field", "a decide to a fair model carries the k individuals as 'actions'")
                if self.spec.features and ev.actions.shape[1] != len(self.spec.features):
                    raise BadEvent("bad_actions", f"each individual has {ev.actions.shape[1]} values, the model declares {len(self.spec.features)}")
            if ev.id in self.joins or ev.id in self.run_ids:
                raise BadEvent("duplicate_id", f"a {kind} with id {ev.id!r} is still waiting for feedback")
            if kind == "decide" and task == "bandit":
                # a learner sets itself up from its first decide: one of the wrong shape
                # must not get that far, or it would fix the shape for every later one
                if self.spec.n_actions and ev.actions is not None:
                    raise BadEvent("bad_actions", f"model {name!r} declares n_actions = {self.spec.n_actions} (a shared context): a decide carries no 'actions'")
                if self.spec.features and ev.x is None and ev.actions is None:
                    raise BadEvent("missing_field", f"model {name!r} declares {len(self.spec.features)} features: a decide carries them as 'features'")
                if self.spec.features and ev.actions is not None and ev.actions.shape[1] != len(self.spec.features):
                    raise BadEvent("bad_actions", f"each action has {ev.actions.shape[1]} values, the model declares {len(self.spec.features)}")
            if kind == "decide":
                n_choices = len(ev.actions) if ev.actions is not None else self.spec.n_actions
                if ev.expected is not None and n_choices and len(ev.expected) != n_choices:
                    raise BadEvent("bad_actions", f"{len(ev.expected)} expected rewards for {n_choices} actions")
        elif kind == "observe":
            if task == "bandit":
                raise BadEvent("unsupported_kind", f"model {name!r} ({self.spec.learner}) takes no observe events")
        elif kind == "feedback":
            entry = self.joins.reply_target(ev.ref, self.seq + 1, ev.ts)
            if entry.kind == "fair":
                self._check_fair_labels(entry, ev)
                return
            if entry.kind == "decide" and ev.reward is None:
                raise BadEvent("feedback_mismatch", f"feedback to decide {ev.ref!r} must carry a reward")
            if entry.kind == "predict":
                if ev.reward is not None:
                    raise BadEvent("feedback_mismatch", f"feedback to predict {ev.ref!r} must carry a label")
                check_label(task, ev.label)
        elif kind == "audit":
            if task != "fair":
                raise BadEvent("unsupported_kind", f"model {name!r} ({self.spec.learner}) takes no audit events")
            entry = self.joins.reply_target(ev.ref, self.seq + 1, ev.ts, "decide", "audit of")
            if entry.flags & JoinEntry.AUDIT:
                raise BadEvent("duplicate_feedback", f"decide {ev.ref!r} was already audited")
            k = entry.actions.shape[0]
            if len(ev.violations) and int(ev.violations[:, :2].max()) >= k:
                raise BadEvent("bad_field", f"a flagged index is not below the decide's {k} individuals")

    def _check_fair_labels(self, entry: JoinEntry, ev: Event) -> None:
        """One-sided feedback: labels only for positively decided individuals."""
        if entry.flags & JoinEntry.FEEDBACK:
            raise BadEvent("duplicate_feedback", f"decide {ev.ref!r} already has its feedback")
        decisions = entry.extra[0]
        label = ev.label
        if ev.reward is not None or type(label) is not list or len(label) != len(decisions):
            raise BadEvent("bad_label", f"feedback to a fair decide carries a list of {len(decisions)} labels (0, 1 or null)")
        hidden = [i for i, (d, v) in enumerate(zip(decisions, label)) if d == 0 and v is not None]
        if hidden:
            raise BadEvent("hidden_label", f"labels for negatively decided individuals {hidden[:5]} are never learned")
        missing = [i for i, (d, v) in enumerate(zip(decisions, label)) if d == 1 and v is None]
        if missing:
            raise BadEvent("bad_label", f"no label for positively decided individuals {missing[:5]}")

    def _on_expired(self, entries: list[JoinEntry], out) -> None:
        self.expired += len(entries)
        default = self.spec.joins.default_reward
        learn = [e for e in entries if e.kind == "decide" and default is not None]
        if learn:
            self.flush(out)
            for e in learn:
                self._learn_reward(e, default)

    # -- runs -------------------------------------------------------------------------
    def flush(self, out) -> None:
        """Process the pending run of observe or predict events as one vectorised call."""
        if not self.run:
            return
        run, kind = self.run, self.run_kind
        self.run, self.run_kind = [], None
        self.run_ids.clear()
        X = np.stack([e.x for e in run]) if run[0].x is not None else np.zeros((len(run), 0))
        G = np.stack([e.groups for e in run]) if run[0].groups is not None else None
        version = getattr(self.learner, "n_updates", 0)
        model = self.spec.name
        try:
            preds = self._run_learner(kind, run, X, G)
        except Exception as exc:
            raise RunFailed(f"model {model!r}: {type(exc).__name__}: {exc} (in a run of {len(run)} {kind} events)") from exc
        if self.task == "regression" and not np.isfinite(np.asarray(preds, dtype=np.float64)).all():
            # nothing of the run is answered from the bad state; the engine puts the
            # shard's last good state back
            self.quarantine(f"non-finite predictions after a run of {len(run)} {kind} events")
            for e in run:
                out.dead_event(e, "model_unhealthy", self.quarantined)
            return
        if kind == "observe":
            for i, e in enumerate(run):
                out.answer(e, {"id": e.id, "model": model, "kind": "observe", "prediction": _plain(preds[i]), "model_version": version + i})
        else:
            for i, e in enumerate(run):
                self.joins.add(JoinEntry(e.id, self.seq - len(run) + 1 + i, e.ts, "predict", x=e.x, groups=e.groups, prediction=_plain(preds[i])))
                out.answer(e, {"id": e.id, "model": model, "kind": "predict", "prediction": _plain(preds[i]), "model_version": version})
            self.expired += len(self.joins.expire(self.seq, None))

    def _run_learner(self, kind: str, run: list[Event], X: np.ndarray, G: np.ndarray | None):
        """The run's one vectorised learner call (and the tracker's, for observes)."""
        global _runs_done
        if kind == "predict":
            return self.learner.predict_many(X, G) if self._predict_takes_groups and G is not None else self.learner.predict_many(X)
        if self.task == "regression":
            y = np.array([e.label for e in run], dtype=np.float64)
            preds = self.learner.observe_many(X, y, G)
            losses = getattr(self.learner, "last_losses", None)
            if losses is None or len(losses) != len(run):
                losses = (np.asarray(preds, dtype=np.float64) - y) ** 2
        else:
            y = [e.label for e in run]
            preds = self.learner.observe_many(X, y, G)
        if _FAIL_AT_RUN:
            _runs_done += 1
            if _runs_done == _FAIL_AT_RUN:
                raise RuntimeError("injected fault (REGRETFLOW_TEST_FAIL_AT_RUN)")
        if self.task == "regression":
            self.tracker.update(X, y, losses, G)
        else:
            self.tracker.update(y, preds, G)
        return preds

    # -- requests and replies ----------------------------------------------------------
    def _decide(self, ev: Event, out) -> None:
        n_choices = len(ev.actions) if ev.actions is not None else (self.spec.n_actions or 0)
        action, probs = self.learner.act(ev.x, ev.actions)
        action = int(action)
        probs = np.asarray(probs, dtype=np.float64)
        n_choices = n_choices or len(probs)
        # what off-policy evaluation needs later: the whole probability vector and, when
        # the learner has a reward model, its predictions (doubly-robust estimates)
        predicted = getattr(self.learner, "last_predicted_rewards", None)
        logged = probs[None, :] if predicted is None else np.vstack([probs, np.asarray(predicted, dtype=np.float64)])
        self.tracker.record_decision(ev.expected, action, probs)
        evicted = self.joins.add(JoinEntry(ev.id, self.seq, ev.ts, "decide", x=ev.x, groups=ev.groups, action=action,
                                           probability=float(probs[action]), n_choices=n_choices, actions=ev.actions,
                                           extra=logged, decision=int(getattr(self.learner, "last_decision", -1))))
        if evicted:
            self._on_expired(evicted, out)
        self._check_outputs(f"decide {ev.id!r}", logged)
        answer = {"id": ev.id, "model": self.spec.name, "kind": "decide", "action": action,
                  "probability": float(probs[action]), "probabilities": probs.tolist(),
                  "model_version": getattr(self.learner, "n_updates", 0)}
        if predicted is not None:
            answer["predicted_rewards"] = logged[1].tolist()
        describe = getattr(self.learner, "describe_action", None)
        if describe is not None:
            answer["action_vector"] = [float(v) for v in describe(action)]
        out.answer(ev, answer)

    def _fair_decide(self, ev: Event, out) -> None:
        decisions, probs = self.learner.act(None, ev.actions)
        decisions = np.asarray(decisions, dtype=np.int64)
        probs = np.asarray(probs, dtype=np.float64)
        self.tracker.record_decisions(decisions)
        self.joins.add(JoinEntry(ev.id, self.seq, ev.ts, "fair", actions=ev.actions, n_choices=len(decisions),
                                 extra=np.vstack([decisions.astype(np.float64), probs])))
        self._check_outputs(f"decide {ev.id!r}", probs)
        out.answer(ev, {"id": ev.id, "model": self.spec.name, "kind": "decide", "decisions": decisions.tolist(),
                        "probabilities": probs.tolist(), "model_version": getattr(self.learner, "n_updates", 0)})

    def _fair_feedback(self, entry: JoinEntry, ev: Event) -> None:
        decisions, probs = entry.extra[0].astype(np.int64), entry.extra[1]
        labels = np.array([-1.0 if v is None else float(v) for v in ev.label])
        self.learner.learn(None, decisions, labels, probs, entry.actions)
        self.tracker.record_labels(decisions, labels)
        self._replied(entry, JoinEntry.FEEDBACK)

    def _fair_audit(self, entry: JoinEntry, ev: Event) -> None:
        decisions, probs = entry.extra[0].astype(np.int64), entry.extra[1]
        kept = self.learner.audit(entry.actions, decisions, probs, ev.violations, panel_size=ev.panel_size)
        self.tracker.record_audit(int(kept), ev.violations, ev.auditors)
        self._replied(entry, JoinEntry.AUDIT)

    def _replied(self, entry: JoinEntry, flag: int) -> None:
        entry.flags |= flag
        if entry.flags == JoinEntry.FEEDBACK | JoinEntry.AUDIT:
            self.joins.take(entry.id)

    def _learn_label(self, entry: JoinEntry, label: Any) -> None:
        x = entry.x[None, :]
        G = entry.groups[None, :] if entry.groups is not None else None
        if self.task == "regression":
            y = np.array([float(label)])
            self.learner.learn_many(x, y)
            self.tracker.update(x, y, np.array([(entry.prediction - y[0]) ** 2]), G)
        else:
            self.learner.learn_many(x, [label])
            self.tracker.update([label], [entry.prediction], G)

    def _learn_reward(self, entry: JoinEntry, reward: float) -> None:
        extra = {}
        if entry.actions is not None:
            extra["actions"] = entry.actions
        if self._learn_takes_decision and entry.decision >= 0:
            extra["decision"] = entry.decision
        self.learner.learn(entry.x, entry.action, reward, entry.probability, **extra)
        logged = entry.extra
        self.tracker.update(np.array([entry.action]), np.array([entry.probability]), np.array([reward]), np.array([entry.n_choices]),
                            prob_vectors=None if logged is None else logged[:1],
                            reward_estimates=None if logged is None or len(logged) < 2 else logged[1:2])

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"model": self.spec.name, "key": self.key, "seq": self.seq,
                "learner": self.learner.state_dict(), "tracker": self.tracker.state_dict(), "joins": self.joins.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seq = int(state["seq"])
        self.learner.load_state_dict(state["learner"])
        self.tracker.load_state_dict(state["tracker"])
        self.joins.load_state_dict(state["joins"])
        self.evicted_reported = self.joins.evicted


def _plain(v: Any) -> Any:
    """A JSON-ready scalar from a numpy value."""
    if isinstance(v, np.generic):
        return v.item()
    return v


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
