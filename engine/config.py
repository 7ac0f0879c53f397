"""The TOML configuration, validated whole at start with one message per problem.

Every key, its default and its meaning is listed in docs/configuration.md;
``regretflow run --config FILE`` reads it with :func:`load_config`, which checks the
schema, the endpoints' options and every model's learner (built once with its params);
:func:`check_host` then checks what only the host can answer (the metrics port can be
bound, the files and directories can be read or written), before the source is opened.

The schema is written with pydantic (v2) dataclasses. pydantic rather than msgspec:
pydantic collects every error of a document in one pass, each with its location (msgspec
stops at the first one), takes strict per-field types (``"512"`` is not an integer,
``1`` is not ``true``) with their bounds declared beside the field, and its dataclasses
stay dataclasses, so the specs keep their attribute access and ``dataclasses.replace``.

>>> cfg = parse_config({"models": {"m": {"learner": "ridge", "features": ["a", "b"]}}})
>>> cfg.models["m"].learner, cfg.runtime.batch_size
('ridge', 512)
>>> try:
...     parse_config({"models": {"m": {"learner": "ridge", "features": ["a"], "params": {"lamda": 1.0}}},
...                   "runtime": {"batch_size": 0}})
... except ConfigError as exc:
...     print(*exc.problems, sep="\\n")
models.m.params.lamda: unknown parameter; did you mean 'lam'?
runtime.batch_size: expected an integer >= 1, got 0
"""

from __future__ import annotations

import difflib
import errno
import inspect
import os
import socket
import tempfile
import tomllib
import typing
from dataclasses import field as dc_field
from dataclasses import fields as dc_fields
from dataclasses import is_dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, Strict, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass
from pydantic_core import ErrorDetails

from regretflow.connectors.kafka import SINK_OPTIONS, SOURCE_OPTIONS, kafka_settings

# A payload this large is not one event; 16 MiB already exceeds every broker's default message size.
MAX_EVENT_BYTES_LIMIT = 16 * 1024 * 1024
# Regret sums hold squares of features, labels and rewards: 1e150² is still a finite double.
MAX_ABS_VALUE_LIMIT = 1e150


class ConfigError(ValueError):
    """One or more config keys are missing, unknown, of the wrong kind, or unusable on this host.

    ``problems`` holds one message per problem, each starting with the key it is about;
    ``str(exc)`` is those messages, one per line.
    """

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class _KeyProblem(ValueError):
    """Raised inside a validator about one key of the table being validated."""

    def __init__(self, key: str, message: str):
        self.key, self.message = key, message
        super().__init__(f"{key}: {message}")


# -- field types: strict scalars (TOML gives the right type or the config is wrong) --------------
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]
_SPEC = ConfigDict(extra="forbid")


def _non_empty(value: str) -> str:
    if not value:
        raise ValueError("expected a non-empty string")
    return value


def _category(value: Any) -> str:
    # group values: strings, or integers written without quotes; bools are neither
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"expected a string or an integer, got {value!r}")
    return str(value)


Name = Annotated[Str, AfterValidator(_non_empty)]


@dataclass(frozen=True, config=_SPEC)
class GroupSpec:
    """One declared grouping: a categorical field with its values, or a numeric field with bin edges.

    >>> GroupSpec("age", "age", edges=(18, 36, 65)).labels
    ['age=[18,36)', 'age=[36,65)']
    """

    name: Name
    field: Name
    values: tuple[Annotated[str, BeforeValidator(_category)], ...] = ()
    edges: tuple[Float, ...] = ()

    def __post_init__(self) -> None:
        if bool(self.values) == bool(self.edges):
            raise ValueError("give exactly one of values (categorical) or edges (numeric bins)")
        if self.edges and (len(self.edges) < 2 or any(b <= a for a, b in zip(self.edges[:-1], self.edges[1:]))):
            raise _KeyProblem("edges", "expected at least two strictly increasing numbers")

    @property
    def labels(self) -> list[str]:
        if self.values:
            return [f"{self.name}={v}" for v in self.values]
        return [f"{self.name}=[{_num(lo)},{_num(hi)})" for lo, hi in zip(self.edges[:-1], self.edges[1:])]


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


@dataclass(frozen=True, config=_SPEC)
class JoinSpec:
    """Join windows of a model's predicts and decides (docs/configuration.md: models.NAME.joins)."""

    ttl_events: Annotated[Int, Field(ge=1)] = 100_000
    ttl_seconds: Annotated[Float, Field(ge=0)] | None = None
    max_pending: Annotated[Int, Field(ge=1)] = 100_000
    default_reward: Float | None = None


@dataclass(frozen=True, config=_SPEC)
class RegretSpec:
    """How a supervised model's hindsight comparator is fitted (docs/configuration.md: models.NAME.regret)."""

    comparator_lambda: Annotated[Float, Field(ge=0)] = 0.0
    # 0: the product's definition; 1: the comparator leaves out the last row (the groupwise paper's tables)
    lag: Literal[0, 1] = 0
    pinv_cutoff: Annotated[Float, Field(ge=0)] = 1e-10


@dataclass(frozen=True, config=_SPEC)
class ModelSpec:
    """One declared model: its learner family and params, features, groups, joins and regret settings."""

    name: Str
    learner: Str
    features: tuple[Name, ...] = ()
    params: dict[str, Any] = dc_field(default_factory=dict)
    groups: tuple[GroupSpec, ...] = ()
    joins: JoinSpec = dc_field(default_factory=JoinSpec)
    regret: RegretSpec = dc_field(default_factory=RegretSpec)
    n_actions: Annotated[Int, Field(ge=1)] | None = None
    # shards one model may hold with params.shard_by_key (one per key); past it: too_many_keys
    max_shards: Annotated[Int, Field(ge=1)] = 10_000

    def __post_init__(self) -> None:
        # the learners compile numba kernels on import: `regretflow --help` and `schema` start without them
        from regretflow.learners import LEARNERS

        if self.learner not in LEARNERS:
            close = difflib.get_close_matches(str(self.learner), list(LEARNERS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise _KeyProblem("learner", f"{self.learner!r} is not one of {', '.join(sorted(LEARNERS))}{hint}")
        if len(set(self.features)) != len(self.features):
            raise _KeyProblem("features", "names must be unique")
        learner_cls: Any = LEARNERS[self.learner]
        if learner_cls.requires_features and not self.features:
            raise _KeyProblem("features", f"required for a {learner_cls.task} learner")
        names = [g.name for g in self.groups]
        if len(set(names)) != len(names):
            raise _KeyProblem("groups", "group names must be unique")

    @property
    def group_labels(self) -> list[str]:
        """Declared group labels, in the column order the learners see."""
        return [label for g in self.groups for label in g.labels]


@dataclass(frozen=True, config=_SPEC)
class EndpointSpec:
    """A source or sink: its ``type`` and the other keys of its table."""

    type: Str
    options: dict[str, Any] = dc_field(default_factory=dict)


@dataclass(frozen=True, config=_SPEC)
class RuntimeSpec:
    """Micro-batching and input bounds (docs/configuration.md: runtime)."""

    batch_size: Annotated[Int, Field(ge=1, le=1_000_000)] = 512
    batch_timeout_ms: Annotated[Float, Field(ge=0)] = 50.0
    max_event_bytes: Annotated[Int, Field(ge=1, le=MAX_EVENT_BYTES_LIMIT)] = 65_536
    # |value| bound on features, labels and rewards; past it: out_of_range (sums of squares stay finite)
    max_abs_value: Annotated[Float, Field(gt=0, le=MAX_ABS_VALUE_LIMIT)] = 1e12
    stop_at_end: Bool = True
    # mode of the files regretflow creates (checkpoints, answers, dead letters, metrics log); directories get r -> rx
    file_mode: Annotated[Int, Field(ge=0o600, le=0o777)] = 0o600
    idle_exit_seconds: Annotated[Float, Field(ge=0)] = 0.0
    # answers as one JSON record per event, or as Arrow messages (one per model and kind a micro-batch answers)
    answer_format: Literal["json", "arrow"] = "json"


@dataclass(frozen=True, config=_SPEC)
class CheckpointSpec:
    """Where and how often checkpoints are written (docs/configuration.md: checkpoint)."""

    dir: Name | None = None
    every_events: Annotated[Int, Field(ge=1)] = 50_000
    every_seconds: Annotated[Float, Field(ge=0)] = 30.0
    keep: Annotated[Int, Field(ge=1)] = 2


@dataclass(frozen=True, config=_SPEC)
class MetricsSpec:
    """The metrics server and the metrics log (docs/configuration.md: metrics)."""

    enabled: Bool = True
    host: Name = "127.0.0.1"
    port: Annotated[Int, Field(ge=0, le=65535)] = 9108  # 0: the OS picks a free port
    refresh_seconds: Annotated[Float, Field(ge=0)] = 1.0
    log_path: Name | None = None
    log_every_seconds: Annotated[Float, Field(ge=0)] = 5.0


@dataclass(frozen=True, config=_SPEC)
class Config:
    """A whole, validated config; build it with :func:`load_config` or :func:`parse_config`."""

    models: dict[str, ModelSpec]
    source: EndpointSpec = dc_field(default_factory=lambda: EndpointSpec("stdin", {}))
    answers: EndpointSpec = dc_field(default_factory=lambda: EndpointSpec("stdout", {}))
    dead_letters: EndpointSpec = dc_field(default_factory=lambda: EndpointSpec("stderr", {}))
    runtime: RuntimeSpec = dc_field(default_factory=RuntimeSpec)
    checkpoint: CheckpointSpec = dc_field(default_factory=CheckpointSpec)
    metrics: MetricsSpec = dc_field(default_factory=MetricsSpec)
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
# the options each endpoint type takes (kafka: connectors/kafka.py; simulator: its environment's)
ENDPOINT_OPTIONS = {
    ("source", "jsonl"): {"path", "follow"},
    ("source", "stdin"): set(),
    ("sink", "jsonl"): {"path", "fsync"},
    ("sink", "stdout"): set(),
    ("sink", "stderr"): set(),
}
LEARNER_KEYS = ("name", "learner", "features", "params", "groups", "n_actions")  # what build_learner reads from a ModelSpec
SECTIONS = ("models", "source", "answers", "dead_letters", "runtime", "checkpoint", "metrics")
_ADAPTERS: dict[type, TypeAdapter[Any]] = {}
_Spec = TypeVar("_Spec")


def _validated(cls: type[_Spec], table: Any, loc: list[Any], problems: list[str]) -> _Spec | None:
    """``table`` as a ``cls`` instance, or None with its problems appended (each named by its key under ``loc``)."""
    if not isinstance(table, dict):
        problems.append(f"{_key(loc)}: expected a table, got {table!r}")
        return None
    adapter = _ADAPTERS.setdefault(cls, TypeAdapter(cls))
    try:
        spec: _Spec = adapter.validate_python(table)
        return spec
    except ValidationError as exc:
        problems += [_describe(err, cls, loc) for err in exc.errors()]
        return None


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config; relative paths in it are relative to the file."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory") from None
    except PermissionError:
        raise ConfigError(f"config file {path} is not readable") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(raw, base_dir=str(path.parent.resolve()))


def parse_config(raw: dict[str, Any], base_dir: str = ".") -> Config:
    """Validate a config already parsed from TOML (or built in code).

    Every problem is collected (the schema, the endpoint options, each model's learner
    built with its params) and raised together as one :class:`ConfigError`.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a table, got {type(raw).__name__}")
    problems = [f"{key}: {_unknown(key, SECTIONS)}" for key in raw if key not in SECTIONS]
    # each part is validated on its own, so that a problem in one leaves the others checked
    models: dict[str, ModelSpec] = {}
    models_raw = raw.get("models")
    if not isinstance(models_raw, dict) or not models_raw:
        problems.append("models: at least one [models.NAME] table is required")
    else:
        for name, table in models_raw.items():
            model = _model(name, table, problems)
            if model is not None:
                models[name] = model
    parts: dict[str, Any] = {}
    for section, cls in (("runtime", RuntimeSpec), ("checkpoint", CheckpointSpec), ("metrics", MetricsSpec)):
        if section in raw:
            parts[section] = _validated(cls, raw[section], [section], problems)
    for section, default in (("source", "stdin"), ("answers", "stdout"), ("dead_letters", "stderr")):
        table = raw.get(section, {"type": default})
        found = _endpoint_problems(table, section, raw)
        problems += found
        if not found:
            parts[section] = EndpointSpec(table["type"], {k: v for k, v in table.items() if k != "type"})
    if not problems:
        config = Config(models=models, base_dir=base_dir, **parts)
        problems += _source_problems(config)
    if problems:
        raise ConfigError(problems)
    return config


def _model(name: str, table: Any, problems: list[str]) -> ModelSpec | None:
    """The model's spec, or None; the problems of its table and of its learner are appended."""
    table = _model_input(name, table)
    model = probe = _validated(ModelSpec, table, ["models", name], problems)
    if model is None and isinstance(table, dict):  # its learner is still checked when the keys it is built from are valid
        probe = _validated(ModelSpec, {k: v for k, v in table.items() if k in LEARNER_KEYS}, ["models", name], [])
    if probe is not None:
        problems += learner_problems(probe)
    return model


def _model_input(name: str, spec: Any) -> Any:
    """The model's table as the schema reads it: its name added, group names defaulting to their field."""
    if not isinstance(spec, dict):
        return spec
    out = {**spec, "name": name}
    groups = spec.get("groups")
    if isinstance(groups, list):
        out["groups"] = [{"name": g["field"], **g} if isinstance(g, dict) and "field" in g and "name" not in g else g for g in groups]
    return out


def _endpoint_problems(table: Any, where: str, raw: dict[str, Any]) -> list[str]:
    types = ENDPOINT_TYPES[where]
    if not isinstance(table, dict) or "type" not in table:
        return [f"{where}.type: required; one of {', '.join(sorted(types))}"]
    kind = table["type"]
    if kind not in types:
        return [f"{where}.type: {kind!r} is not one of {', '.join(sorted(types))}"]
    options = {k: v for k, v in table.items() if k != "type"}
    role = "source" if where == "source" else "sink"
    problems = []
    allowed = ENDPOINT_OPTIONS.get((role, kind))
    if allowed is not None:
        problems += [f"{where}.{key}: {_unknown(key, allowed, f'for type = {kind!r}')}" for key in options if key not in allowed]
    if kind == "jsonl":
        path = options.get("path")
        if not isinstance(path, str) or not path:
            problems.append(f'{where}.path: required (a string) for type = "jsonl"')
        for flag in ("follow", "fsync"):
            if flag in options and not isinstance(options[flag], bool):
                problems.append(f"{where}.{flag}: expected true or false, got {options[flag]!r}")
    if kind == "kafka":
        if role == "sink":
            options = {**_inherited_kafka_options(raw), **options}
        mistyped = [
            key
            for key in ("sasl_password", "sasl_password_env", "sasl_username")
            if options.get(key) is not None and not isinstance(options[key], str)
        ]
        for key in mistyped:  # typed here, before the client sees it; a secret's value is never echoed back
            shown = "a value (not shown)" if key in SECRET_KEYS else f"{options[key]!r}"
            problems.append(f"{where}.{key}: expected a string, got {shown}")
        if mistyped:
            return problems
        try:
            kafka_settings(options, SOURCE_OPTIONS if role == "source" else SINK_OPTIONS)
        except ValueError as exc:  # the connector's messages start with the option's name
            problems.append(f"{where}.{exc}")
    if kind == "simulator":
        problems += _simulator_problems(options)
    return problems


# keys whose values are secrets: typed, and never echoed in an error or a log line
SECRET_KEYS = frozenset({"sasl_password"})


# connection settings a kafka sink takes from a kafka source when it does not set them
KAFKA_SHARED_OPTIONS = (
    "backend",
    "bootstrap_servers",
    "client_id",
    "security_protocol",
    "sasl_mechanism",
    "sasl_username",
    "sasl_password",
    "sasl_password_env",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
)


def _inherited_kafka_options(raw: dict[str, Any]) -> dict[str, Any]:
    source = raw.get("source")
    if not isinstance(source, dict) or source.get("type") != "kafka":
        return {}
    return {k: source[k] for k in KAFKA_SHARED_OPTIONS if k in source}


def _simulator_problems(options: dict[str, Any]) -> list[str]:
    # the simulators load numpy and their data sets: only a simulator source needs them
    from regretflow.connectors.simulators.loop import ENVIRONMENTS

    problems = []
    name = options.get("environment")
    if name not in ENVIRONMENTS:
        problems.append(f"source.environment: {name!r} is not one of {', '.join(sorted(ENVIRONMENTS))}")
    for key, what in (("rounds", "rounds to run (omit it to run forever)"), ("horizon", "rounds in the simulator's schedule")):
        value = options.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            problems.append(f"source.{key}: expected a positive integer ({what}), got {value!r}")
    lp = options.get("lp_max_rounds", 0)
    if isinstance(lp, bool) or not isinstance(lp, int) or lp < 0:
        problems.append(f"source.lp_max_rounds: expected an integer >= 0 (0: never solve the fair-comparator LP), got {lp!r}")
    record = options.get("record_path")
    if record is not None and (not isinstance(record, str) or not record):
        problems.append(f"source.record_path: expected a path (a string), got {record!r}")
    return problems


def _source_problems(config: Config) -> list[str]:
    if config.runtime.answer_format == "arrow" and config.answers.type not in ("kafka", "memory", "null"):
        return [
            f"runtime.answer_format: Arrow answers are binary messages, for a kafka (or memory) answers sink, not {config.answers.type}"
        ]
    if config.source.type == "simulator" and config.source.options.get("model") not in config.models:
        return [f"source.model: {config.source.options.get('model')!r} is not a declared model"]
    return []


# -- learners: every model's learner is built once, with its params, before anything starts -------


def learner_problems(spec: ModelSpec) -> list[str]:
    """Problems with a model's ``params``: unknown names, wrong types, values its learner refuses.

    Types are checked against the learner constructor's annotations; ranges and choices by
    building the learner (its TypeError or ValueError becomes the message).
    """
    # the learners compile numba kernels on import: a config is loaded without them until a learner is checked
    from regretflow.engine.learner_factory import ENGINE_PARAMS, build_learner
    from regretflow.learners import LEARNERS

    where = f"models.{spec.name}"
    cls = LEARNERS[spec.learner]
    accepted = inspect.signature(cls).parameters
    takes_any = any(p.kind == p.VAR_KEYWORD for p in accepted.values())
    problems = []
    if "shard_by_key" in spec.params and not isinstance(spec.params["shard_by_key"], bool):
        problems.append(f"{where}.params.shard_by_key: expected true or false, got {spec.params['shard_by_key']!r}")
    hints = _constructor_hints(cls)
    for key, value in spec.params.items():
        if key in ENGINE_PARAMS:
            continue
        if key not in accepted and not takes_any:
            close = difflib.get_close_matches(key, [*accepted, *ENGINE_PARAMS], n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"{cls.__name__} takes {', '.join(accepted) or 'none'}"
            problems.append(f"{where}.params.{key}: unknown parameter; {hint}")
        elif key in hints:
            try:
                hints[key].validate_python(value)
            except ValidationError as exc:
                problems.append(f"{where}.params.{key}: {_expected(exc.errors()[0])}, got {value!r}")
    if problems:
        return problems
    try:
        build_learner(spec)
    except (TypeError, ValueError) as exc:
        return [_learner_message(where, str(exc), set(accepted))]
    except Exception as exc:  # any failure to build it is a config problem, found now rather than at the first event
        return [f"{where}.params: {cls.__name__} cannot be built: {type(exc).__name__}: {exc}"]
    return []


_INJECTED = {"features": "features", "groups": "groups", "n_actions": "n_actions"}  # params the engine fills from the spec


def _learner_message(where: str, message: str, accepted: set[str]) -> str:
    """'lam: expected a number > 0, got -5' from a learner becomes 'models.m.params.lam: expected ...'."""
    if message.startswith(f"{where}."):
        return message  # already names the key (build_learner's own checks)
    head = message.split(":", 1)[0].split(" ", 1)[0]
    if head in accepted:
        rest = message[len(head) :].lstrip(": ")
        key = _INJECTED.get(head)
        return f"{where}.{key}: {rest}" if key else f"{where}.params.{head}: {rest}"
    return f"{where}.params: {message}"


_HINTS: dict[type, dict[str, TypeAdapter[Any]]] = {}


def _constructor_hints(cls: type[Any]) -> dict[str, TypeAdapter[Any]]:
    """Strict validators for the constructor's annotated parameters (``Any`` and unresolvable ones skipped)."""
    if cls not in _HINTS:
        try:
            hints = typing.get_type_hints(cls.__init__)
        except Exception:  # an annotation that names something not importable here: no type check, the constructor still runs
            hints = {}
        adapters = {}
        for name, hint in hints.items():
            if name == "return" or hint is Any:
                continue
            try:
                adapters[name] = TypeAdapter(hint, config=ConfigDict(strict=True, arbitrary_types_allowed=True))
            except Exception:  # a type pydantic cannot check (a class of the learner's own): leave it to the constructor
                continue
        _HINTS[cls] = adapters
    return _HINTS[cls]


# -- messages --------------------------------------------------------------------------------


def _describe(err: ErrorDetails, root: type, prefix: list[Any]) -> str:
    """One pydantic error as 'runtime.batch_size: expected an integer >= 1, got 0'."""
    loc = prefix + list(err["loc"])
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind in ("value_error", "assertion_error") and isinstance(ctx.get("error"), _KeyProblem):
        problem = ctx["error"]
        return f"{_key(loc + [problem.key])}: {problem.message}"
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        allowed = _allowed_keys(root, list(err["loc"])[:-1])
        return f"{_key(loc)}: {_unknown(str(loc[-1]), allowed)}"
    if kind == "missing":
        return f"{_key(loc)}: required"
    if kind == "value_error":
        return f"{_key(loc)}: {str(ctx.get('error', err['msg']))}"
    shown = "a value (not shown)" if SECRET_KEYS.intersection(map(str, loc)) else repr(err["input"])
    return f"{_key(loc)}: {_expected(err)}, got {shown}"


def _unknown(key: str, allowed: Any, what: str = "") -> str:
    """'unknown key; did you mean 'batch_size'? (expected one of ...)'."""
    listed = ", ".join(sorted(allowed)) or "(none)"
    close = difflib.get_close_matches(key, list(allowed), n=1)
    head = f"unknown key{' ' + what if what else ''}"
    return f"{head}; did you mean {close[0]!r}? (expected one of {listed})" if close else f"{head}; expected one of {listed}"


def _expected(err: ErrorDetails) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in bounds:
        bound = next(iter(ctx.values()))
        what = "an integer" if isinstance(err["input"], int) else "a number"
        return (
            f"expected {what} {bounds[kind]} {bound:,}"
            if isinstance(bound, int) and bound > 99_999
            else f"expected {what} {bounds[kind]} {bound}"
        )
    simple = {
        "int_type": "expected an integer",
        "int_from_float": "expected an integer",
        "float_type": "expected a number",
        "finite_number": "expected a finite number",
        "bool_type": "expected true or false",
        "string_type": "expected a string",
        "tuple_type": "expected a list",
        "list_type": "expected a list",
        "dict_type": "expected a table",
        "dataclass_type": "expected a table",
        "dataclass_exact_type": "expected a table",
    }
    if kind in simple:
        return simple[kind]
    if kind == "literal_error":
        return f"expected one of {ctx.get('expected')}"
    return err["msg"][0].lower() + err["msg"][1:]


def _key(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "config"


def _allowed_keys(root: type, loc: list[Any]) -> set[str]:
    """The keys the table at ``loc`` (under ``root``) takes, found by walking the schema's field types."""
    cls: Any = root
    for part in loc:
        if isinstance(part, str) and is_dataclass(cls):
            cls = typing.get_type_hints(cls).get(part, cls)
        while typing.get_origin(cls) is not None:  # X | None, tuple[X, ...], dict[str, X]: step inside to X
            cls = [a for a in typing.get_args(cls) if a is not type(None) and a is not Ellipsis][-1]
    if not is_dataclass(cls):
        return set()
    return {f.name for f in dc_fields(cls)} - ({"name"} if cls is ModelSpec else set())  # a model's name is its table's


# -- the host: what the config names must be usable here ---------------------------------------


def check_host(config: Config, workers: int = 1) -> list[str]:
    """Problems the host would meet at start: ports that cannot be bound, paths that cannot be used.

    Nothing is created or opened for good: directories and files are probed with a
    temporary entry removed at once, the port with a socket closed at once.
    """
    problems = []
    source = config.source
    if source.type == "jsonl":
        path = config.resolve(source.options["path"])
        if not path.exists():
            problems.append(f"source.path: {path} does not exist")
        elif not path.is_file():
            problems.append(f"source.path: {path} is not a file")
        elif not os.access(path, os.R_OK):
            problems.append(f"source.path: {path} is not readable")
    if source.type == "simulator" and source.options.get("record_path"):
        problems += _file_problem("source.record_path", config.resolve(source.options["record_path"]))
    for where in ("answers", "dead_letters"):
        spec = getattr(config, where)
        if spec.type == "jsonl":
            problems += _file_problem(f"{where}.path", config.resolve(spec.options["path"]))
    if config.checkpoint.dir is not None:
        problems += _directory_problem("checkpoint.dir", config.resolve(config.checkpoint.dir))
    if config.metrics.log_path is not None:
        problems += _file_problem("metrics.log_path", config.resolve(config.metrics.log_path))
    if config.metrics.enabled and config.metrics.port:
        for i in range(workers):
            problems += _port_problem(config.metrics.host, config.metrics.port + i)
    return problems


def _port_problem(host: str, port: int) -> list[str]:
    key = "metrics.port"
    if port > 65535:
        return [f"{key}: {port} (metrics.port + worker index) is past 65535"]
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the metrics server binds
            sock.bind((host, port))
    except socket.gaierror as exc:
        return [f"metrics.host: {host!r} is not an address of this host ({exc.strerror})"]
    except OSError as exc:
        if exc.errno == errno.EADDRNOTAVAIL:
            return [f"metrics.host: {host} is not an address of this host ({exc.strerror})"]
        return [f"{key}: cannot listen on {host}:{port} ({exc.strerror or exc})"]
    return []


def _existing_ancestor(path: Path) -> Path:
    for parent in path.parents:
        if parent.exists():
            return parent
    return Path(path.anchor or ".")


def _writable_directory(directory: Path) -> str | None:
    """None when a file can be created in ``directory``, else why not (tried, not guessed: root, read-only mounts)."""
    try:
        with tempfile.TemporaryFile(dir=directory, prefix=".regretflow-check-"):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def _directory_problem(key: str, path: Path) -> list[str]:
    if path.exists():
        if not path.is_dir():
            return [f"{key}: {path} exists and is not a directory"]
        why = _writable_directory(path)
        return [f"{key}: {path} is not writable: no file can be created in it ({why})"] if why else []
    ancestor = _existing_ancestor(path)
    if not ancestor.is_dir():
        return [f"{key}: {path} cannot be created: {ancestor} is not a directory"]
    why = _writable_directory(ancestor)
    return [f"{key}: {path} cannot be created: no file can be created in {ancestor} ({why})"] if why else []


def _file_problem(key: str, path: Path) -> list[str]:
    if path.exists():
        if path.is_dir():
            return [f"{key}: {path} is a directory"]
        if not os.access(path, os.W_OK):
            return [f"{key}: {path} is not writable"]
        return []
    ancestor = _existing_ancestor(path)
    if not ancestor.is_dir():
        return [f"{key}: {path} cannot be created: {ancestor} is not a directory"]
    why = _writable_directory(ancestor)
    return [f"{key}: {path} cannot be created: no file can be created in {ancestor} ({why})"] if why else []


def check_config(config: Config, workers: int = 1) -> None:
    """Raise :class:`ConfigError` with every host problem of ``config`` (see :func:`check_host`)."""
    problems = check_host(config, workers)
    if problems:
        raise ConfigError(problems)


def describe(config: Config) -> str:
    """One line that says what a valid config will run (``regretflow run --check``)."""
    models = ", ".join(f"{name} ({spec.learner})" for name, spec in config.models.items())
    metrics = f"metrics on {config.metrics.host}:{config.metrics.port}" if config.metrics.enabled else "metrics off"
    checkpoints = f"checkpoints in {config.resolve(config.checkpoint.dir)}" if config.checkpoint.dir else "no checkpoints"
    n = len(config.models)
    return (
        f"config OK: {n} model{'s' if n != 1 else ''} {models}; source {config.source.type}, answers {config.answers.type}, "
        f"dead letters {config.dead_letters.type}; {checkpoints}; {metrics}"
    )


__all__ = [
    "Config",
    "ConfigError",
    "ModelSpec",
    "GroupSpec",
    "JoinSpec",
    "RegretSpec",
    "RuntimeSpec",
    "CheckpointSpec",
    "MetricsSpec",
    "EndpointSpec",
    "load_config",
    "parse_config",
    "check_host",
    "check_config",
    "learner_problems",
    "describe",
]
