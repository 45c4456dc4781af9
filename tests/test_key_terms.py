"""Key terms: document tokenizer parity, Inspec reader, stem labelling, F1@k, TF-IDF baseline, windows, decoding,
export parity, served terms and their offsets, bad input."""

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import serving
from pipelines.inspec import read_documents, read_inspec
from pipelines.keyphrases import TfidfBaseline, gold_keys, label_document, phrase_key, prf, score_rankings
from pipelines.readers import DataError
from serving import InputError
from serving.doc_tokenizer import DocTokenizer
from serving.key_terms import decode_spans, rank_terms, stitch, term_key, window_starts

ROOT = Path(__file__).resolve().parents[1]
TRICKY = [
    "Neural Networks: a survey.\r\n\tSecond line,with  TABS\tand\r\rCR only",
    "",
    "  \t\r\n ",
    "ﬁne Straße İstanbul ΣΑΣ café naïve a\u00adb \u00ad x#y~z&w",
    'a.b,c;d:e(f)g{h}|i\\j^k`l_m@n=o<p>q+r*s%t$u!"v?w/x [1998] non-linear user\'s -- end.',
    "\u2028 end. \u3000日本語。 x\u200by \u00a8 — «quoted» …",
]


def _words(text):
    return [t.text for t in DocTokenizer()(text)]


# --- tokenizer --------------------------------------------------------------------------------------------------------

def test_doc_tokenizer_matches_tensorflow_text_tokens_and_offsets():
    import tensorflow as tf

    from pipelines import text

    tokens, starts, ends = text.tokenize_with_offsets(tf.constant(TRICKY))
    for row, raw in enumerate(TRICKY):
        python = DocTokenizer()(raw)
        assert [t.text for t in python] == [t.decode("utf-8") for t in tokens[row].numpy()], raw
        encoded = raw.encode("utf-8")
        tf_offsets = [(len(encoded[:s].decode("utf-8")), len(encoded[:e].decode("utf-8")))
                      for s, e in zip(starts[row].numpy(), ends[row].numpy())]
        assert [(t.start, t.end) for t in python] == tf_offsets, raw


def test_doc_tokenizer_splits_punctuation_but_not_hyphens_or_apostrophes():
    text = "Wavelength services.\r\n\tThe user's non-linear (MIMO) systems, e.g. 3-D."
    tokens = DocTokenizer()(text)
    assert [t.text for t in tokens] == ["wavelength", "services", ".", "the", "user's", "non-linear", "(", "mimo", ")",
                                        "systems", ",", "e", ".", "g", ".", "3-d", "."]
    assert [text[t.start : t.end] for t in tokens][:2] == ["Wavelength", "services"]
    assert all(text[t.start : t.end].casefold() == t.text for t in tokens)
    assert DocTokenizer()("ﬁne")[0] == ("fine", 0, 3)  # folding changes the length; offsets stay in the original


# --- reader -----------------------------------------------------------------------------------------------------------

def _zip(path: Path, docs: dict, keys: dict, extra: dict | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("Inspec/", b"")
        for doc_id, raw in docs.items():
            z.writestr(f"Inspec/docsutf8/{doc_id}.txt", raw)
        for doc_id, raw in keys.items():
            z.writestr(f"Inspec/keys/{doc_id}.key", raw)
        for name, raw in (extra or {}).items():
            z.writestr(name, raw)
    return path


def _inspec_zip(folder: Path, n: int = 8, **changes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    ids = [2, 10, 9, 100, 33, 4, 7, 50][:n]
    docs = {i: b"Title of doc %d\r\nFirst line of the\n\tabstract %d about\n\tfilter banks.\r\n" % (i, i) for i in ids}
    keys = {i: b"filter banks\nobjective \tfunction\r\n\tFilter Banks\n\nsignal processing\r\n" for i in ids}
    for name, value in changes.items():
        {"docs": docs, "keys": keys}[name].update(value)
    return _zip(folder / "Inspec.zip", docs, keys, {"Inspec/language.txt": b"english\n"})


def test_reader_cleans_line_endings_tabs_and_splits_by_numeric_id(tmp_path):
    zip_path = _inspec_zip(tmp_path / "data")
    splits = read_inspec(tmp_path / "data")
    assert {k: [d.doc_id for d in v] for k, v in splits.items()} == {
        "train": ["2", "4", "7", "9"], "valid": ["10", "33"], "test": ["50", "100"]}
    doc = splits["train"][0]
    assert doc.text == "Title of doc 2\nFirst line of the abstract 2 about filter banks."
    assert doc.keyphrases == ("filter banks", "objective function", "signal processing")
    assert [d.doc_id for d in read_documents(zip_path)] == ["2", "4", "7", "9", "10", "33", "50", "100"]
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(tmp_path / "extracted")
    assert read_documents(tmp_path / "extracted") == read_documents(tmp_path / "extracted" / "Inspec") == \
        read_documents(zip_path)


def test_reader_errors_name_the_member(tmp_path):
    with pytest.raises(DataError, match="no such Inspec data"):
        read_documents(tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "Inspec.zip").write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(DataError, match=r"Inspec.zip is not a readable zip file"):
        read_documents(tmp_path / "bad")
    only_docs = _zip(tmp_path / "docs.zip", {1: b"text"}, {})
    with pytest.raises(DataError, match=r"docs.zip has no Inspec/keys/<id>.key members"):
        read_documents(only_docs)
    neither = _zip(tmp_path / "other.zip", {}, {}, {"README.md": b"hello"})
    with pytest.raises(DataError, match=r"has no Inspec/docsutf8/<id>.txt members"):
        read_documents(neither)
    no_key = _zip(tmp_path / "nokey.zip", {1: b"a", 2: b"b"}, {1: b"k"})
    with pytest.raises(DataError, match=r"nokey.zip:Inspec/docsutf8/2.txt has no key file \(Inspec/keys/2.key"):
        read_documents(no_key)
    latin = _inspec_zip(tmp_path / "latin", keys={9: b"caf\xe9 society\n"})
    with pytest.raises(DataError, match=r"Inspec.zip:Inspec/keys/9.key is not UTF-8 text \(byte 0xe9 at offset 3\)"):
        read_documents(latin)
    empty = _inspec_zip(tmp_path / "empty", docs={4: b"\r\n\t \n"})
    with pytest.raises(DataError, match=r"Inspec/docsutf8/4.txt is empty"):
        read_documents(empty)


def test_corrupt_member_is_named(tmp_path):
    path = _inspec_zip(tmp_path / "crc")
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
        info = z.getinfo("Inspec/docsutf8/7.txt")
    body = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[body] ^= 0xFF  # stored member: flip a byte of its content, so its CRC no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"cannot read .*Inspec.zip:Inspec/docsutf8/7.txt \(Bad CRC-32"):
        read_documents(path)


# --- labels and evaluation ---------------------------------------------------------------------------------------------

def test_labels_match_porter_stems_and_prefer_longer_phrases():
    words = _words("Adaptive filter banks for neural networks. A neural network with an adaptive filter.")
    phrases = [_words(p) for p in ("adaptive filter", "Adaptive Filter Bank", "neural network", "fuzzy logic")]
    labels, present = label_document(words, phrases)
    tagged = [(w, "OBI"[t]) for w, t in zip(words, labels) if t]
    assert tagged == [("adaptive", "B"), ("filter", "I"), ("banks", "I"), ("neural", "B"), ("networks", "I"),
                      ("neural", "B"), ("network", "I"), ("adaptive", "B"), ("filter", "I")]
    assert present == [True, True, True, False]
    all_keys, present_keys = gold_keys(words, phrases)
    assert all_keys == {"adapt filter", "adapt filter bank", "neural network", "fuzzi logic"}
    assert present_keys == all_keys - {"fuzzi logic"}


def test_adjacent_phrases_each_start_with_b():
    labels, _ = label_document(_words("support vector machine learning"), [["support", "vector"], ["machine", "learning"]])
    assert labels == [1, 2, 1, 2]


def test_stemmed_f1_at_k_on_a_hand_made_case():
    gold = {phrase_key(p) for p in ("neural networks", "filter bank", "speech recognition", "signal")}
    predicted = [phrase_key(p) for p in ("Neural Network", "neural networks", "Filter Banks", "audio", "noise",
                                         "speech", "signals")]
    scores = score_rankings([predicted], [gold], [gold - {phrase_key("speech recognition")}])
    # de-duplicated by stem: neural network ✓, filter bank ✓, audio, noise, speech, signal ✓
    assert scores["p_at_5"] == 0.4 and scores["r_at_5"] == 0.5 and scores["f1_at_5"] == pytest.approx(0.4444, abs=1e-4)
    assert scores["p_at_10"] == 0.3 and scores["r_at_10"] == 0.75  # precision counts the missing 4 as wrong
    assert scores["p_at_m"] == 0.5 and scores["f1_at_m"] == pytest.approx(0.6)
    assert scores["present_r_at_m"] == 1.0 and scores["present_f1_at_m"] == pytest.approx(2 * 0.5 / 1.5, abs=1e-4)
    assert scores["predicted_per_document"] == 6
    assert prf([], {"a"}, 5) == (0.0, 0.0, 0.0)


def test_tfidf_ranks_repeated_rare_ngrams_first():
    corpus = ["the method of the system is good", "a method for the network", "the system and the method"]
    baseline = TfidfBaseline().fit((_words(t), []) for t in corpus)
    ranked = baseline.rank(_words("Wavelet filter banks. The method uses wavelet filter banks and a system"))
    keys = [k for k, _ in ranked]
    # twice each, never in the corpus; ties: earlier first, then longer
    assert keys[:6] == ["wavelet filter bank", "wavelet filter", "wavelet", "filter bank", "filter", "bank"]
    assert keys.index("wavelet") < keys.index("method")  # method: in every training document
    assert not any(k.split()[0] in ("the", "and", "a") or k.split()[-1] in ("the", "and", "a") for k in keys)
    assert "method use" not in keys and "bank the method" not in keys  # stop word at an edge; across "."
    assert "bank system" in [k for k, _ in baseline.rank(_words("filter bank\nsystem design"))]
    assert "bank system" not in [k for k, _ in baseline.rank(_words("filter bank\nsystem design"), breaks=[2])]


# --- windows and decoding -----------------------------------------------------------------------------------------------

def test_windows_cover_the_document_and_tokens_come_from_the_most_central_window():
    assert window_starts(40, 48, 32) == [0]
    starts = window_starts(100, 48, 32)
    assert starts == [0, 32, 52]
    probs = [np.full((48, 3), float(w)) for w in range(len(starts))]
    stitched = stitch(probs, starts, 100)[:, 0]
    # token 40: 7 from window 0's end, 8 from window 1's start → window 1; token 70: window 1 (9 to its end) vs
    # window 2 (18 from its start) → window 2
    assert stitched[0] == 0 and stitched[23] == 0 and stitched[40] == 1 and stitched[70] == 2 and stitched[99] == 2


def test_decoding_spans_scores_and_merged_terms():
    text = "Filter banks, and a filter bank ( x ). Noise"
    tokens = DocTokenizer()(text)
    words = [t.text for t in tokens]
    o, b, i = [0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7]
    probs = np.array([b, i, o, o, o, b, i, b, i, i, o, [0.4, 0.35, 0.25]], dtype=np.float32)
    assert words == ["filter", "banks", ",", "and", "a", "filter", "bank", "(", "x", ")", ".", "noise"]
    spans, tags = decode_spans(probs, ["O", "B-KP", "I-KP"], words)
    assert tags == ["B-KP", "I-KP", "O", "O", "O", "B-KP", "I-KP", "B-KP", "I-KP", "I-KP", "O", "B-KP"]
    assert [(s, e) for s, e, _ in spans] == [(0, 2), (5, 7), (8, 9), (11, 12)]  # "( x )" trimmed to "x"
    assert spans[0][2] == pytest.approx(0.75)
    terms = rank_terms(text, tokens, spans, "max")
    assert [t.term for t in terms] == ["Filter banks", "x", "Noise"]
    assert terms[0].offsets == [(0, 12), (20, 31)] and text[20:31] == "filter bank"
    assert terms[0].score == pytest.approx(0.75) and terms[2].score == pytest.approx(0.35)
    noisy = rank_terms(text, tokens, spans, "noisy_or")
    assert noisy[0].score == pytest.approx(1 - 0.25 * 0.25)
    assert term_key(["neural", "networks"]) == term_key(["neural", "network"]) and term_key(["analysis"]) == "analysis"


# --- trained model: export, serving, windows, errors ------------------------------------------------------------------

@pytest.fixture(scope="module")
def kt_run(key_terms_run):
    """conftest.py's small key-term run on built-in documents, with windows of 48 tokens (documents are ~60-160):
    (run dir, metrics)."""
    return key_terms_run.out, key_terms_run.metrics


@pytest.fixture(scope="module")
def predictor(kt_run):
    return serving.load(kt_run[0])


def test_run_learns_the_planted_phrases_and_beats_tfidf(kt_run):
    out, metrics = kt_run
    assert json.loads((out / "metrics.json").read_text())["rnn_f1_at_m"] == metrics["rnn_f1_at_m"]
    assert metrics["rnn_f1_at_m"] > 0.6 and metrics["rnn_present_f1_at_5"] > metrics["tfidf_present_f1_at_5"]
    assert 0 < metrics["test_absent_gold"] < metrics["test_gold"]
    assert {"dev_rnn_f1_at_10", "tfidf_f1_at_10", "rnn_present_r_at_m", "test_absent_gold_pct"} <= set(metrics)
    for name in ("model.onnx", "metadata.json", "saved_model", "model.keras", "vocab.txt", "tags.txt", "train.log"):
        assert (out / name).exists(), name


def test_export_parity_and_self_describing_metadata(kt_run):
    out, metrics = kt_run
    meta = json.loads((out / "metadata.json").read_text())
    assert metrics["onnx_max_abs_diff"] <= 1e-5 and metrics["saved_model_max_abs_diff"] <= 1e-5
    assert max(meta["parity"]["onnx_max_abs_diff"].values()) <= 1e-5
    assert meta["task"] == "key_terms" and meta["tokenizer"]["name"] == "casefold_words_v1"
    assert meta["tags"] == ["O", "B-KP", "I-KP"] and meta["max_len"] == 48 and meta["window"]["stride"] == 32
    assert meta["decoding"]["threshold"] == metrics["decoding_threshold"] in (0.1, 0.2, 0.3, 0.4, 0.5)  # on dev
    assert meta["decoding"]["merge"] == ("noisy_or" if metrics["decoding_noisy_or"] else "max")
    assert meta["vocab"][:2] == ["<pad>", "<unk>"]
    assert meta["onnx_converter"] == "native"


def test_conformance_file_is_what_the_doc_tokenizer_gives(kt_run):
    """The spec states the Unicode facts of the word and character specs; tokenizer_conformance.json (hard cases:
    every White_Space character, invisible characters, punctuation, case folding, combining marks, emoji, CJK) is
    reproduced exactly by serving's document tokenizer, tokens, offsets and ids."""
    from serving import conformance
    from serving.tokenizer import unicode_rules

    meta = json.loads((kt_run[0] / "metadata.json").read_text())
    spec, index = meta["tokenizer"], {token: i for i, token in enumerate(meta["vocab"])}
    assert {key: spec[key] for key in unicode_rules()} == unicode_rules()
    data = json.loads((kt_run[0] / conformance.FILE).read_text())
    assert data["tokenizer"] == spec and data["vocab_key"] == "vocab" and len(data["cases"]) >= 300
    tokenize = DocTokenizer(spec)
    for case in data["cases"]:
        tokens = tokenize(case["input"])
        assert case["tokens"] == [t.text for t in tokens] and case["offsets"] == [[t.start, t.end] for t in tokens]
        assert case["ids"] == [index.get(t, meta["unk_id"]) for t in case["tokens"]]
    cases = {c["input"]: (c["tokens"], c["offsets"]) for c in data["cases"]}
    assert all(cases[f"st.{w}louis"] == (["st", ".", "louis"], [[0, 2], [2, 3], [4, 9]]) for w in conformance.WHITE)
    assert cases["soft\u00adhyphen zero\u200bwidth"] == (["softhyphen", "zerowidth"], [[0, 11], [12, 22]])
    assert cases["a \u00ad b\u200b \ufeff."] == (["a", "b", "."], [[0, 1], [4, 6], [8, 9]])
    assert cases["Straße nach Zürich"][0] == ["strasse", "nach", "zürich"]
    assert cases["emoji 👩\u200d💻 🇫🇷"] == (["emoji", "👩💻", "🇫🇷"], [[0, 5], [6, 9], [10, 12]])
    assert conformance.FILE in (kt_run[0] / "README.md").read_text()


def test_served_terms_offsets_slice_the_original_text(predictor):
    text = ("Adaptive Filter Banks for sparse image classifier\r\n\tWe propose a new adaptive filter bank that "
            "improves real data. The sparse image classifier is evaluated on recent years. We also present "
            "adaptive filter banks for the performance.")
    result = predictor.predict(text)
    assert result.windows == 1 and len(result.tags) == len(result.tokens)
    keys = [term_key(_words(t.term)) for t in result.terms]
    assert "adaptive filter bank" in keys and "sparse image classifier" in keys
    assert len(keys) == len(set(keys))  # de-duplicated
    assert [t.score for t in result.terms] == sorted((t.score for t in result.terms), reverse=True)
    for term in result.terms:
        assert text[term.offsets[0][0] : term.offsets[0][1]] in {text[s:e] for s, e in term.offsets}
        assert term.term in {text[s:e] for s, e in term.offsets}
        for start, end in term.offsets:
            assert term_key(_words(text[start:end])) == term_key(_words(term.term))
    bank = next(t for t in result.terms if term_key(_words(t.term)) == "adaptive filter bank")
    assert len(bank.offsets) == 3 and text[bank.offsets[0][0] : bank.offsets[0][1]] == "Adaptive Filter Banks"


def test_long_document_is_read_in_windows_equal_to_keras(kt_run, predictor):
    import keras

    import models  # noqa: F401
    from pipelines.key_terms import KeyTermPreprocessor, KeyTermsConfig, predict_probs
    from pipelines.synthetic_documents import synthetic_documents

    docs = [d.text for d in synthetic_documents(6, seed=7)]
    long_doc = " ".join(docs)
    results = predictor.predict_batch([long_doc, docs[0]])
    n = len(results[0].tokens)
    assert n > 150 and results[0].windows == len(window_starts(n, 48, 32)) > 3
    assert results[1].windows == len(window_starts(len(results[1].tokens), 48, 32))
    model = keras.saving.load_model(kt_run[0] / "model.keras", compile=False)
    config = KeyTermsConfig(max_len=48, stride=32)
    token_lists = [r.tokens for r in results]
    keras_probs = predict_probs(model, KeyTermPreprocessor(kt_run[0]), token_lists, config)
    for served, expected in zip(predictor.probabilities(token_lists), keras_probs):
        assert served.shape == expected.shape and np.max(np.abs(served - expected)) <= 1e-5
    alone = predictor.predict(docs[0]).terms  # a batch = one by one (up to float noise from other padding)
    assert [(t.term, t.offsets) for t in results[1].terms] == [(t.term, t.offsets) for t in alone]
    assert np.allclose([t.score for t in results[1].terms], [t.score for t in alone], atol=1e-5)


def test_bad_input_errors(predictor):
    for text, message in (("", r"^text is empty$"), (" \t\r\n ", r"text is empty \(white space only\)"),
                          (b"filter \xff bank", r"text is not UTF-8 text \(byte 0xff at offset 7\)"),
                          (42, r"text must be a string, got int")):
        with pytest.raises(InputError, match=message):
            predictor.predict(text)
    assert predictor.predict("adaptive filter bank".encode("utf-8")).text == "adaptive filter bank"
    with pytest.raises(InputError, match=r"texts\[1\] is empty"):
        predictor.predict_batch(["a filter bank", "   "])
    with pytest.raises(InputError, match="use predict for one"):
        predictor.predict_batch("a filter bank")
    with pytest.raises(InputError, match="use predict_batch for many"):
        predictor.predict(["a", "b"])


def test_old_flag_spellings_still_work_and_name_their_replacements():
    from pipelines.common import build_parser, with_deprecated
    from pipelines.key_terms import KeyTermsConfig

    with pytest.warns(FutureWarning) as caught:
        args = build_parser(KeyTermsConfig, "").parse_args(["--units", "24", "--word-dropout", "0.1"])
    assert (args.hidden, args.token_dropout) == (24, 0.1)
    assert [str(w.message) for w in caught] == ["--units is deprecated; use --hidden",
                                                "--word-dropout is deprecated; use --token-dropout"]
    with pytest.warns(FutureWarning, match="--word-dropout is deprecated; use --token-dropout"):
        assert with_deprecated(KeyTermsConfig, word_dropout=0.3).token_dropout == 0.3


def test_bad_settings_and_data_dir_get_clear_errors(tmp_path, capsys):
    from pipelines.key_terms import KeyTermsConfig, main

    with pytest.raises(DataError, match=r"--stride \(64\) must not exceed --max-len \(48\)"):
        KeyTermsConfig(max_len=48, stride=64).check()
    assert main(["--data-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "run")]) == 2
    assert "no such Inspec data" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_cli_prints_ranked_terms_without_tensorflow(kt_run):
    code = ("import sys\nfrom serving.__main__ import main\n"
            f"main(['predict', {str(kt_run[0])!r}, 'We propose a robust video decoder. The robust video decoder wins.'])\n"
            "assert not [m for m in ('tensorflow', 'keras', 'nltk') if m in sys.modules]\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "1 window" in done.stdout and "1. " in done.stdout and " at " in done.stdout
