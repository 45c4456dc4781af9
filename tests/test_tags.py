import pytest

import numpy as np

from serving.tags import IOBDecoder, Slot, iob_spans, iob_transitions


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


# --- constrained Viterbi: the most probable well-formed IOB sequence ---------------------------------------------

TAGS = ["O", "B-city", "I-city", "B-date", "I-date"]


def _probs(rows):
    return np.array(rows, dtype=np.float32)


def test_viterbi_never_starts_with_an_inside_tag():
    probs = _probs([[0.1, 0.3, 0.6, 0.0, 0.0], [0.1, 0.1, 0.8, 0.0, 0.0]])
    assert probs.argmax(-1).tolist() == [2, 2]  # argmax: I-city I-city, ill-formed
    assert IOBDecoder(TAGS)(probs).tolist() == [1, 2]  # B-city I-city


def test_viterbi_does_not_continue_a_span_of_another_slot():
    probs = _probs([[0.0, 0.9, 0.0, 0.1, 0.0], [0.45, 0.0, 0.0, 0.0, 0.55]])
    assert [TAGS[i] for i in IOBDecoder(TAGS)(probs)] == ["B-city", "O"]  # I-date may not follow B-city


def test_viterbi_keeps_a_well_formed_argmax_path():
    rng = np.random.default_rng(0)
    decode = IOBDecoder(TAGS)
    for _ in range(50):
        probs = rng.dirichlet(np.ones(len(TAGS)), size=rng.integers(1, 9))
        best = probs.argmax(-1)
        tags = [TAGS[i] for i in best]
        well_formed = all(not t.startswith("I-") or (i and tags[i - 1][2:] == t[2:] and tags[i - 1] != "O")
                          for i, t in enumerate(tags))
        path = decode(probs)
        if well_formed:
            assert path.tolist() == best.tolist()
        assert all(not TAGS[j].startswith("I-") or (i and TAGS[path[i - 1]][2:] == TAGS[j][2:]
                                                    and path[i - 1] != 0) for i, j in enumerate(path))


def test_viterbi_path_is_the_most_probable_well_formed_one():
    import itertools

    rng = np.random.default_rng(1)
    start, transition = iob_transitions(TAGS)
    probs = rng.dirichlet(np.ones(len(TAGS)), size=4)
    best = max(itertools.product(range(len(TAGS)), repeat=4),
               key=lambda p: np.log(probs[range(4), p]).sum() + start[p[0]] + sum(transition[a, b] for a, b in zip(p, p[1:])))
    assert IOBDecoder(TAGS)(probs).tolist() == list(best)


def test_an_inside_tag_without_its_begin_tag_stays_free():
    probs = _probs([[0.2, 0.8], [0.2, 0.8]])
    assert IOBDecoder(["O", "I-x"])(probs).tolist() == [1, 1]
