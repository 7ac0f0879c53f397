"""The learner contract: what every regretflow learner offers the engine.

Three roles, told apart by the class attribute ``task``:

``"regression"`` / ``"classification"``
    River estimators (``learn_one``/``predict_one`` on dicts) plus the engine's
    vectorised path on dense float64 arrays in the model's declared feature order:

    - ``observe_many(X, y, groups) -> predictions``: prequential. Row ``i`` is
      predicted with the state left by rows ``< i``, then learned. ``groups`` is a
      boolean matrix (rows x declared groups) that group-aware learners use and the
      others ignore.
    - ``predict_many(X) -> predictions`` (no state change) and ``learn_many(X, y)``.

``"bandit"``
    ``act(context) -> (action, probabilities)`` and
    ``learn(context, action, reward, probability)``, plus ``act_many``/``learn_many``.

Every learner also has ``state_dict()`` / ``load_state_dict(state)``: a flat dict whose
values are numpy arrays or JSON scalars (str, int, float, bool, None), the RNG state
included, and ``n_updates`` (the model version the engine reports). Same events,
same order, same seed: same state, bit for bit.

Monitoring: a class may declare ``GAUGES = {"name": "help text"}`` and
``GROUP_GAUGES = {"name": "help text"}`` and implement ``gauges() -> dict[str, float]``
and ``group_gauges() -> dict[str, np.ndarray]`` (one value per declared group, in
the order of the ``groups`` columns). The engine registers them at start as
``regretflow_learner_<name>{model}`` and ``regretflow_learner_<name>{model,group}``
and reads them once per micro-batch. A learner never imports Prometheus.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import re
import warnings
from typing import Any, Iterable

import numpy as np

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
    except TypeError:
        row = None
    if row is None or not np.isfinite(row).all():
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


def refuses_nonfinite(method=None, *, also: tuple[str, ...] = ()):
    """Decorate a bandit's ``act``/``learn``: its contexts, rewards and
    probabilities (and the arguments named in ``also``) are checked with
    :func:`refuse_nonfinite_input` before the call, so a refused call changes nothing.
    Use it bare (``@refuses_nonfinite``) or as ``@refuses_nonfinite(also=("actions",))``."""
    if method is None:
        return functools.partial(refuses_nonfinite, also=also)
    names = list(inspect.signature(method).parameters)
    checked = [(name, names.index(name), name not in _REQUIRED_ARGUMENTS) for name in names
               if name in _CHECKED_ARGUMENTS or name in also]

    @functools.wraps(method)
    def guarded(*args, **kwargs):
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

    return guarded


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
        warnings.warn(f"{owner} ignores features it was not built with: {unwarned} "
                      "(declare every feature in features=)", stacklevel=3)
