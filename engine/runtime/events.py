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
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from regretflow.engine.config import Config, GroupSpec, ModelSpec
from regretflow.engine.runtime.dead_letters import REASONS as REASONS  # re-exported: callers of earlier releases import it here
from regretflow.engine.runtime.dead_letters import BadEvent

if TYPE_CHECKING:
    from regretflow.engine.tasks import Task

KINDS = ("observe", "predict", "decide", "feedback", "audit")

_TOP_FIELDS = frozenset(
    (
        "id",
        "model",
        "kind",
        "key",
        "ts",
        "features",
        "attributes",
        "label",
        "actions",
        "expected_rewards",
        "ref",
        "reward",
        "violations",
        "panel_size",
        "auditors",
    )
)
_REQUIRED = {
    "observe": ("features", "label"),
    "predict": ("features",),
    "decide": (),
    "feedback": ("ref",),
    "audit": ("ref", "violations"),
}


class Event:
    """A decoded, validated event. ``x`` is the dense float64 feature row (or None)."""

    __slots__ = (
        "id",
        "model",
        "kind",
        "key",
        "ts",
        "x",
        "label",
        "groups",
        "actions",
        "expected",
        "ref",
        "reward",
        "violations",
        "panel_size",
        "auditors",
        "raw",
    )

    def __init__(self, id, model, kind):
        self.id = id
        self.model = model
        self.kind = kind
        self.key = None
        self.ts = None
        self.x = None
        self.label = None
        self.groups = None
        self.actions = None
        self.expected = None
        self.ref = None
        self.reward = None
        self.violations = None
        self.panel_size = None
        self.auditors = None
        self.raw = b""  # the payload, for a dead letter after validation (a quarantined run)


def schema() -> dict[str, Any]:
    """The event JSON Schema shipped with the package."""
    return json.loads(resources.files("regretflow.engine").joinpath("schema/event.schema.json").read_text())


class ModelView:
    """What the decoder needs to know about one declared model."""

    def __init__(self, spec: ModelSpec, task: Task):
        self.spec = spec
        self.task = task
        self.names = list(spec.features)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.d = len(self.names)
        self.groups = spec.groups
        self.n_groups = len(spec.group_labels)
        # offset of each grouping's first column in the membership row
        offsets, at = [], 0
        for g in spec.groups:
            offsets.append(at)
            at += len(g.values) if g.values else len(g.edges) - 1
        self.offsets = offsets
        self.value_index = [{v: i for i, v in enumerate(g.values)} for g in spec.groups]

    def membership(self, attributes: dict | None, named: dict | None, x: np.ndarray | None) -> np.ndarray:
        """Boolean row over the declared groups. A value outside them joins none."""
        row = np.zeros(self.n_groups, dtype=np.bool_)
        for gi, g in enumerate(self.groups):
            value = _field_value(g, attributes, named, x, self.index)
            if value is None:
                continue
            if type(value) not in _ATTRIBUTE_TYPES:  # only the values groups read are checked: the hot path stays short
                raise BadEvent("bad_field", f"attribute {g.field!r} must be a string, number or boolean, got {_show(value)}")
            if g.values:
                j = self.value_index[gi].get(_category(value))
                if j is not None:
                    row[self.offsets[gi] + j] = True
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                j = _bin(g.edges, float(value))
                if j >= 0:
                    row[self.offsets[gi] + j] = True
        return row


_ATTRIBUTE_TYPES = frozenset((str, int, float, bool))  # the schema's scalar attribute values


def _category(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _field_value(g: GroupSpec, attributes, named, x, index):
    if attributes is not None and g.field in attributes:
        return attributes[g.field]
    if named is not None and g.field in named:
        return named[g.field]
    if x is not None and g.field in index:
        return float(x[index[g.field]])
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

    def __init__(self, config: Config, tasks: dict[str, Task]):
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

    def validate(self, obj: dict) -> Event:
        for key in obj:
            if key not in _TOP_FIELDS:
                raise BadEvent("unknown_field", f"field {key!r} is not part of the event contract")
        for key in ("id", "model", "kind"):
            if key not in obj:
                raise BadEvent("missing_field", f"field {key!r} is required")
        eid, model_name, kind = obj["id"], obj["model"], obj["kind"]
        if type(eid) is not str or not 0 < len(eid) <= 256:
            raise BadEvent("bad_field", "id must be a string of 1 to 256 characters")
        if type(model_name) is not str:
            raise BadEvent("bad_field", "model must be a string")
        if type(kind) is not str or kind not in _REQUIRED:
            raise BadEvent("unknown_kind", f"kind {_show(kind)} is not one of {', '.join(KINDS)}")
        view = self.models.get(model_name)
        if view is None:
            raise BadEvent("unknown_model", f"model {model_name[:128]!r} is not declared in the config")
        for key in _REQUIRED[kind]:
            if key not in obj:
                raise BadEvent("missing_field", f"a {kind} event requires {key!r}")
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
            ev.x = self._features(view, features)
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
        ev.groups = view.membership(attributes, named, ev.x) if view.n_groups else None
        return ev

    def _features(self, view: ModelView, features: Any) -> np.ndarray:
        d = view.d
        if type(features) is list:
            if len(features) < d:
                raise BadEvent("missing_features", f"{len(features)} features, the model declares {d}")
            if len(features) > d:
                raise BadEvent("extra_features", f"{len(features)} features, the model declares {d}")
            if not {type(v) for v in features} <= _NUMBER_TYPES:  # one C-level pass; bool is not a number
                bad = next(v for v in features if not _is_number(v))
                raise BadEvent("wrong_type", f"feature value {_show(bad)} is not a number")
            self._check_bound(features)
            return np.array(features, dtype=np.float64)
        if type(features) is dict:
            if len(features) > d or not features.keys() <= view.index.keys():
                extra = [n for n in features if n not in view.index]
                raise BadEvent("extra_features", f"feature {extra[0][:64]!r} is not declared")
            if len(features) < d:
                absent = [n for n in view.names if n not in features]
                raise BadEvent("missing_features", f"missing {', '.join(absent[:5])}")
            values = [features[n] for n in view.names]
            if not {type(v) for v in values} <= _NUMBER_TYPES:
                name = next(n for n in view.names if not _is_number(features[n]))
                raise BadEvent("wrong_type", f"feature {name!r} = {_show(features[name])} is not a number")
            self._check_bound(values)
            return np.array(values, dtype=np.float64)
        raise BadEvent("bad_field", "features must be an array of numbers or a name -> number object")

    def _check_bound(self, values: list) -> None:
        # the Euclidean norm (one C call, 0.1 us at d=8, 0.3 us at d=32; inf, not an error,
        # past the float range) clears every row within the bound; only the others pay for
        # the exact per-value test
        if math.hypot(*values) <= self.max_abs:
            return
        if max(values) > self.max_abs or min(values) < -self.max_abs:
            raise BadEvent("out_of_range", f"a feature is beyond max_abs_value {self.max_abs:g}")

    def _decide(self, view: ModelView, obj: dict, ev: Event) -> None:
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

    def _reply(self, obj: dict, ev: Event, kind: str) -> Event:
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


def _show(value: Any) -> str:
    """A short rendering of a wrong value for a dead letter's detail (never a deep or huge repr)."""
    if type(value) is list or type(value) is dict:
        return f"<{type(value).__name__} of {len(value)}>"
    if type(value) is str and len(value) > 64:
        return repr(value[:61]) + "..."
    text = repr(value)
    return text if len(text) <= 64 else text[:61] + "..."


def _flag(found: list, reason: str, literal: str) -> float:
    found.append((reason, literal))
    return 0.0  # a placeholder: the event is dead-lettered for ``reason``


def _parsed_float(text: str, found: list) -> float:
    v = float(text)
    return v if math.isfinite(v) else _flag(found, "non_finite", text)


def _parsed_int(text: str, found: list) -> int | float:
    # more than 309 digits is past the float range (and int() of thousands of digits is refused)
    if len(text.lstrip("-")) > 309:
        return _flag(found, "out_of_range", text)
    v = int(text)
    try:
        float(v)
    except OverflowError:
        return _flag(found, "out_of_range", text)
    return v
