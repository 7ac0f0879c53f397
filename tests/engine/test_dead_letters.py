"""The dead-letter reasons are one list (``dead_letters.REASONS``): the reference docs'
table, the metrics' pre-registered label set and the event schema must agree with it."""

from __future__ import annotations

import re

from regretflow.engine.observability.metrics import Metrics
from regretflow.engine.runtime import events
from regretflow.engine.runtime.dead_letters import REASONS, BadEvent, markdown_table
from tests.conftest import reference_doc_holding

TABLE_HEADER = "| reason | meaning |"


def documented_reasons() -> list[tuple[str, str]]:
    """The rows (reason, meaning) of the dead-letter table, in the page's order."""
    text = reference_doc_holding(TABLE_HEADER).read_text(encoding="utf-8")
    lines = text[text.index(TABLE_HEADER) :].splitlines()[2:]
    rows = []
    for line in lines:
        match = re.fullmatch(r"\| `([a-z_]+)` \| (.*) \|", line.strip())
        if match is None:
            break
        rows.append((match.group(1), match.group(2)))
    return rows


def test_the_docs_table_is_reasons_in_order_with_the_same_meanings():
    documented = documented_reasons()
    assert [r for r, _ in documented] == list(REASONS), "the docs table and dead_letters.REASONS list different reasons"
    assert dict(documented) == REASONS, "meanings differ: paste dead_letters.markdown_table() into the docs"


def test_markdown_table_is_the_table_in_the_docs():
    text = reference_doc_holding(TABLE_HEADER).read_text(encoding="utf-8")
    assert markdown_table() in text


def enums(node: object) -> list[list[object]]:
    """Every ``enum`` list anywhere in a JSON Schema."""
    if isinstance(node, dict):
        found = [node["enum"]] if isinstance(node.get("enum"), list) else []
        return found + [e for value in node.values() for e in enums(value)]
    if isinstance(node, list):
        return [e for value in node for e in enums(value)]
    return []


def test_the_event_schema_lists_all_reasons_or_none():
    for enum in enums(events.schema()):
        if set(enum) & set(REASONS):
            assert enum == list(REASONS)


def test_every_reason_is_pre_registered_as_a_metric_label():
    metrics = Metrics(["m"], {})
    labelled = {(sample.labels["model"], sample.labels["reason"]) for family in metrics.dead_letters.collect() for sample in family.samples}
    assert {reason for model, reason in labelled if model == "m"} == set(REASONS)
    assert {reason for model, reason in labelled if model == "_unknown_"} == set(REASONS)


def test_a_reason_outside_the_list_is_refused():
    try:
        BadEvent("no_such_reason", "x")
    except AssertionError:
        return
    raise AssertionError("BadEvent took a reason that is not in REASONS")
