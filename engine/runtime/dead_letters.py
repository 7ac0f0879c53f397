"""Dead-letter reasons: the one list, and the exception that carries one.

Every event the engine cannot use goes to the dead-letter sink with one of the
:data:`REASONS` (a bounded label set, so the ``regretflow_dead_letters_total`` series
are known in advance). The reference docs' table is this dict; ``tests/engine/test_dead_letters.py``
checks that they agree, and :func:`markdown_table` prints the table to paste.

>>> "late_feedback" in REASONS
True
>>> err = BadEvent("unknown_model", "no model 'x'")
>>> err.reason, str(err)
('unknown_model', "unknown_model: no model 'x'")
"""

from __future__ import annotations

# reason -> what it means (one line, Markdown); the order is the docs table's order
REASONS: dict[str, str] = {
    "oversized": "payload larger than `runtime.max_event_bytes`",
    "not_json": "not UTF-8 JSON",
    "not_object": "JSON, but not an object",
    "non_finite": "NaN or ±Infinity anywhere",
    "missing_field": "`id`, `model`, `kind`, or a field the kind requires, is absent",
    "unknown_field": "a field the contract does not define (or one the kind does not carry)",
    "bad_field": "a field of the wrong type or shape (`id` not a string, `ts` not a number, …)",
    "unknown_kind": "`kind` is not one of the five",
    "unknown_model": "`model` is not declared in the config",
    "missing_features": "fewer features than declared, or a declared name absent",
    "extra_features": "more features than declared, or an undeclared name",
    "wrong_type": "a feature value that is not a number",
    "bad_label": "a label of the wrong type for the model's task",
    "bad_actions": "decide: ragged action rows, or `expected_rewards` of the wrong length",
    "unsupported_kind": "a kind the model's learner does not take (`decide` to a regressor, `observe` to a bandit)",
    "unknown_ref": "feedback or audit to an id that is not waiting",
    "late_feedback": "feedback after its join window closed",
    "feedback_mismatch": "a reward for a predict, or a label for a decide",
    "hidden_label": "a label for an individual who got a negative decision (one-sided feedback)",
    "duplicate_id": "a predict or decide whose id is still waiting for feedback",
    "duplicate_feedback": "a second feedback, or a second audit, to the same fair decision",
    "rejected_by_learner": "the learner refused the event's values (e.g. an action index outside its set); its message is the detail, and nothing changed",
    "out_of_range": "a feature, label, reward, action row value or expected reward larger than `runtime.max_abs_value` in absolute value (integers past the float range included)",
    "too_many_keys": "an event with a new `key` for a model that already holds `max_shards` shards",
    "model_unhealthy": "the model's shard is quarantined: its state went non-finite (see Off the happy path)",
    "internal_error": "the engine raised while handling this one event; the exception's type and message are the detail",
}


class BadEvent(Exception):
    """An event that must be dead-lettered, with its reason (a key of :data:`REASONS`).

    >>> BadEvent("not_json", "line 3").detail
    'line 3'
    """

    def __init__(self, reason: str, detail: str, model: str | None = None):
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.model = model  # the declared model the event named, when it got that far
        self.event_id: str | None = None  # the event's id, when it is a valid one (a dead-letter header)


def markdown_table() -> str:
    """The reference docs' table of dead-letter reasons.

    >>> print(markdown_table().splitlines()[2])
    | `oversized` | payload larger than `runtime.max_event_bytes` |
    """
    rows = [f"| `{reason}` | {meaning} |" for reason, meaning in REASONS.items()]
    return "\n".join(["| reason | meaning |", "| --- | --- |", *rows])
