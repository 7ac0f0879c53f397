"""Decoding and validation of events; the answer and dead-letter records.

The contract is the JSON Schema shipped in ``schema/event.schema.json``; this module
implements the same rules by hand (a generic schema validator costs ~30 us an event,
this path ~3 us), then the model-specific ones: declared model, feature names and
dimension, finite values within ``runtime.max_abs_value``, label type, group
membership from the declared groups. Whatever the payload, ``decode`` returns an
:class:`Event` or raises :class:`BadEvent`; nothing else.
A test checks the two agree on a corpus of good and bad events.

>>> from regretflow.engine.config import parse_config
>>> cfg = parse_config({"models": {"m": {"learner": "ridge", "features": ["a", "b"]}}})
>>> from regretflow.engine.tasks import model_tasks
>>> dec = EventDecoder(cfg, model_tasks(cfg))
>>> ev = dec.decode(b'{"id": "1", "model": "m", "kind": "observe", "features": [1, 2], "label": 3}')
>>> ev.kind, ev.x.tolist(), ev.label
('observe', [1.0, 2.0], 3.0)
>>> try:
...     dec.decode(b'{"id": "2", "model": "m", "kind": "observe", "features": [1], "label": 3}')
... except BadEvent as bad:
...     print(bad.reason)
missing_features
"""

from __future__ import annotations

import json
import math
from bisect import bisect_right
from collections.abc import Sequence
from importlib import resources
from itertools import accumulate, chain
from typing import TYPE_CHECKING, Any, TypeVar, overload

import numpy as np
import numpy.typing as npt
import orjson

from regretflow.connectors.arrow import EVENT_COLUMNS
from regretflow.engine.config import Config, GroupSpec, ModelSpec
from regretflow.engine.runtime.dead_letters import REASONS as REASONS  # re-exported: callers of earlier releases import it here
from regretflow.engine.runtime.dead_letters import BadEvent as BadEvent  # re-exported: the decoder raises it

if TYPE_CHECKING:
    from regretflow.engine.tasks import Task

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
_T = TypeVar("_T")

KINDS = ("observe", "predict", "decide", "feedback", "audit")

_TOP_FIELDS = frozenset(EVENT_COLUMNS)  # the JSON event's fields are the Arrow batch's columns
_REQUIRED = {
    "observe": ("features", "label"),
    "predict": ("features",),
    "decide": (),
    "feedback": ("ref",),
    "audit": ("ref", "violations"),
}


class Event:
    """A decoded, validated event.

    The decoder keeps what a run converts in bulk as plain Python values: ``values``, the
    feature values in declared order, and ``codes``, the membership columns the event
    joins. ``x`` (the float64 feature row) and ``groups`` (the boolean membership row)
    are built from them on first use, for the kinds handled one event at a time.

    >>> ev = Event("1", "m", "predict")
    >>> ev.values, ev.codes, ev.width = [1, 2.5], [1], 3
    >>> ev.x.tolist(), ev.groups.tolist()
    ([1.0, 2.5], [False, True, False])
    """

    __slots__ = (
        "id",
        "model",
        "kind",
        "key",
        "ts",
        "values",
        "codes",
        "width",
        "_x",
        "_groups",
        "label",
        "actions",
        "expected",
        "ref",
        "reward",
        "violations",
        "panel_size",
        "auditors",
        "raw",
    )

    def __init__(self, id: str, model: str, kind: str) -> None:
        self.id = id
        self.model = model
        self.kind = kind
        self.key: str | None = None
        self.ts: float | None = None
        self.values: list[float] | None = None  # the validated feature values (ints stay ints until converted)
        self.codes: list[int] | None = None  # membership columns joined; None when the model declares no groups
        self.width = 0  # the number of membership columns of the model
        self._x: FloatArray | None = None
        self._groups: BoolArray | None = None
        self.label: Any = None
        self.actions: FloatArray | None = None
        self.expected: FloatArray | None = None
        self.ref: str | None = None
        self.reward: float | None = None
        self.violations: IntArray | None = None
        self.panel_size: int | None = None
        self.auditors: list[str] | None = None
        self.raw: Any = b""  # the payload, for a dead letter after validation (a quarantined run)

    @property
    def x(self) -> FloatArray | None:
        """The dense float64 feature row (None when the event carries no features)."""
        if self._x is None and self.values is not None:
            self._x = np.array(self.values, dtype=np.float64)
        return self._x

    @x.setter
    def x(self, row: FloatArray | None) -> None:
        self._x = row
        self.values = None

    @property
    def groups(self) -> BoolArray | None:
        """The boolean membership row over the model's declared groups (None when it declares none)."""
        if self._groups is None and self.codes is not None:
            row = np.zeros(self.width, dtype=np.bool_)
            row[self.codes] = True
            self._groups = row
        return self._groups

    @groups.setter
    def groups(self, row: BoolArray | None) -> None:
        self._groups = row
        self.codes = None


class Run:
    """A run of consecutive events of one kind for one shard, as columns: what a task's ``run`` receives.

    ``X`` is the (n, d) float64 feature matrix, ``groups`` the (n, G) boolean membership
    matrix (None when the model declares no groups), ``labels`` the observe labels,
    ``ts`` and ``keys`` per row, ``raws`` the payloads (for a dead letter). Build one
    from column arrays with :meth:`from_columns` (a columnar wire format feeds it so,
    without per-event objects) or from decoded events with :meth:`from_events`.

    >>> run = Run.from_columns("observe", "m", ["a", "b"], np.ones((2, 3)), labels=[1.0, 2.0])
    >>> len(run), run.X.shape, run.groups, run.keys
    (2, (2, 3), None, None)
    >>> ev = Event("c", "m", "observe"); ev.values, ev.label = [1, 2, 3], 0.5
    >>> Run.concat([run, Run.from_events("observe", [ev])]).X[2].tolist()
    [1.0, 2.0, 3.0]
    """

    __slots__ = ("kind", "model", "ids", "X", "groups", "labels", "ts", "keys", "raws")

    def __init__(
        self,
        kind: str,
        model: str,
        ids: list[str],
        X: FloatArray,
        groups: BoolArray | None,
        labels: list[Any] | None,
        ts: list[float | None],
        keys: list[str | None] | None,
        raws: Sequence[Any],
    ) -> None:
        self.kind = kind
        self.model = model
        self.ids = ids
        self.X = X
        self.groups = groups
        self.labels = labels
        self.ts = ts
        self.keys = keys  # None when no row has a key (the common case: answers then carry none)
        self.raws = raws

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_columns(
        cls,
        kind: str,
        model: str,
        ids: list[str],
        X: FloatArray,
        groups: BoolArray | None = None,
        labels: list[Any] | None = None,
        ts: list[float | None] | None = None,
        keys: list[str | None] | None = None,
        raws: Sequence[Any] | None = None,
    ) -> Run:
        """A run from validated columns (rows in stream order); absent columns are filled in."""
        n = len(ids)
        return cls(
            kind,
            model,
            ids,
            X,
            groups,
            labels,
            ts if ts is not None else [None] * n,
            keys if keys is not None and any(k is not None for k in keys) else None,
            raws if raws is not None else [b""] * n,
        )

    @classmethod
    def from_events(cls, kind: str, events: list[Event]) -> Run:
        """A run of decoded events: one feature matrix and one membership matrix for all of them."""
        first = events[0]
        n = len(events)
        values = [e.values for e in events]
        if all(v is not None for v in values):
            # one conversion for the run (the same float64 values as one np.array per row), from one flat iterator
            d = len(values[0])  # type: ignore[arg-type]  # checked just above
            X = np.fromiter(chain.from_iterable(values), np.float64, n * d).reshape(n, d)  # type: ignore[arg-type]
        elif first.x is not None:
            X = np.stack([_present(e.x) for e in events])  # rows set directly (not decoded from JSON)
        else:
            X = np.zeros((n, 0))
        groups = None
        if first.codes is not None or first._groups is not None:
            codes = [e.codes for e in events]
            if all(c is not None for c in codes):
                # one boolean matrix, set by fancy indexing from the rows' membership columns
                groups = np.zeros((n, first.width), dtype=np.bool_)
                rows = [i for i, c in enumerate(codes) for _ in c]  # type: ignore[union-attr]  # checked just above
                cols = [j for c in codes for j in c]  # type: ignore[union-attr]
                groups[rows, cols] = True
            else:
                groups = np.stack([_present(e.groups) for e in events])
        keys: list[str | None] | None = [e.key for e in events]
        if all(k is None for k in keys):  # type: ignore[union-attr]  # a list here
            keys = None
        return cls(
            kind,
            first.model,
            [e.id for e in events],
            X,
            groups,
            [e.label for e in events] if kind == "observe" else None,
            [e.ts for e in events],
            keys,
            [e.raw for e in events],
        )

    def events(self) -> list[Event]:
        """The rows as :class:`Event` objects (for a task whose ``run`` still takes a list of events)."""
        events = []
        for i, eid in enumerate(self.ids):
            ev = Event(eid, self.model, self.kind)
            ev.x = self.X[i]
            if self.groups is not None:
                ev.groups = self.groups[i]
                ev.width = self.groups.shape[1]
            ev.label = None if self.labels is None else self.labels[i]
            ev.ts, ev.key, ev.raw = self.ts[i], None if self.keys is None else self.keys[i], self.raws[i]
            events.append(ev)
        return events

    def take(self, rows: list[int]) -> Run:
        """The run of the given rows only (in that order)."""
        return Run(
            self.kind,
            self.model,
            [self.ids[i] for i in rows],
            self.X[rows],
            None if self.groups is None else self.groups[rows],
            None if self.labels is None else [self.labels[i] for i in rows],
            [self.ts[i] for i in rows],
            None if self.keys is None else [self.keys[i] for i in rows],
            [self.raws[i] for i in rows],
        )

    @classmethod
    def concat(cls, runs: list[Run]) -> Run:
        """Consecutive runs of one kind and shard as one."""
        if len(runs) == 1:
            return runs[0]
        first = runs[0]
        keyed = any(r.keys is not None for r in runs)
        return cls(
            first.kind,
            first.model,
            [i for r in runs for i in r.ids],
            np.concatenate([r.X for r in runs]),
            None if first.groups is None else np.concatenate([r.groups for r in runs if r.groups is not None]),
            None if first.labels is None else [v for r in runs for v in (r.labels or [])],
            [t for r in runs for t in r.ts],
            [k for r in runs for k in (r.keys or [None] * len(r))] if keyed else None,
            [p for r in runs for p in r.raws] if all(type(r.raws) is list for r in runs) else JoinedRaws([r.raws for r in runs]),
        )


class JoinedRaws(Sequence[Any]):
    """The payloads of consecutive runs as one sequence, read through without copying: a columnar
    run's payloads are made only for the rows that need one (a dead letter), never one per row.

    >>> raws = JoinedRaws([[b"a", b"b"], [b"c"]])
    >>> len(raws), raws[2], raws[-3], list(raws[1:])
    (3, b'c', b'a', [b'b', b'c'])
    """

    __slots__ = ("parts", "ends")

    def __init__(self, parts: list[Sequence[Any]]) -> None:
        self.parts = parts
        self.ends = list(accumulate(len(p) for p in parts))

    def __len__(self) -> int:
        return self.ends[-1] if self.ends else 0

    @overload
    def __getitem__(self, i: int) -> Any: ...

    @overload
    def __getitem__(self, i: slice) -> list[Any]: ...

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(i)
        i %= n
        part = bisect_right(self.ends, i)
        return self.parts[part][i - (self.ends[part - 1] if part else 0)]


def schema() -> dict[str, Any]:
    """The event JSON Schema shipped with the package."""
    loaded: dict[str, Any] = json.loads(resources.files("regretflow.engine").joinpath("schema/event.schema.json").read_text())
    return loaded


class ModelView:
    """What the decoder needs to know about one declared model."""

    def __init__(self, spec: ModelSpec, task: Task) -> None:
        self.spec = spec
        self.task = task
        self.names = list(spec.features)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.d = len(self.names)
        self.groups = spec.groups
        self.n_groups = len(spec.group_labels)
        # offset of each grouping's first column in the membership row
        offsets: list[int] = []
        at = 0
        for g in spec.groups:
            offsets.append(at)
            at += len(g.values) if g.values else len(g.edges) - 1
        self.offsets = offsets
        self.value_index = [{v: i for i, v in enumerate(g.values)} for g in spec.groups]

    def membership(self, attributes: dict[str, Any] | None, named: dict[str, Any] | None, values: Sequence[float] | None) -> BoolArray:
        """Boolean row over the declared groups. A value outside them joins none."""
        row = np.zeros(self.n_groups, dtype=np.bool_)
        row[self.codes(attributes, named, values)] = True
        return row

    def codes(self, attributes: dict[str, Any] | None, named: dict[str, Any] | None, values: Sequence[float] | None) -> list[int]:
        """The membership columns an event joins (at most one per grouping), as small ints."""
        codes = []
        for gi, g in enumerate(self.groups):
            value = _field_value(g, attributes, named, values, self.index)
            if value is None:
                continue
            if type(value) not in _ATTRIBUTE_TYPES:  # only the values groups read are checked: the hot path stays short
                raise BadEvent("bad_field", f"attribute {g.field!r} must be a string, number or boolean, got {_show(value)}")
            if g.values:
                j = self.value_index[gi].get(value if type(value) is str else _category(value))  # a string is its own category
                if j is not None:
                    codes.append(self.offsets[gi] + j)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                j = _bin(g.edges, float(value))
                if j >= 0:
                    codes.append(self.offsets[gi] + j)
        return codes


_ATTRIBUTE_TYPES = frozenset((str, int, float, bool))  # the schema's scalar attribute values


def _category(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _field_value(
    g: GroupSpec, attributes: dict[str, Any] | None, named: dict[str, Any] | None, values: Sequence[float] | None, index: dict[str, int]
) -> Any:
    if attributes is not None and g.field in attributes:
        return attributes[g.field]
    if named is not None and g.field in named:
        return named[g.field]
    if values is not None and g.field in index:
        return float(values[index[g.field]])
    return None


def _bin(edges: tuple[float, ...], v: float) -> int:
    """Index of the bin [e_i, e_{i+1}) holding v; the last bin is closed; -1 outside."""
    if v < edges[0] or v > edges[-1]:
        return -1
    for i in range(len(edges) - 1):
        if v < edges[i + 1]:
            return i
    return len(edges) - 2


_NUMBER_TYPES = frozenset((int, float))
MAX_INDEX = 2**31  # an individual or auditor index in an audit; keeps int64 arrays exact
MAX_PANEL = 64  # auditors named on one audit
OTHER_AUDITOR = "_other_"  # where per-auditor counts go beyond the first 64 names of a model


def _is_number(v: Any) -> bool:
    return (type(v) is float or type(v) is int) and not isinstance(v, bool)


class EventDecoder:
    """Turns raw payloads into :class:`Event` or raises :class:`BadEvent`."""

    def __init__(self, config: Config, tasks: dict[str, Task]) -> None:
        # ``tasks``: each model's task (``regretflow.engine.tasks.model_tasks(config)``), given
        # by the caller so that the event contract does not import the task layer above it
        self.max_bytes = config.runtime.max_event_bytes
        self.max_abs = config.runtime.max_abs_value
        self.models = {name: ModelView(spec, tasks[name]) for name, spec in config.models.items()}

    def decode(self, payload: bytes | str) -> Event:
        try:
            size = len(payload)
        except TypeError:  # a Kafka tombstone (null value) or another non-payload
            raise BadEvent("not_json", f"a {type(payload).__name__} record, not a JSON payload") from None
        if size > self.max_bytes:
            raise BadEvent("oversized", f"{size} bytes > max_event_bytes {self.max_bytes}")
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise self._undecodable(payload, exc) from None
        if type(obj) is not dict:
            raise BadEvent("not_object", f"expected a JSON object, got {type(obj).__name__}")
        try:
            return self.validate(obj)
        except BadEvent as bad:
            self._name_model(bad, obj)
            raise

    def _name_model(self, bad: BadEvent, obj: Any) -> None:
        """Dead letters and their counters name the declared model the event named, if any,
        and carry the event's id when it is a valid one (a dead-letter header)."""
        if type(obj) is not dict:
            return
        named = obj.get("model")
        if type(named) is str and named in self.models:
            bad.model = named
        eid = obj.get("id")
        if type(eid) is str and 0 < len(eid) <= 256:
            bad.event_id = eid

    def _undecodable(self, payload: bytes | str, exc: Exception) -> BadEvent:
        """Why orjson refused a payload: a non-finite number, an integer past the float range, or not JSON.

        orjson rejects NaN, Infinity, 1e999 and integers that overflow a double alike;
        only these rare payloads pay for a second, stdlib parse that tells them apart.
        """
        found: list[tuple[str, str]] = []  # (reason, literal)
        try:
            text = payload.decode("utf-8") if isinstance(payload, (bytes, bytearray)) else payload
            obj = json.loads(
                text,
                parse_constant=lambda name: _flag(found, "non_finite", name),
                parse_float=lambda s: _parsed_float(s, found),
                parse_int=lambda s: _parsed_int(s, found),
            )
        except Exception:  # not UTF-8, not JSON, nested past the parser's depth: all not_json
            return BadEvent("not_json", str(exc)[:200])
        if not found:
            return BadEvent("not_json", str(exc)[:200])
        reason, literal = found[0]
        detail = (
            f"non-finite number {literal[:32]}"
            if reason == "non_finite"
            else f"integer of {len(literal.lstrip('-'))} digits is past the float range"
        )
        bad = BadEvent(reason, detail)
        self._name_model(bad, obj)
        return bad

    def validate(self, obj: dict[str, Any]) -> Event:
        if not obj.keys() <= _TOP_FIELDS:  # one C-level pass; the first unknown one is named
            field = next(f for f in obj if f not in _TOP_FIELDS)
            raise BadEvent("unknown_field", f"field {field!r} is not part of the event contract")
        try:
            eid, model_name, kind = obj["id"], obj["model"], obj["kind"]
        except KeyError:
            field = next(f for f in ("id", "model", "kind") if f not in obj)
            raise BadEvent("missing_field", f"field {field!r} is required") from None
        if type(eid) is not str or not 0 < len(eid) <= 256:
            raise BadEvent("bad_field", "id must be a string of 1 to 256 characters")
        if type(model_name) is not str:
            raise BadEvent("bad_field", "model must be a string")
        if type(kind) is not str or kind not in _REQUIRED:
            raise BadEvent("unknown_kind", f"kind {_show(kind)} is not one of {', '.join(KINDS)}")
        view = self.models.get(model_name)
        if view is None:
            raise BadEvent("unknown_model", f"model {model_name[:128]!r} is not declared in the config")
        for field in _REQUIRED[kind]:
            if field not in obj:
                raise BadEvent("missing_field", f"a {kind} event requires {field!r}")
        ev = Event(eid, model_name, kind)
        key = obj.get("key")
        if key is not None:
            if type(key) is not str or len(key) > 256:
                raise BadEvent("bad_field", "key must be a string of at most 256 characters")
            ev.key = key
        ts = obj.get("ts")
        if ts is not None:
            if not _is_number(ts):
                raise BadEvent("bad_field", "ts must be a number (seconds)")
            ev.ts = float(ts)
        if kind == "feedback" or kind == "audit":
            return self._reply(obj, ev, kind)
        attributes = obj.get("attributes")
        if attributes is not None and type(attributes) is not dict:
            raise BadEvent("bad_field", "attributes must be an object")
        named = None
        if "features" in obj:
            features = obj["features"]
            named = features if type(features) is dict else None
            ev.values = self._features(view, features)
        elif view.d:
            if kind != "decide":
                raise BadEvent("missing_field", f"a {kind} event requires 'features'")
        if kind == "observe":
            label = ev.label = view.task.check_label(obj["label"])
            if type(label) is not str and not -self.max_abs <= label <= self.max_abs:  # a number (inline: the hot path)
                self._bounded(label, "label")
        elif "label" in obj:
            raise BadEvent("unknown_field", f"a {kind} event carries no label")
        if kind == "decide":
            self._decide(view, obj, ev)
        if view.n_groups:
            ev.codes = view.codes(attributes, named, ev.values)
            ev.width = view.n_groups
        return ev

    def _features(self, view: ModelView, features: Any) -> list[float]:
        """The validated feature values in declared order (converted to float64 once per run, not here)."""
        d = view.d
        if type(features) is list:
            if len(features) < d:
                raise BadEvent("missing_features", f"{len(features)} features, the model declares {d}")
            if len(features) > d:
                raise BadEvent("extra_features", f"{len(features)} features, the model declares {d}")
            if not set(map(type, features)) <= _NUMBER_TYPES:  # one C-level pass; bool is not a number
                bad = next(v for v in features if not _is_number(v))
                raise BadEvent("wrong_type", f"feature value {_show(bad)} is not a number")
            self._check_bound(features)
            return features
        if type(features) is dict:
            if len(features) > d or not features.keys() <= view.index.keys():
                extra = [n for n in features if n not in view.index]
                raise BadEvent("extra_features", f"feature {extra[0][:64]!r} is not declared")
            if len(features) < d:
                absent = [n for n in view.names if n not in features]
                raise BadEvent("missing_features", f"missing {', '.join(absent[:5])}")
            values = [features[n] for n in view.names]
            if not set(map(type, values)) <= _NUMBER_TYPES:
                name = next(n for n in view.names if not _is_number(features[n]))
                raise BadEvent("wrong_type", f"feature {name!r} = {_show(features[name])} is not a number")
            self._check_bound(values)
            return values
        raise BadEvent("bad_field", "features must be an array of numbers or a name -> number object")

    def _check_bound(self, values: list[Any]) -> None:
        # the Euclidean norm (one C call, 0.1 us at d=8, 0.3 us at d=32; inf, not an error,
        # past the float range) clears every row within the bound; only the others pay for
        # the exact per-value test
        if math.hypot(*values) <= self.max_abs:
            return
        if max(values) > self.max_abs or min(values) < -self.max_abs:
            raise BadEvent("out_of_range", f"a feature is beyond max_abs_value {self.max_abs:g}")

    def _decide(self, view: ModelView, obj: dict[str, Any], ev: Event) -> None:
        actions = obj.get("actions")
        if actions is not None:
            if type(actions) is not list or not actions or any(type(a) is not list for a in actions):
                raise BadEvent("bad_actions", "actions must be a non-empty array of feature arrays")
            width = len(actions[0])
            values = [v for a in actions for v in a]
            if any(len(a) != width for a in actions) or not {type(v) for v in values} <= _NUMBER_TYPES:
                raise BadEvent("bad_actions", "every action row must have the same number of numeric values")
            if values and (max(values) > self.max_abs or min(values) < -self.max_abs):
                raise BadEvent("out_of_range", f"an action value is beyond max_abs_value {self.max_abs:g}")
            ev.actions = np.array(actions, dtype=np.float64)
        expected = obj.get("expected_rewards")
        if expected is not None:
            if type(expected) is not list or not {type(v) for v in expected} <= _NUMBER_TYPES:
                raise BadEvent("bad_actions", "expected_rewards must be an array of numbers")
            n_actions = len(actions) if actions is not None else view.spec.n_actions
            if n_actions is not None and len(expected) != n_actions:
                raise BadEvent("bad_actions", f"{len(expected)} expected rewards for {n_actions} actions")
            if expected and (max(expected) > self.max_abs or min(expected) < -self.max_abs):
                raise BadEvent("out_of_range", f"an expected reward is beyond max_abs_value {self.max_abs:g}")
            ev.expected = np.array(expected, dtype=np.float64)

    def _reply(self, obj: dict[str, Any], ev: Event, kind: str) -> Event:
        for key in obj:
            if key in ("features", "attributes", "actions", "expected_rewards"):
                raise BadEvent("unknown_field", f"a {kind} event carries no {key!r}")
        ref = obj["ref"]
        if type(ref) is not str or not 0 < len(ref) <= 256:
            raise BadEvent("bad_field", "ref must be the id (string) of an earlier predict or decide")
        ev.ref = ref
        if kind == "feedback":
            has_reward, has_label = "reward" in obj, "label" in obj
            if has_reward == has_label:
                raise BadEvent("missing_field" if not has_reward else "bad_field", "feedback carries exactly one of reward or label")
            if has_reward:
                if not _is_number(obj["reward"]):
                    raise BadEvent("bad_field", "reward must be a number")
                ev.reward = float(self._bounded(obj["reward"], "reward"))
            else:
                label = obj["label"]
                if isinstance(label, bool) or not isinstance(label, (int, float, str, list)):
                    raise BadEvent("bad_label", f"label {_show(label)} has an unsupported type")
                if type(label) is list and not all(v is None or (type(v) is int and v in (0, 1)) for v in label):
                    raise BadEvent("bad_label", "a list label holds 0, 1 or null per individual")
                ev.label = self._bounded(label, "label")
            if "violations" in obj or "panel_size" in obj or "auditors" in obj:
                raise BadEvent("unknown_field", "a feedback event carries no violations")
        else:
            violations = obj["violations"]
            if (
                type(violations) is not list
                or not all(
                    type(p) is list and len(p) in (2, 3) and all(type(i) is int and 0 <= i < MAX_INDEX for i in p) for p in violations
                )
                or len({len(p) for p in violations}) > 1
            ):
                raise BadEvent("bad_field", "violations must be an array of [i, j] pairs or of [i, j, auditor] triples")
            width = len(violations[0]) if violations else 2
            ev.violations = np.array(violations, dtype=np.int64).reshape(-1, width)
            panel = obj.get("panel_size")
            if panel is not None and (type(panel) is not int or not 1 <= panel <= MAX_INDEX):
                raise BadEvent("bad_field", f"panel_size must be an integer from 1 to {MAX_INDEX}")
            if panel is not None and width == 3 and len(ev.violations) and int(ev.violations[:, 2].max()) >= panel:
                raise BadEvent("bad_field", "an auditor index is not below panel_size")
            auditors = obj.get("auditors")
            if auditors is not None:
                if (
                    type(auditors) is not list
                    or not 0 < len(auditors) <= MAX_PANEL
                    or not all(type(a) is str and 0 < len(a) <= 64 and a.isprintable() and a != OTHER_AUDITOR for a in auditors)
                    or len(set(auditors)) != len(auditors)
                ):
                    raise BadEvent(
                        "bad_field",
                        f"auditors must be 1 to {MAX_PANEL} distinct printable names of at most 64 characters (not {OTHER_AUDITOR!r})",
                    )
                if width != 3 and len(ev.violations):
                    raise BadEvent("bad_field", "auditors name the panel slots of [i, j, auditor] triples")
                if panel is not None and panel != len(auditors):
                    raise BadEvent("bad_field", f"{len(auditors)} auditors named for a panel of {panel}")
                if len(ev.violations) and int(ev.violations[:, 2].max()) >= len(auditors):
                    raise BadEvent("bad_field", "an auditor index has no name in auditors")
                panel = len(auditors)
                ev.auditors = auditors
            ev.panel_size = panel
            if "reward" in obj or "label" in obj:
                raise BadEvent("unknown_field", "an audit event carries only ref, violations, panel_size and auditors")
        return ev

    def _bounded(self, value: Any, what: str) -> Any:
        """``value``, unless it is a number beyond max_abs_value (labels may also be classes or lists)."""
        if (type(value) is float or type(value) is int) and not -self.max_abs <= value <= self.max_abs:
            raise BadEvent("out_of_range", f"{what} {_show(value)} is beyond max_abs_value {self.max_abs:g}")
        return value


def _present(value: _T | None) -> _T:
    """``value``, known not to be None (a row of a run whose first row has one)."""
    assert value is not None
    return value


def _show(value: Any) -> str:
    """A short rendering of a wrong value for a dead letter's detail (never a deep or huge repr)."""
    if type(value) is list or type(value) is dict:
        return f"<{type(value).__name__} of {len(value)}>"
    if type(value) is str and len(value) > 64:
        return repr(value[:61]) + "..."
    text = repr(value)
    return text if len(text) <= 64 else text[:61] + "..."


def _flag(found: list[tuple[str, str]], reason: str, literal: str) -> float:
    found.append((reason, literal))
    return 0.0  # a placeholder: the event is dead-lettered for ``reason``


def _parsed_float(text: str, found: list[tuple[str, str]]) -> float:
    v = float(text)
    return v if math.isfinite(v) else _flag(found, "non_finite", text)


def _parsed_int(text: str, found: list[tuple[str, str]]) -> int | float:
    # more than 309 digits is past the float range (and int() of thousands of digits is refused)
    if len(text.lstrip("-")) > 309:
        return _flag(found, "out_of_range", text)
    v = int(text)
    try:
        float(v)
    except OverflowError:
        return _flag(found, "out_of_range", text)
    return v
