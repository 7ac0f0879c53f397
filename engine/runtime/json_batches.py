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
>>> decoder.min_rows = 1  # (batches this small go one by one otherwise)
>>> good = b'{"id": "1", "model": "m", "kind": "observe", "features": [1, 2.5], "label": 3}'
>>> flagged = b'{"id": "2", "model": "m", "kind": "observe", "features": [true, 2], "label": 3}'
>>> run, left = decoder.decode([good, good, flagged])
>>> type(run).__name__, run.kind, run.X.tolist(), run.labels, left == flagged
('Run', 'observe', [[1.0, 2.5], [1.0, 2.5]], [3.0, 3.0], True)
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np
import orjson

from regretflow.engine.runtime.dead_letters import BadEvent
from regretflow.engine.runtime.events import EventDecoder, ModelView, Run

# the fields a column-wise row may carry; any other (reply fields, decide's, unknown ones) sends the row one by one
MIN_ROWS = 16  # the fewest payloads a batch must hold to be checked in columns
_FAST_FIELDS = frozenset(("id", "model", "kind", "key", "ts", "features", "label", "attributes"))
_NUMBERS = frozenset((int, float))
_EXACT = 2.0**53  # beyond it an integer feature may round on conversion: such rows go one by one
_ABSENT = object()  # a field the event does not carry (a null is a value)
_EMPTY: dict[str, Any] = {}  # stands for a payload that is no JSON object, in the columns (never changed)
_ONLY_DICTS, _ONLY_LISTS, _ONLY_STRS, _ONLY_ABSENT = {dict}, {list}, {str}, {object}
_DICT_OR_NONE = frozenset((dict, type(None)))
JSON_PAYLOAD_TYPES = frozenset((bytes, str))  # the payloads decoded here (others, and Arrow rows, are not)


def _column(objs: list[dict[str, Any]], field: str) -> list[Any]:
    """The field of every object (None where absent), in one C-level pass."""
    return list(map(dict.get, objs, repeat(field)))


class JsonBatchDecoder:
    """Turns a batch of JSON payloads into runs in columns and the payloads left to :meth:`EventDecoder.decode`, in stream order.

    A batch of fewer than ``min_rows`` payloads (default :data:`MIN_ROWS`) is left whole to the per-event path,
    which is cheaper for a few events and gives the same results.
    """

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
        # a batch of fewer payloads goes one by one: the checks in columns have a fixed cost (~40 us) that
        # only a dozen rows or more repay (the end-to-end cost per event crosses over at 8 to 16 rows)
        self.min_rows = MIN_ROWS

    def expand(self, records: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
        """A micro-batch's ``(partition, payload)`` records with each stretch of one partition's JSON payloads
        decoded (:meth:`decode`); other records (Arrow rows) are kept as they are."""
        if len(set(map(itemgetter(0), records))) == 1 and set(map(type, map(itemgetter(1), records))) <= JSON_PAYLOAD_TYPES:
            pid = records[0][0]  # (the common batch: JSON payloads of one partition)
            return [(pid, item) for item in self.decode(list(map(itemgetter(1), records)))]
        out: list[tuple[str, Any]] = []
        i, n = 0, len(records)
        while i < n:
            pid, payload = records[i]
            if type(payload) not in JSON_PAYLOAD_TYPES:
                out.append((pid, payload))
                i += 1
                continue
            j = i + 1
            while j < n and records[j][0] == pid and type(records[j][1]) in JSON_PAYLOAD_TYPES:
                j += 1
            out += [(pid, item) for item in self.decode([p for _, p in records[i:j]])]
            i = j
        return out

    def decode(self, payloads: list[Any]) -> list[Any]:
        """The payloads in stream order as :class:`Run` (rows validated together) and single payloads (left to
        :meth:`EventDecoder.decode`)."""
        n = len(payloads)
        if n < self.min_rows:
            return list(payloads)
        objs = self._parse(payloads)
        # Rows that may be taken: a JSON object of the common fields only, of a declared model and run kind,
        # with a valid id. Each check is one C-level pass over the batch when every row passes it; only a
        # batch where some row fails pays for a check per row.
        if set(map(type, objs)) == _ONLY_DICTS:
            dicts = objs
            ok = list(map(_FAST_FIELDS.issuperset, dicts))
        else:
            dicts = [o if type(o) is dict else _EMPTY for o in objs]
            ok = [type(o) is dict and o.keys() <= _FAST_FIELDS for o in objs]
        models, kinds, ids = _column(dicts, "model"), _column(dicts, "kind"), _column(dicts, "id")
        run_views = self.run_views
        try:
            pairs = set(zip(models, kinds))
            views = [run_views.get(pairs.pop())] * n if len(pairs) == 1 else list(map(run_views.get, zip(models, kinds)))
        except TypeError:  # an unhashable model or kind (a list, an object)
            views = [run_views.get((m, k)) if type(m) is str and type(k) is str else None for m, k in zip(models, kinds)]
        if not (set(map(type, ids)) == _ONLY_STRS and min(map(len, ids)) > 0 and max(map(len, ids)) <= 256):
            ok = [c and type(e) is str and 0 < len(e) <= 256 for c, e in zip(ok, ids)]
        if not all(ok):
            views = [v if c else None for v, c in zip(views, ok)]
        taken = [False] * n
        columns: dict[str, _ModelColumns] = {}
        names = {v.spec.name for v in set(views) if v is not None}
        for name in names:
            view = self.decoder.models[name]
            if len(names) == 1 and views.count(view) == n:  # (the common batch: one model)
                columns[name] = self._columns(view, dicts)
                taken = columns[name].ok
                continue
            rows = [i for i, v in enumerate(views) if v is view]
            cols = columns[name] = self._columns(view, [dicts[i] for i in rows])
            for i, row_ok in zip(rows, cols.ok):
                taken[i] = row_ok
        return self._cut(payloads, kinds, ids, views, taken, columns)

    def _parse(self, payloads: list[Any]) -> list[Any]:
        loads, max_bytes = orjson.loads, self.max_bytes
        try:
            if max(map(len, payloads)) <= max_bytes:
                return list(map(loads, payloads))
        except (orjson.JSONDecodeError, TypeError, ValueError):
            pass
        objs: list[Any] = []
        for p in payloads:  # a batch with a payload orjson refuses (or an oversized one): parsed one by one
            try:
                objs.append(loads(p) if len(p) <= max_bytes else None)
            except (orjson.JSONDecodeError, TypeError, ValueError):
                objs.append(None)
        return objs

    def _columns(self, view: ModelView, objs: list[dict[str, Any]]) -> _ModelColumns:
        """The checks and columns of one model's candidate rows (of its run kinds, with valid ids)."""
        m, d, max_abs = len(objs), view.d, self.max_abs
        ok = [True] * m
        features = _column(objs, "features")
        X = _matrix(features, d) if set(map(type, features)) == _ONLY_LISTS and set(map(len, features)) == {d} else None
        if X is not None:
            # numpy reads a bool as 1 or 0: rows holding an exact 0 or 1 have their value types checked
            for i in np.flatnonzero(((X == 0.0) | (X == 1.0)).any(axis=1)).tolist() if d else []:
                ok[i] = set(map(type, features[i])) <= _NUMBERS
        else:  # a row of another width or type: only rows of d numbers go in the matrix
            ok = [type(f) is list and len(f) == d and set(map(type, f)) <= _NUMBERS for f in features]
            kept = [f for k, f in zip(ok, features) if k]
            X = np.zeros((m, d))
            part = _matrix(kept, d) if kept else np.zeros((0, d))
            if part is None:  # a mix numpy holds as objects (integers past int64 with negative ones)
                return _ModelColumns([False] * m, X, None, [None] * m, [None] * m, None)
            X[np.flatnonzero(ok)] = part
        if d:
            peak = np.abs(X).max(axis=1)
            for i in np.flatnonzero(~((peak <= max_abs) & (peak < _EXACT))).tolist():  # (beyond 2**53 an integer may round)
                ok[i] = False
        labels = self._labels(view, objs, ok)
        key_column = _column(objs, "key")
        keys = None if key_column.count(None) == m else key_column  # (the common case: no row has a key, nor its answer)
        for i, key in enumerate(keys or ()):
            if key is not None and (type(key) is not str or len(key) > 256):
                ok[i] = False
        ts = _column(objs, "ts")
        if ts.count(None) != m:
            for i, t in enumerate(ts):
                if t is not None:
                    if type(t) in _NUMBERS:
                        ts[i] = float(t)
                    else:
                        ok[i], ts[i] = False, None
        attributes = _column(objs, "attributes")
        if not set(map(type, attributes)) <= _DICT_OR_NONE:
            for i, a in enumerate(attributes):
                if a is not None and type(a) is not dict:
                    ok[i] = False
        G = self._memberships(view, attributes, features, X, ok) if view.n_groups else None
        return _ModelColumns(ok, X, G, labels, ts, keys)

    def _labels(self, view: ModelView, objs: list[dict[str, Any]], ok: list[bool]) -> list[Any]:
        """Observe labels as the task takes them (None for a predict); a row whose label the task or the bound
        refuses, or a predict with a label, is left out."""
        max_abs = self.max_abs
        kinds = _column(objs, "kind")
        labels = list(map(dict.get, objs, repeat("label"), repeat(_ABSENT)))
        observes = kinds.count("observe")
        if observes == 0:  # predicts only: none may carry a label
            if labels.count(_ABSENT) != len(labels):
                for i, v in enumerate(labels):
                    ok[i] = ok[i] and v is _ABSENT
            return [None] * len(labels)
        if observes == len(kinds) and view.task.name == "regression" and set(map(type, labels)) <= _NUMBERS:
            floats = list(map(float, labels))  # (what the regression task's check_label returns)
            bounds = np.abs(np.array(floats))
            for i in np.flatnonzero(~(bounds <= max_abs)).tolist():
                ok[i] = False
            return floats
        out: list[Any] = []
        for i, (v, kind) in enumerate(zip(labels, kinds)):  # a mix of kinds, another task, or an odd label: row by row
            label = None
            if kind != "observe":
                ok[i] = ok[i] and v is _ABSENT
            elif v is _ABSENT:
                ok[i] = False
            else:
                try:
                    label = view.task.check_label(v)
                    if type(label) is not str and not -max_abs <= label <= max_abs:
                        ok[i], label = False, None
                except Exception:  # a task's own check may raise anything: the per-event path dead-letters the row as it does
                    ok[i] = False
            out.append(label)
        return out

    def _memberships(self, view: ModelView, attributes: list[Any], features: list[Any], X: np.ndarray, ok: list[bool]) -> np.ndarray:
        """The boolean membership matrix, a grouping at a time: declared values read from text attributes, bins
        from numeric attributes or from the feature of that name. When some grouping's values are anything else
        (a mix, a bool, a category read from a feature), every row is read by :meth:`ModelView.codes` itself."""
        m = len(attributes)
        G = np.zeros((m, view.n_groups), dtype=np.bool_)
        all_dicts = set(map(type, attributes)) == _ONLY_DICTS
        for gi, g in enumerate(view.groups):
            field, at = g.field, view.offsets[gi]
            if all_dicts:
                values = list(map(dict.get, attributes, repeat(field), repeat(_ABSENT)))
            else:
                values = [a.get(field, _ABSENT) if type(a) is dict else _ABSENT for a in attributes]
            value_types = set(map(type, values))
            if value_types == _ONLY_ABSENT and field not in view.index:
                continue  # the grouping's field is nowhere: the rows join none of its groups
            if g.values and value_types == _ONLY_STRS:
                codes = np.array(list(map(view.value_index[gi].get, values, repeat(-1))), dtype=np.int64)
                rows = np.flatnonzero(codes >= 0)
                G[rows, at + codes[rows]] = True
                continue
            if not g.values and (value_types <= _NUMBERS or value_types == _ONLY_ABSENT):
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
        self,
        payloads: list[Any],
        kinds: list[Any],
        ids: list[Any],
        views: list[ModelView | None],
        taken: list[bool],
        columns: dict[str, _ModelColumns],
    ) -> list[Any]:
        """Consecutive taken rows of one model, kind and shard key as runs; the others as their payloads."""
        n = len(payloads)
        first = views[0] if n else None
        if first is not None and len(columns) == 1 and all(taken) and kinds.count(kinds[0]) == n and not self.by_key[first.spec.name]:
            return [self._run(first.spec.name, kinds[0], ids, payloads, columns[first.spec.name], 0, n)]  # (the common batch)
        out: list[Any] = []
        local: dict[str, int] = dict.fromkeys(columns, 0)  # the next row of each model's columns
        i = 0
        while i < n:
            view = views[i]
            if view is None:
                out.append(payloads[i])
                i += 1
                continue
            name = view.spec.name
            start = local[name]
            if not taken[i]:
                local[name] += 1
                out.append(payloads[i])
                i += 1
                continue
            kind, cols = kinds[i], columns[name]
            # a model sharded by key: one key per run (rows without a key hold None)
            keys = cols.keys if self.by_key[name] and cols.keys is not None else [None] * (start + n - i)
            j = i + 1
            while j < n and taken[j] and views[j] is view and kinds[j] == kind and keys[start + j - i] == keys[start]:
                j += 1
            local[name] = start + j - i
            out.append(self._run(name, kind, ids[i:j], payloads[i:j], cols, start, start + j - i))
            i = j
        return out

    @staticmethod
    def _run(model: str, kind: str, ids: list[str], payloads: list[Any], cols: _ModelColumns, start: int, stop: int) -> Run:
        return Run.from_columns(
            kind,
            model,
            ids,
            cols.X[start:stop],
            None if cols.G is None else cols.G[start:stop],
            cols.labels[start:stop] if kind == "observe" else None,
            cols.ts[start:stop],
            None if cols.keys is None else cols.keys[start:stop],
            payloads,
        )


class _ModelColumns:
    """One model's candidate rows of a batch: which passed (``ok``) and their columns."""

    __slots__ = ("ok", "X", "G", "labels", "ts", "keys")

    def __init__(
        self, ok: list[bool], X: np.ndarray, G: np.ndarray | None, labels: list[Any], ts: list[Any], keys: list[Any] | None
    ) -> None:
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
