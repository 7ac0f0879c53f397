"""The TOML configuration, validated at start with errors that name the key.

Every key, its default and its meaning is listed in the README's config reference;
``regretflow run --config FILE`` reads it with :func:`load_config`.

>>> cfg = parse_config({"models": {"m": {"learner": "ridge", "features": ["a", "b"]}}})
>>> cfg.models["m"].learner, cfg.runtime.batch_size
('ridge', 512)
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config key is missing, unknown, or has a value of the wrong kind."""


@dataclass(frozen=True)
class GroupSpec:
    """One declared grouping: a categorical field with its values, or a numeric field with bin edges."""

    name: str
    field: str
    values: tuple[str, ...] = ()
    edges: tuple[float, ...] = ()

    @property
    def labels(self) -> list[str]:
        if self.values:
            return [f"{self.name}={v}" for v in self.values]
        return [f"{self.name}=[{_num(lo)},{_num(hi)})" for lo, hi in zip(self.edges[:-1], self.edges[1:])]


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


@dataclass(frozen=True)
class JoinSpec:
    ttl_events: int = 100_000
    ttl_seconds: float | None = None
    max_pending: int = 100_000
    default_reward: float | None = None


@dataclass(frozen=True)
class RegretSpec:
    comparator_lambda: float = 0.0
    lag: int = 0
    pinv_cutoff: float = 1e-10


@dataclass(frozen=True)
class ModelSpec:
    name: str
    learner: str
    features: tuple[str, ...]
    params: dict[str, Any]
    groups: tuple[GroupSpec, ...]
    joins: JoinSpec
    regret: RegretSpec
    n_actions: int | None = None
    # shards one model may hold with params.shard_by_key (one per key); past it: too_many_keys
    max_shards: int = 10_000

    @property
    def group_labels(self) -> list[str]:
        """Declared group labels, in the column order the learners see."""
        return [label for g in self.groups for label in g.labels]


@dataclass(frozen=True)
class EndpointSpec:
    type: str
    options: dict[str, Any]


@dataclass(frozen=True)
class RuntimeSpec:
    batch_size: int = 512
    batch_timeout_ms: float = 50.0
    max_event_bytes: int = 65_536
    # |value| bound on features, labels and rewards; past it: out_of_range (sums of squares stay finite)
    max_abs_value: float = 1e12
    stop_at_end: bool = True
    idle_exit_seconds: float = 0.0


@dataclass(frozen=True)
class CheckpointSpec:
    dir: str | None = None
    every_events: int = 50_000
    every_seconds: float = 30.0
    keep: int = 2


@dataclass(frozen=True)
class MetricsSpec:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 9108
    refresh_seconds: float = 1.0
    log_path: str | None = None
    log_every_seconds: float = 5.0


@dataclass(frozen=True)
class Config:
    models: dict[str, ModelSpec]
    source: EndpointSpec = EndpointSpec("stdin", {})
    answers: EndpointSpec = EndpointSpec("stdout", {})
    dead_letters: EndpointSpec = EndpointSpec("stderr", {})
    runtime: RuntimeSpec = field(default_factory=RuntimeSpec)
    checkpoint: CheckpointSpec = field(default_factory=CheckpointSpec)
    metrics: MetricsSpec = field(default_factory=MetricsSpec)
    base_dir: str = "."

    def resolve(self, path: str) -> Path:
        """A path from the config: relative ones are relative to the config file."""
        p = Path(path)
        return p if p.is_absolute() else Path(self.base_dir) / p


ENDPOINT_TYPES = {
    "source": {"jsonl", "stdin", "kafka", "memory", "simulator"},
    "answers": {"jsonl", "stdout", "kafka", "null", "memory"},
    "dead_letters": {"jsonl", "stderr", "kafka", "null", "memory"},
}


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config; relative paths in it are relative to the file."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(raw, base_dir=str(path.parent.resolve()))


def parse_config(raw: dict[str, Any], base_dir: str = ".") -> Config:
    """Validate a config already parsed from TOML (or built in code)."""
    _only(raw, "", {"models", "source", "answers", "dead_letters", "runtime", "checkpoint", "metrics"})
    models_raw = raw.get("models")
    if not isinstance(models_raw, dict) or not models_raw:
        raise ConfigError("models: at least one [models.NAME] table is required")
    models = {name: _model(name, spec) for name, spec in models_raw.items()}
    return Config(
        models=models,
        source=_endpoint(raw.get("source", {"type": "stdin"}), "source"),
        answers=_endpoint(raw.get("answers", {"type": "stdout"}), "answers"),
        dead_letters=_endpoint(raw.get("dead_letters", {"type": "stderr"}), "dead_letters"),
        runtime=_dataclass(RuntimeSpec, raw.get("runtime", {}), "runtime"),
        checkpoint=_dataclass(CheckpointSpec, raw.get("checkpoint", {}), "checkpoint"),
        metrics=_dataclass(MetricsSpec, raw.get("metrics", {}), "metrics"),
        base_dir=base_dir,
    )


def _only(table: Any, where: str, allowed: set[str]) -> None:
    if not isinstance(table, dict):
        raise ConfigError(f"{where or 'config'}: expected a table, got {type(table).__name__}")
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{where + '.' if where else ''}{key}: unknown key; expected one of {', '.join(sorted(allowed))}")


def _dataclass(cls, table: dict[str, Any], where: str):
    fields = cls.__dataclass_fields__
    _only(table, where, set(fields))
    kwargs = {}
    for key, value in table.items():
        default = fields[key].default
        kwargs[key] = _typed(value, default, f"{where}.{key}")
    return cls(**kwargs)


def _typed(value: Any, default: Any, where: str) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        floor = 0 if where.endswith(".port") else 1  # port 0: let the OS pick
        if isinstance(value, bool) or not isinstance(value, int) or value < floor:
            raise ConfigError(f"{where}: expected an integer >= {floor}, got {value!r}")
        return value
    if isinstance(default, float) or (default is None and isinstance(value, (int, float)) and not isinstance(value, bool)):
        signed = where.endswith(".default_reward")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (value < 0 and not signed):
            raise ConfigError(f"{where}: expected a {'' if signed else 'non-negative '}number, got {value!r}")
        return float(value)
    if isinstance(default, str) or default is None:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _endpoint(table: Any, where: str) -> EndpointSpec:
    if not isinstance(table, dict) or "type" not in table:
        raise ConfigError(f"{where}.type: required; one of {', '.join(sorted(ENDPOINT_TYPES[where]))}")
    kind = table["type"]
    if kind not in ENDPOINT_TYPES[where]:
        raise ConfigError(f"{where}.type: {kind!r} is not one of {', '.join(sorted(ENDPOINT_TYPES[where]))}")
    if kind == "jsonl" and not isinstance(table.get("path"), str):
        raise ConfigError(f"{where}.path: required (a string) for type = \"jsonl\"")
    return EndpointSpec(kind, {k: v for k, v in table.items() if k != "type"})


def _model(name: str, spec: Any) -> ModelSpec:
    where = f"models.{name}"
    _only(spec, where, {"learner", "features", "params", "groups", "joins", "regret", "n_actions", "max_shards"})
    from regretflow.learners import LEARNERS

    learner = spec.get("learner")
    if learner not in LEARNERS:
        raise ConfigError(f"{where}.learner: {learner!r} is not one of {', '.join(sorted(LEARNERS))}")
    features = spec.get("features", [])
    if not isinstance(features, list) or not all(isinstance(f, str) and f for f in features):
        raise ConfigError(f"{where}.features: expected a list of feature names")
    if len(set(features)) != len(features):
        raise ConfigError(f"{where}.features: names must be unique")
    task = getattr(LEARNERS[learner], "task", "regression")
    if task != "bandit" and not features:
        raise ConfigError(f"{where}.features: required for a {task} learner")
    params = spec.get("params", {})
    if not isinstance(params, dict):
        raise ConfigError(f"{where}.params: expected a table of learner parameters")
    groups_raw = spec.get("groups", [])
    if not isinstance(groups_raw, list):
        raise ConfigError(f"{where}.groups: expected an array of tables ([[{where}.groups]])")
    groups = tuple(_group(g, f"{where}.groups[{i}]") for i, g in enumerate(groups_raw))
    names = [g.name for g in groups]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}.groups: group names must be unique")
    n_actions = spec.get("n_actions")
    if n_actions is not None and (isinstance(n_actions, bool) or not isinstance(n_actions, int) or n_actions < 1):
        raise ConfigError(f"{where}.n_actions: expected a positive integer")
    max_shards = spec.get("max_shards", ModelSpec.max_shards)
    if isinstance(max_shards, bool) or not isinstance(max_shards, int) or max_shards < 1:
        raise ConfigError(f"{where}.max_shards: expected a positive integer, got {max_shards!r}")
    return ModelSpec(
        name=name,
        learner=learner,
        features=tuple(features),
        params=dict(params),
        groups=groups,
        joins=_dataclass(JoinSpec, spec.get("joins", {}), f"{where}.joins"),
        regret=_regret(spec.get("regret", {}), f"{where}.regret"),
        n_actions=n_actions,
        max_shards=max_shards,
    )


def _regret(table: Any, where: str) -> RegretSpec:
    _only(table, where, {"comparator_lambda", "lag", "pinv_cutoff"})
    lag = table.get("lag", 0)
    if lag not in (0, 1) or isinstance(lag, bool):
        raise ConfigError(f"{where}.lag: expected 0 (product) or 1 (paper reproduction), got {lag!r}")
    lam = table.get("comparator_lambda", 0.0)
    cutoff = table.get("pinv_cutoff", 1e-10)
    for key, value in (("comparator_lambda", lam), ("pinv_cutoff", cutoff)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{where}.{key}: expected a non-negative number, got {value!r}")
    return RegretSpec(float(lam), int(lag), float(cutoff))


def _group(table: Any, where: str) -> GroupSpec:
    _only(table, where, {"name", "field", "values", "edges"})
    field_name = table.get("field")
    if not isinstance(field_name, str) or not field_name:
        raise ConfigError(f"{where}.field: required, the event attribute or feature the group is read from")
    name = table.get("name", field_name)
    values = table.get("values")
    edges = table.get("edges")
    if (values is None) == (edges is None):
        raise ConfigError(f"{where}: give exactly one of values (categorical) or edges (numeric bins)")
    if values is not None:
        if not isinstance(values, list) or not values or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values):
            raise ConfigError(f"{where}.values: expected a non-empty list of strings or integers")
        return GroupSpec(name, field_name, values=tuple(str(v) for v in values))
    if (
        not isinstance(edges, list)
        or len(edges) < 2
        or not all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in edges)
        or any(b <= a for a, b in zip(edges[:-1], edges[1:]))
    ):
        raise ConfigError(f"{where}.edges: expected at least two strictly increasing numbers")
    return GroupSpec(name, field_name, edges=tuple(float(e) for e in edges))
