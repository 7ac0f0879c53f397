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

from typing import Any

import numpy as np

STATE_SCALARS = (str, int, float, bool, type(None))


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
    """A River feature dict as a dense row in ``features`` order (absent keys are 0)."""
    get = x.get
    return np.fromiter((get(name, 0.0) for name in features), dtype=np.float64, count=len(features))


def as_matrix(X: Any, features: list[str] | None) -> np.ndarray:
    """A 2-D float64 C-contiguous matrix from an array or a pandas DataFrame."""
    if hasattr(X, "columns"):  # pandas, as River's *_many pass it
        X = X[features].to_numpy() if features is not None else X.to_numpy()
    return np.ascontiguousarray(X, dtype=np.float64).reshape(len(X), -1)
