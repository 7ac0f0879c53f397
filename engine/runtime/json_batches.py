"""A micro-batch of JSON payloads validated column-wise: the common events as runs in columns, the rest one by one.

Validating each event in Python (:meth:`EventDecoder.validate`) costs more than parsing it.
:class:`JsonBatchDecoder` parses every payload of a batch with ``orjson`` and checks the
observe and predict events of the declared models together: a comprehension per field,
one ``numpy`` conversion of all their feature lists (whose inferred dtype and shape tell a
non-number or a wrong width; numpy reads a bool as 1 or 0, so rows holding an exact 0 or 1
have their value types checked), one bound test, group memberships per grouping. Consecutive
rows that pass, of one model, kind and (for a model sharded by key) key, become one
:class:`Run`, the structure the Arrow path hands the shards.

Only events the per-event path would accept, with the same values, are taken here. A
payload the screen cannot clear (a bool among the features, a field outside the common ones,
a named-feature object, a value past 2**53, any check that fails...) is handed back as it
is, at its place in the stream, and goes through :meth:`EventDecoder.decode`: its dead
letter, or its event, is exactly the per-event path's.

>>> from regretflow.engine.config import parse_config
>>> from regretflow.engine.tasks import model_tasks
>>> cfg = parse_config({"models": {"m": {"learner": "ridge", "features": ["a", "b"]}}})
>>> decoder = JsonBatchDecoder(EventDecoder(cfg, model_tasks(cfg)))
>>> good = b'{"id": "1", "model": "m", "kind": "observe", "features": [1, 2.5], "label": 3}'
>>> flagged = b'{"id": "2", "model": "m", "kind": "observe", "features": [true, 2], "label": 3}'
>>> run, left = decoder.decode([good, good, flagged])
>>> type(run).__name__, run.kind, run.X.tolist(), run.labels, left == flagged
('Run', 'observe', [[1.0, 2.5], [1.0, 2.5]], [3.0, 3.0], True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from regretflow.engine.runtime.dead_letters import BadEvent
from regretflow.engine.runtime.events import EventDecoder, ModelView, Run

# the fields a column-wise row may carry; any other (reply fields, decide's, unknown ones) sends the row one by one
_FAST_FIELDS = frozenset(("id", "model", "kind", "key", "ts", "features", "label", "attributes"))
_NUMBERS = frozenset((int, float))
_EXACT = 2.0**53  # beyond it an integer feature may round on conversion: such rows go one by one
_ABSENT = object()


class JsonBatchDecoder:
    """Turns a batch of JSON payloads into runs in columns and the payloads left to :meth:`EventDecoder.decode`, in stream order."""

    def __init__(self, decoder: EventDecoder) -> None:
        self.decoder = decoder
        self.max_abs = decoder.max_abs
        self.max_bytes = decoder.max_bytes
        # (model, kind) -> the model's view, for the kinds its task takes as runs
        self.run_views: dict[tuple[str, str], ModelView] = {
            (name, kind): view
            for name, view in decoder.models.items()
            for kind in view.task.run_kinds & view.task.kinds & {"observe", "predict"}
        }
        self.by_key = {name: bool(view.spec.params.get("shard_by_key", False)) for name, view in decoder.models.items()}

    def expand(self, records: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
        """A micro-batch's ``(partition, payload)`` records with each stretch of one partition's JSON payloads
        decoded (:meth:`decode`); other records (Arrow rows and blocks) are kept as they are."""
        out: list[tuple[str, Any]] = []
        i, n = 0, len(records)
        while i < n:
            pid, payload = records[i]
            if type(payload) is not bytes and type(payload) is not str:
                out.append((pid, payload))
                i += 1
                continue
            j = i + 1
            while j < n and records[j][0] == pid and type(records[j][1]) in (bytes, str):
                j += 1
            out += [(pid, item) for item in self.decode([p for _, p in records[i:j]])]
            i = j
        return out

    def decode(self, payloads: list[Any]) -> list[Any]:
        """The payloads in stream order as :class:`Run` (rows validated together) and single payloads (left to
        :meth:`EventDecoder.decode`)."""
        n = len(payloads)
        objs = self._parse(payloads)
        # rows that may be taken: a JSON object of the common fields only, of a declared model and run kind, with a valid id
        fields = _FAST_FIELDS
        common = [type(o) is dict and o.keys() <= fields for o in objs]
        run_views = self.run_views
        try:
            views = [run_views.get((o.get("model"), o.get("kind"))) if c else None for o, c in zip(objs, common)]
        except TypeError:  # an unhashable model or kind (a list, an object): such rows go one by one
            views = [
                run_views.get((o["model"], o["kind"])) if c and type(o.get("model")) is str and type(o.get("kind")) is str else None
                for o, c in zip(objs, common)
            ]
        ids = [o.get("id") if v is not None else None for o, v in zip(objs, views)]
        views = [v if v is not None and type(e) is str and 0 < len(e) <= 256 else None for v, e in zip(views, ids)]
        taken = [False] * n
        columns: dict[str, _ModelColumns] = {}
        for name in {v.spec.name for v in views if v is not None}:
            rows = [i for i, v in enumerate(views) if v is not None and v.spec.name == name]
            view = self.decoder.models[name]
            cols = columns[name] = self._columns(view, rows, [objs[i] for i in rows])
            for i, ok in zip(rows, cols.ok):
                taken[i] = ok
        return self._cut(payloads, objs, views, taken, columns)

    def _parse(self, payloads: list[Any]) -> list[Any]:
        loads, max_bytes = orjson.loads, self.max_bytes
        try:
            if max(map(len, payloads)) <= max_bytes:
                return [loads(p) for p in payloads]
        except (orjson.JSONDecodeError, TypeError, ValueError):
            pass
        objs: list[Any] = []
        for p in payloads:  # a batch with a payload orjson refuses (or an oversized one): parsed one by one
            try:
                objs.append(loads(p) if len(p) <= max_bytes else None)
            except (orjson.JSONDecodeError, TypeError, ValueError):
                objs.append(None)
        return objs

    def _columns(self, view: ModelView, rows: list[int], objs: list[dict[str, Any]]) -> _ModelColumns:
        """The checks and columns of one model's candidate rows."""
        m, d, max_abs = len(rows), view.d, self.max_abs
        features = [o.get("features") for o in objs]
        ok = [type(f) is list and len(f) == d for f in features]
        X = _matrix(features, d) if all(ok) else None
        if X is not None:
            # numpy reads a bool as 1 or 0: rows holding an exact 0 or 1 have their value types checked
            suspect = np.flatnonzero(((X == 0.0) | (X == 1.0)).any(axis=1)).tolist() if d else []
            for i in suspect:
                ok[i] = set(map(type, features[i])) <= _NUMBERS
        else:  # a row of another width or type: only rows of d numbers go in the matrix
            ok = [k and set(map(type, f)) <= _NUMBERS for k, f in zip(ok, features)]
            kept = [f for k, f in zip(ok, features) if k]
            X = np.zeros((m, d))
            part = _matrix(kept, d) if kept else np.zeros((0, d))
            if part is None:  # a mix numpy holds as objects (integers past int64 with negative ones)
                return _ModelColumns([False] * m, X, None, [], [], [])
            X[np.flatnonzero(ok)] = part
        peak = np.abs(X).max(axis=1) if d else np.zeros(m)
        ok = [k and p <= max_abs and p < _EXACT for k, p in zip(ok, peak.tolist())]
        kinds = [o["kind"] for o in objs]
        labels: list[Any] = [None] * m
        if "observe" in kinds:
            labels = self._labels(view, objs, kinds, ok)
        if "predict" in kinds:
            ok = [k and ("label" not in o if kind == "predict" else True) for k, o, kind in zip(ok, objs, kinds)]
        keys = [o.get("key") for o in objs]
        ok = [k and (key is None or (type(key) is str and len(key) <= 256)) for k, key in zip(ok, keys)]
        ts = [o.get("ts") for o in objs]
        ok = [k and (t is None or type(t) in _NUMBERS) for k, t in zip(ok, ts)]
        ts = [None if t is None else float(t) for t in ts]
        attributes = [o.get("attributes") for o in objs]
        ok = [k and (a is None or type(a) is dict) for k, a in zip(ok, attributes)]
        G = self._memberships(view, attributes, features, X, ok) if view.n_groups else None
        return _ModelColumns(ok, X, G, labels, ts, keys)

    def _labels(self, view: ModelView, objs: list[dict[str, Any]], kinds: list[str], ok: list[bool]) -> list[Any]:
        """Observe labels as the task takes them; a row whose label the task or the bound refuses is left out."""
        max_abs = self.max_abs
        labels = [o.get("label", _ABSENT) if kind == "observe" else None for o, kind in zip(objs, kinds)]
        if view.task.name == "regression" and {type(v) for v, kind in zip(labels, kinds) if kind == "observe"} <= _NUMBERS:
            labels = [None if v is None else float(v) for v in labels]  # (what the task's check_label returns)
            for i, v in enumerate(labels):
                if v is not None and not -max_abs <= v <= max_abs:
                    ok[i] = False
            return labels
        out: list[Any] = []
        for i, (v, kind) in enumerate(zip(labels, kinds)):  # other tasks, or a label of another type: the task's own check per row
            if kind != "observe":
                out.append(None)
                continue
            try:
                if v is _ABSENT:
                    raise BadEvent("missing_field", "label")
                label = view.task.check_label(v)
                if type(label) is not str and not -max_abs <= label <= max_abs:
                    raise BadEvent("out_of_range", "label")
            except BadEvent:
                ok[i] = False
                label = None
            out.append(label)
        return out

    def _memberships(self, view: ModelView, attributes: list[Any], features: list[Any], X: np.ndarray, ok: list[bool]) -> np.ndarray:
        """The boolean membership matrix, a grouping at a time: declared values read from text attributes, bins
        from numeric attributes or from the feature of that name. When some grouping's values are anything else
        (a mix, a bool, a category read from a feature), every row is read by :meth:`ModelView.codes` itself."""
        m = len(attributes)
        G = np.zeros((m, view.n_groups), dtype=np.bool_)
        for gi, g in enumerate(view.groups):
            field, at = g.field, view.offsets[gi]
            values = [a.get(field, _ABSENT) if type(a) is dict else _ABSENT for a in attributes]
            value_types = set(map(type, values))
            if value_types == {object} and field not in view.index:
                continue  # the grouping's field is nowhere: the rows join none of its groups
            if g.values and value_types == {str}:
                index = view.value_index[gi]
                codes = [index.get(v, -1) for v in values]
                rows = [i for i, c in enumerate(codes) if c >= 0]
                G[rows, [at + codes[i] for i in rows]] = True
                continue
            if not g.values and (value_types <= _NUMBERS or value_types == {object}):
                column = np.array(values, dtype=np.float64) if value_types <= _NUMBERS else X[:, view.index[field]]
                G[:, at : at + len(g.edges) - 1] = _bins(g.edges, column)
                continue
            G[:] = False
            for i in range(m):  # the per-event rules, row by row
                if ok[i]:
                    try:
                        G[i, view.codes(attributes[i], None, features[i])] = True
                    except BadEvent:
                        ok[i] = False
            break
        return G

    def _cut(
        self, payloads: list[Any], objs: list[Any], views: list[ModelView | None], taken: list[bool], columns: dict[str, _ModelColumns]
    ) -> list[Any]:
        """Consecutive taken rows of one model, kind and shard key as runs; the others as their payloads."""
        out: list[Any] = []
        local: dict[str, int] = dict.fromkeys(columns, 0)  # the next row of each model's columns
        n = len(payloads)
        i = 0
        while i < n:
            view = views[i]
            if view is None:
                out.append(payloads[i])
                i += 1
                continue
            name = view.spec.name
            start_local = local[name]
            if not taken[i]:
                local[name] += 1
                out.append(payloads[i])
                i += 1
                continue
            kind = objs[i]["kind"]
            cols = columns[name]
            by_key = self.by_key[name]
            key = cols.keys[start_local]
            j = i + 1
            while (
                j < n
                and taken[j]
                and views[j] is view
                and objs[j]["kind"] == kind
                and (not by_key or cols.keys[start_local + j - i] == key)
            ):
                j += 1
            stop_local = start_local + j - i
            local[name] = stop_local
            out.append(
                Run.from_columns(
                    kind,
                    name,
                    [o["id"] for o in objs[i:j]],
                    cols.X[start_local:stop_local],
                    None if cols.G is None else cols.G[start_local:stop_local],
                    cols.labels[start_local:stop_local] if kind == "observe" else None,
                    cols.ts[start_local:stop_local],
                    cols.keys[start_local:stop_local],
                    payloads[i:j],
                )
            )
            i = j
        return out


class _ModelColumns:
    """One model's candidate rows of a batch: which passed (``ok``) and their columns."""

    __slots__ = ("ok", "X", "G", "labels", "ts", "keys")

    def __init__(self, ok: list[bool], X: np.ndarray, G: np.ndarray | None, labels: list[Any], ts: list[Any], keys: list[Any]) -> None:
        self.ok, self.X, self.G, self.labels, self.ts, self.keys = ok, X, G, labels, ts, keys


def _matrix(features: list[Any], d: int) -> np.ndarray | None:
    """The rows as a float64 (n, d) matrix when numpy reads every value as a number, else None (a string, a null,
    a nested list or object: an inferred dtype other than a float or an integer, or another shape)."""
    try:
        X = np.array(features)
    except (ValueError, TypeError, OverflowError):
        return None
    if X.dtype.kind not in "fiu" or X.shape != (len(features), d):
        return None
    return X if X.dtype == np.float64 else X.astype(np.float64)


def _bins(edges: tuple[float, ...], values: np.ndarray) -> np.ndarray:
    """One-hot bins of ``values`` (the bin [e_i, e_{i+1}), the last one closed; none outside), as ``events._bin``."""
    e = np.asarray(edges, dtype=np.float64)
    k = len(e) - 1
    inside = (values >= e[0]) & (values <= e[-1])
    j = np.minimum(np.searchsorted(e[1:], values, side="right"), k - 1)
    out = np.zeros((len(values), k), dtype=np.bool_)
    rows = np.flatnonzero(inside)
    out[rows, j[rows]] = True
    return out


def admit_json_run(router: Any, run: Run, out: Any) -> list[tuple[int, BadEvent]]:
    """Hand a run to its shard; the rows refused, each with its BadEvent (what admitting them one by one raises).

    A shard the router cannot make (a new key past ``max_shards``, a kind the model takes no events of)
    refuses every row with the same reason, as it would each event.
    """
    try:
        refused: list[tuple[int, BadEvent]] = router.admit_run(run, out)
    except BadEvent as bad:
        return [(i, bad) for i in range(len(run))]
    return refused
