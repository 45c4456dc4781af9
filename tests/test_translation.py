"""Translation: the Tatoeba reader and split, the built-in number pair, BLEU, and a small end-to-end run whose
onnxruntime decoding equals Keras' on every test example (the run is conftest.py's ``translation_run``, shared with
tests/test_reexport.py)."""

import json

import pytest

from pipelines.readers import DataError
from pipelines.tatoeba import read_tatoeba
from pipelines.translation import bleu, number_words, synthetic_splits


def _write_cmn(path, n=45, extra=""):
    lines = [f"Sentence {i}.\t句子{i}。\tCC-BY 2.0 (France) Attribution: tatoeba.org #{i}" for i in range(n)]
    lines.insert(3, "")  # empty lines do not count
    path.write_bytes(("\ufeff" + "\n".join(lines) + "\n" + extra).encode("utf-8"))
    return path


def test_tatoeba_split_drops_the_bom_and_empty_lines(tmp_path):
    splits = read_tatoeba(_write_cmn(tmp_path / "cmn.txt"))
    assert {k: len(v) for k, v in splits.items()} == {"train": 39, "valid": 3, "test": 3}
    assert splits["test"][0] == ("Sentence 0.", "句子0。")  # no BOM glued to the first sentence
    assert [en for en, _ in splits["test"]] == ["Sentence 0.", "Sentence 20.", "Sentence 40."]
    assert splits["valid"][1] == ("Sentence 21.", "句子21。")
    assert read_tatoeba(tmp_path)["train"][0][0] == "Sentence 2."  # the folder works too


def test_tatoeba_malformed_line_names_the_line(tmp_path):
    with pytest.raises(DataError, match=r"cmn.txt:47: expected 'English<TAB>Chinese"):
        read_tatoeba(_write_cmn(tmp_path / "cmn.txt", extra="no tab here\n"))
    with pytest.raises(DataError, match="missing data file"):
        read_tatoeba(tmp_path / "nothing")


def test_number_words_hand_checked():
    assert number_words(0) == "zero"
    assert number_words(13) == "thirteen"
    assert number_words(40) == "forty"
    assert number_words(342) == "three hundred forty two"
    assert number_words(4012) == "four thousand twelve"
    assert number_words(90000) == "ninety thousand"
    assert number_words(100100) == "one hundred thousand one hundred"
    splits = synthetic_splits(200, seed=1)
    numbers = {split: {digits for _, digits in pairs} for split, pairs in splits.items()}
    assert not numbers["train"] & numbers["test"] and not numbers["valid"] & numbers["test"]
    assert all(number_words(int(d)) == w for pairs in splits.values() for w, d in pairs)


def test_bleu_uses_the_chinese_tokenizer():
    assert bleu(["我喜欢喝茶。"], ["我喜欢喝茶。"]) == pytest.approx(100.0)
    # one character differs: with the zh tokenizer it costs n-grams, not the whole sentence
    assert 30 < bleu(["我喜欢喝水。"], ["我喜欢喝茶。"]) < 100
    assert bleu(["1234"], ["1234"], "char") == pytest.approx(100.0)


def test_run_reports_bleu_greedy_and_beam_and_ort_equals_keras(translation_run):
    out, metrics = translation_run
    assert metrics["keras_ort_greedy_mismatches"] == 0  # on every decoded test example
    assert metrics["test_pairs"] == 60
    assert 0 <= metrics["bleu_greedy"] <= 100 and 0 <= metrics["bleu_beam3"] <= 100
    assert metrics["onnx_max_abs_diff"] <= 1e-5
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["bleu_greedy"] == metrics["bleu_greedy"]
    assert all(isinstance(v, (int, float)) for v in saved.values())
    examples = json.loads((out / "examples.json").read_text(encoding="utf-8"))
    assert len(examples) == 3 and set(examples[0]) == {"source", "reference", "greedy", "beam3"}
    assert (out / "attention.png").stat().st_size > 1000


def test_served_translation_and_bad_input(translation_run):
    import serving
    from serving import InputError

    out, _ = translation_run
    predictor = serving.load(out)
    assert type(predictor).__name__ == "TranslationPredictor"
    result = predictor.predict("twenty one")
    assert result.source_tokens == ["twenty", "one"] and result.beam_size == 3
    assert len(result.output_tokens) <= 8 and result.output.isdigit() or not result.finished
    assert predictor.predict("twenty \U0001F600 one").unknown_tokens == ["\U0001F600"]
    with pytest.raises(InputError, match="text is empty"):
        predictor.predict("")
    with pytest.raises(InputError, match="has 13 tokens; this model reads at most 12"):
        predictor.predict(" ".join(["one"] * 13))
    greedy = predictor.predict("seven hundred", beam_size=1)
    assert greedy.beam_size == 1
