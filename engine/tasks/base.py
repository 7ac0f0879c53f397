"""The interface between a model's task and the runtime, metrics, reports and CLI.

A task (regression, classification, bandit, fair, ...) owns everything that differs
between kinds of models: which event kinds a model takes and their checks beyond the
JSON schema, the tracker that measures it, what a request leaves in the join store,
the answer records, the figures of its summary and their Prometheus gauges, its rows
in the CLI's tables, its live panels and its report figures. The shard
(:mod:`regretflow.engine.runtime.shard`) keeps the mechanics every task shares:
vectorised runs, join windows, quarantine, state.

Events reach a task in one of two ways. Kinds in :attr:`Task.run_kinds` (observe,
predict) are queued by the shard and handed over as one run (:meth:`Task.run`), so a
micro-batch costs one vectorised learner call; every other kind goes to
:meth:`Task.handle` one event at a time, after the shard processed the pending run.

>>> class Silent(Task):
...     name = "silent"
...     kinds = frozenset({"decide"})
...     def make_tracker(self, spec): return NoTracker()
...     def summarize(self, shards): return {}
>>> Silent().check_label(1.0)
Traceback (most recent call last):
...
regretflow.engine.runtime.dead_letters.BadEvent: unsupported_kind: a silent model takes no observe events
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from regretflow.engine.runtime.dead_letters import BadEvent
from regretflow.engine.runtime.events import Event, Run
from regretflow.engine.runtime.joins import JoinEntry, JoinPayload, PendingJoins

if TYPE_CHECKING:
    from regretflow.engine.config import ModelSpec
    from regretflow.engine.observability.metrics import Metrics


@runtime_checkable
class Tracker(Protocol):
    """What the shard needs of a task's tracker: a summary and a checkpointable state.

    >>> isinstance(NoTracker(), Tracker)
    True
    """

    def summary(self) -> dict[str, Any]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class NoTracker:
    """A tracker that measures nothing (a task whose figures come from its learner alone).

    >>> NoTracker().summary()
    {}
    """

    def summary(self) -> dict[str, Any]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


class Output(Protocol):
    """Where a micro-batch's answers and dead letters go (the engine's batch output).

    >>> from regretflow.engine.runtime.loop import _BatchOutput
    >>> out: Output = _BatchOutput()
    >>> out.answer(Event("1", "m", "observe"), {"id": "1"}); len(out.answers)
    1
    """

    def answer(self, ev: Event, record: dict[str, Any]) -> None: ...

    def answer_run(self, run: Run, records: list[dict[str, Any]]) -> None:
        """One answer per row of ``run``, in its order (serialised together)."""

    def answer_columns(self, run: Run, columns: dict[str, Any]) -> None:
        """The answers :meth:`answer_run` takes, as columns: field -> one value per row, or one string for every row.
        An output whose ``columnar`` is true (Arrow answers) keeps them so; JSON answers are serialised a column
        at a time (a None is written ``null``)."""

    def dead_event(self, ev: Event, reason: str, detail: str) -> None: ...

    def dead_run(self, run: Run, reason: str, detail: str) -> None:
        """Dead-letter every row of a run that had passed validation (its shard was quarantined)."""


class ShardView(Protocol):
    """The part of a shard a task may use: its model, learner, tracker and join store.

    >>> from regretflow.engine.config import parse_config
    >>> from regretflow.engine.runtime.shard import Shard
    >>> shard: ShardView = Shard(parse_config({"models": {"m": {"learner": "ridge", "features": ["x"]}}}).models["m"], "")
    >>> type(shard.tracker).__name__, len(shard.joins)
    ('HindsightRegret', 0)
    """

    spec: ModelSpec
    key: str
    learner: Any
    tracker: Any
    joins: PendingJoins
    seq: int
    expired: int
    quarantined: str | None

    def quarantine(self, why: str) -> None: ...

    def check_outputs(self, where: str, *outputs: Any) -> None: ...

    def flush(self, out: Output) -> None: ...

    def check_new_id(self, ev: Event) -> None: ...

    def request(self, ev: Event, payload: JoinPayload, out: Output) -> None: ...

    def pending_reply(self, ev: Event, request: str, late: str) -> JoinEntry: ...


class Task(ABC):
    """One kind of model. Subclass, then :func:`regretflow.engine.tasks.register_task` an instance.

    Class attributes: ``name`` (the learner classes' ``task``, and the summary's ``task``),
    ``kinds`` (the event kinds its models take) and ``run_kinds`` (those of them the shard
    processes as vectorised runs).

    >>> from regretflow.engine.tasks import task_named
    >>> sorted(task_named("fair").kinds), sorted(task_named("regression").run_kinds)
    (['audit', 'decide', 'feedback'], ['observe', 'predict'])
    """

    name: ClassVar[str]
    kinds: ClassVar[frozenset[str]]
    run_kinds: ClassVar[frozenset[str]] = frozenset()
    # run kinds whose events :meth:`check` never refuses: the shard admits their runs without a call per row
    unchecked_kinds: ClassVar[frozenset[str]] = frozenset()

    # -- events -----------------------------------------------------------------------------
    def check_label(self, label: Any) -> Any:
        """An observe's label as this task takes it, or BadEvent (called by the decoder)."""
        raise BadEvent("unsupported_kind", f"a {self.name} model takes no observe events")

    def check(self, shard: ShardView, ev: Event) -> None:
        """Raise BadEvent if ``shard`` cannot take ``ev`` (a kind of :attr:`kinds`); changes nothing."""
        return None

    def refused_rows(self, shard: ShardView, run: Run) -> list[tuple[int, BadEvent]]:
        """Rows of a run in columns that :meth:`check` would refuse for what they carry (their index, why).

        The shard asks before it admits a run; the default refuses none.
        """
        return []

    def run(self, shard: ShardView, run: Run, out: Output) -> None:
        """Process a run of consecutive events of one of :attr:`run_kinds` (``run.kind``), given as columns, and answer them."""
        raise NotImplementedError(f"the {self.name} task processes no runs")

    def handle(self, shard: ShardView, ev: Event, out: Output) -> None:
        """Process one event of a kind outside :attr:`run_kinds` (decide, feedback, audit)."""
        raise NotImplementedError(f"the {self.name} task takes no {ev.kind} events")

    def on_expired(self, shard: ShardView, entries: list[JoinEntry], out: Output) -> None:
        """Requests whose window closed without their feedback (the shard already counted them)."""
        return None

    # -- measuring ----------------------------------------------------------------------------
    @abstractmethod
    def make_tracker(self, spec: ModelSpec) -> Tracker:
        """The tracker of one shard of model ``spec``."""

    @abstractmethod
    def summarize(self, shards: Sequence[ShardView]) -> dict[str, Any]:
        """The task's entries of a model summary, over the model's shards (e.g. ``{"groups": ...}``)."""

    def publish(self, metrics: Metrics, model: str, summary: dict[str, Any]) -> None:
        """Set the task's Prometheus gauges from a model summary."""
        return None

    # -- showing ------------------------------------------------------------------------------
    def summary_rows(self, summary: dict[str, Any], extra: dict[str, Any]) -> tuple[list[str], list[str]]:
        """Column heads and the one row of a model in the CLI's compact tables."""
        return ["events"], [str(summary.get("events", 0))]

    def detail_lines(self, model: str, summary: dict[str, Any]) -> list[str]:
        """The model's detailed table in ``regretflow replay``'s output (one line per group, ...)."""
        return []

    def replay_lines(self, model: str, summary: dict[str, Any]) -> list[str]:
        """Lines ``regretflow replay`` prints about the model after the group table."""
        return []

    def progress_figure(self, model: str, summary: dict[str, Any]) -> str | None:
        """The model's headline figure on the demo's progress line, if it has one."""
        return None

    def live_panels(self, summary: dict[str, Any], monitor: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The live page's panels of one model at one moment (see :mod:`regretflow.engine.observability.live`)."""
        return []

    def series(self, summaries: list[dict[str, Any]]) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]], np.ndarray]:
        """A report's time series over successive summaries: values, per-group values, and the rounds axis."""
        rounds = np.array([float(s.get("events", i)) for i, s in enumerate(summaries)])
        return {}, {}, rounds

    def figures(self, series: Any) -> list[tuple[str, bytes]]:
        """The report's figures of a model (file stem, PNG bytes) from its ``ModelSeries``."""
        return []

    def final_table(self, series: Any) -> str:
        """The report's HTML table of a model's last figures."""
        return ""


def column(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    """``rows[i][key]`` as floats, NaN where absent or not a number (a report series).

    >>> column([{"a": 1}, {}, {"a": True}], "a").tolist()
    [1.0, nan, nan]
    """
    return np.array([_number(r.get(key)) for r in rows], dtype=float)


def _number(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else float("nan")


def fmt(value: Any, spec: str = ".4f") -> str:
    """A figure for a text table: ``-`` when missing or not finite.

    >>> fmt(0.5), fmt(None), fmt(float("nan"), ".1f")
    ('0.5000', '-', '-')
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "-"
    return "-" if not np.isfinite(v) else format(v, spec)


def plain_list(values: Any) -> list[Any]:
    """JSON-ready scalars from an array (one C call) or a sequence of numpy or Python values.

    >>> plain_list(np.array([0.5, 2.0])), plain_list([np.int64(1), "a"])
    ([0.5, 2.0], [1, 'a'])
    """
    if type(values) is np.ndarray:
        return list(values.tolist())
    return [plain(v) for v in values]


def plain(v: Any) -> Any:
    """A JSON-ready scalar from a numpy value.

    >>> type(plain(np.float64(1.5)))
    <class 'float'>
    """
    if isinstance(v, np.generic):
        return v.item()
    return v
