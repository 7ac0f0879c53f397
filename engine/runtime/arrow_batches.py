"""Arrow record batches of events: decoded column-wise, validated row by row with the JSON path's reasons.

A source hands an Arrow message out as :class:`~regretflow.connectors.arrow.ArrowRows`
(some or all of its rows). :meth:`ArrowDecoder.decode` turns them into one
:class:`ArrowRow` per row, holding either a validated :class:`Event` or the
:class:`BadEvent` that dead-letters that row alone (the engine ends its detail with the
row index and the message: :meth:`ArrowRow.locate`). The feature matrix is read from the message without a copy, checked
for width, type, finiteness and ``max_abs_value`` in a few array operations, and each
observe event's ``x`` is a row view of it; group membership is one boolean matrix
filled per grouping. The scalar fields (id, model, kind, key, ts, label) are checked
per row on Python values, with the same checks and in the same order as
:meth:`EventDecoder.validate`, so that a row and the same event as JSON meet the same fate.

Rows the fast path does not cover (feedback and audit events, decide events with
``actions`` or ``expected_rewards``, columns of unexpected types, unknown columns) are
turned into the JSON object they stand for and validated by
:meth:`EventDecoder.validate` itself.

>>> from regretflow.engine.config import parse_config
>>> from regretflow.engine.tasks import model_tasks
>>> from regretflow.connectors.arrow import ArrowRows, to_record_batch
>>> cfg = parse_config({"models": {"m": {"learner": "ridge", "features": ["a", "b"]}}})
>>> decoder = ArrowDecoder(EventDecoder(cfg, model_tasks(cfg)))
>>> batch = to_record_batch({"id": ["1", "2"], "features": [[1.0, 2.0], [3.0, float("nan")]], "label": [1.0, 2.0]},
...                         model="m", kind="observe")
>>> first, second = decoder.decode(ArrowRows(batch, 0, 2, "events:0@7"))
>>> first.event.x.tolist(), first.event.label
([1.0, 2.0], 1.0)
>>> second.bad.reason, second.locate(second.bad.detail)
('non_finite', 'a NaN or infinite value (row 1 of events:0@7)')
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, cast, overload

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

from regretflow.connectors import Record
from regretflow.connectors.arrow import EVENT_COLUMNS, AnswerColumns, ArrowRows, answer_batches
from regretflow.engine.errors import FatalError
from regretflow.engine.runtime import events as events_module
from regretflow.engine.runtime.dead_letters import BadEvent
from regretflow.engine.runtime.events import (
    _ATTRIBUTE_TYPES,
    _REQUIRED,
    Event,
    EventDecoder,
    JoinedRaws,
    ModelView,
    Run,
    _bin,
    _category,
    _show,
)

log = logging.getLogger("regretflow")

# kinds whose rows the column-wise path validates; the others (feedback, audit: no features) go through
# EventDecoder.validate as the JSON objects they stand for
_FAST_KINDS = frozenset(("observe", "predict", "decide"))
# columns that send a row to EventDecoder.validate when not null (reply-only fields)
_SLOW_COLUMNS = ("violations", "panel_size", "auditors", "ref", "reward")


class ArrowRow:
    """One decoded row: ``event`` (valid) or ``bad`` (its dead letter). ``str()`` is the row as JSON
    (a dead letter's ``raw``), made only when needed; ``row`` is its index in the message ``where``."""

    __slots__ = ("event", "bad", "batch", "index", "row", "where")

    def __init__(self, batch: pa.RecordBatch, index: int, row: int, where: str, event: Event | None, bad: BadEvent | None):
        self.batch = batch
        self.index = index
        self.row = row
        self.where = where
        self.event = event
        self.bad = bad

    def locate(self, detail: str) -> str:
        """A dead letter's detail, with the row and the message it came from."""
        return f"{detail} (row {self.row} of {self.where})"

    def take(self) -> Event:
        """The event, or raise its BadEvent."""
        if self.bad is not None:
            raise self.bad
        assert self.event is not None
        return self.event

    def __str__(self) -> str:
        return orjson.dumps(row_object(self.batch, self.index), default=str).decode()


class ArrowBlock:
    """Consecutive valid rows of one message for one model, run kind (observe, predict) and key, as
    columns: ``X`` (a view of the message for observe rows), ``groups``, ``labels``, ``ts``, ``ids``.
    The shard takes them together (:func:`admit_block`); ``start``..``stop`` are their indices in ``batch``
    and ``row`` the message row of the first."""

    __slots__ = ("batch", "start", "stop", "row", "where", "model", "kind", "key", "ids", "X", "groups", "labels", "ts")

    def __init__(
        self,
        batch: pa.RecordBatch,
        start: int,
        stop: int,
        row: int,
        where: str,
        model: str,
        kind: str,
        key: str | None,
        ids: list[str],
        X: np.ndarray,
        groups: np.ndarray | None,
        labels: list[Any] | None,
        ts: list[float | None],
    ):
        self.batch, self.start, self.stop, self.row, self.where = batch, start, stop, row, where
        self.model, self.kind, self.key = model, kind, key
        self.ids, self.X, self.groups, self.labels, self.ts = ids, X, groups, labels, ts

    def __len__(self) -> int:
        return self.stop - self.start

    def raw(self, i: int) -> ArrowRow:
        """Row ``i`` of the block as a dead letter's payload (its text is the row as JSON)."""
        return ArrowRow(self.batch, self.start + i, self.row + i, self.where, None, None)

    def event(self, i: int) -> Event:
        """Row ``i`` as an :class:`Event` (its ``x`` a row of ``X``)."""
        ev: Event = cast(Any, Event)(self.ids[i], self.model, self.kind)
        ev.key, ev.ts, ev.x = self.key, self.ts[i], self.X[i]
        if self.labels is not None:
            ev.label = self.labels[i]
        if self.groups is not None:
            ev.groups = self.groups[i]
        ev.raw = cast(Any, self.raw(i))
        return ev


class _BlockRaws(Sequence[ArrowRow]):
    """A block's dead-letter payloads, one per row, made only for the rows that need one."""

    __slots__ = ("block",)

    def __init__(self, block: ArrowBlock):
        self.block = block

    def __len__(self) -> int:
        return len(self.block)

    @overload
    def __getitem__(self, i: int) -> ArrowRow: ...

    @overload
    def __getitem__(self, i: slice) -> list[ArrowRow]: ...

    def __getitem__(self, i: int | slice) -> ArrowRow | list[ArrowRow]:
        if isinstance(i, slice):
            return [self.block.raw(j) for j in range(len(self.block))[i]]
        if not -len(self.block) <= i < len(self.block):
            raise IndexError(i)
        return self.block.raw(i % len(self.block))


class _Columns:
    """What :meth:`ArrowDecoder._fast` read of a batch, for the blocks cut from it."""

    __slots__ = ("ids", "models", "kinds", "keys", "ts", "labels", "X", "memberships", "happy", "distinct")

    def __init__(
        self,
        ids: list[Any],
        models: Sequence[Any],
        kinds: Sequence[Any],
        keys: Sequence[Any],
        ts: list[Any],
        labels: list[Any],
        X: np.ndarray | None,
        memberships: dict[str, tuple[np.ndarray, dict[int, BadEvent]]],
        happy: np.ndarray,
        distinct: dict[str, set[str]],
    ):
        self.ids, self.models, self.kinds, self.keys, self.ts, self.labels, self.X = ids, models, kinds, keys, ts, labels, X
        self.memberships = memberships
        self.happy = happy  # the rows that passed the column-wise screen: they go in blocks
        self.distinct = distinct  # the values of the model and kind columns


def admit_block(router: Any, block: ArrowBlock, out: Any) -> list[tuple[int, BadEvent]]:
    """Hand a block to its shard; the rows it refused, each with its BadEvent (the others are admitted, in order).

    With a shard that takes runs in columns (``Shard.admit_columns`` and ``events.Run``) the
    block goes in as one run, without an Event per row; otherwise row by row as events whose
    features are views of the block's matrix.
    """
    probe: Event = cast(Any, Event)(block.ids[0], block.model, block.kind)
    probe.key, probe.ts = block.key, block.ts[0]
    try:
        shard = router.shard(probe)  # a new key's shard is created here (or refused: too_many_keys, unsupported_kind)
    except BadEvent as bad:
        return [(i, bad) for i in range(len(block))]
    run_type = getattr(events_module, "Run", None)
    if run_type is not None and hasattr(shard, "admit_columns"):
        keys = [block.key] * len(block) if block.key is not None else None
        run = run_type.from_columns(
            block.kind, block.model, block.ids, block.X, block.groups, block.labels, block.ts, keys, _BlockRaws(block)
        )
        refused: list[tuple[int, BadEvent]] = shard.admit_columns(run, out)
        return refused
    refused = []
    for i in range(len(block)):
        try:
            shard.admit(block.event(i), out)
        except BadEvent as bad:
            refused.append((i, bad))
        except FatalError:
            raise
        except Exception as exc:  # one event's problem, never the process's end (as the loop does for a JSON event)
            detail = f"{type(exc).__name__}: {exc}"[:300]
            log.error("event=internal_error model=%s error=%r", block.model, detail)
            refused.append((i, BadEvent("internal_error", detail)))
    return refused


def expand_rows(records: Sequence[tuple[str, Any]], decoder: ArrowDecoder) -> list[tuple[str, Any]]:
    """A micro-batch's records with each slice of Arrow rows replaced by what it decodes to (rows and blocks)."""
    out: list[tuple[str, Any]] = []
    for pid, payload in records:
        if type(payload) is ArrowRows:
            out.extend((pid, item) for item in decoder.decode(payload))
        else:
            out.append((pid, payload))
    return out


def answer_messages(answers: Sequence[Record | AnswerColumns]) -> list[Record]:
    """A micro-batch's answers as Arrow messages (``runtime.answer_format = "arrow"``): one per model and kind.

    Runs answered in columns go in as they are; single answers (JSON records) are read back into rows.
    """
    return answer_batches(
        (item.model, item) if isinstance(item, AnswerColumns) else (item[2][0][1], orjson.loads(item[1]))  # (headers[0] names the model)
        for item in answers
    )


def run_id_column(run: Run) -> pa.Array | None:
    """The ids of a run made of Arrow blocks, as the messages' own ``id`` column (sliced, not copied
    when the run is one block); None when some rows did not come from a block of text ids."""
    raws = run.raws
    parts = raws.parts if type(raws) is JoinedRaws else [raws]
    if not all(type(p) is _BlockRaws for p in parts):
        return None
    slices = []
    for p in parts:
        block = cast(_BlockRaws, p).block
        column = block.batch.column("id")
        if not pa.types.is_string(column.type):
            return None
        slices.append(column.slice(block.start, len(block)))
    return slices[0] if len(slices) == 1 else pa.concat_arrays(slices)


def row_object(batch: pa.RecordBatch, index: int) -> dict[str, Any]:
    """Row ``index`` of ``batch`` as the JSON event it stands for: null columns left out,
    ``features.<name>`` and ``attributes.<name>`` columns gathered into their objects.

    >>> from regretflow.connectors.arrow import to_record_batch
    >>> row_object(to_record_batch({"id": ["a"], "features.x": [1.5], "key": [None]}, model="m", kind="predict"), 0)
    {'id': 'a', 'model': 'm', 'kind': 'predict', 'features': {'x': 1.5}}
    """
    obj: dict[str, Any] = {}
    for name, value in batch.slice(index, 1).to_pylist()[0].items():
        if value is None:
            continue
        if name.startswith("features.") and name != "features":
            obj.setdefault("features", {})[name[9:]] = value
        elif name.startswith("attributes.") and name != "attributes":
            obj.setdefault("attributes", {})[name[11:]] = value
        elif name == "attributes" and type(value) is dict:
            obj[name] = {k: v for k, v in value.items() if v is not None}
        else:
            obj[name] = value
    return obj


def _has_non_finite(value: Any) -> bool:
    if type(value) is float:
        return not math.isfinite(value)
    if type(value) is list:
        return any(_has_non_finite(v) for v in value)
    if type(value) is dict:
        return any(_has_non_finite(v) for v in value.values())
    return False


def _values(batch: pa.RecordBatch, name: str) -> list[Any]:
    """A column's Python values (None for every row when the batch has no such column)."""
    if name not in batch.schema.names:
        return [None] * batch.num_rows
    column = batch.column(name)
    t = column.type
    values: list[Any]
    # numpy's tolist() makes the same Python floats, ints and strings several times faster than to_pylist()
    if (pa.types.is_floating(t) or pa.types.is_integer(t)) and column.null_count == 0:
        values = column.to_numpy(zero_copy_only=False).tolist()
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        values = column.to_numpy(zero_copy_only=False).tolist()  # (a null is None)
    else:
        values = column.to_pylist()
    return values


def _all_floats(batch: pa.RecordBatch, name: str) -> bool:
    """Whether column ``name`` is absent (None for every row) or float64 without a null: its Python values
    (:func:`_values`) are then already what the events hold."""
    if name not in batch.schema.names:
        return True
    column = batch.column(name)
    return bool(pa.types.is_float64(column.type) and column.null_count == 0)


def _differs_from_previous(batch: pa.RecordBatch, name: str) -> np.ndarray:
    """Per row after the first: text column ``name`` differs from the row before (a null equals a null only)."""
    n = batch.num_rows
    if name not in batch.schema.names or n < 2:
        return np.zeros(max(n - 1, 0), dtype=np.bool_)
    column = batch.column(name)
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    later, earlier = column.slice(1), column.slice(0, n - 1)
    same = pc.equal(later, earlier).fill_null(False).to_numpy(zero_copy_only=False)
    if column.null_count:
        same |= (later.is_null().to_numpy(zero_copy_only=False)) & (earlier.is_null().to_numpy(zero_copy_only=False))
    return np.asarray(~same, dtype=np.bool_)


class _LazyValues(Sequence[Any]):
    """A column's Python values (:func:`_values`), made when a row is first read one by one; :meth:`at`
    reads a single row without making them (a block's first row)."""

    __slots__ = ("batch", "name", "_values")

    def __init__(self, batch: pa.RecordBatch, name: str):
        self.batch, self.name = batch, name
        self._values: list[Any] | None = None

    def __len__(self) -> int:
        return int(self.batch.num_rows)

    @overload
    def __getitem__(self, i: int) -> Any: ...

    @overload
    def __getitem__(self, i: slice) -> list[Any]: ...

    def __getitem__(self, i: int | slice) -> Any:
        if self._values is None:
            self._values = _values(self.batch, self.name)
        return self._values[i]

    def at(self, i: int) -> Any:
        if self._values is not None:
            return self._values[i]
        if self.name not in self.batch.schema.names:
            return None
        return self.batch.column(self.name)[i].as_py()


class _ArrayValues(Sequence[Any]):
    """An Arrow column and its Python values, made when a row is first read one by one."""

    __slots__ = ("array", "_values")

    def __init__(self, array: pa.Array):
        self.array = array
        self._values: list[Any] | None = None

    def __len__(self) -> int:
        return len(self.array)

    @overload
    def __getitem__(self, i: int) -> Any: ...

    @overload
    def __getitem__(self, i: slice) -> list[Any]: ...

    def __getitem__(self, i: int | slice) -> Any:
        if self._values is None:
            self._values = self.array.to_pylist()
        return self._values[i]


_VALUE_SETS: dict[tuple[str, ...], tuple[pa.Array, np.ndarray]] = {}  # per declared values: the Arrow set and its codes


def _category_codes(array: pa.Array, index: dict[str, int]) -> np.ndarray:
    """Per row of a text column: the declared group its value names (``index``), or -1 (another value, or null)."""
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    names = tuple(name for name in index if type(name) is str)
    cached = _VALUE_SETS.get(names)
    if cached is None:
        cached = _VALUE_SETS[names] = (pa.array(names, pa.string()), np.array([index[name] for name in names] + [-1], dtype=np.int64))
    value_set, lookup = cached
    found = pc.index_in(array, value_set=value_set)  # a position in ``names``; null: none
    n = len(found)
    positions = np.frombuffer(found.buffers()[1], dtype=np.int32, count=n, offset=4 * found.offset).astype(np.int64)
    if found.null_count:
        valid = np.unpackbits(np.frombuffer(found.buffers()[0], dtype=np.uint8), bitorder="little", count=found.offset + n)
        positions[valid[found.offset :] == 0] = -1  # (-1 reads the lookup's last entry)
    return np.asarray(lookup[positions])


def _at(values: Sequence[Any], i: int) -> Any:
    return values.at(i) if type(values) is _LazyValues else values[i]


def _distinct(batch: pa.RecordBatch, name: str) -> set[str]:
    """The text values of column ``name`` (nulls left out)."""
    if name not in batch.schema.names:
        return set()
    column = batch.column(name)
    only = _single_value(column)
    if only is not None:
        return {only}
    return {v for v in pc.unique(column).to_pylist() if type(v) is str}


def _single_value(column: pa.Array) -> str | None:
    """The value of a string column whose every row holds the same one (no null), else None; compares
    the bytes (a message of one model and kind: cheaper than hashing every row)."""
    n = len(column)
    if not n or not pa.types.is_string(column.type) or column.null_count:
        return None
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32, count=n + 1, offset=4 * column.offset)
    start, width = int(offsets[0]), int(offsets[1] - offsets[0])
    if not width or not np.array_equal(offsets[1:], offsets[:-1] + width):
        return None
    data = column.buffers()[2]
    first = data[start : start + width].to_pybytes()
    if data[start : start + n * width].to_pybytes() != first * n:
        return None
    return str(first.decode())


def _equals(batch: pa.RecordBatch, name: str, value: str, distinct: set[str]) -> np.ndarray:
    """Per row: text column ``name`` holds ``value`` (a null does not); ``distinct`` are its values (:func:`_distinct`)."""
    n = batch.num_rows
    if name not in batch.schema.names or value not in distinct:
        return np.zeros(n, dtype=np.bool_)
    column = batch.column(name)
    if len(distinct) == 1 and column.null_count == 0:  # (the common case: one model and kind a message)
        return np.ones(n, dtype=np.bool_)
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    return np.asarray(pc.equal(column, value).fill_null(False).to_numpy(zero_copy_only=False), dtype=np.bool_)


def _nulls(column: pa.Array) -> np.ndarray:
    """Per row: the value is null."""
    if column.null_count == 0:
        return np.zeros(len(column), dtype=np.bool_)
    return np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=np.bool_)


def _floats(column: pa.Array) -> np.ndarray:
    """A numeric column as float64 (a null reads 0.0), without a copy when it is float64 already."""
    if pa.types.is_float64(column.type) and column.null_count == 0:
        return np.asarray(column.to_numpy(zero_copy_only=True))
    return np.asarray(column.cast(pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False))


def _lengths_within(batch: pa.RecordBatch, name: str, low: int, high: int, n: int) -> np.ndarray:
    """Per row: the text column ``name`` is present and holds ``low`` to ``high`` characters."""
    if name not in batch.schema.names:
        return np.zeros(n, dtype=np.bool_)
    column = batch.column(name)
    if pa.types.is_string(column.type) and column.null_count == 0 and n:
        # UTF-8 takes 1 to 4 bytes a character: byte lengths within low..high are character lengths within them
        offsets = np.frombuffer(column.buffers()[1], dtype=np.int32, count=n + 1, offset=4 * column.offset)
        nbytes = np.diff(offsets)
        if nbytes.min() >= low and nbytes.max() <= high:
            return np.ones(n, dtype=np.bool_)
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    lengths = pc.utf8_length(column).fill_null(-1).to_numpy(zero_copy_only=False)
    return np.asarray((lengths >= low) & (lengths <= high), dtype=np.bool_)


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or (pa.types.is_dictionary(t) and _is_text(t.value_type)))


def _is_numeric(t: pa.DataType) -> bool:
    return bool(pa.types.is_floating(t) or pa.types.is_integer(t))


class ArrowDecoder:
    """Decodes the rows of Arrow messages into events, with the JSON decoder's rules and reasons."""

    def __init__(self, decoder: EventDecoder):
        self.decoder = decoder
        self.max_abs = decoder.max_abs
        self.models = decoder.models
        self.fallbacks = 0  # batches the column-wise path raised on (logged once; the rows then go one by one)
        self._last = _Columns([], [], [], [], [], [], None, {}, np.zeros(0, dtype=np.bool_), {})

    def decode(self, rows: ArrowRows) -> list[ArrowRow | ArrowBlock]:
        """The rows in order: single rows (:class:`ArrowRow`: bad ones, and those checked one by one)
        and blocks of consecutive valid rows of one model, run kind and key (:class:`ArrowBlock`)."""
        batch = rows.batch.slice(rows.start, len(rows))
        try:
            decoded = self._fast(batch) if self._fast_schema(batch.schema) else None
        except BadEvent:
            raise
        except Exception as exc:  # a shape the column-wise path did not foresee: every row the slow, exact way
            self.fallbacks += 1
            if self.fallbacks == 1:
                log.warning("event=arrow_fallback error=%r (rows are validated one by one)", f"{type(exc).__name__}: {exc}"[:300])
            decoded = None
        n = batch.num_rows
        if decoded is None:
            decoded = {i: self._slow(batch, i) for i in range(n)}
            happy = np.zeros(n, dtype=np.bool_)
        else:
            happy = self._last.happy
        placed: list[tuple[int, ArrowRow | ArrowBlock]] = [
            (
                i,
                ArrowRow(batch, i, rows.start + i, rows.where, None, item)
                if isinstance(item, BadEvent)
                else ArrowRow(batch, i, rows.start + i, rows.where, item, None),
            )
            for i, item in decoded.items()
        ]
        if happy.any():  # consecutive screened rows of one model, kind and key: one block
            breaks = ~happy
            for name in ("model", "kind", "key"):
                distinct = self._last.distinct.get(name)
                if distinct is None:
                    distinct = _distinct(batch, name)
                if name in batch.schema.names and (batch.column(name).null_count or len(distinct) > 1):
                    breaks[1:] |= _differs_from_previous(batch, name)
            starts = np.nonzero(happy & (np.concatenate(([True], ~happy[:-1])) | breaks))[0]  # (a happy row's break: it differs)
            cuts = np.nonzero(breaks)[0]
            ends = np.append(cuts, n)[np.searchsorted(cuts, starts, side="right")]
            placed += [(lo, self._block(batch, self._last, lo, hi, rows)) for lo, hi in zip(starts.tolist(), ends.tolist())]
            placed.sort(key=lambda p: p[0])
        return [item for _, item in placed]

    def _block(self, batch: pa.RecordBatch, c: _Columns, lo: int, hi: int, rows: ArrowRows) -> ArrowBlock:
        model, kind, key = _at(c.models, lo), _at(c.kinds, lo), _at(c.keys, lo)
        view = self.models[model]
        assert c.X is not None
        X = c.X[lo:hi] if kind == "observe" else c.X[lo:hi].copy()  # requests keep x in the join store: no view of the message
        groups = c.memberships[model][0][lo:hi] if view.n_groups else None
        labels = None
        if kind == "observe":
            labels = c.labels[lo:hi]
            if not (view.task.name == "regression" and _all_floats(batch, "label")):  # (a float's check_label is itself)
                labels = [view.task.check_label(label) for label in labels]
        ts = c.ts[lo:hi] if _all_floats(batch, "ts") else [None if t is None else float(t) for t in c.ts[lo:hi]]
        return ArrowBlock(batch, lo, hi, rows.start + lo, rows.where, model, kind, key, c.ids[lo:hi], X, groups, labels, ts)

    # -- the exact path: one row at a time through EventDecoder.validate --------------------------
    def _slow(self, batch: pa.RecordBatch, i: int, obj: dict[str, Any] | None = None) -> Event | BadEvent:
        if obj is None:
            obj = row_object(batch, i)
        try:
            if _has_non_finite(obj):
                raise BadEvent("non_finite", "a NaN or infinite value")
            ev = self.decoder.validate(obj)
        except BadEvent as bad:
            self.decoder._name_model(bad, obj)
            return bad
        if ev.x is not None and not ev.x.flags.writeable:
            ev.x = ev.x.copy()
        return ev

    # -- the column-wise path -----------------------------------------------------------------------
    def _fast_schema(self, schema: pa.Schema) -> bool:
        """Whether every column has a type the column-wise path reads (else every row goes the exact way)."""
        for f in schema:
            name, t = f.name, f.type
            if name in ("id", "model", "kind", "key"):
                if not _is_text(t):
                    return False
            elif name == "ts":
                if not _is_numeric(t):
                    return False
            elif name == "features":
                if not (pa.types.is_fixed_size_list(t) and _is_numeric(t.value_type)):
                    return False
            elif name.startswith("features."):
                return False  # named features: rare, the exact path
            elif name == "label":
                if not (_is_numeric(t) or _is_text(t) or pa.types.is_boolean(t)):
                    return False
            elif name == "attributes":
                if not pa.types.is_struct(t) or any(pa.types.is_nested(t.field(k).type) for k in range(t.num_fields)):
                    return False
            elif name.startswith("attributes."):
                if pa.types.is_nested(t):
                    return False
            elif name not in EVENT_COLUMNS:
                return False  # unknown_field per row: the exact path names it
        return True

    def _fast(self, batch: pa.RecordBatch) -> dict[int, Event | BadEvent]:
        """The rows that did not pass the column-wise screen (:meth:`_screen`), each with its Event or
        BadEvent; ``self._last`` keeps what blocks of the others are cut from (``happy``: which they are)."""
        n = batch.num_rows
        names = set(batch.schema.names)
        col = batch.column
        ids, tss, labels = _values(batch, "id"), _values(batch, "ts"), _values(batch, "label")
        # read per row only for the rows outside blocks (and a block's first): Python values on first need
        models, kinds, keys = _LazyValues(batch, "model"), _LazyValues(batch, "kind"), _LazyValues(batch, "key")
        model_names, kind_names = _distinct(batch, "model"), _distinct(batch, "kind")
        slow = np.zeros(n, dtype=np.bool_)
        for name in _SLOW_COLUMNS:
            if name in names:
                slow |= col(name).is_valid().to_numpy(zero_copy_only=False)
        X: np.ndarray | None = None
        feature_problem: Any = None
        features_fine: np.ndarray | None = None
        has_x = np.zeros(n, dtype=np.bool_)
        # JSON cannot carry NaN or infinities: such a row is dead-lettered as ``non_finite`` before any other check
        finite = np.ones(n, dtype=np.bool_)
        if "features" in names:
            X, features_finite, features_fine, feature_problem = self._features(batch)
            has_x = np.asarray(col("features").is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_)
            finite &= features_finite | ~has_x
        for name in ["ts", "label", *(f"attributes.{a}" for a in self._float_attributes(batch))]:
            finite &= self._finite(batch, name)
        attributes = self._attribute_columns(batch)
        memberships = self._memberships(model_names, X, attributes, n)

        actions, expected = _LazyValues(batch, "actions"), _LazyValues(batch, "expected_rewards")
        lists: dict[str, list[Any]] = {}  # the other columns' Python values, made for the first row that needs them

        def row_dict(i: int) -> dict[str, Any]:
            obj: dict[str, Any] = {}
            for name in batch.schema.names:
                if name == "features":
                    if has_x[i]:
                        assert X is not None
                        obj[name] = X[i].tolist()
                    continue
                if name == "attributes" or name.startswith("attributes."):
                    continue
                values = lists.get(name)
                if values is None:
                    values = lists[name] = col(name).to_pylist()
                if values[i] is not None:
                    obj[name] = values[i]
            present = {a: v[i] for a, v in attributes.items() if v[i] is not None}
            if present or ("attributes" in names and col("attributes").is_valid()[i].as_py()):
                obj["attributes"] = present
            return obj

        happy = self._screen(batch, model_names, kind_names, labels, X, has_x, finite & ~slow, features_fine, memberships)
        out: dict[int, Event | BadEvent] = {}
        max_abs = self.max_abs
        views = self.models
        for i in np.nonzero(~happy)[0].tolist():  # the rows of blocks need no per-row work (decode gathers them)
            kind = kinds[i]
            if slow[i] or kind not in _FAST_KINDS:
                out[i] = self._slow(batch, i, row_dict(i)) if finite[i] else self._slow(batch, i)
                continue
            eid, model = ids[i], models[i]
            nested = {"actions": actions[i], "expected_rewards": expected[i]}
            has_nested = nested["actions"] is not None or nested["expected_rewards"] is not None
            try:
                if not finite[i] or (has_nested and _has_non_finite(nested)):
                    raise BadEvent("non_finite", "a NaN or infinite value")
                if eid is None:
                    raise BadEvent("missing_field", "field 'id' is required")
                if model is None:
                    raise BadEvent("missing_field", "field 'model' is required")
                if not 0 < len(eid) <= 256:
                    raise BadEvent("bad_field", "id must be a string of 1 to 256 characters")
                view = views.get(model)
                if view is None:
                    raise BadEvent("unknown_model", f"model {model[:128]!r} is not declared in the config")
                row_has_x = bool(has_x[i])
                for req in _REQUIRED[kind]:
                    if (req == "features" and not row_has_x) or (req == "label" and labels[i] is None):
                        raise BadEvent("missing_field", f"a {kind} event requires {req!r}")
                ev = cast(Any, Event)(eid, model, kind)  # (Event's constructor is not annotated yet)
                if keys[i] is not None:
                    if len(keys[i]) > 256:
                        raise BadEvent("bad_field", "key must be a string of at most 256 characters")
                    ev.key = keys[i]
                if tss[i] is not None:
                    ev.ts = float(tss[i])
                if row_has_x:
                    assert X is not None and feature_problem is not None
                    problem = feature_problem(i, view)
                    if problem is not None:
                        raise problem
                    ev.x = X[i] if kind == "observe" else X[i].copy()  # requests keep x in the join store: no view of the message
                elif view.d and kind != "decide":
                    raise BadEvent("missing_field", f"a {kind} event requires 'features'")
                label = labels[i]
                if kind == "observe":
                    label = ev.label = view.task.check_label(label)
                    if type(label) is not str and not -max_abs <= label <= max_abs:
                        raise BadEvent("out_of_range", f"label {_show(label)} is beyond max_abs_value {max_abs:g}")
                elif label is not None:
                    raise BadEvent("unknown_field", f"a {kind} event carries no label")
                if has_nested and kind == "decide":  # (as in JSON, an observe or predict ignores them)
                    self.decoder._decide(view, {k: v for k, v in nested.items() if v is not None}, ev)
                if view.n_groups:
                    G, bad_rows = memberships[model]
                    if i in bad_rows:
                        raise bad_rows[i]
                    ev.groups = G[i]
            except BadEvent as bad:
                if type(model) is str and model in views:
                    bad.model = model
                if type(eid) is str and 0 < len(eid) <= 256:
                    bad.event_id = eid
                out[i] = bad
                continue
            out[i] = ev
        self._last = _Columns(ids, models, kinds, keys, tss, labels, X, memberships, happy, {"model": model_names, "kind": kind_names})
        return out

    def _screen(
        self,
        batch: pa.RecordBatch,
        model_names: set[str],
        kind_names: set[str],
        labels: list[Any],
        X: np.ndarray | None,
        has_x: np.ndarray,
        candidates: np.ndarray,
        features_fine: np.ndarray | None,
        memberships: dict[str, tuple[np.ndarray, dict[int, BadEvent]]],
    ) -> np.ndarray:
        """Rows that pass every check column-wise: an observe or predict (a kind its model's task takes
        as runs), of a declared model of the batch's feature width, with an id of 1 to 256 characters,
        a key of at most 256, features within ``max_abs_value``, a regression label within it (or a
        label the task takes), no label on a predict, and scalar group attributes. The others go row by
        row, which names their reason."""
        n = batch.num_rows
        names = batch.schema.names
        happy = candidates & has_x
        if X is None or features_fine is None or not happy.any():
            return np.zeros(n, dtype=np.bool_)
        happy &= features_fine
        happy &= _lengths_within(batch, "id", 1, 256, n)
        if "key" in names:
            happy &= _lengths_within(batch, "key", 0, 256, n) | _nulls(batch.column("key"))
        for name in ("actions", "expected_rewards"):
            if name in names:
                happy &= _nulls(batch.column(name))
        label_column = batch.column("label") if "label" in names else None
        label_null = np.ones(n, dtype=np.bool_) if label_column is None else _nulls(label_column)
        numeric_labels = label_column is not None and _is_numeric(label_column.type)
        taken = np.zeros(n, dtype=np.bool_)
        for name in model_names:
            view = self.models.get(name)
            if view is None or view.d != X.shape[1]:
                continue
            of_model = happy & _equals(batch, "model", name, model_names)
            if view.n_groups:
                bad_rows = memberships[name][1]
                if bad_rows:
                    of_model[list(bad_rows)] = False
            for kind in view.task.run_kinds & {"observe", "predict"}:
                rows = of_model & _equals(batch, "kind", kind, kind_names)
                if kind == "predict":
                    taken |= rows & label_null
                    continue
                rows &= ~label_null
                if numeric_labels and view.task.name == "regression":
                    assert label_column is not None
                    values = _floats(label_column)
                    taken |= rows & (np.abs(values) <= self.max_abs)
                    continue
                for i in np.nonzero(rows)[0].tolist():  # other tasks: the task's own label check, per row
                    try:
                        label = view.task.check_label(labels[i])
                    except BadEvent:
                        continue
                    if type(label) is str or -self.max_abs <= label <= self.max_abs:
                        taken[i] = True
        return taken

    def _features(self, batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
        """The feature matrix (a view of the message's buffer when it holds float64), which rows are
        finite, which hold no null and nothing beyond ``max_abs_value``, and a per-row check of width,
        type and bound against a model."""
        column = batch.column("features")
        width = column.type.list_size
        n = batch.num_rows
        values = column.values.slice(column.offset * width, n * width)  # a null row keeps its width of placeholders
        inner_nulls = values.null_count > 0
        if pa.types.is_float64(values.type) and not inner_nulls:
            X = values.to_numpy(zero_copy_only=True).reshape(n, width)
        else:
            X = values.to_numpy(zero_copy_only=False).astype(np.float64).reshape(n, width)
        null_inside = values.is_null().to_numpy(zero_copy_only=False).reshape(n, width).any(axis=1) if inner_nulls else None
        finite, peak = np.ones(n, dtype=np.bool_), np.zeros(n)
        _feature_bounds(X, finite, peak)
        if null_inside is not None:
            finite |= null_inside  # a null feature is a wrong_type, as JSON's null is
        max_abs = self.max_abs

        fine = peak <= max_abs  # (NaN compares False: such rows are not finite anyway)
        if null_inside is not None:
            fine &= ~null_inside

        def problem(i: int, view: ModelView) -> BadEvent | None:
            if width < view.d:
                return BadEvent("missing_features", f"{width} features, the model declares {view.d}")
            if width > view.d:
                return BadEvent("extra_features", f"{width} features, the model declares {view.d}")
            if null_inside is not None and null_inside[i]:
                return BadEvent("wrong_type", "feature value None is not a number")
            if peak[i] > max_abs:
                return BadEvent("out_of_range", f"a feature is beyond max_abs_value {max_abs:g}")
            return None

        return X, finite, fine, problem

    @staticmethod
    def _float_attributes(batch: pa.RecordBatch) -> list[str]:
        names = []
        if "attributes" in batch.schema.names:
            t = batch.schema.field("attributes").type
            names += [t.field(k).name for k in range(t.num_fields) if pa.types.is_floating(t.field(k).type)]
        names += [f.name[11:] for f in batch.schema if f.name.startswith("attributes.") and pa.types.is_floating(f.type)]
        return names

    @staticmethod
    def _finite(batch: pa.RecordBatch, name: str) -> np.ndarray:
        """Per row: the float column ``name`` (``attributes.<a>`` also inside the struct) holds no NaN or infinity."""
        column: Any = None
        if name in batch.schema.names:
            column = batch.column(name)
        elif name.startswith("attributes.") and "attributes" in batch.schema.names:
            column = batch.column("attributes").field(name[11:])
        if column is None or not pa.types.is_floating(column.type):
            return np.ones(batch.num_rows, dtype=np.bool_)
        return np.asarray(np.isfinite(_floats(column)), dtype=np.bool_)

    @staticmethod
    def _attribute_columns(batch: pa.RecordBatch) -> dict[str, _ArrayValues]:
        """Each attribute's values (null where absent), from an ``attributes`` struct and ``attributes.<name>`` columns."""
        out: dict[str, _ArrayValues] = {}
        if "attributes" in batch.schema.names:
            struct = batch.column("attributes")
            for field, values in zip(struct.type, struct.flatten()):  # (flatten: a null struct nulls its fields)
                out[field.name] = _ArrayValues(values)
        for name in batch.schema.names:
            if name.startswith("attributes."):
                out[name[11:]] = _ArrayValues(batch.column(name))
        return out

    def _memberships(
        self, model_names: set[str], X: np.ndarray | None, attributes: dict[str, _ArrayValues], n: int
    ) -> dict[str, tuple[np.ndarray, dict[int, BadEvent]]]:
        """Per model with groups: the batch's membership matrix, filled column-wise, and the rows whose
        attribute values are not scalars (each with its BadEvent).

        A grouping reads its field from the attributes first, then from the features (a
        null attribute reads as absent); values outside the declared groups join none.
        """
        out: dict[str, tuple[np.ndarray, dict[int, BadEvent]]] = {}
        for name in model_names:
            view = self.models.get(name)
            if view is None or not view.n_groups:
                continue
            G = np.zeros((n, view.n_groups), dtype=np.bool_)
            bad: dict[int, BadEvent] = {}
            for gi, g in enumerate(view.groups):
                attr = attributes.get(g.field)
                col_index = view.index.get(g.field)
                from_x = X is not None and col_index is not None and X.shape[1] == view.d
                if attr is None and from_x and not g.values:
                    assert X is not None and col_index is not None
                    G[:, view.offsets[gi] : view.offsets[gi] + len(g.edges) - 1] |= _bins_matrix(g.edges, X[:, col_index])
                    continue
                array = attr.array if attr is not None else None
                if array is not None and (array.null_count == 0 or not from_x):  # column-wise (a null then joins none)
                    if g.values and _is_text(array.type):
                        codes = _category_codes(array, view.value_index[gi])
                        rows = np.nonzero(codes >= 0)[0]
                        G[rows, view.offsets[gi] + codes[rows]] = True
                        continue
                    if not g.values and _is_numeric(array.type):
                        values = array.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
                        G[:, view.offsets[gi] : view.offsets[gi] + len(g.edges) - 1] |= _bins_matrix(g.edges, values)
                        continue
                cache: dict[Any, int] = {}
                for i in range(n):
                    value = attr[i] if attr is not None else None
                    if value is None and from_x:
                        assert X is not None and col_index is not None
                        value = float(X[i, col_index])
                    if value is None:
                        continue
                    if type(value) not in _ATTRIBUTE_TYPES:
                        bad.setdefault(
                            i, BadEvent("bad_field", f"attribute {g.field!r} must be a string, number or boolean, got {_show(value)}")
                        )
                        continue
                    j = cache.get((type(value), value))
                    if j is None:
                        if g.values:
                            found = view.value_index[gi].get(_category(value))
                            j = -1 if found is None else found
                        elif isinstance(value, (int, float)) and not isinstance(value, bool):
                            j = _bin(g.edges, float(value))
                        else:
                            j = -1
                        cache[(type(value), value)] = j
                    if j >= 0:
                        G[i, view.offsets[gi] + j] = True

            out[name] = (G, bad)
        return out


@njit(cache=True)
def _feature_bounds(X: np.ndarray, finite: np.ndarray, peak: np.ndarray) -> None:
    """Per row of ``X``: whether every value is finite, and the largest magnitude (NaN when a value is
    NaN), in one pass (numpy's row reductions over a few dozen columns cost more than the rest of the screen)."""
    for i in range(X.shape[0]):
        top = 0.0
        for j in range(X.shape[1]):
            a = abs(X[i, j])
            if a != a:
                finite[i] = False
                top = np.nan
                break
            if a == np.inf:
                finite[i] = False
            if a > top:
                top = a
        peak[i] = top


def _bins_matrix(edges: tuple[float, ...], values: np.ndarray) -> np.ndarray:
    """One-hot bins of ``values`` (the bin [e_i, e_{i+1}), the last one closed; none outside), as ``events._bin``."""
    e = np.asarray(edges, dtype=np.float64)
    k = len(e) - 1
    with np.errstate(invalid="ignore"):
        inside = (values >= e[0]) & (values <= e[-1])
    j = np.minimum(np.searchsorted(e[1:], values, side="right"), k - 1)
    out = np.zeros((len(values), k), dtype=np.bool_)
    rows = np.nonzero(inside)[0]
    out[rows, j[rows]] = True
    return out
