"""Sentiment: the rt-polarity reader, word and character tokens, the three read-outs, export and serving."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import serving
from pipelines.polarity import read_polarity
from pipelines.readers import DataError
from serving import InputError
from serving.sentiment import TruncatedInputWarning
from serving.tokenizer import CharTokenizer

ROOT = Path(__file__).resolve().parents[1]


# --- reader ---------------------------------------------------------------------------------------------------------

def _write_polarity(folder: Path, n: int = 20, pos_extra: bytes = b"") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, word in (("rt-polarity.pos", b"good"), ("rt-polarity.neg", b"bad")):
        lines = [b"%s film number %d" % (word, i) for i in range(n)]
        if name.endswith("pos"):
            lines[2] += pos_extra
        (folder / name).write_bytes(b"\n".join(lines) + b"\n")
    return folder


def test_split_follows_line_index_mod_10(tmp_path):
    splits = read_polarity(_write_polarity(tmp_path / "rt", n=25))
    assert {k: len(v) for k, v in splits.items()} == {"train": 38, "valid": 6, "test": 6}
    assert [ex.text for ex in splits["test"] if ex.label == "positive"] == [
        "good film number 0", "good film number 10", "good film number 20"]
    assert [ex.text for ex in splits["valid"] if ex.label == "negative"][0] == "bad film number 1"


def test_cp1252_bytes_decode_and_0x85_is_not_a_line_break(tmp_path):
    # 0x85 is "…" in cp1252 (U+0085, a line break for str.splitlines, if decoded as latin-1); 0x97 is an em dash.
    splits = read_polarity(_write_polarity(tmp_path / "rt", pos_extra=b" \x85 wow \x97 caf\xe9"))
    texts = [ex.text for split in splits.values() for ex in split]
    assert len(texts) == 40
    assert "good film number 2 \u2026 wow \u2014 caf\u00e9" in texts


def test_utf8_file_read_as_cp1252_is_refused(tmp_path):
    folder = _write_polarity(tmp_path / "rt", pos_extra="  café".encode("utf-8"))
    with pytest.raises(DataError, match=r"rt-polarity.pos is UTF-8 text, not cp1252; pass --encoding utf-8"):
        read_polarity(folder)
    splits = read_polarity(folder, encoding="utf-8")
    assert any("café" in ex.text for ex in splits["valid"] + splits["train"] + splits["test"])


def test_bytes_undefined_in_cp1252_name_the_offset_and_line(tmp_path):
    folder = _write_polarity(tmp_path / "rt", pos_extra=b" \x81")
    offset = len(b"good film number 0\ngood film number 1\ngood film number 2 ")
    with pytest.raises(DataError, match=rf"not cp1252 text \(byte 0x81 at offset {offset}, line 3\)"):
        read_polarity(folder)


def test_missing_file_and_empty_line(tmp_path):
    folder = _write_polarity(tmp_path / "rt")
    (folder / "rt-polarity.neg").write_bytes(b"bad\n\nworse\n")
    with pytest.raises(DataError, match=r"rt-polarity.neg:2: empty line"):
        read_polarity(folder)
    (folder / "rt-polarity.neg").unlink()
    with pytest.raises(DataError, match="missing data file: .*rt-polarity.neg"):
        read_polarity(folder)


# --- character tokens -----------------------------------------------------------------------------------------------

def test_char_tokenizer_matches_tensorflow_text():
    import tensorflow as tf

    from pipelines import text
    from tests.test_tokenizer import TRICKY

    tf_chars = [[c.decode() for c in row] for row in text.chars(tf.constant(TRICKY)).to_list()]
    assert [CharTokenizer()(t) for t in TRICKY] == tf_chars
    assert CharTokenizer()("  Hi\t\tTHERE ") == ["h", "i", "▁", "t", "h", "e", "r", "e"]


# --- models and their ONNX form ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("readout", ["last", "mean", "attention"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_readouts_convert_to_native_onnx_exactly(readout, bidirectional):
    import onnxruntime as ort

    from export.keras_onnx import convert
    from models.sentiment import build_text_classifier

    model = build_text_classifier(40, 3, readout=readout, cell="gru", embed_dim=8, units=6, layers=2,
                                  bidirectional=bidirectional)
    ids = np.array([[3, 4, 5, 0, 0, 0], [6, 7, 8, 9, 2, 11], [1, 0, 0, 0, 0, 0]], np.int32)
    session = ort.InferenceSession(convert(model).SerializeToString())
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"token_ids": ids})))
    expected = model(ids, training=False)
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert np.abs(got[name] - np.asarray(value)).max() <= 1e-5, name


@pytest.mark.parametrize("readout", ["last", "attention"])
def test_an_ensemble_averages_its_members_and_converts_exactly(readout):
    import keras
    import onnxruntime as ort

    from export.keras_onnx import convert
    from models.sentiment import build_text_classifier, member_outputs

    model = build_text_classifier(40, 2, readout=readout, embed_dim=8, units=6, members=3)
    members = member_outputs(model)
    assert sorted(members) == ["m0_class_probs", "m1_class_probs", "m2_class_probs"]
    ids = np.array([[3, 4, 5, 0], [6, 7, 8, 9]], np.int32)
    each = [np.asarray(p) for p in keras.Model(model.input, members)(ids).values()]
    np.testing.assert_allclose(np.asarray(model(ids)["class_probs"]), np.mean(each, axis=0), atol=1e-6)
    session = ort.InferenceSession(convert(model).SerializeToString())
    got = session.run(["class_probs"], {"token_ids": ids})[0]
    assert np.abs(got - np.mean(each, axis=0)).max() <= 1e-6


def test_padding_never_changes_a_prediction():
    from models.sentiment import build_text_classifier

    for readout in ("last", "mean", "attention"):
        model = build_text_classifier(30, 2, readout=readout, embed_dim=8, units=6, dropout=0.0)
        short = np.array([[5, 6, 7]], np.int32)
        padded = np.array([[5, 6, 7, 0, 0, 0, 0]], np.int32)
        a, b = model(short, training=False), model(padded, training=False)
        np.testing.assert_allclose(a["class_probs"], b["class_probs"], atol=1e-6, err_msg=readout)
        if readout == "attention":
            weights = np.asarray(b["attention_weights"])[0]
            assert weights[3:].max() == 0.0 and abs(weights.sum() - 1.0) < 1e-6


# --- the naive-Bayes n-gram path ----------------------------------------------------------------------------------------

def test_ngram_keys_read_the_ids_in_base_vocab_size_and_mask_padding():
    from models.ngrams import NaiveBayesNgrams, ngram_keys

    ids = np.array([[3, 4, 5, 0], [7, 0, 0, 0]], np.int32)
    bigrams, real = (np.asarray(t) for t in ngram_keys(ids, 2, 50))
    assert bigrams[0, :2].tolist() == [3 * 50 + 4, 4 * 50 + 5]
    assert real.tolist() == [[True, True, False, False], [False, False, False, False]]
    trigrams, real3 = (np.asarray(t) for t in ngram_keys(ids[:, :2], 3, 50))  # shorter than the order
    assert trigrams.shape == (2, 2) and not real3.any()
    with pytest.raises(ValueError, match="3-gram keys over 3000000 tokens overflow int64"):
        NaiveBayesNgrams(3_000_000, 2, [1, 1])


def test_naive_bayes_tables_favour_the_class_an_ngram_occurs_in():
    from pipelines.ngrams import count_tables

    ids = np.array([[2, 3, 4], [2, 3, 0], [5, 3, 4], [5, 6, 0]], np.int32)  # "2 3" only in class 1, "5" only in 0
    sizes, (unigrams, keys, bigrams) = count_tables([ids[:2], ids[2:]], np.array([1, 1, 0, 0]), 2, 8, 2)
    assert unigrams[2, 1] > 0 > unigrams[2, 0] and unigrams[5, 0] > 0 > unigrams[5, 1]
    assert abs(unigrams[4, 0] - unigrams[4, 1]) < 1e-6  # once in each class, both classes 5 tokens long
    assert unigrams[7].tolist() == [0.0, 0.0] and unigrams[0].tolist() == [0.0, 0.0]  # unseen, padding
    assert sizes == [5] and keys.tolist() == [-1, 2 * 8 + 3, 3 * 8 + 4, 5 * 8 + 3, 5 * 8 + 6]
    assert bigrams[0].tolist() == [0.0, 0.0] and bigrams[1, 1] > 0 > bigrams[1, 0] and bigrams[3, 0] > 0
    assert abs(bigrams[2]).max() < 1e-6  # "3 4": once in each class
    with pytest.raises(ValueError, match="more texts in the batches than the 3 labels"):
        count_tables([ids], np.array([1, 1, 0]), 2, 8, 2)
    with pytest.raises(ValueError, match="4 texts in the batches but 5 labels"):
        count_tables([ids], np.array([1, 1, 0, 0, 1]), 2, 8, 2)


def test_fit_mix_recovers_the_weights_that_made_the_labels():
    from pipelines.ngrams import fit_mix

    rng = np.random.default_rng(0)
    n = 20000
    probs = rng.dirichlet([1.0, 1.0], n).astype(np.float32)
    scores = rng.normal(0, 2, (n, 2)).astype(np.float32)
    logits = 1.5 * np.log(probs) + 0.5 * scores + np.array([0.3, 0.0])
    q = np.exp(logits - logits.max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    labels = (rng.random(n) < q[:, 1]).astype(int)
    a, b, c = fit_mix(probs, scores, labels)
    assert a == pytest.approx(1.5, abs=0.1) and b == pytest.approx(0.5, abs=0.05)
    assert c[0] - c[1] == pytest.approx(0.3, abs=0.1)
    inverted = probs[:, ::-1].copy()  # a model that is anti-correlated with the labels is ignored, not inverted
    a, b, _ = fit_mix(inverted, scores, labels)
    assert a == 0.0 and b > 0.1


def test_the_naive_bayes_path_converts_natively_and_survives_saving(tmp_path):
    import keras
    import onnxruntime as ort

    from export.keras_onnx import convert
    from models.ngrams import with_naive_bayes
    from models.sentiment import build_text_classifier

    model = build_text_classifier(40, 2, embed_dim=8, units=6)
    ids = np.array([[3, 4, 5, 0, 0, 0], [6, 7, 8, 9, 2, 11], [1, 0, 0, 0, 0, 0]], np.int32)
    mixed = with_naive_bayes(model, 40, output="class_probs", sizes=[4, 3])
    np.testing.assert_allclose(mixed(ids)["class_probs"], model(ids)["class_probs"], atol=1e-6)  # a=1, b=0: as trained
    rng = np.random.default_rng(1)
    bigram_keys = np.array([-1, 3 * 40 + 4, 6 * 40 + 7, 8 * 40 + 9], np.int64)  # seen: "3 4", "6 7", "8 9"
    trigram_keys = np.array([-1, (3 * 40 + 4) * 40 + 5, (7 * 40 + 8) * 40 + 9], np.int64)
    unigrams, bigrams, trigrams = (rng.normal(size=(k, 2)).astype(np.float32) for k in (40, 4, 3))
    bigrams[0] = trigrams[0] = 0.0
    mixed.get_layer("naive_bayes").set_weights([unigrams, bigram_keys, bigrams, trigram_keys, trigrams])
    path = mixed.get_layer("naive_bayes")
    expected_scores = unigrams[[3, 4, 5]].sum(0) + bigrams[1] + trigrams[1]  # "4 5" unseen
    np.testing.assert_allclose(np.asarray(path(ids[:1]))[0], expected_scores, rtol=1e-6)
    mixed.get_layer("mix").set_weights([np.float32(0.8), np.float32(0.4), np.array([0.2, -0.2], np.float32)])
    expected = {k: np.asarray(v) for k, v in mixed(ids).items()}
    assert np.abs(expected["class_probs"] - np.asarray(model(ids)["class_probs"])).max() > 0.01
    session = ort.InferenceSession(convert(mixed).SerializeToString())
    for batch in (ids, ids[:, :1], ids[:, :2]):
        got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"token_ids": batch})))
        want = {k: np.asarray(v) for k, v in mixed(batch).items()}
        assert set(got) == {"class_probs", "attention_weights"}
        assert np.abs(got["class_probs"] - want["class_probs"]).max() <= 1e-6
    # The n-gram scores are summed in float64, so neither padding nor batch-mates change them by a single bit.
    scorer = ort.InferenceSession(convert(keras.Model(mixed.input, path.output)).SerializeToString())
    batch_scores = scorer.run(None, {"token_ids": ids})[0]
    np.testing.assert_array_equal(scorer.run(None, {"token_ids": np.pad(ids, [(0, 0), (0, 9)])})[0], batch_scores)
    for row in range(len(ids)):
        alone = ids[row:row + 1, :max(1, int((ids[row] > 0).sum()))]
        np.testing.assert_array_equal(scorer.run(None, {"token_ids": alone})[0][0], batch_scores[row])
        np.testing.assert_array_equal(np.asarray(path(alone))[0], batch_scores[row])
    mixed.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded(ids)["class_probs"], expected["class_probs"], atol=1e-7)


# --- a trained run: export, serving ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def word_run(sentiment_run):
    """conftest.py's quick sentiment run (word tokens, 5 epochs, naive-Bayes path): (run dir, metrics)."""
    return sentiment_run.out, sentiment_run.metrics


@pytest.fixture(scope="module")
def predictor(word_run):
    return serving.load(word_run[0])


def test_run_learns_the_builtin_data_and_exports_with_parity(word_run):
    out, metrics = word_run
    assert metrics["accuracy"] >= 0.85, metrics
    assert metrics["onnx_max_abs_diff"] <= 1e-5
    assert 0 <= metrics["naive_bayes_accuracy"] <= 1 and 0 <= metrics["recurrent_accuracy"] <= 1
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["task"] == "sentiment" and meta["labels"] == ["negative", "positive"]
    assert meta["outputs"]["attention_weights"]["shape"] == ["batch", "time"]
    assert meta["tokenizer"]["name"] == "casefold_punct_v1" and meta["max_len"] == 128
    assert max(meta["parity"]["saved_model_max_abs_diff"].values()) <= 1e-5
    assert meta["onnx_converter"] == "native" and meta["model"]["naive_bayes"] == 2
    for name in ("model.onnx", "saved_model", "metrics.json", "train.log", "vocab.txt", "labels.txt"):
        assert (out / name).exists(), name


def test_served_probabilities_equal_keras(word_run, predictor):
    import keras

    import models  # noqa: F401

    model = keras.saving.load_model(word_run[0] / "model.keras", compile=False)
    texts = ["the acting is superb .", "although the plot is clever , the ending is tedious .", "a dull , lazy movie"]
    results = predictor.predict_batch(texts)
    ids = np.zeros((3, max(len(r.tokens) for r in results)), np.int32)
    for row, r in enumerate(results):
        ids[row, : len(r.tokens)] = predictor.vocab.ids(r.tokens)
    expected = np.asarray(model(ids, training=False)["class_probs"])
    got = np.array([[r.probabilities["negative"], r.probabilities["positive"]] for r in results])
    assert np.abs(got - expected).max() <= 1e-5
    assert [r.label for r in results] == ["positive", "negative", "negative"]
    assert abs(sum(w for _, w in results[0].attention) - 1.0) < 1e-4
    assert [t for t, _ in results[0].attention] == results[0].tokens


def test_bad_input_is_named(predictor):
    for text in ("", "  \t "):
        with pytest.raises(InputError, match="text is empty"):
            predictor.predict(text)
    with pytest.raises(InputError, match=r"texts\[1\] is empty"):
        predictor.predict_batch(["good", ""])
    with pytest.raises(InputError, match=r"not UTF-8 text \(byte 0xe9 at offset 3\)"):
        predictor.predict(b"caf\xe9 is great")
    assert predictor.predict("café".encode("utf-8")).text == "café"
    with pytest.raises(InputError, match="must be a string, got int"):
        predictor.predict(3)
    with pytest.raises(InputError, match="predict_batch takes a list"):
        predictor.predict_batch("one string")


def test_text_longer_than_the_limit_is_truncated_with_a_warning(predictor):
    text = "the film is superb . " * 40  # 200 words > max_len 128
    with pytest.warns(TruncatedInputWarning, match="has 200 tokens; this model reads at most 128"):
        result = predictor.predict(text)
    assert result.truncated and len(result.tokens) == 128
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not predictor.predict("the film is superb .").truncated


def test_cli_predict_prints_label(word_run):
    done = subprocess.run([sys.executable, "-m", "serving", "predict", "--json", str(word_run[0]),
                           "the acting is superb ."], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["label"] == "positive"


def test_char_tokens_run_end_to_end(tmp_path):
    from pipelines.sentiment import SentimentConfig, run

    out = tmp_path / "chars"
    metrics = run(SentimentConfig(out=str(out), tokens="char", readout="last", quick=True, epochs=2,
                                  synthetic_size=400))
    assert metrics["onnx_max_abs_diff"] <= 1e-5
    result = serving.load(out).predict("Superb  film!")
    assert result.tokens == ["s", "u", "p", "e", "r", "b", "▁", "f", "i", "l", "m", "!"]
    assert result.attention == [] and result.label in ("negative", "positive")


def test_the_old_units_flag_still_sets_tokens():
    from pipelines.common import build_parser, with_deprecated
    from pipelines.sentiment import SentimentConfig

    with pytest.warns(FutureWarning, match="--units is deprecated; use --tokens"):
        assert build_parser(SentimentConfig, "").parse_args(["--units", "char"]).tokens == "char"
    with pytest.warns(FutureWarning, match="--units is deprecated; use --tokens"):
        assert with_deprecated(SentimentConfig, units="char").resolved().max_len == 512


def test_bad_settings_exit_2_with_a_message(tmp_path, capsys):
    from pipelines.sentiment import main

    assert main(["--dropout", "1.5", "--out", str(tmp_path / "x")]) == 2
    assert "--dropout must be in [0, 1), got 1.5" in capsys.readouterr().err
    assert main(["--data-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert "no such data folder" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_language_model_targets_are_the_next_and_previous_tokens(tmp_path):
    from pipelines import text_data
    from pipelines.polarity import TextExample

    examples = [TextExample("a b c", "positive"), TextExample("c a", "negative")]
    vocab, labels = text_data.build_vocabularies(examples, "word")
    assert vocab == ["<pad>", "<unk>", "a", "c", "b"]
    text_data.write_vocabularies(tmp_path, vocab, labels)
    preprocessor = text_data.TextPreprocessor(tmp_path, "word", 16)
    dataset = text_data.language_model_dataset(examples, preprocessor, batch_size=1, seed=0, out_vocab=4,
                                               bidirectional=True)
    seen = {tuple(ids.numpy()[0]): {k: v.numpy()[0].tolist() for k, v in y.items()} for ids, y in dataset}
    # "b" (id 4) is beyond the 4 predicted ids, so as a target it is <unk> (1); -1 marks "nothing to predict".
    assert seen[(2, 4, 3)] == {"next": [1, 3, -1], "previous": [-1, 2, 1]}
    assert seen[(3, 2)] == {"next": [2, -1], "previous": [-1, 3]}


@pytest.mark.parametrize("bidirectional", [True, False])
def test_pretrained_layers_move_into_the_classifier(bidirectional):
    from models.sentiment import build_language_model, build_text_classifier, copy_pretrained

    lm = build_language_model(30, 10, embed_dim=8, units=6, bidirectional=bidirectional, prefix="m1_")
    assert sorted(lm.output) == (["next", "previous"] if bidirectional else ["next"])
    classifier = build_text_classifier(30, 2, readout="last", embed_dim=8, units=6, bidirectional=bidirectional,
                                       members=2)
    copy_pretrained(lm, classifier, "m1_")
    for name in ("m1_embedding", "m1_rnn_0"):
        for a, b in zip(lm.get_layer(name).get_weights(), classifier.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(classifier.get_layer("m0_embedding").get_weights()[0],
                              lm.get_layer("m1_embedding").get_weights()[0])


@pytest.mark.parametrize("readout", ["last", "attention"])
def test_the_embedding_path_converts_exactly_and_ignores_padding(readout):
    import onnxruntime as ort

    from export.keras_onnx import convert
    from models.sentiment import build_text_classifier

    model = build_text_classifier(30, 2, readout=readout, embed_dim=8, units=6, pool_embeddings=True, dropout=0.0)
    assert model.get_layer("embedding_pooling").mode == "max"
    ids = np.array([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12]], np.int32)
    session = ort.InferenceSession(convert(model).SerializeToString())
    got = session.run(["class_probs"], {"token_ids": ids})[0]
    assert np.abs(got - np.asarray(model(ids)["class_probs"])).max() <= 1e-5
    np.testing.assert_allclose(np.asarray(model(ids[:1, :3])["class_probs"]), got[:1], atol=1e-6)
