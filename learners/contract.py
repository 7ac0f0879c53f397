"""The learner contract: the three roles a regretflow learner plays for the engine.

A learner's class attribute ``task`` names its role, and ``ROLES[task]`` is the
:class:`typing.Protocol` it satisfies. The engine calls only what the role declares:
it never probes signatures and never reads attributes a call left behind; every
extra output travels in the call's result object (:class:`Observed`,
:class:`Decision`, :class:`PanelDecision`).

Every role
    ``task``, ``n_updates`` (the model version the engine reports), ``state_dict()`` /
    ``load_state_dict(state)``: a flat dict whose values are numpy arrays or JSON
    scalars (str, int, float, bool, None), the RNG state included. Same events, same
    order, same seed: same state, bit for bit. Monitoring: ``GAUGES`` and
    ``GROUP_GAUGES`` (``{"name": "help text"}``) with ``gauges() -> dict[str, float]``
    and ``group_gauges() -> dict[str, np.ndarray]`` (one value per declared group, in
    the order of the ``groups`` columns). The engine registers them at start as
    ``regretflow_learner_<name>{model}`` and ``regretflow_learner_<name>{model,group}``
    and reads them once per micro-batch; a learner never imports Prometheus. The
    defaults (no gauges) come from :class:`Monitored`.

``"regression"`` / ``"classification"``: :class:`SupervisedEstimator`
    River estimators (``learn_one``/``predict_one`` on dicts) plus the engine's
    vectorised path on dense float64 arrays ``X`` (rows x features, in the model's
    declared feature order). ``groups`` is a boolean matrix (rows x declared groups)
    that group-aware learners use and the others accept and ignore.

    - ``observe(X, y, groups=None) -> Observed``: the engine's one call for a run of
      labelled rows. Prequential: row ``i`` is predicted with the state left by rows
      ``< i``, then learned. ``Observed.losses`` is the per-row loss the learner's
      guarantee is about (regressors: squared error unless the learner says
      otherwise; classifiers: None).
    - ``observe_many(X, y, groups=None) -> predictions``: the same, predictions only.
    - ``predict_many(X, groups=None)`` (no state change) and ``learn_many(X, y, groups=None)``.

``"bandit"``: :class:`BanditPolicy`
    - ``decide(context, actions=None) -> Decision``: ``context`` is the shared context
      (``None`` for a context-free policy), ``actions`` an optional ``(K, d)`` matrix
      of per-action features. The decision holds the chosen index, the probability
      vector over the ``K`` actions, the reward model's predictions when the policy
      has one, and a ``ticket`` the policy wants back in ``learn`` (-1: none).
    - ``learn(context, action, reward, probability=None, actions=None, ticket=-1)``:
      the reward of ``action`` decided on ``context``/``actions``. ``probability`` is
      the logged propensity (None: the policy's own, or 1.0 when it cannot tell). A
      reward outside a policy's documented range raises ValueError naming the range.
    - ``act(context, actions=None) -> (action, probabilities)``: a shorthand for
      ``decide``; ``describe_action(action)``: the action as numbers for the answer
      record (a budget vector, say), or None.

``"fair"``: :class:`FairPolicy`
    A round is a panel of ``k`` applicants, ``actions`` a ``(k, d)`` matrix with one
    row of features per applicant.

    - ``decide_panel(actions) -> PanelDecision``: accept (1) or reject (0) each
      applicant, and the probability ``q_i`` of accepting each under the current
      randomised policy.
    - ``learn_panel(decisions, labels, probabilities, actions)``: the labels revealed
      for the round (``labels[i]`` is 0.0/1.0, or -1.0 where it stayed hidden: the
      label of a rejected applicant is never seen); ``decisions`` and
      ``probabilities`` are the ones the decide answered, ``actions`` the same rows.
    - ``audit(actions, decisions, probabilities, violations, panel_size) -> int``:
      the auditors' reports on the round, ``violations`` holding ``(i, l, auditor)``
      triples (``(i, l)`` pairs: already aggregated by the panel) and ``panel_size``
      the number of auditors (None: the largest auditor index + 1). Returns the
      number of flagged pairs the panel rule kept (0 when it kept none).

Example: a regressor, a bandit and a fair policy, each in its role.

>>> import numpy as np
>>> from regretflow.learners import ROLES, OnlineRidge, EpsilonGreedy, FairExp2
>>> ridge = OnlineRidge(features=["a"])
>>> seen = ridge.observe(np.array([[1.0], [2.0]]), np.array([1.0, 2.0]))
>>> isinstance(ridge, ROLES[ridge.task]), seen.predictions.shape, seen.losses.shape
(True, (2,), (2,))
>>> bandit = EpsilonGreedy(n_actions=3, epsilon=0.3, seed=0)
>>> choice = bandit.decide(np.array([1.0, 0.5]))
>>> bandit.learn(np.array([1.0, 0.5]), choice.action, 1.0, float(choice.probabilities[choice.action]))
>>> isinstance(bandit, ROLES["bandit"]), round(float(choice.probabilities.sum()), 12)
(True, 1.0)
>>> fair = FairExp2(weights=[[1.0], [-1.0]], offsets=[0.5, -0.5], learning_rate=0.5, seed=0)
>>> people = np.array([[0.9], [0.1]])
>>> panel = fair.decide_panel(people)
>>> panel.probabilities.tolist()
[0.5, 0.5]
>>> labels = np.where(panel.decisions == 1, [1.0, 0.0], -1.0)  # only accepted applicants' labels
>>> fair.learn_panel(panel.decisions, labels, panel.probabilities, people)
>>> fair.audit(people, panel.decisions, panel.probabilities, [[0, 1, 0]], panel_size=1)  # equal q: no pair kept
0
>>> isinstance(fair, ROLES["fair"])
True
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import operator
import re
import struct
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar, cast, overload, runtime_checkable

import numpy as np
from numba import njit

STATE_SCALARS = (str, int, float, bool, type(None))

# -- parameter checks ------------------------------------------------------------------
# A constructor stores its parameters as given (so repr and clone work) and checks each
# with one of these; the message starts with the parameter's name and says what was
# expected, and the config layer prefixes it with ``models.NAME.params.``.

_BOUND = re.compile(r"^(>=|>|<=|<)\s*(\S+)$")
_INTERVAL = re.compile(r"^([\[(])\s*(\S+),\s*(\S+)\s*([\])])$")


def _within(value: float, bounds: str) -> bool:
    """``value`` inside ``bounds``: ``"> 0"``, ``">= 1"``, ``"< 1"``, ``"(0, 1]"``, ``"[0, 1)"``..."""
    one_sided = _BOUND.match(bounds)
    if one_sided:
        op, limit = one_sided.group(1), float(one_sided.group(2))
        return {">": value > limit, ">=": value >= limit, "<": value < limit, "<=": value <= limit}[op]
    interval = _INTERVAL.match(bounds)
    if interval is None:
        raise ValueError(f"bad bounds spec {bounds!r}")
    left, low, high, right = interval.group(1), float(interval.group(2)), float(interval.group(3)), interval.group(4)
    above = value >= low if left == "[" else value > low
    below = value <= high if right == "]" else value < high
    return above and below


def _describe(kind: str, bounds: str | None, allow_none: bool) -> str:
    where = "" if bounds is None else (f" in {bounds}" if bounds[0] in "[(" else f" {bounds}")
    return f"{kind}{where}" + (" or None" if allow_none else "")


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def check_number(name: str, value: Any, bounds: str | None = None, allow_none: bool = False) -> float | None:
    """A finite real number (not a bool) inside ``bounds``; returns it as a float.

    Wrong types raise TypeError, values out of range (NaN and infinities included)
    ValueError, each naming the parameter and what it expects.

    >>> check_number("lam", 0.5, "> 0")
    0.5
    >>> check_number("lam", -5, "> 0")
    Traceback (most recent call last):
    ...
    ValueError: lam: expected a number > 0, got -5
    >>> check_number("gamma", True, "(0, 1]")
    Traceback (most recent call last):
    ...
    TypeError: gamma: expected a number in (0, 1], got True
    """
    if value is None and allow_none:
        return None
    expected = _describe("a number", bounds, allow_none)
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected {expected}, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or (bounds is not None and not _within(number, bounds)):
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return number


def check_integer(name: str, value: Any, bounds: str | None = None, allow_none: bool = False) -> int | None:
    """An integer (not a bool, not a float) inside ``bounds``; returns it as an int.

    >>> check_integer("depth", 2, ">= 1")
    2
    >>> check_integer("depth", 1.5, ">= 1")
    Traceback (most recent call last):
    ...
    TypeError: depth: expected an integer >= 1, got 1.5
    """
    if value is None and allow_none:
        return None
    expected = _describe("an integer", bounds, allow_none)
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected {expected}, got {value!r}")
    if bounds is not None and not _within(int(value), bounds):
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return int(value)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """One of ``choices`` (compared by equality, types included: ``1`` is not ``True``).

    >>> check_choice("mode", "mix", ("expected", "mixture", "sample"))
    Traceback (most recent call last):
    ...
    ValueError: mode: expected one of 'expected', 'mixture', 'sample', got 'mix'
    """
    options = tuple(choices)
    if not any(type(value) is type(option) and value == option for option in options):
        raise ValueError(f"{name}: expected one of {', '.join(repr(o) for o in options)}, got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """``True`` or ``False`` (not 0/1, not a string)."""
    if not _is_bool(value):
        raise TypeError(f"{name}: expected true or false, got {value!r}")
    return bool(value)


def check_names(name: str, value: Any, allow_none: bool = True) -> list[str] | None:
    """A list of distinct strings (feature or group names), or None when allowed.

    >>> check_names("features", ["a", "a"])
    Traceback (most recent call last):
    ...
    ValueError: features: expected a list of distinct strings or None, got ['a', 'a']
    """
    if value is None and allow_none:
        return None
    expected = "a list of distinct strings" + (" or None" if allow_none else "")
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise TypeError(f"{name}: expected {expected}, got {value!r}")
    if not all(isinstance(item, str) for item in value):
        raise TypeError(f"{name}: expected {expected}, got {value!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return list(value)


def check_finite_matrix(name: str, value: Any, ndim: int) -> np.ndarray:
    """A finite float64 array of ``ndim`` dimensions (a config list of lists, say)."""
    try:
        array = np.array(value, dtype=np.float64, ndmin=ndim)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a {ndim}-d array of numbers, got {value!r}") from None
    if array.ndim != ndim or array.size == 0 or not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: expected a non-empty {ndim}-d array of finite numbers, got {value!r}")
    return array


# -- state checks ----------------------------------------------------------------------
def refuse_nonfinite(state: dict[str, Any], owner: str) -> None:
    """Refuse a state dict holding NaN or an infinity in a float array or float scalar.

    A learner calls it first in ``load_state_dict``, before it assigns anything, so a
    refused state leaves the learner as it was.

    >>> refuse_nonfinite({"w": np.array([0.0, np.nan])}, "OnlineRidge")
    Traceback (most recent call last):
    ...
    ValueError: OnlineRidge: state['w'] holds non-finite values
    """
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            finite = value.dtype.kind not in "fc" or bool(np.all(np.isfinite(value)))
        elif isinstance(value, (float, np.floating)):
            finite = math.isfinite(value)
        else:
            continue
        if not finite:
            raise ValueError(f"{owner}: state[{key!r}] holds non-finite values")


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The state of a PCG64 generator as JSON scalars (128-bit integers as strings).

    >>> g = np.random.default_rng(7); s = rng_state(g); a = g.random()
    >>> restore_rng(s).random() == a
    True
    """
    st = rng.bit_generator.state
    if st["bit_generator"] != "PCG64":
        raise ValueError(f"only PCG64 generators are checkpointed, got {st['bit_generator']}")
    return {
        "rng_state": str(st["state"]["state"]),
        "rng_inc": str(st["state"]["inc"]),
        "rng_has_uint32": int(st["has_uint32"]),
        "rng_uinteger": int(st["uinteger"]),
    }


def restore_rng(state: dict[str, Any]) -> np.random.Generator:
    """Rebuild the generator saved by :func:`rng_state`."""
    bitgen = np.random.PCG64()
    bitgen.state = {
        "bit_generator": "PCG64",
        "state": {"state": int(state["rng_state"]), "inc": int(state["rng_inc"])},
        "has_uint32": int(state["rng_has_uint32"]),
        "uinteger": int(state["rng_uinteger"]),
    }
    return np.random.Generator(bitgen)


def check_state(state: dict[str, Any], owner: str) -> None:
    """Fail loudly if a state dict holds anything but arrays and JSON scalars."""
    for key, value in state.items():
        if not isinstance(key, str):
            raise TypeError(f"{owner}: state key {key!r} is not a string")
        if isinstance(value, np.ndarray):
            if value.dtype == object:
                raise TypeError(f"{owner}: state[{key!r}] is an object array")
        elif not isinstance(value, STATE_SCALARS):
            raise TypeError(f"{owner}: state[{key!r}] has type {type(value).__name__}")


@njit("boolean(float64[::1])", cache=True, fastmath={"reassoc"})
def all_finite(values: np.ndarray) -> bool:
    """Whether a contiguous float64 vector holds no NaN and no infinity: one pass, nothing allocated.

    ``v - v`` is 0 for a finite value and NaN otherwise; the sum of those is 0 exactly when all are finite.
    Reassociating the sum (and nothing else: NaN and infinities keep their meaning) lets it vectorise,
    about 2.5x numpy's ``add.reduce`` over a learner's weights (the engine checks its state every micro-batch).

    >>> all_finite(np.array([1.0, -2.0, 1e308])), all_finite(np.array([1.0, np.inf])), all_finite(np.array([np.nan]))
    (True, False, False)
    """
    total = 0.0
    for i in range(values.shape[0]):
        total += values[i] - values[i]
    return total == 0.0


def expect_array(state: dict[str, Any], key: str, shape: tuple[int, ...], owner: str) -> np.ndarray:
    """Take ``state[key]`` as a float64 array of ``shape``, or say what is wrong."""
    if key not in state:
        raise KeyError(f"{owner}: state has no {key!r}")
    arr = np.asarray(state[key])
    if arr.shape != shape:
        raise ValueError(f"{owner}: state[{key!r}] has shape {arr.shape}, expected {shape}")
    return np.array(arr, dtype=np.float64, copy=True)


def dict_to_row(x: dict, features: list[str]) -> np.ndarray:
    """A River feature dict as a dense row in ``features`` order (absent keys are 0).

    NaN, infinities and None are refused with a ValueError naming the key, so they
    never reach a learner's state.

    >>> dict_to_row({"b": 2, "a": 1}, ["a", "b", "c"])
    array([1., 2., 0.])
    >>> dict_to_row({"a": None}, ["a"])
    Traceback (most recent call last):
    ...
    ValueError: feature 'a' is None, expected a finite number
    """
    get = x.get
    try:
        row = np.fromiter((get(name, 0.0) for name in features), dtype=np.float64, count=len(features))
    except TypeError:  # None or a non-number: the check below names it
        row = np.full(len(features), np.nan)
    if not np.isfinite(row).all():
        check_feature_dict({name: get(name, 0.0) for name in features})
    return row


def check_feature_dict(x: dict) -> dict:
    """Refuse a feature dict whose values are not all finite numbers (ValueError naming
    the key); a learner calls it before it fixes or grows its features.

    >>> check_feature_dict({"a": 1.0, "b": float("nan")})
    Traceback (most recent call last):
    ...
    ValueError: feature 'b' is nan, expected a finite number
    """
    for name, value in x.items():
        if value is None:
            raise ValueError(f"feature {name!r} is None, expected a finite number")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"feature {name!r} is {value!r}, expected a finite number") from None
        if not math.isfinite(number):
            raise ValueError(f"feature {name!r} is {value!r}, expected a finite number")
    return x


def as_matrix(X: Any, features: list[str] | None) -> np.ndarray:
    """A finite 2-D float64 C-contiguous matrix from an array or a pandas DataFrame.

    >>> as_matrix([[1.0, float("nan")]], None)
    Traceback (most recent call last):
    ...
    ValueError: features hold NaN, an infinity or None (row 0, column 1)
    """
    if hasattr(X, "columns"):  # pandas, as River's *_many pass it
        X = X[features].to_numpy() if features is not None else X.to_numpy()
    try:
        rows = np.ascontiguousarray(X, dtype=np.float64).reshape(len(X), -1)
    except TypeError:  # None in an object array
        raise ValueError("features hold None or a non-number, expected finite numbers") from None
    _refuse_nonfinite_values("features", rows)
    return rows


def finite_targets(y: Any, name: str = "labels") -> np.ndarray:
    """Regression targets (or rewards) as a finite 1-D float64 array.

    >>> finite_targets([1.0, 2.0])
    array([1., 2.])
    >>> finite_targets([1.0, None])
    Traceback (most recent call last):
    ...
    ValueError: labels hold NaN, an infinity or None (row 1)
    """
    if hasattr(y, "to_numpy"):
        y = y.to_numpy()
    try:
        values = np.ascontiguousarray(y, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{name} hold None or a non-number, expected finite numbers") from None
    _refuse_nonfinite_values(name, values)
    return values


def _refuse_nonfinite_values(name: str, values: np.ndarray) -> None:
    if not np.isfinite(values).all():
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(values))[0])
        at = f"row {where[0]}, column {where[1]}" if len(where) == 2 else f"row {where[0]}"
        raise ValueError(f"{name} hold NaN, an infinity or None ({at})")


def refuse_nonfinite_input(name: str, value: Any, allow_none: bool = True) -> None:
    """Refuse a context, reward or probability holding NaN, an infinity or None.

    ``None`` itself passes when ``allow_none`` (a context-free bandit takes no context,
    a probability may be unknown); values that are not numeric arrays (ragged action
    lists, say) are left to the learner's own checks.

    >>> refuse_nonfinite_input("reward", float("inf"))
    Traceback (most recent call last):
    ...
    ValueError: reward holds NaN, an infinity or None, expected finite numbers
    """
    if value is None:
        if allow_none:
            return
        raise ValueError(f"{name} holds NaN, an infinity or None, expected finite numbers")
    if isinstance(value, dict):
        value = list(value.values())
    try:
        array = np.asarray(value, dtype=np.float64)
    except TypeError:
        raise ValueError(f"{name} holds NaN, an infinity or None, expected finite numbers") from None
    except ValueError:
        return
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN, an infinity or None, expected finite numbers")


_REQUIRED_ARGUMENTS = ("reward", "rewards")
_CHECKED_ARGUMENTS = ("context", "contexts", "reward", "rewards", "probability", "probabilities")


_Method = TypeVar("_Method", bound=Callable[..., Any])


@overload
def refuses_nonfinite(method: _Method, *, also: tuple[str, ...] = ()) -> _Method: ...


@overload
def refuses_nonfinite(method: None = None, *, also: tuple[str, ...] = ()) -> Callable[[_Method], _Method]: ...


def refuses_nonfinite(method: _Method | None = None, *, also: tuple[str, ...] = ()) -> _Method | Callable[[_Method], _Method]:
    """Decorate a bandit's ``act``/``learn``: its contexts, rewards and
    probabilities (and the arguments named in ``also``) are checked with
    :func:`refuse_nonfinite_input` before the call, so a refused call changes nothing.
    Use it bare (``@refuses_nonfinite``) or as ``@refuses_nonfinite(also=("actions",))``."""
    if method is None:
        return cast(Callable[[_Method], _Method], functools.partial(refuses_nonfinite, also=also))
    names = list(inspect.signature(method).parameters)
    checked = [(name, names.index(name), name not in _REQUIRED_ARGUMENTS) for name in names if name in _CHECKED_ARGUMENTS or name in also]

    @functools.wraps(method)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        for name, position, allow_none in checked:
            value = args[position] if position < len(args) else kwargs.get(name)
            if type(value) is float:  # the per-event fast paths: a scalar reward, a float context
                if not math.isfinite(value):
                    refuse_nonfinite_input(name, value)
            elif type(value) is np.ndarray and value.dtype == np.float64:
                if not math.isfinite(np.add.reduce(value, axis=None)):  # NaN or inf anywhere (or overflow)
                    refuse_nonfinite_input(name, value)
            elif value is not None or not allow_none:
                refuse_nonfinite_input(name, value, allow_none)
        return method(*args, **kwargs)

    return cast(_Method, guarded)


def feature_changes(names: Iterable[Any], features: list[str]) -> tuple[list[Any], list[str]]:
    """The names not in ``features`` (sorted, the order a learner grows in) and the
    features absent from ``names``.

    >>> feature_changes(["b", "z", "a"], ["a", "b", "c"])
    (['z'], ['c'])
    """
    incoming = set(names)
    known = set(features)
    return sorted((n for n in incoming if n not in known), key=str), [f for f in features if f not in incoming]


def refuse_feature_changes(owner: str, names: Iterable[Any], features: list[str]) -> None:
    """``strict=True``: refuse a dict or frame whose keys differ from ``features``.

    >>> refuse_feature_changes("OnlineRidge", ["a", "z"], ["a", "b"])
    Traceback (most recent call last):
    ...
    ValueError: OnlineRidge(strict=True): features changed: new ['z'], missing ['b']
    """
    new, missing = feature_changes(names, features)
    if new or missing:
        raise ValueError(f"{owner}(strict=True): features changed: new {new}, missing {missing}")


def warn_ignored_features(owner: str, names: Iterable[Any], features: list[str], warned: set) -> None:
    """Warn once per key (recorded in ``warned``) that a model cannot grow for a key it
    was not built with and ignores it, so a new feature is never dropped silently."""
    new, _ = feature_changes(names, features)
    unwarned = [name for name in new if name not in warned]
    if unwarned:
        warned.update(unwarned)
        warnings.warn(f"{owner} ignores features it was not built with: {unwarned} (declare every feature in features=)", stacklevel=3)


def finite_target(y: Any, name: str = "label") -> float:
    """One regression target (or reward) as a finite float; the per-event fast path of
    :func:`finite_targets`.

    >>> finite_target(2)
    2.0
    >>> finite_target(None)
    Traceback (most recent call last):
    ...
    ValueError: label is None, expected a finite number
    """
    try:
        value = float(y)
    except (TypeError, ValueError):
        raise ValueError(f"{name} is {y!r}, expected a finite number") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} is {y!r}, expected a finite number")
    return value


def as_series(values: np.ndarray, X: Any) -> Any:
    """``values`` as a pandas Series on ``X``'s index when ``X`` is a frame (River's
    ``predict_many`` answers a frame with a Series), else as they are."""
    if not hasattr(X, "index"):
        return values
    import pandas as pd  # only when a frame came in, so pandas stays out of start-up

    return pd.Series(values, index=X.index)


class FeatureIndex:
    """The feature policy of a supervised learner's River face, and its dict fast path.

    It maps feature names to columns (``column``), and turns a feature dict into a dense
    row in a buffer it reuses for every dict (so the per-event path allocates no array),
    or a frame/matrix into a dense matrix; the intercept, when asked for, is a constant 1
    in a last column. The policy, the same for dict keys and DataFrame columns:

    - ``features`` declared (the engine's models, or ``features=[...]``): the columns are
      fixed; an absent key counts as 0, an unknown key is ignored with a warning once per
      key (never silently).
    - not declared (``features=None``): the model grows. :meth:`admit` returns the keys
      it has not seen, sorted by name (so a dict's key order never matters); the learner
      grows its state for them (new coefficients as if the feature had been 0 so far) and
      then calls :meth:`extend`. An absent key counts as 0, as in River.
    - ``strict=True``: any key set other than the model's features raises a ValueError
      (``"Owner(strict=True): features changed: new [...], missing [...]"``); the first
      dict or frame of an undeclared model still fixes them.

    Non-finite values (NaN, infinities, None, non-numbers) are refused with a ValueError
    naming the key before anything changes.

    >>> index = FeatureIndex("Model", intercept=True)
    >>> new = index.admit({"b": 1.0, "a": 2.0}, learning=True)
    >>> new
    ['a', 'b']
    >>> index.extend(new)
    >>> index.row({"b": 1.0, "a": 2.0}).tolist()
    [2.0, 1.0, 1.0]
    >>> index.row({"a": 3.0}).tolist()  # absent: 0
    [3.0, 0.0, 1.0]
    >>> index.admit({"a": 1.0, "c": 5.0}, learning=True)  # grow for c
    ['c']
    >>> index.matrix(np.array([[1.0, 2.0]])).tolist()
    [[1.0, 2.0, 1.0]]
    """

    def __init__(self, owner: str, features: list[str] | None = None, strict: bool = False, intercept: bool = False):
        self.owner = owner
        self.declared = features is not None
        self.strict = strict
        self.intercept = intercept
        self.names: list[str] = []
        self.column: dict[str, int] = {}
        self._warned: set[Any] = set()
        self.extend(list(features) if features is not None else [])

    def __len__(self) -> int:
        return len(self.names)

    @property
    def width(self) -> int:
        """Columns of a row: the features, plus 1 for the intercept."""
        return len(self.names) + (1 if self.intercept else 0)

    def extend(self, new: list[str]) -> None:
        """Append ``new`` features (after the learner has grown its state for them)."""
        self.names = self.names + [name for name in new if name not in self.column]
        self.column = {name: i for i, name in enumerate(self.names)}
        self._key_set = frozenset(self.names)
        self._build_fast_path()
        self._row = np.zeros(self.width)
        if self.intercept:
            self._row[-1] = 1.0

    def _build_fast_path(self) -> None:
        # one C call fetches every value of a dict, one packs them into the reused row
        self._getter = operator.itemgetter(*self.names) if len(self.names) > 1 else None
        self._packer = struct.Struct(f"={len(self.names)}d")

    def __getstate__(self) -> dict[str, Any]:
        """Pickles (River's checks pickle estimators) without the Struct, which cannot."""
        state = self.__dict__.copy()
        del state["_getter"], state["_packer"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._build_fast_path()

    def admit(self, keys: Iterable[Any], learning: bool) -> list[str]:
        """Apply the policy to the keys of one dict or the columns of one frame; return
        the features the model must grow for (empty unless ``learning`` an undeclared model)."""
        if isinstance(keys, dict):
            if keys.keys() == self._key_set:
                return []
        else:
            keys = list(keys)
            if set(keys) == self._key_set:
                return []
        if self.strict and (self.names or self.declared):
            refuse_feature_changes(self.owner, keys, self.names)
        if self.declared:
            warn_ignored_features(self.owner, keys, self.names, self._warned)
            return []
        if not learning:
            return []  # an unseen key's coefficient is still 0: ignoring it is exact
        new, _ = feature_changes(keys, self.names)
        return new  # River keys may be any hashable; kept as given (checkpoints store them as strings)

    def learn_row(self, x: dict[str, Any], grow: Callable[[list[str]], None]) -> np.ndarray:
        """The row of a dict about to be learned: the policy applied, ``grow(new)`` called
        for keys the model must grow for (after the values were checked; ``grow`` ends
        with :meth:`extend`), then :meth:`row`."""
        row = self.exact_row(x)
        if row is not None:
            return row
        new = self.admit(x, learning=True)
        if new:
            check_feature_dict(x)  # refuse non-finite values before the model grows
            grow(new)
        return self.row(x)

    def learn_matrix(self, X: Any, y: Any, grow: Callable[[list[str]], None]) -> tuple[np.ndarray, np.ndarray]:
        """A batch about to be learned: ``(rows, targets)`` with the finite targets checked
        against the rows, a frame's new columns grown for (``grow``, after its values were
        checked) as :meth:`learn_row` does for a dict."""
        targets = finite_targets(y)
        if hasattr(X, "columns"):
            new = self.admit(X.columns, learning=True)
            if new:
                as_matrix(X, None)  # refuse non-finite values before the model grows
                grow(new)
        rows = self.matrix(X)
        if targets.shape[0] != rows.shape[0]:
            raise ValueError(f"{rows.shape[0]} rows but {targets.shape[0]} targets")
        return rows, targets

    def predict_matrix(self, X: Any) -> np.ndarray:
        """A batch to predict: a frame's columns through the policy, then :meth:`matrix`."""
        if hasattr(X, "columns"):
            self.admit(X.columns, learning=False)
        return self.matrix(X)

    def predict_row(self, x: dict[str, Any]) -> np.ndarray:
        """The row of a dict to predict: the policy applied (strict raises, declared warns), then :meth:`row`."""
        row = self.exact_row(x)
        if row is not None:
            return row
        self.admit(x, learning=False)
        return self.row(x)

    def exact_row(self, x: dict[str, Any]) -> np.ndarray | None:
        """``x`` as a dense row in the reused buffer when its keys are exactly the
        features (the per-event fast path: no policy to apply), else None. Refuses
        non-finite values."""
        names = self.names
        if len(x) != len(names) or not names:
            return None
        try:
            values = self._getter(x) if self._getter is not None else (x[names[0]],)
        except KeyError:
            return None
        return self._pack(values)

    def row(self, x: dict[str, Any]) -> np.ndarray:
        """``x`` as a dense row (absent keys 0, unknown ones left out), in the reused
        buffer: valid until the next call. Refuses non-finite values."""
        exact = self.exact_row(x)
        if exact is not None:
            return exact
        get = x.get
        return self._pack(tuple(get(name, 0.0) for name in self.names))

    def _pack(self, values: tuple[Any, ...]) -> np.ndarray:
        try:
            # numpy's stubs (Python < 3.12) do not declare ndarray a Buffer; it is one
            self._packer.pack_into(self._row, 0, *values)  # type: ignore[arg-type]
            finite = math.isfinite(sum(values))
        except (struct.error, TypeError):  # None or a non-number
            finite = False
        if not finite:  # raises unless only the sum overflowed
            check_feature_dict(dict(zip(self.names, values, strict=True)))
            self._row[: len(values)] = values
        return self._row

    def matrix(self, X: Any) -> np.ndarray:
        """A frame (reindexed: absent columns 0, unknown ones left out) or an array as a
        finite float64 matrix in column order, with the intercept column."""
        if hasattr(X, "columns"):
            X = X.reindex(columns=self.names, fill_value=0.0)
        rows = as_matrix(X, self.names)
        if rows.shape[1] != len(self.names):
            if not self.names and not self.declared:
                raise ValueError(f"{self.owner}: features are unknown: pass features= or learn a dict or a DataFrame first")
            raise ValueError(f"{self.owner}: expected {len(self.names)} features, got {rows.shape[1]}")
        if self.intercept:
            rows = np.hstack([rows, np.ones((rows.shape[0], 1))])
        return rows


# -- results -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Observed:
    """What a supervised run returned: the prediction made for each row before it was
    learned (prequential) and, for regressors, the per-row loss the learner's guarantee
    is about (squared error unless the learner reports its own); None for classifiers.

    >>> Observed(np.array([0.5]), np.array([0.25])).losses
    array([0.25])
    """

    predictions: np.ndarray
    losses: np.ndarray | None


@dataclass(frozen=True, slots=True)
class Decision:
    """A bandit's choice: the action index, the probability of every offered action,
    the reward model's predictions when the policy has one (for doubly-robust
    off-policy estimates) and an opaque ``ticket`` the policy wants back in ``learn``
    (-1 when it needs none).

    >>> d = Decision(1, np.array([0.25, 0.75]))
    >>> d.action, float(d.probabilities[d.action]), d.predicted_rewards, d.ticket
    (1, 0.75, None, -1)
    """

    action: int
    probabilities: np.ndarray
    predicted_rewards: np.ndarray | None = None
    ticket: int = -1


@dataclass(frozen=True, slots=True)
class PanelDecision:
    """A fair policy's answer for a panel of applicants: 0/1 (int64) per applicant and
    the probability (float64) with which each was accepted.

    >>> PanelDecision(np.array([1, 0]), np.array([0.9, 0.2])).decisions.tolist()
    [1, 0]
    """

    decisions: np.ndarray
    probabilities: np.ndarray


# -- roles ---------------------------------------------------------------------------------
@runtime_checkable
class Learner(Protocol):
    """What every role has: its task, model version, state and gauges.

    >>> from regretflow.learners import LEARNERS
    >>> all(issubclass(cls, Monitored) for cls in LEARNERS.values())  # the gauge defaults
    True
    """

    task: ClassVar[str]
    GAUGES: ClassVar[dict[str, str]]
    GROUP_GAUGES: ClassVar[dict[str, str]]
    n_updates: int

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def gauges(self) -> dict[str, float]: ...

    def group_gauges(self) -> dict[str, np.ndarray]: ...


@runtime_checkable
class SupervisedEstimator(Learner, Protocol):
    """A regressor or classifier (``task`` "regression" or "classification").

    >>> from regretflow.learners import OnlineRidge
    >>> isinstance(OnlineRidge(features=["a"]), SupervisedEstimator)
    True
    """

    def observe(self, X: Any, y: Any, groups: np.ndarray | None = None) -> Observed: ...

    def observe_many(self, X: Any, y: Any, groups: np.ndarray | None = None) -> np.ndarray: ...

    def predict_many(self, X: Any, groups: np.ndarray | None = None) -> Any: ...

    def learn_many(self, X: Any, y: Any, groups: np.ndarray | None = None) -> None: ...

    def learn_one(self, x: dict[str, Any], y: Any) -> None: ...

    def predict_one(self, x: dict[str, Any]) -> Any: ...


@runtime_checkable
class BanditPolicy(Learner, Protocol):
    """A contextual (or context-free) bandit policy (``task`` "bandit").

    >>> from regretflow.learners import Exp3, OnlineRidge
    >>> isinstance(Exp3(2, horizon=10), BanditPolicy), isinstance(OnlineRidge(), BanditPolicy)
    (True, False)
    """

    def decide(self, context: Any, actions: Any = None) -> Decision: ...

    def learn(
        self, context: Any, action: int, reward: float, probability: float | None = None, actions: Any = None, ticket: int = -1
    ) -> None: ...

    def act(self, context: Any, actions: Any = None) -> tuple[int, np.ndarray]: ...

    def describe_action(self, action: int) -> list[float] | None: ...


@runtime_checkable
class FairPolicy(Learner, Protocol):
    """A fair accept/reject policy over panels of applicants (``task`` "fair").

    >>> from regretflow.learners import FairExp2
    >>> isinstance(FairExp2(n_features=2), FairPolicy)
    True
    """

    def decide_panel(self, actions: Any) -> PanelDecision: ...

    def learn_panel(self, decisions: Any, labels: Any, probabilities: Any, actions: Any) -> None: ...

    def audit(self, actions: Any, decisions: Any, probabilities: Any, violations: Any, panel_size: int | None = None) -> int: ...


ROLES: dict[str, type] = {
    "regression": SupervisedEstimator,
    "classification": SupervisedEstimator,
    "bandit": BanditPolicy,
    "fair": FairPolicy,
}


# -- defaults ----------------------------------------------------------------------------
class Monitored:
    """No gauges: the default of every role (a class declaring ``GAUGES`` overrides both).

    >>> Monitored().gauges(), Monitored.GROUP_GAUGES
    ({}, {})
    """

    GAUGES: ClassVar[dict[str, str]] = {}
    GROUP_GAUGES: ClassVar[dict[str, str]] = {}
    # whether a model of this learner must declare its feature names in the config
    # (a bandit's decide may carry per-action rows instead)
    requires_features: ClassVar[bool] = True

    def gauges(self) -> dict[str, float]:
        return {}

    def group_gauges(self) -> dict[str, np.ndarray]:
        return {}


class SupervisedDefaults(Monitored):
    """``observe`` built on the learner's ``observe_many``: the predictions, and for a
    regressor the squared error of each (a learner whose guarantee is about another
    loss overrides ``observe``).

    >>> from regretflow.learners import OnlineRidge
    >>> OnlineRidge(features=["a"]).observe(np.array([[1.0]]), np.array([2.0])).losses
    array([4.])
    """

    task: ClassVar[str]

    def observe(self, X: Any, y: Any, groups: np.ndarray | None = None) -> Observed:
        """Predict each row, then learn it (prequential); see :class:`Observed`."""
        predictions = cast(SupervisedEstimator, self).observe_many(X, y, groups)
        if self.task != "regression":
            return Observed(predictions, None)
        return Observed(predictions, (np.asarray(predictions, dtype=np.float64) - finite_targets(y)) ** 2)


class BanditDefaults(Monitored):
    """``act`` as a shorthand for ``decide``, and no action description.

    >>> from regretflow.learners import Exp3
    >>> action, probabilities = Exp3(2, horizon=10).act()
    >>> probabilities.tolist()
    [0.5, 0.5]
    """

    requires_features: ClassVar[bool] = False

    def act(self, context: Any = None, actions: Any = None) -> tuple[int, np.ndarray]:
        """``decide``'s action and probability vector."""
        decision = cast(BanditPolicy, self).decide(context, actions)
        return decision.action, decision.probabilities

    def describe_action(self, action: int) -> list[float] | None:
        """The action as numbers for the answer record; None: the index says it all."""
        return None


class FairDefaults(Monitored):
    """The fair role's defaults: only the gauges (every fair policy decides, learns and audits its own way).

    >>> from regretflow.learners import OneSidedExp2
    >>> issubclass(OneSidedExp2, FairDefaults)
    True
    """
