import pytest

from serving.tags import Slot, iob_spans


def test_multi_word_spans_and_adjacent_slots():
    words = "from new york to san francisco".split()
    tags = ["O", "B-from", "I-from", "O", "B-to", "I-to"]
    assert iob_spans(words, tags) == [Slot("from", "new york", 1, 3), Slot("to", "san francisco", 4, 6)]


def test_b_tag_starts_a_new_span_of_the_same_type():
    assert [s.text for s in iob_spans(["a", "b"], ["B-x", "B-x"])] == ["a", "b"]


def test_stray_i_tag_starts_a_span_like_conlleval():
    assert iob_spans(["a", "b", "c"], ["O", "I-x", "I-y"]) == [Slot("x", "b", 1, 2), Slot("y", "c", 2, 3)]


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="2 words but 1 tags"):
        iob_spans(["a", "b"], ["O"])
