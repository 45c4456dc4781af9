"""Tests for the synthetic ATIS-style flight query generator."""

import pytest

from pipelines.readers import SlotExample
from pipelines.synthetic import flight_queries, synthetic_dataset


@pytest.fixture(scope="module")
def examples():
    return flight_queries(2000, seed=0)


def test_same_seed_gives_same_queries():
    assert flight_queries(300, seed=7) == flight_queries(300, seed=7)


def test_different_seed_gives_different_queries():
    assert flight_queries(300, seed=7) != flight_queries(300, seed=8)


@pytest.mark.parametrize("n", [0, 1, 17, 500])
def test_exact_count(n):
    result = flight_queries(n, seed=3)
    assert len(result) == n
    assert all(isinstance(example, SlotExample) for example in result)


def test_negative_count_is_rejected():
    with pytest.raises(ValueError):
        flight_queries(-1)


def test_one_tag_per_word(examples):
    for example in examples:
        assert example.words
        assert len(example.words) == len(example.tags)
        assert all(word and " " not in word for word in example.words)


def test_tags_are_valid_iob(examples):
    for example in examples:
        previous = "O"
        for tag in example.tags:
            assert tag == "O" or tag[:2] in ("B-", "I-"), tag
            if tag.startswith("I-"):
                assert previous in ("B-" + tag[2:], tag), f"{tag} after {previous} in {example.text!r}"
            previous = tag


def test_intents_slots_and_multi_word_values(examples):
    intents = {example.intent for example in examples}
    assert len(intents) >= 6
    assert any("#" in intent for intent in intents)
    assert any(tag.startswith("I-") for example in examples for tag in example.tags)
    slot_types = {tag[2:] for example in examples for tag in example.tags if tag != "O"}
    assert len(slot_types) >= 15


def test_flight_is_the_most_frequent_intent(examples):
    flights = sum(example.intent == "atis_flight" for example in examples)
    assert 0.5 < flights / len(examples) < 0.7


def _city_values(example, slot):
    """The values of ``slot`` in an example, as strings, e.g. ``["new york"]``."""
    values = []
    for word, tag in zip(example.words, example.tags):
        if tag == "B-" + slot:
            values.append(word)
        elif tag == "I-" + slot:
            values[-1] += " " + word
    return values


def test_same_city_is_tagged_by_context(examples):
    from_cities = {city for example in examples for city in _city_values(example, "fromloc.city_name")}
    to_cities = {city for example in examples for city in _city_values(example, "toloc.city_name")}
    both = from_cities & to_cities
    assert both
    assert any(" " in city for city in both)


def test_words_are_lower_case(examples):
    for example in examples:
        assert all(word == word.lower() for word in example.words), example.text


def test_dataset_splits():
    data = synthetic_dataset(n_train=200, n_valid=50, n_test=60, seed=1)
    assert list(data) == ["train", "valid", "test"]
    assert [len(data[split]) for split in data] == [200, 50, 60]
    assert data == synthetic_dataset(n_train=200, n_valid=50, n_test=60, seed=1)
    assert data["train"][:50] != data["valid"]
    assert data["train"][:50] != data["test"][:50]
    assert data["valid"] != data["test"][:50]
    assert synthetic_dataset(n_train=50, n_valid=10, n_test=10, seed=2)["train"] != data["train"][:50]
