"""The Arrow batch wire format: many events in one Kafka message (or one in-memory record).

A payload that starts with the Arrow IPC stream marker (``0xFFFFFFFF``) is an Arrow
record batch whose rows are events: one column per event field (``id``, ``model``,
``kind``, ``key``, ``ts``, ``features``, ``label``, ``attributes``, ``ref``,
``reward``, ...), ``features`` as a fixed-size list of float64 (or one
``features.<name>`` column per declared feature). Anything else is a JSON event, as
before; docs/arrow.md describes the columns.

Sources hand Arrow messages out as :class:`ArrowRows` (a slice of one message's rows)
through a :class:`RowCursor`, so that a micro-batch may end inside a large message: a
source position then names the message and the first row not yet handed out
(``{"offset": 17, "row": 512}``), and a restart resumes at that row.

The producer side: :func:`to_record_batch` turns a pandas or polars frame (or a dict
of columns) into a batch of events, :func:`encode_batch` into a message, and
:func:`produce_frame` streams a frame to a topic in messages of ``rows_per_message``.

>>> import numpy as np
>>> batch = to_record_batch({"x": [1.0, 2.0], "y": [3.0, 4.0], "t": [5.0, 6.0]}, model="m", kind="observe",
...                         features=["x", "y"], label="t", id_prefix="e")
>>> batch.column_names
['id', 'model', 'kind', 'features', 'label']
>>> payload = encode_batch(batch)
>>> is_arrow(payload), read_batch(payload).num_rows
(True, 2)
>>> cursor = RowCursor()
>>> cursor.push("", 0, payload); cursor.push("", 1, b'{"id": "j"}')
>>> [(pid, len(item)) for pid, item in cursor.take(1)], cursor.next_position("")
([('', 1)], (0, 1))
>>> [(pid, len(item)) for pid, item in cursor.take(5)], cursor.next_position("")
([('', 1), ('', 11)], None)
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

#: The first four bytes of an Arrow IPC stream (the continuation marker); no JSON text starts so.
ARROW_MAGIC = b"\xff\xff\xff\xff"
#: The MIME type of an Arrow IPC stream (the ``content-type`` header of produced messages).
CONTENT_TYPE = "application/vnd.apache.arrow.stream"
#: The event fields a batch may carry as columns (the JSON event's fields).
EVENT_COLUMNS = (
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


def is_arrow(payload: Any) -> bool:
    """Whether a record's payload is an Arrow IPC stream (else it is read as one JSON event).

    >>> is_arrow(b'{"id": "1"}'), is_arrow(ARROW_MAGIC + b"rest"), is_arrow(None)
    (False, True, False)
    """
    return isinstance(payload, (bytes, bytearray, memoryview)) and bytes(payload[:4]) == ARROW_MAGIC


def read_batch(payload: bytes | bytearray | memoryview) -> pa.RecordBatch:
    """The record batch of an Arrow IPC stream, without copying its buffers (``payload`` stays alive
    as long as the batch). A stream of several batches is combined into one (that copies)."""
    reader = pa.ipc.open_stream(pa.py_buffer(payload))
    batches = list(reader)
    if len(batches) == 1:
        return batches[0]
    if not batches:
        return pa.RecordBatch.from_pylist([], schema=reader.schema)
    table = pa.Table.from_batches(batches).combine_chunks()
    return table.to_batches()[0]


def encode_batch(batch: pa.RecordBatch | pa.Table) -> bytes:
    """The Arrow IPC stream of ``batch``: one message's payload."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write(batch)
    return bytes(sink.getvalue().to_pybytes())


class ArrowRows:
    """Rows ``start`` to ``stop`` of one Arrow message: what a source hands out for them.

    ``where`` names the message in dead letters (``topic:partition@offset``, or the index of
    an in-memory record).

    >>> rows = ArrowRows(to_record_batch({"v": [1.0, 2.0, 3.0]}, model="m", kind="predict", features=["v"], id_prefix="r"), 1, 3, "t:0@5")
    >>> len(rows), rows.where
    (2, 't:0@5')
    """

    __slots__ = ("batch", "start", "stop", "where")

    def __init__(self, batch: pa.RecordBatch, start: int, stop: int, where: str):
        self.batch = batch
        self.start = start
        self.stop = stop
        self.where = where

    def __len__(self) -> int:
        return self.stop - self.start

    def __repr__(self) -> str:
        return f"ArrowRows({self.where}, rows {self.start}..{self.stop})"


class _Pending:
    __slots__ = ("pid", "offset", "value", "next_row", "rows")

    def __init__(self, pid: str, offset: int, value: Any, next_row: int, rows: int):
        self.pid, self.offset, self.value, self.next_row, self.rows = pid, offset, value, next_row, rows


class RowCursor:
    """The records a source fetched and has not handed out yet, split at row granularity.

    ``push`` takes each fetched record (its partition, offset and payload); ``take(n)``
    hands out at most ``n`` events in order: a JSON payload counts one, an Arrow message
    as many as its rows, and may be cut (the rest comes first at the next ``take``).
    ``next_position(pid)`` is ``(offset, row)`` of the first row of ``pid`` not handed
    out, or None when everything pushed for ``pid`` was. ``seek(pid, offset, row)`` makes
    the record at ``offset`` start at ``row`` when it is pushed (a restart inside a message).

    An Arrow message that cannot be read is handed out as its bytes: the decoder
    dead-letters it as one record.

    >>> cursor = RowCursor(); cursor.seek("p", 4, 1)
    >>> cursor.push("p", 4, encode_batch(to_record_batch({"v": [1.0, 2.0]}, model="m", kind="predict", features=["v"], id_prefix="r")))
    >>> [item.start for _, item in cursor.take(10)], cursor.next_position("p")
    ([1], None)
    """

    def __init__(self) -> None:
        self.pending: deque[_Pending] = deque()
        self._skip: dict[str, tuple[int, int]] = {}

    def __bool__(self) -> bool:
        return bool(self.pending)

    def push(self, pid: str, offset: int, value: Any) -> None:
        start = 0
        skip = self._skip.get(pid)
        if skip is not None:
            if offset >= skip[0]:
                del self._skip[pid]
            if offset == skip[0]:
                start = skip[1]
        if is_arrow(value):
            try:
                batch = read_batch(value)
            except (pa.ArrowException, ValueError, OSError):
                self.pending.append(_Pending(pid, offset, value, 0, 1))  # the engine dead-letters the bytes
                return
            if start >= batch.num_rows:
                return  # every row was applied before the restart
            self.pending.append(_Pending(pid, offset, batch, start, batch.num_rows))
            return
        self.pending.append(_Pending(pid, offset, value, 0, 1))

    def take(self, max_events: int) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        budget = max_events
        pending = self.pending
        while pending and budget > 0:
            head = pending[0]
            if type(head.value) is not pa.RecordBatch:
                out.append((head.pid, head.value))
                budget -= 1
                pending.popleft()
                continue
            stop = min(head.rows, head.next_row + budget)
            out.append(
                (head.pid, ArrowRows(head.value, head.next_row, stop, f"{head.pid}@{head.offset}" if head.pid else str(head.offset)))
            )
            budget -= stop - head.next_row
            head.next_row = stop
            if stop == head.rows:
                pending.popleft()
        return out

    def next_position(self, pid: str) -> tuple[int, int] | None:
        for p in self.pending:
            if p.pid == pid:
                return p.offset, p.next_row
        return None

    def seek(self, pid: str, offset: int, row: int) -> None:
        self.drop(pid)
        if row:
            self._skip[pid] = (offset, row)

    def drop(self, pid: str) -> None:
        """Forget what was fetched for ``pid`` (a seek, a revoked partition)."""
        self._skip.pop(pid, None)
        if any(p.pid == pid for p in self.pending):
            self.pending = deque(p for p in self.pending if p.pid != pid)


def position_dict(offset_key: str, offset: int, row: int) -> dict[str, int]:
    """A source position: the record's offset (under ``offset_key``), and the row inside it when not 0
    (a position without ``row`` is today's format, and reads as row 0).

    >>> position_dict("offset", 7, 0), position_dict("offset", 7, 3)
    ({'offset': 7}, {'offset': 7, 'row': 3})
    """
    return {offset_key: offset, "row": row} if row else {offset_key: offset}


# -- producing -------------------------------------------------------------------------------------------


def _columns(frame_or_columns: Any) -> dict[str, pa.Array | pa.ChunkedArray]:
    """Named columns of a pandas or polars frame, a pyarrow table or batch, or a mapping of sequences."""
    data = frame_or_columns
    if hasattr(data, "to_arrow") and not isinstance(data, (pa.Table, pa.RecordBatch)):  # polars
        data = data.to_arrow()
    elif type(data).__module__.startswith("pandas"):
        data = pa.Table.from_pandas(data, preserve_index=False)
    if isinstance(data, (pa.Table, pa.RecordBatch)):
        return {name: data.column(name) for name in data.column_names}
    if isinstance(data, Mapping):
        return {str(name): _array(values) for name, values in data.items()}
    raise TypeError(f"expected a pandas or polars frame, a pyarrow table or a mapping of columns, got {type(data).__name__}")


def _array(values: Any) -> pa.Array | pa.ChunkedArray:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    array = np.asarray(values) if not isinstance(values, list) else None
    if array is not None and array.ndim == 2:  # a feature matrix: one fixed-size list per row
        flat = pa.array(np.ascontiguousarray(array, dtype=np.float64).ravel())
        return pa.FixedSizeListArray.from_arrays(flat, array.shape[1])
    return pa.array(values)


def to_record_batch(
    frame_or_columns: Any,
    model: str | None = None,
    kind: str | None = None,
    features: Sequence[str] | None = None,
    label: str | None = None,
    id_prefix: str | None = None,
    first_id: int = 0,
) -> pa.RecordBatch:
    """A record batch of events from a frame (pandas, polars, pyarrow) or a mapping of columns.

    ``model`` and ``kind`` fill those columns when the frame has none; ``features`` names
    the frame's columns packed, in that order, into the ``features`` column (a fixed-size
    list of float64); ``label`` names the column that becomes ``label``; ``id_prefix``
    makes ids ``prefix + row number`` (from ``first_id``) when the frame has no ``id``.
    Columns that are event fields (``key``, ``ts``, ``ref``, ``reward``, ``attributes``,
    ...) are kept, and so are ``features.<name>`` columns when ``features`` is not given;
    ``attributes.<name>`` columns become the ``attributes`` struct; any other column is dropped.

    >>> import pandas as pd
    >>> frame = pd.DataFrame({"age": [30.0, 40.0], "income": [1.0, 2.0], "region": ["n", "s"], "y": [0.5, 0.7]})
    >>> b = to_record_batch(frame.rename(columns={"region": "attributes.region"}), model="m", kind="observe",
    ...                     features=["age", "income"], label="y", id_prefix="row-")
    >>> b.column("id").to_pylist(), b.column("features").type, b.column("attributes").to_pylist()
    (['row-0', 'row-1'], FixedSizeListType(fixed_size_list<item: double>[2]), [{'region': 'n'}, {'region': 's'}])
    """
    columns = _columns(frame_or_columns)
    n = len(next(iter(columns.values()))) if columns else 0
    out: dict[str, pa.Array | pa.ChunkedArray] = {}
    if "id" in columns:
        out["id"] = columns["id"]
    elif id_prefix is not None:
        out["id"] = pa.array([f"{id_prefix}{i}" for i in range(first_id, first_id + n)], pa.string())
    else:
        raise ValueError("the frame has no 'id' column: name one, or give id_prefix")
    for name, constant in (("model", model), ("kind", kind)):
        if name in columns:
            out[name] = columns[name]
        elif constant is not None:
            out[name] = pa.array([constant] * n, pa.string())
        else:
            raise ValueError(f"the frame has no {name!r} column: name one, or give {name}=...")
    if features is not None:
        matrix = np.empty((n, len(features)), dtype=np.float64)
        for j, name in enumerate(features):
            matrix[:, j] = np.asarray(columns[name], dtype=np.float64)
        out["features"] = pa.FixedSizeListArray.from_arrays(pa.array(matrix.ravel()), len(features))
    if label is not None:
        out["label"] = columns[label]
    attributes = {name.split(".", 1)[1]: col for name, col in columns.items() if name.startswith("attributes.")}
    if attributes:
        arrays = [col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col for col in attributes.values()]
        out["attributes"] = pa.StructArray.from_arrays(arrays, names=list(attributes))
    for name in EVENT_COLUMNS:
        if name in columns and name not in out and not (name == "features" and features is not None):
            out[name] = columns[name]
    if features is None and "features" not in out:  # one column per feature (``features.<name>``), kept as they are
        out.update({name: col for name, col in columns.items() if name.startswith("features.")})
    arrays = [col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col for col in out.values()]
    return pa.RecordBatch.from_arrays(arrays, names=list(out))


def from_events(events: Sequence[Mapping[str, Any]]) -> pa.RecordBatch:
    """A record batch of events given as JSON-like objects (a JSON stream converted to the Arrow format).

    Features given as arrays of one length become a fixed-size list of float64; an absent
    field is a null.

    >>> b = from_events([{"id": "1", "model": "m", "kind": "observe", "features": [1, 2], "label": 3},
    ...                  {"id": "2", "model": "m", "kind": "feedback", "ref": "0", "reward": 0.5}])
    >>> b.column("features").to_pylist(), b.column("reward").to_pylist()
    ([[1.0, 2.0], None], [None, 0.5])
    """
    names: dict[str, None] = {}
    for event in events:
        names.update(dict.fromkeys(event))
    columns: dict[str, pa.Array] = {}
    for name in names:
        values = [event.get(name) for event in events]
        if name == "features":
            widths = {len(v) for v in values if isinstance(v, list)}
            if len(widths) == 1 and all(v is None or isinstance(v, list) for v in values):
                columns[name] = pa.array(values, type=pa.list_(pa.float64(), widths.pop()))
                continue
        columns[name] = pa.array(values)
    return pa.RecordBatch.from_arrays(list(columns.values()), names=list(columns))


def produce_frame(
    producer: Any,
    topic: str,
    frame_or_columns: Any,
    rows_per_message: int = 10_000,
    key: str | None = None,
    max_message_bytes: int = 900_000,
    **columns: Any,
) -> int:
    """Stream a frame to ``topic`` as Arrow messages of at most ``rows_per_message`` events; the number of messages.

    Messages are also kept under ``max_message_bytes`` (the brokers' and clients' default
    limit is 1 MB; at 32 float64 features a row weighs about 300 bytes). ``producer`` is a
    confluent-kafka ``Producer`` or a kafka-python ``KafkaProducer``; ``columns`` are
    :func:`to_record_batch`'s keywords. Each message carries the header
    ``content-type: application/vnd.apache.arrow.stream``. The caller flushes the producer.
    """
    if rows_per_message < 1:
        raise ValueError("rows_per_message must be at least 1")
    batch = to_record_batch(frame_or_columns, **columns)
    if batch.num_rows:
        row_bytes = max(1, batch.nbytes // batch.num_rows)
        rows_per_message = max(1, min(rows_per_message, (max_message_bytes - 4096) // row_bytes))  # 4 KiB for the schema
    headers = [("content-type", CONTENT_TYPE.encode())]
    key_bytes = key.encode() if key is not None else None
    sent = 0
    for start in range(0, batch.num_rows, rows_per_message):
        payload = encode_batch(batch.slice(start, rows_per_message))
        if hasattr(producer, "produce"):  # confluent-kafka
            while True:
                try:
                    producer.produce(topic, value=payload, key=key_bytes, headers=headers)
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    producer.poll(0.1)
            producer.poll(0)
        else:  # kafka-python
            producer.send(topic, value=payload, key=key_bytes, headers=headers)
        sent += 1
    return sent


class AnswerColumns:
    """The answers of a run of rows as columns, so that an Arrow answer message is built without a record per row.

    ``columns`` maps each answer field, in the JSON answer's order, to its values: one per
    row (a list, a numpy array or an Arrow array) or one string shared by every row.
    :meth:`records` gives the rows as the JSON answers they stand for (a None left out).

    >>> a = AnswerColumns("m", "observe", {"id": ["1", "2"], "kind": "observe", "prediction": np.array([0.5, 1.5])}, 2)
    >>> len(a), a.records()[1]
    (2, {'id': '2', 'kind': 'observe', 'prediction': 1.5})
    """

    __slots__ = ("model", "kind", "columns", "rows")

    def __init__(self, model: str, kind: str, columns: dict[str, Any], rows: int):
        self.model, self.kind, self.columns, self.rows = model, kind, columns, rows

    def __len__(self) -> int:
        return self.rows

    def values(self, name: str) -> list[Any]:
        """Column ``name``'s values as Python objects, one per row."""
        column = self.columns[name]
        if isinstance(column, str):
            return [column] * self.rows
        if isinstance(column, (pa.Array, pa.ChunkedArray)):
            return list(column.to_pylist())
        if isinstance(column, np.ndarray):
            return list(column.tolist())
        return list(column)

    def records(self) -> list[dict[str, Any]]:
        names = list(self.columns)
        return [{k: v for k, v in zip(names, row) if v is not None} for row in zip(*(self.values(name) for name in names))]

    def json_rows(self) -> list[bytes]:
        """The rows as JSON answers, every column in order (a None written ``null``, unlike :meth:`records`):
        the bytes ``orjson.dumps`` gives each row's dict, built a column at a time (one ``dumps`` per
        column instead of a dict and a ``dumps`` per row).

        >>> ids, predictions = [str(i) for i in range(10)], [0.5, 1e-5, None, *range(7)]
        >>> a = AnswerColumns("m", "observe", {"id": ids, "kind": "observe", "prediction": predictions}, 10)
        >>> a.json_rows()[:3]
        [b'{"id":"0","kind":"observe","prediction":0.5}', b'{"id":"1","kind":"observe","prediction":0.00001}', b'{"id":"2","kind":"observe","prediction":null}']
        >>> a.json_rows() == [orjson.dumps(r) for r in a.dicts()]
        True
        """
        if self.rows < _FEW_ROWS or not all(type(name) is str for name in self.columns):
            return self._dict_rows()
        pieces: list[bytes] = []
        cells: list[list[bytes]] = []
        for name, column in self.columns.items():
            key = orjson.dumps(name).replace(b"%", b"%%")
            if isinstance(column, str):
                pieces.append(key + b":" + orjson.dumps(column).replace(b"%", b"%%"))
                continue
            values = _json_cells(self.values(name))
            if values is None:  # a text to escape, another type: a dict per row
                return self._dict_rows()
            pieces.append(key + b":%s")
            cells.append(values)
        template = b"{" + b",".join(pieces) + b"}"
        if not cells:
            return [template.replace(b"%%", b"%")] * self.rows
        return [template % row for row in zip(*cells)]

    def dicts(self) -> list[dict[str, Any]]:
        """The rows as the JSON answers' dicts, every column (a None kept, unlike :meth:`records`)."""
        names = list(self.columns)
        return [dict(zip(names, row)) for row in zip(*(self.values(name) for name in names))]

    def _dict_rows(self) -> list[bytes]:
        return [orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY) for row in self.dicts()]


_FEW_ROWS = 8  # below it a dict per row is the cheaper way (the column-wise way has a fixed cost)


_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f]')  # what orjson writes escaped inside a JSON string
_NUMBERS_OR_NULL = frozenset((int, float, type(None)))


def _json_cells(values: list[Any]) -> list[bytes] | None:
    """Each value as the JSON text orjson writes for it, from one ``dumps`` of the column: numbers and
    nulls (no comma inside one), or text that needs no escape; None for any other column."""
    if not values:
        return []
    types = set(map(type, values))
    try:
        if types <= _NUMBERS_OR_NULL:
            return orjson.dumps(values)[1:-1].split(b",")
        if types == {str} and _NEEDS_ESCAPE.search("".join(values)) is None:
            return ('"' + '"\x00"'.join(values) + '"').encode().split(b"\x00")
    except (orjson.JSONEncodeError, UnicodeEncodeError):  # an integer past 64 bits, a lone surrogate: row by row
        return None
    return None


def _column_array(parts: list[Any], rows: list[int]) -> pa.Array:
    """One answer column from its parts (per run: values per row, or one string for all), typed as
    ``pa.array`` would type the Python values."""
    if all(isinstance(p, str) for p in parts) and len(set(parts)) == 1:
        return pa.repeat(parts[0], sum(rows))
    if all(isinstance(p, np.ndarray) for p in parts):
        return pa.array(np.concatenate(parts) if len(parts) > 1 else parts[0])
    arrays = [
        p if isinstance(p, pa.Array) else pa.array([p] * n if isinstance(p, str) else p.tolist() if isinstance(p, np.ndarray) else p)
        for p, n in zip(parts, rows)
    ]
    if len(arrays) == 1:
        return arrays[0]
    if len({a.type for a in arrays}) == 1:
        return pa.concat_arrays(arrays)
    return pa.array([v for a in arrays for v in a.to_pylist()])


def _answer_batch(parts: list[dict[str, Any] | AnswerColumns]) -> pa.RecordBatch:
    """One (model, kind) group of answers as a record batch: straight from the columns when every part
    has the same ones, else from the rows (a field absent from a row is a null)."""
    first = parts[0]
    if isinstance(first, AnswerColumns) and all(isinstance(p, AnswerColumns) and list(p.columns) == list(first.columns) for p in parts):
        columns = [p.columns for p in parts if isinstance(p, AnswerColumns)]
        rows = [len(p) for p in parts if isinstance(p, AnswerColumns)]
        return pa.RecordBatch.from_arrays(
            [_column_array([c[name] for c in columns], rows) for name in first.columns], names=list(first.columns)
        )
    records = [r for p in parts for r in (p.records() if isinstance(p, AnswerColumns) else [p])]
    names = list(dict.fromkeys(name for r in records for name in r))
    return pa.RecordBatch.from_arrays([pa.array([r.get(name) for r in records]) for name in names], names=names)


def answer_batches(
    records: Iterable[tuple[str, dict[str, Any] | AnswerColumns]],
) -> list[tuple[str, bytes, tuple[tuple[str, str], ...]]]:
    """Answer records as Arrow messages: one per (model, kind) run of ``(model, record)`` pairs, in
    order of first appearance; each keyed by the model, headed by ``model``, ``content-type`` and ``rows``.
    A record may be one answer (a dict) or the answers of a run in columns (:class:`AnswerColumns`).

    >>> [(key, read_batch(payload).num_rows, headers[2]) for key, payload, headers in
    ...  answer_batches([("m", {"id": "1", "kind": "observe", "prediction": 0.5}), ("m", {"id": "2", "kind": "observe", "prediction": 1.5})])]
    [('m', 2, ('rows', '2'))]
    """
    groups: dict[tuple[str, str], list[dict[str, Any] | AnswerColumns]] = {}
    for model, record in records:
        kind = record.kind if isinstance(record, AnswerColumns) else str(record.get("kind"))
        groups.setdefault((model, kind), []).append(record)
    out: list[tuple[str, bytes, tuple[tuple[str, str], ...]]] = []
    for (model, _), parts in groups.items():
        batch = _answer_batch(parts)
        out.append((model, encode_batch(batch), (("model", model), ("content-type", CONTENT_TYPE), ("rows", str(batch.num_rows)))))
    return out
