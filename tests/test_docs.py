"""The README and the reference in docs/ stay in sync with the code.

Every config key, metric, learner gauge and dead-letter reason the code defines is named in
its docs page; every relative link resolves; the README stays a front page that carries the
two set-up commands .ci/run runs.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
MARKDOWN = [README, *sorted(DOCS.rglob("*.md"))]


def doc(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _dataclass_of(annotation: typing.Any) -> type | None:
    """The config dataclass an annotation holds (directly, in a tuple or behind Optional), if any."""
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and dataclasses.is_dataclass(arg):
            return arg
    return None


def config_keys() -> list[str]:
    """Every key a config file can set, dotted (``models.NAME.joins.ttl_events``), from the schema's fields."""
    from regretflow.engine import config

    def walk(cls: type, prefix: str) -> list[str]:
        keys = []
        hints = typing.get_type_hints(cls)  # without the pydantic metadata of Annotated
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if (cls, f.name) in ((config.ModelSpec, "name"), (config.Config, "base_dir"), (config.EndpointSpec, "options")):
                continue  # filled in by the loader, or (endpoint options) checked per endpoint type below
            key = f"{prefix}{f.name}"
            keys.append(key)
            hint = hints[f.name]
            if typing.get_origin(hint) is dict:  # models: one table per model name
                hint, key = typing.get_args(hint)[1], f"{key}.NAME"
            nested = _dataclass_of(hint)
            if nested is not None:
                keys += walk(nested, f"{key}.")
        return keys

    return walk(config.Config, "")


def test_every_config_key_is_in_the_configuration_reference():
    text = doc("configuration.md")
    keys = config_keys()
    assert "runtime.batch_size" in keys and "models.NAME.joins.ttl_events" in keys and "models.NAME.groups.edges" in keys
    missing = [k for k in keys if f"`{k}`" not in text]
    assert not missing, f"docs/configuration.md does not document {missing}"


def test_every_endpoint_option_is_in_the_configuration_reference():
    from regretflow.connectors.kafka import SINK_OPTIONS, SOURCE_OPTIONS
    from regretflow.engine.config import ENDPOINT_OPTIONS, ENDPOINT_TYPES

    text = doc("configuration.md")
    options = {*SOURCE_OPTIONS, *SINK_OPTIONS, *(o for opts in ENDPOINT_OPTIONS.values() for o in opts)}
    options |= {"environment", "model", "rounds", "record_path", "horizon", "lp_max_rounds", "case", "dataset", "seed", "k"}
    missing = sorted(o for o in options if f"`{o}`" not in text)
    assert not missing, f"docs/configuration.md does not document the endpoint options {missing}"
    types = sorted(t for kinds in ENDPOINT_TYPES.values() for t in kinds if f"`{t}`" not in text)
    assert not types, f"docs/configuration.md does not document the endpoint types {types}"


def test_the_documented_bounds_are_the_schemas():
    from regretflow.engine.config import MAX_ABS_VALUE_LIMIT, MAX_EVENT_BYTES_LIMIT

    text = doc("configuration.md")
    assert f"{MAX_EVENT_BYTES_LIMIT:,}" in text and "16,777,216" in text
    assert f"{MAX_ABS_VALUE_LIMIT:.0e}".replace("e+", "e") == "1e150" and "1e150" in text


def registered_metric_names() -> list[str]:
    """The names an engine's registry exposes, as a scrape shows them (counters with ``_total``)."""
    from regretflow.engine.observability.metrics import Metrics

    metrics = Metrics(["m"], {"m": ["all"]})
    names = []
    for family in metrics.registry.collect():
        names.append(f"{family.name}_total" if family.type == "counter" else family.name)
    return names


def test_every_registered_metric_is_in_the_metrics_reference():
    text = doc("metrics.md")
    names = registered_metric_names()
    assert "regretflow_events_total" in names and "regretflow_source_offset_resets_total" in names
    missing = [n for n in names if f"`{n}`" not in text]
    assert not missing, f"docs/metrics.md does not document {missing}"


def test_every_learner_and_simulator_gauge_is_in_the_metrics_reference():
    from regretflow.engine.evaluation.fairness_lp import FairnessMonitor
    from regretflow.learners import LEARNERS

    text = doc("metrics.md")
    gauges = {name for cls in LEARNERS.values() for name in (*getattr(cls, "GAUGES", {}), *getattr(cls, "GROUP_GAUGES", {}))}
    missing = sorted(g for g in gauges if f"`{g}`" not in text)
    assert not missing, f"docs/metrics.md does not list the learner gauges {missing}"
    figures = [*FairnessMonitor.GAUGES, *FairnessMonitor.AUDITOR_GAUGES]
    missing = [g for g in figures if f"`{g}`" not in text]
    assert not missing, f"docs/metrics.md does not list the fairness simulator figures {missing}"


def dead_letter_reasons() -> list[str]:
    try:  # the reasons are moving to their own module; read them from wherever they are
        from regretflow.engine.runtime.dead_letters import REASONS  # type: ignore[import-not-found]
    except ImportError:
        from regretflow.engine.runtime.events import REASONS
    return list(REASONS)  # a tuple of names, or a dict name -> description


def test_every_dead_letter_reason_is_in_the_dead_letters_page():
    text = doc("dead-letters.md")
    reasons = dead_letter_reasons()
    assert "internal_error" in reasons
    missing = [r for r in reasons if f"`{r}`" not in text]
    assert not missing, f"docs/dead-letters.md does not document the dead-letter reasons {missing}"


def test_every_learner_family_has_a_docs_page_that_names_it():
    from regretflow.learners import LEARNERS

    pages = "".join(p.read_text(encoding="utf-8") for p in sorted((DOCS / "learners").glob("*.md")))
    missing = sorted(name for name in LEARNERS if f"`{name}`" not in pages)
    assert not missing, f"no page of docs/learners/ names the learner families {missing}"
    classes = sorted(cls.__name__ for cls in LEARNERS.values() if f"`{cls.__name__}`" not in pages)
    assert not classes, f"no page of docs/learners/ names {classes}"


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings, as GitHub makes them (lower case, punctuation dropped, spaces to hyphens)."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in re.findall(r"^#+\s+(.*)$", text, flags=re.M)}


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_to_a_file_of_the_repository(page):
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):
            continue  # a URL (http:, mailto:)
        file_part, _, anchor = target.partition("#")
        path = (page.parent / file_part).resolve() if file_part else page
        if not path.is_relative_to(ROOT) or not path.exists():
            broken.append(target)
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: links that lead nowhere: {broken}"


def test_docs_has_an_index_linking_every_page():
    index = doc("index.md")
    pages = [p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md") if p.name != "index.md"]
    missing = sorted(p for p in pages if f"({p})" not in index)
    assert not missing, f"docs/index.md does not link {missing}"


def test_nothing_refers_to_the_specification_folders():
    # spelled in pieces so that this file does not match itself
    forbidden = re.compile("|".join(re.escape(s) for s in ("paper" + "s/", "../" + "shared", "/work/" + "shared")))
    suffixes = {".py", ".md", ".toml", ".yml", ".yaml", ".json", ".txt", ".cfg", ".sh", ".service", ""}
    offenders = []
    for folder in ("engine", "learners", "connectors", "deploy", "tests", "docs", ".ci"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix in suffixes and "__pycache__" not in path.parts:
                if forbidden.search(path.read_text(encoding="utf-8", errors="replace")):
                    offenders.append(str(path.relative_to(ROOT)))
    for path in (README, ROOT / "pyproject.toml", ROOT / "Dockerfile"):
        if path.exists() and forbidden.search(path.read_text(encoding="utf-8")):
            offenders.append(path.name)
    assert not offenders, f"files that refer to the specification folders: {offenders}"


def _ci_commands() -> list[str]:
    """The README's two set-up commands as .ci/run runs them (CI adds quiet/smoke flags after the command)."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    lines = [line for line in ci.splitlines() if line.startswith(("python3 -m venv", "bash tests/install-services.sh"))]
    assert len(lines) == 2, lines
    install, tests = lines
    return [install.replace("pip install -q ", "pip install ").split(" --passes")[0], tests.split(" -q")[0]]


def test_readme_is_a_front_page_with_the_two_set_up_commands():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 220
    install, tests = _ci_commands()
    assert install == "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/regretflow demo"
    assert tests == "bash tests/install-services.sh && .venv/bin/python -m pytest"
    assert install in text.splitlines() and tests in text.splitlines()
    assert "(deploy/images/live-page.png)" in text


JSON_BLOCK = re.compile(r"```json\n(.*?)```", re.S)
ANSWER_FIELDS = ("prediction", "action", "decisions", "reason")  # answers and dead letters, not events


@pytest.mark.parametrize("page", [README, DOCS / "events.md"], ids=lambda p: str(p.relative_to(ROOT)))
def test_the_example_events_follow_the_schema(page):
    import json

    import jsonschema

    from regretflow.engine.runtime.events import schema

    validator = jsonschema.Draft202012Validator(schema())
    events = [
        json.loads(line) for block in JSON_BLOCK.findall(page.read_text(encoding="utf-8")) for line in block.splitlines() if line.strip()
    ]
    events = [e for e in events if not any(f in e for f in ANSWER_FIELDS)]
    assert {e["kind"] for e in events} == {"observe", "predict", "decide", "feedback", "audit"}
    for event in events:
        errors = [e.message for e in validator.iter_errors(event)]
        assert not errors, f"{page.name}: {event['id']}: {errors}"
