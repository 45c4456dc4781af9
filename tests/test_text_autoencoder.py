"""Text auto-encoder: the order-blind baseline, the measures, a small end-to-end run, encode / decode in serving."""

import json

import numpy as np
import pytest

from pipelines.text_autoencoder import (PAIR, bag_of_words_cosine, documents, nearest_neighbours, reconstruction,
                                        synthetic_sentences)


def test_bag_of_words_cannot_tell_the_lecture_pair_apart():
    a, b = (s.split() for s in PAIR)
    assert bag_of_words_cosine(a, b) == pytest.approx(1.0)
    assert bag_of_words_cosine(["a", "b"], ["a", "c"]) == pytest.approx(0.5)


def test_reconstruction_measures_hand_checked():
    refs = [["a", "b", "c"], ["d", "e"]]
    outs = [["a", "b", "c"], ["e", "d", "f"]]
    assert reconstruction(refs, outs) == {"exact_reconstruction": 0.5, "token_accuracy": pytest.approx(3 / 5)}
    assert reconstruction([["a", "b"]], [["a"]])["token_accuracy"] == 0.5


def test_nearest_neighbours_exclude_the_query():
    pool = ["x", "y", "z"]
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    near = nearest_neighbours(["x"], vectors[:1], pool, vectors, k=2)
    assert [s for s, _ in near["x"]] == ["y", "z"]


def test_synthetic_sentences_are_distinct_and_hold_out_the_pair():
    splits = synthetic_sentences(300, 50, seed=2)
    everything = splits["train"] + splits["test"]
    assert len(set(everything)) == 350 and not set(PAIR) & set(everything)
    docs = documents(splits["test"], 4, seed=0)
    assert all(2 <= len(d) <= 4 for d in docs) and sum(len(d) for d in docs) >= 48


@pytest.fixture(scope="module")
def autoencoder_run(text_autoencoder_run):
    """conftest.py's text auto-encoder run (1200 sentences, 100 held out, 6 epochs, document level 5): (run dir,
    metrics)."""
    return text_autoencoder_run.out, text_autoencoder_run.metrics


def test_run_reports_reconstruction_and_order_sensitive_vectors(autoencoder_run):
    out, metrics = autoencoder_run
    assert metrics["pair_bag_of_words_cosine"] == 1.0
    assert metrics["pair_cosine"] < 0.95  # same words, different order: clearly different vectors
    assert metrics["token_accuracy"] > 0.5 and 0 <= metrics["exact_reconstruction"] <= 1
    assert metrics["held_out_sentences"] == 100
    for key in ("doc_sentence_count_accuracy", "doc_sentence_exact", "doc_exact", "doc_swap_cosine_mean"):
        assert 0 <= metrics[key] <= 1 or key == "doc_swap_cosine_mean"
    saved = json.loads((out / "metrics.json").read_text())
    assert all(isinstance(v, (int, float)) for v in saved.values())
    report = json.loads((out / "examples.json").read_text())
    assert set(report["neighbours"]) >= set(PAIR)


def test_encode_decode_in_serving_and_bad_input(autoencoder_run):
    import serving
    from serving import InputError

    out, metrics = autoencoder_run
    predictor = serving.load(out)
    assert type(predictor).__name__ == "TextAutoencoderPredictor"
    u, v = predictor.encode(PAIR[0]), predictor.encode(PAIR[1])
    assert u.shape == (predictor.dim,) == (96,)
    assert predictor.similarity(*PAIR) == pytest.approx(metrics["pair_cosine"], abs=1e-3)
    assert not np.allclose(u, v)
    text = predictor.decode(u)
    assert isinstance(text, str) and text == predictor.predict(PAIR[0], beam_size=1).output
    with pytest.raises(InputError, match=r"vectors must be \[n, 96\]"):
        predictor.decode(np.zeros(5))
    with pytest.raises(InputError, match="NaN"):
        predictor.decode(np.full(96, np.nan))
    with pytest.raises(InputError, match="text is empty"):
        predictor.encode(" ")
    with pytest.raises(InputError, match="reads at most 20"):
        predictor.encode(" ".join(["the"] * 21))
    assert predictor.predict("the zebra destroyed the infection").unknown_tokens == ["zebra"]
