"""The tasks a model can have, by name: what the runtime, metrics, reports and CLI ask of a model's kind.

A learner class names its task in its class attribute ``task``; :func:`task_for` finds
the registered :class:`~regretflow.engine.tasks.base.Task` for it. Adding a kind of
model is one module with a ``Task`` subclass and one :func:`register_task` call.

>>> task_for(type("Regressor", (), {"task": "regression"})).name
'regression'
>>> sorted(TASKS)
['bandit', 'classification', 'fair', 'regression']
"""

from __future__ import annotations

from typing import Any

from regretflow.engine.tasks.bandit import BanditTask
from regretflow.engine.tasks.base import NoTracker, Output, ShardView, Task, Tracker
from regretflow.engine.tasks.classification import ClassificationTask
from regretflow.engine.tasks.fair import FairTask
from regretflow.engine.tasks.regression import RegressionTask
from regretflow.learners import LEARNERS

__all__ = [
    "TASKS",
    "NoTracker",
    "Output",
    "ShardView",
    "Task",
    "Tracker",
    "register_task",
    "shown_task",
    "task_for",
    "task_named",
    "unregister_task",
]

DEFAULT_TASK = "regression"  # the task of a learner class that names none

TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Make ``task`` the task of every learner class whose ``task`` is ``task.name``; returns it."""
    if task.name in TASKS and TASKS[task.name] is not task:
        raise ValueError(f"a task named {task.name!r} is already registered ({type(TASKS[task.name]).__name__})")
    TASKS[task.name] = task
    return task


def unregister_task(name: str) -> None:
    """Forget the task ``name`` (tests that register a toy task clean up with this)."""
    TASKS.pop(name, None)


def task_named(name: str) -> Task:
    """The registered task ``name`` (as a model summary names it), or KeyError."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"no task named {name!r} is registered (known: {', '.join(sorted(TASKS))})") from None


class _UnknownTask(Task):
    """What readers of summaries (report, live page, tables) use for a task no module registered: counts only."""

    name = "unknown"
    kinds = frozenset()

    def make_tracker(self, spec: Any) -> Tracker:
        return NoTracker()

    def summarize(self, shards: Any) -> dict[str, Any]:
        return {}


_UNKNOWN = _UnknownTask()


def shown_task(name: Any) -> Task:
    """The task that reads and shows summaries of task ``name``: the registered one, else one that shows counts only.

    >>> shown_task("regression").name, shown_task(None).name
    ('regression', 'unknown')
    """
    return TASKS.get(name, _UNKNOWN) if isinstance(name, str) else _UNKNOWN


def model_tasks(config: Any) -> dict[str, Task]:
    """Each model of ``config`` and the task of its learner (what :class:`EventDecoder` validates labels with).

    >>> from regretflow.engine.config import parse_config
    >>> model_tasks(parse_config({"models": {"m": {"learner": "ridge", "features": ["a"]}}}))["m"].name
    'regression'
    """
    return {name: task_for(LEARNERS[spec.learner]) for name, spec in config.models.items()}


def task_for(learner_cls: Any) -> Task:
    """The task of a learner class (or instance): the one its ``task`` attribute names."""
    return task_named(getattr(learner_cls, "task", DEFAULT_TASK))


for _task in (RegressionTask(), ClassificationTask(), BanditTask(), FairTask()):
    register_task(_task)
