"""Building a model's learner from its config entry: the engine's shards, the config's
validation (every learner is built once at load) and the simulator monitors all build
it here, so they get the same class, params and seed.

>>> from regretflow.engine.config import ModelSpec
>>> learner = build_learner(ModelSpec(name="m", learner="ridge", features=["a", "b"], params={"shard_by_key": True}))
>>> type(learner).__name__
'OnlineRidge'
>>> shard_seed(7, ""), shard_seed(7, "campaign-1") == shard_seed(7, "campaign-1")
(7, True)
"""

from __future__ import annotations

import hashlib
import inspect
from typing import TYPE_CHECKING, Any

from regretflow.learners import LEARNERS

if TYPE_CHECKING:
    from regretflow.engine.config import ModelSpec

# params the engine reads itself; the learner never sees them
ENGINE_PARAMS = ("shard_by_key",)


def build_learner(spec: ModelSpec, key: str = "") -> Any:
    """Instantiate the model's learner from its family and params (seed derived per shard)."""
    cls = LEARNERS[spec.learner]
    params = {k: v for k, v in spec.params.items() if k not in ENGINE_PARAMS}
    accepted = inspect.signature(cls).parameters
    if "features" in accepted and "features" not in params and spec.features:
        params["features"] = list(spec.features)
    if "groups" in accepted and "groups" not in params and spec.groups:
        params["groups"] = spec.group_labels
    if "n_actions" in accepted and "n_actions" not in params and spec.n_actions:
        params["n_actions"] = spec.n_actions
    if "seed" in accepted:
        params["seed"] = shard_seed(int(params.get("seed", 0)), key)
    unknown = [k for k in params if k not in accepted and not any(p.kind == p.VAR_KEYWORD for p in accepted.values())]
    if unknown:
        raise ValueError(f"models.{spec.name}.params: {cls.__name__} takes no parameter {', '.join(unknown)}")
    return cls(**params)


def shard_seed(seed: int, key: str) -> int:
    """A stable per-key seed (not Python's salted hash), so restarts rebuild the same RNG."""
    if not key:
        return seed
    return (seed + int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")) % (2**31)
