"""A classifier's class labels are of one kind (integers or strings): a label of the other
kind is dead-lettered as ``bad_label``, on every path, and never stops the engine."""

import orjson
import pytest

from tests.conftest import assert_same_bits, engine_fed, shard_state

# without the generator, whose refreshes follow the batches, the state depends on the rows learned only
CONFIG = {"models": {"c": {"learner": "analytic-ridge", "features": ["a", "b"], "params": {"generator": False}}}}


def observe(i, label):
    return orjson.dumps({"id": f"o{i}", "model": "c", "kind": "observe", "features": [i % 3, 1.0], "label": label})


def run(payloads, batch, column_wise=True):
    return engine_fed(CONFIG, payloads, batch, column_wise)


def reasons(engine):
    return [(orjson.loads(r[1])["reason"], orjson.loads(r[1])["detail"]) for r in engine.dead_letters.records]


@pytest.mark.parametrize("first", [1, "cat"])
@pytest.mark.parametrize("batch", [1, 3, 64])
@pytest.mark.parametrize("column_wise", [True, False])
def test_labels_of_the_other_kind_are_dead_lettered_and_the_rest_learned(first, batch, column_wise):
    other = "dog" if first == 1 else 2
    labels = [first, other, first, other, other, first]
    engine = run([observe(i, label) for i, label in enumerate(labels)], batch, column_wise)
    expected_kind = "int" if first == 1 else "str"
    assert reasons(engine) == [("bad_label", f"model 'c' learns {expected_kind} class labels; got {other!r}")] * 3
    assert (engine.valid_events, engine.dead_count) == (3, 3)
    learned = run([observe(i, label) for i, label in enumerate(labels) if label == first], 64)  # the good rows alone
    assert_same_bits(shard_state(engine), shard_state(learned))


def test_feedback_of_the_other_kind_is_refused_and_its_predict_keeps_waiting():
    payloads = [observe(0, "cat"), observe(1, "dog")]
    payloads.append(orjson.dumps({"id": "p", "model": "c", "kind": "predict", "features": [1.0, 1.0]}))
    payloads.append(orjson.dumps({"id": "f1", "model": "c", "kind": "feedback", "ref": "p", "label": 7}))
    payloads.append(orjson.dumps({"id": "f2", "model": "c", "kind": "feedback", "ref": "p", "label": "cat"}))
    engine = run(payloads, 1)
    assert reasons(engine) == [("bad_label", "model 'c' learns str class labels; got 7")]
    assert engine.valid_events == 4  # the second feedback found its predict still waiting


@pytest.mark.parametrize("first", [1, "cat"])
@pytest.mark.parametrize("batch", [1, 20, 64])
def test_predicts_waiting_in_the_batch_do_not_set_the_label_kind(first, batch):
    """Observe rows taken in columns after a predict of the same batch were refused as ``bad_label``, "got
    None": with a predict waiting, each row is checked on a probe event, which lacked the row's label."""
    other = "dog" if first == 1 else 2
    payloads = []
    for i in range(40):
        if i % 5 == 0:
            payloads.append(orjson.dumps({"id": f"p{i}", "model": "c", "kind": "predict", "features": [i % 3, 1.0]}))
        else:
            payloads.append(observe(i, other if i == 7 else first))
    fast, reference = run(payloads, batch), run(payloads, batch, column_wise=False)
    assert (
        reasons(fast)
        == reasons(reference)
        == [("bad_label", f"model 'c' learns {'int' if first == 1 else 'str'} class labels; got {other!r}")]
    )
    assert fast.answers.records == reference.answers.records and len(fast.answers.records) == 39
    assert_same_bits(shard_state(fast), shard_state(reference))


@pytest.mark.parametrize("column_wise", [True, False])
def test_an_integer_label_beyond_64_bits_is_dead_lettered_and_checkpoints_still_write(column_wise, tmp_path):
    """A label of 2**63 was learned (within a max_abs_value of 1e150) and then every checkpoint failed:
    the class list is saved as int64."""
    config = {**CONFIG, "runtime": {"max_abs_value": 1e150}}
    labels = [1, 2**63, 2, 2**64 - 1, -(2**63), 3] * 3  # (JSON integers beyond uint64 parse as floats)
    engine = engine_fed(config, [observe(i, label) for i, label in enumerate(labels)], 18, column_wise)
    assert [r for r, _ in reasons(engine)] == ["bad_label"] * 6
    assert reasons(engine)[0][1] == "an integer class label must fit in 64 bits, got 9223372036854775808"
    (shard,) = engine.router.shards.values()
    assert sorted(shard.learner._classes) == [-(2**63), 1, 2, 3]
    assert shard_state(engine)  # raised OverflowError when the class list held 2**63
