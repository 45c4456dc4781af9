"""Part-of-speech tagging, the task built on the contract: its tokenizer and unknown-word rule (shared by training
and serving), the treebank reader's tags, and a quick run exported natively and served as Keras predicts it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import serving
from pipelines.readers import DataError
from serving.errors import InputError
from serving.pos_tagging import signature, tokenize, word_id

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text, tokens", [
    ("The dog barked.", ["The", "dog", "barked", "."]),
    ("Don't worry, it's fine!", ["Do", "n't", "worry", ",", "it", "'s", "fine", "!"]),
    ('"Hello," he said (quietly).', ["``", "Hello", ",", "''", "he", "said", "-LRB-", "quietly", "-RRB-", "."]),
    ("The U.S. economy grew 3.5% in 1989.", ["The", "U.S.", "economy", "grew", "3.5", "%", "in", "1989", "."]),
    ("It cost $40 in the U.S.", ["It", "cost", "$", "40", "in", "the", "U.S."]),
    ("   ", []),
])
def test_the_tokenizer_splits_text_as_the_penn_treebank_does(text, tokens):
    assert tokenize(text) == tokens


@pytest.mark.parametrize("word, expected", [
    ("running", "<unk:lc:-ing>"), ("Gorbachev", "<unk:cap>"), ("NASDAQ", "<unk:caps>"), ("1989", "<unk:num>"),
    ("3,200.50", "<unk:num>"), ("12.5%", "<unk:num>"), ("anti-takeover", "<unk:lc:dash:-er>"),
    ("Reorganization", "<unk:cap:-ation>"), ("B-52s", "<unk:dig:cap:dash:-s>"), ("--", "<unk:sym:dash>"), ("is", "<unk:lc>"),
])
def test_an_unknown_word_gets_its_signature_by_shape_and_suffix(word, expected):
    assert signature(word) == expected


def test_a_word_id_falls_back_to_lower_case_then_signature_then_unk():
    index = {"<pad>": 0, "<unk>": 1, "<unk:lc:-ing>": 2, "the": 3, "Bank": 4}
    assert [word_id(w, index) for w in ["the", "The", "Bank", "bank", "swimming", "Zork"]] == [3, 3, 4, 1, 2, 1]


def _write_treebank(folder: Path) -> None:
    tree = ("( (S (NP-SBJ (DT The) (NN dog) ) (VP (VBD barked) (NP (-NONE- *T*-1) )) (. .) ))\n"
            "( (S (NP-SBJ (PRP It) ) (VP (VBZ runs) ) (. .) ))\n")
    for number in (1, 160, 180):
        (folder / f"wsj_{number:04d}.mrg").write_text(tree)


def test_the_reader_takes_the_tags_from_the_trees_without_empty_elements(tmp_path):
    from pipelines.pos_tagging import read_tagged

    _write_treebank(tmp_path)
    splits = read_tagged(str(tmp_path))
    assert {k: len(v) for k, v in splits.items()} == {"train": 2, "valid": 2, "test": 2}
    first = splits["train"][0]
    assert first.words == ("The", "dog", "barked", ".") and first.tags == ("DT", "NN", "VBD", ".")
    with pytest.raises(DataError, match="no such treebank"):
        read_tagged(str(tmp_path / "missing"))


def test_the_vocabulary_keeps_frequent_words_and_every_signature():
    from pipelines.pos_tagging import TaggedSentence, Vocabularies

    train = [TaggedSentence(("The", "dog", "barked", "."), ("DT", "NN", "VBD", ".")),
             TaggedSentence(("the", "dog", "sleeps", "."), ("DT", "NN", "VBZ", "."))]
    prep = Vocabularies(train, min_count=2)
    assert {"the", "dog", "."} <= set(prep.vocab) and "barked" not in prep.vocab
    assert "<unk:lc:-ed>" in prep.vocab and "<unk:lc:-s>" in prep.vocab
    assert prep.ids(["The", "barked"]) == [prep.index["the"], prep.index["<unk:lc:-ed>"]]
    assert prep.signature_of[prep.index["dog"]] == prep.index[signature("dog")] if signature("dog") in prep.index \
        else prep.signature_of[prep.index["dog"]] == prep.index["dog"]


@pytest.fixture(scope="module")
def pos_run(pos_tagging_run):
    """conftest.py's quick run (3 epochs): (run dir, metrics)."""
    return pos_tagging_run.out, pos_tagging_run.metrics


def test_a_quick_run_learns_exports_natively_and_serves_what_keras_predicts(pos_run):
    import keras

    from pipelines.pos_tagging import POS_TAGGING, padded, synthetic_tagged

    out, metrics = pos_run
    assert metrics["token_accuracy"] > 0.8 and metrics["onnx_max_abs_diff"] <= 1e-5
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["task"] == "pos_tagging" and meta.get("converter", "native") != "tf2onnx"
    assert json.loads((out / "metrics.json").read_text())["token_accuracy"] == metrics["token_accuracy"]

    predictor = serving.load(out)
    assert predictor.task == "pos_tagging" and predictor.input_kind == "text"
    sentences = synthetic_tagged(100, seed=5)["test"][:20]
    served = predictor.predict_batch([list(s.words) for s in sentences], batch_size=7)
    model = keras.models.load_model(out / "model.keras")
    ids = padded([[word_id(w, predictor.index) for w in s.words] for s in sentences])
    probs = np.asarray(model(ids, training=False)["tag_probs"])
    tags = json.loads(json.dumps(meta["tags"]))
    for row, (sentence, result) in enumerate(zip(sentences, served)):
        assert result.tags == [tags[i] for i in probs[row, : len(sentence.words)].argmax(-1)]
    one = predictor.predict("The new dog rose quickly.")
    assert one.words == ["The", "new", "dog", "rose", "quickly", "."] and len(one.tags) == 6
    assert str(one).startswith("The/") and json.dumps(one.to_dict())
    assert POS_TAGGING.name == "pos_tagging"


def test_bad_input_to_the_pos_predictor_names_the_problem(pos_run):
    predictor = serving.load(pos_run[0])
    with pytest.raises(InputError, match="empty"):
        predictor.predict("   ")
    with pytest.raises(InputError, match="string or a list"):
        predictor.predict(42)
    with pytest.raises(InputError, match=r"inputs\[1\]"):
        predictor.predict_batch(["fine .", ["ok", ""]])
    with pytest.raises(InputError, match="at most"):
        predictor.predict(["x"] * (predictor.max_len + 1))


def test_the_command_line_serves_a_pos_run(pos_run):
    done = subprocess.run([sys.executable, "-m", "serving", "predict", str(pos_run[0]), "The dog rose.", "--json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["words"] == ["The", "dog", "rose", "."] and len(result["tags"]) == 4


def test_accuracy_is_reported_on_out_of_vocabulary_and_unseen_words_apart():
    from pipelines.pos_tagging import TaggedSentence, Vocabularies, accuracy

    train = [TaggedSentence(("the", "dog", "barked"), ("DT", "NN", "VBD")),
             TaggedSentence(("the", "dog", "ran"), ("DT", "NN", "VBD"))]
    prep = Vocabularies(train, min_count=2)
    tag = {t: i for i, t in enumerate(prep.tags)}

    class Fixed:  # says DT, NN, NN for every sentence
        def __call__(self, ids, training=False):
            probs = np.zeros(ids.shape + (len(prep.tags),), np.float32)
            probs[:, 0, tag["DT"]] = probs[:, 1, tag["NN"]] = probs[:, 2, tag["NN"]] = 1
            return {"tag_probs": probs}

    test = [TaggedSentence(("the", "dog", "barked"), ("DT", "NN", "VBD")),  # barked: seen once, out of vocabulary
            TaggedSentence(("the", "cat", "sat"), ("DT", "NN", "VBD"))]     # cat, sat: never seen
    scores = accuracy(Fixed(), prep, test)
    assert scores["token_accuracy"] == 4 / 6 and scores["sentence_accuracy"] == 0
    assert (scores["oov_words"], scores["oov_word_accuracy"]) == (3, 1 / 3)
    assert (scores["unseen_words"], scores["unseen_word_accuracy"]) == (2, 1 / 2)
