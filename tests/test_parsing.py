"""Parsing as translation: treebank reader, PCFG data, linearisation, tree repair and EVALB-style bracket F1."""

import json
import random
import zipfile

import pytest

from pipelines.pcfg import synthetic_splits
from pipelines.readers import DataError
from pipelines.treebank import clean_tree, read_treebank
from serving.trees import (
    ROOT, TreeError, brackets, delinearize, linearize, read_tree, read_trees, repair, score, to_tree,
)

# Two trees in the layout of treebank/combined/wsj_0001.mrg (function tags, indices, -NONE- traces, wrapper).
MRG = """\
( (S 
    (NP-SBJ 
      (NP (NNP Pierre) (NNP Vinken) )
      (, ,) 
      (ADJP 
        (NP (CD 61) (NNS years) )
        (JJ old) )
      (, ,) )
    (VP (MD will) 
      (VP (VB join) 
        (NP (DT the) (NN board) )
        (PP-CLR (IN as) 
          (NP (DT a) (JJ nonexecutive) (NN director) ))
        (NP-TMP (NNP Nov.) (CD 29) )))
    (. .) ))
( (S 
    (NP-SBJ-4 (PRP it) )
    (VP (VBD was) 
      (VP (VBN awarded) 
        (NP (-NONE- *-4) )
        (NP (NNP U.S.) (NNS patents) )))
    (. .) ))
"""


def _tree(text):
    return read_tree(text)


# --- reader and cleaning -------------------------------------------------------------------------------------------

def test_cleaning_strips_traces_function_tags_and_the_wrapper():
    first, second = [clean_tree(t) for t in read_trees(MRG)]
    assert str(second) == "(S (NP (PRP it)) (VP (VBD was) (VP (VBN awarded) (NP (NNP U.S.) (NNS patents)))) (. .))"
    assert " ".join(linearize(first)) == (
        "(S (NP (NP XX XX )NP XX (ADJP (NP XX XX )NP XX )ADJP XX )NP (VP XX (VP XX (NP XX XX )NP "
        "(PP XX (NP XX XX XX )NP )PP (NP XX XX )NP )VP )VP XX )S")
    assert first.leaves()[:3] == ["Pierre", "Vinken", ","]


def _write_zip(path, trees_per_file):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("treebank/combined/README", "not a tree file")
        archive.writestr("treebank/parsed/wsj_0001.prd", "( (S (NP x) ) )")  # only combined/ is read
        for number, count in trees_per_file.items():
            archive.writestr(f"treebank/combined/wsj_{number:04d}.mrg", MRG * (count // 2) + MRG.split("( (S \n")[0])
    return path


def test_reader_splits_by_file_number_as_splits_md_fixes(tmp_path):
    _write_zip(tmp_path / "treebank.zip", {1: 4, 159: 2, 160: 2, 179: 4, 180: 6, 199: 2})
    splits = read_treebank(tmp_path)  # the folder holding treebank.zip
    assert {k: len(v) for k, v in splits.items()} == {"train": 6, "valid": 6, "test": 8}
    assert splits["test"][1].text == "it was awarded U.S. patents ."
    assert splits["train"][0].target[:3] == ("(S", "(NP", "(NP")
    assert {k: len(v) for k, v in read_treebank(tmp_path / "treebank.zip").items()} == {
        "train": 6, "valid": 6, "test": 8}


def test_reader_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="no such treebank"):
        read_treebank(tmp_path / "missing")
    _write_zip(tmp_path / "treebank.zip", {1: 2, 170: 2})
    with pytest.raises(DataError, match="no trees for the test split"):
        read_treebank(tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "wsj_0001.mrg").write_text("( (S (NP (NN x) ) )\n")
    with pytest.raises(DataError, match=r"wsj_0001.mrg: tree 1 is not closed"):
        read_treebank(tmp_path / "bad")
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="is not a zip file"):
        read_treebank(tmp_path / "bad.zip")


# --- linearisation round trip ----------------------------------------------------------------------------------------

def test_linearise_delinearise_round_trip_on_treebank_format_and_pcfg():
    trees = [clean_tree(t) for t in read_trees(MRG)]
    pcfg = synthetic_splits(200, seed=3)
    trees += [ex.tree for split in pcfg.values() for ex in split]
    for tree in trees:
        tokens = linearize(tree)
        rebuilt = delinearize(tokens, tree.leaves())
        assert linearize(rebuilt) == tokens
        assert rebuilt.leaves() == tree.leaves()
        assert brackets(rebuilt, tree.tags()) == brackets(tree)
        assert to_tree(tokens, tree.leaves()).well_formed


def test_pcfg_splits_are_disjoint_and_repeatable():
    splits = synthetic_splits(300, seed=1)
    assert {k: len(v) for k, v in splits.items()} == {"train": 300, "valid": 50, "test": 50}
    texts = [{ex.text for ex in v} for v in splits.values()]
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])
    assert [ex.text for ex in synthetic_splits(300, seed=1)["test"]] == [ex.text for ex in splits["test"]]
    assert all(ex.tree.label == "S" and ex.words[-1] == "." for ex in splits["train"])


# --- repair ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, n, fixed", [
    ("(S (NP XX XX )NP (VP XX", 3, "(S (NP XX XX )NP (VP XX )VP )S"),                 # close what is open
    ("(S (NP XX )NP )NP (VP XX )VP )S", 2, "(S (NP XX )NP (VP XX )VP )S"),             # unmatched closer dropped
    ("(S (NP XX (PP XX )NP (VP XX )VP )S", 3, "(S (NP XX (PP XX )PP )NP (VP XX )VP )S"),  # )NP closes PP too
    ("(S XX XX XX XX )S", 2, "(S XX XX )S"),                                           # extra XX dropped
    ("(S (NP XX )NP )S", 3, "(S (NP XX )NP XX XX )S"),                                 # missing XX appended
    ("(S (NP XX", 3, "(S (NP XX XX XX )NP )S"),                                        # ... inside what is open
    ("(S (NP )NP (VP XX )VP )S", 1, "(S (VP XX )VP )S"),                               # empty constituent removed
    ("(NP XX )NP (VP XX )VP", 2, f"({ROOT} (NP XX )NP (VP XX )VP ){ROOT}"),            # two roots: one TOP
    ("", 2, f"({ROOT} XX XX ){ROOT}"),                                                 # nothing decoded
    ("(S XX <pad> === XX )S", 2, "(S XX XX )S"),                                       # stray symbols dropped
])
def test_repair_makes_a_valid_tree_of_the_right_length(raw, n, fixed):
    words = [f"w{i}" for i in range(n)]
    tokens = raw.split()
    with pytest.raises(TreeError):
        delinearize(tokens, words)
    assert " ".join(repair(tokens, n)) == fixed
    decoded = to_tree(tokens, words)
    assert not decoded.well_formed and " ".join(decoded.tokens) == fixed
    assert decoded.tree.leaves() == words


def test_repair_keeps_well_formed_output_and_always_yields_a_tree():
    good = "(S (NP XX XX )NP (VP XX (NP XX )NP )VP )S".split()
    assert repair(good, 4) == good
    rng = random.Random(0)
    vocab = ["(S", ")S", "(NP", ")NP", "(VP", ")VP", "XX", "XX", "XX", "==="]
    for _ in range(300):
        tokens = [rng.choice(vocab) for _ in range(rng.randint(0, 20))]
        n = rng.randint(1, 8)
        fixed = repair(tokens, n)
        assert repair(tokens, n) == fixed  # deterministic
        assert delinearize(fixed, ["w"] * n).leaves() == ["w"] * n
        assert repair(fixed, n) == fixed


def test_delinearize_errors_say_what_is_wrong():
    with pytest.raises(TreeError, match=r"token 3 '\)NP' closes \(VP"):
        delinearize("(S (VP XX )NP )S".split(), ["a"])
    with pytest.raises(TreeError, match="1 XX for 2 words"):
        delinearize("(S XX )S".split(), ["a", "b"])
    with pytest.raises(TreeError, match="left open"):
        delinearize("(S XX".split(), ["a"])
    with pytest.raises(TreeError, match="no words"):
        to_tree(["(S", ")S"], [])


# --- EVALB-style scoring (hand-checked) ------------------------------------------------------------------------------

GOLD = "(S (NP (DT the) (NN dog)) (VP (VBD saw) (NP (DT a) (NN cat))) (. .))"


def test_f1_hand_checked_partial_match():
    # gold brackets (punctuation deleted, 5 words): S 0-5, NP 0-2, VP 2-5, NP 3-5
    # predicted: S 0-5, NP 0-3, VP 3-5, NP 4-5 → 1 of 4 matched each way
    pred = _tree("(S (NP (XX the) (XX dog) (XX saw)) (VP (XX a) (NP (XX cat))) (XX .))")
    assert brackets(_tree(GOLD)) == {("S", 0, 5): 1, ("NP", 0, 2): 1, ("VP", 2, 5): 1, ("NP", 3, 5): 1}
    result = score([_tree(GOLD)], [pred])
    assert (result.matched, result.gold, result.test) == (1, 4, 4)
    assert result.precision == result.recall == result.f1 == 0.25
    assert result.exact_match == 0.0


def test_f1_ignores_punctuation_attachment():
    # the period inside the VP changes no span once punctuation is deleted
    pred = _tree("(S (NP (XX the) (XX dog)) (VP (XX saw) (NP (XX a) (XX cat)) (XX .)))")
    assert score([_tree(GOLD)], [pred]).f1 == 1.0
    # ... but a gold comma decides deletion even though the prediction tags it XX
    gold = _tree("(S (NP (NNP John)) (, ,) (VP (VBD left)))")
    pred = _tree("(S (NP (XX John) (XX ,)) (VP (XX left)))")
    assert score([gold], [pred]).f1 == 1.0


def test_f1_root_top_is_ignored_and_prt_equals_advp():
    gold = _tree("(S (NP (PRP he)) (VP (VBD gave) (PRT (RP up))))")
    pred = _tree(f"({ROOT} (NP (XX he)) (VP (XX gave) (ADVP (XX up))))")
    result = score([gold], [pred])  # S not predicted; TOP not counted; ADVP matches PRT
    assert (result.matched, result.gold, result.test) == (3, 4, 3)
    assert result.precision == 1.0 and result.recall == 0.75
    assert result.f1 == pytest.approx(2 * 0.75 / 1.75)


def test_f1_counts_brackets_as_a_multiset_over_the_corpus():
    gold = [_tree("(S (NP (NP (NN x))) (VP (VB y)))"), _tree("(S (NP (NN a)) (VP (VB b)))")]
    pred = [_tree("(S (NP (XX x)) (VP (XX y)))"), _tree("(S (NP (XX a) (XX b)))")]
    # sentence 1: gold S, NP, NP, VP; pred S, NP, VP → 3 matched. sentence 2: gold S, NP, VP; pred S, NP 0-2 → 1
    result = score(gold, pred, well_formed=[True, False])
    assert (result.matched, result.gold, result.test) == (4, 7, 5)
    assert result.precision == pytest.approx(0.8) and result.recall == pytest.approx(4 / 7)
    assert result.well_formed == 0.5 and result.sentences == 2


def test_bracket_over_punctuation_only_is_not_counted():
    gold = _tree("(S (NP (NN x)) (PRN (, ,)) (VP (VB y)) (. .))")
    assert brackets(gold) == {("S", 0, 2): 1, ("NP", 0, 1): 1, ("VP", 1, 2): 1}


def test_score_refuses_mismatched_sentences():
    with pytest.raises(TreeError, match="2 gold trees but 1 predictions"):
        score([_tree(GOLD)] * 2, [_tree(GOLD)])
    with pytest.raises(TreeError, match="sentence 0: prediction has 1 words, gold 6"):
        score([_tree(GOLD)], [_tree("(S (XX a))")])


# --- unknown words ---------------------------------------------------------------------------------------------------

def test_unknown_words_are_read_by_their_shape():
    from serving.parsing import source_tokens, word_class

    assert [word_class(w) for w in ["1.5", "well-known", "Vinken", "running", "walked", "quickly", "cats", "xyz"]] == [
        "<unk-num>", "<unk-hyphen>", "<unk-cap>", "<unk-ing>", "<unk-ed>", "<unk-ly>", "<unk-s>", "<unk>"]
    assert source_tokens(["the", "Zorglub", "barked"], {"the", "barked"}) == ["the", "<unk-cap>", "barked"]


# --- end to end on the PCFG (train → export → onnxruntime) ----------------------------------------------------------

@pytest.fixture(scope="module")
def parsing_run(tmp_path_factory):
    from pipelines.parsing import ParsingConfig, run

    out = tmp_path_factory.mktemp("parsing") / "run"
    config = ParsingConfig(out=str(out), quick=True, synthetic_size=200, epochs=2, saved_model=False,
                           max_len=30)
    return out, run(config)


def test_pipeline_writes_the_run_and_ort_greedy_equals_keras(parsing_run):
    out, metrics = parsing_run
    assert {"encoder.onnx", "decoder_step.onnx", "metadata.json", "metrics.json", "source_vocab.txt",
            "target_vocab.txt"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert metrics["ort_keras_greedy_identical"] == 1.0  # every test sentence, token for token (constrained)
    assert metrics["ort_keras_beam_identical"] == 1.0
    for decoding in ("greedy", "beam", "unconstrained_greedy", "unconstrained_beam"):
        for key in ("f1", "f1_le25", "well_formed", "precision", "recall"):
            assert 0.0 <= metrics[f"{decoding}_{key}"] <= 1.0
    # constrained decoding: every output a tree as decoded, ended by </s>
    assert metrics["greedy_well_formed"] == metrics["beam_well_formed"] == 1.0
    assert metrics["greedy_finished"] == metrics["beam_finished"] == 1.0
    assert metrics["f1"] == metrics["greedy_f1"] and metrics["f1_le25"] == metrics["greedy_f1_le25"]
    assert metrics["test_sentences"] == 50 and metrics["train_sentences"] == 200 and metrics["beam_size"] == 2
    assert 0 < metrics["test_sentences_le25"] <= 50
    # the classical baseline, measured in the same run on the same test sentences
    assert 0.5 < metrics["pcfg_f1"] <= 1.0 and 0.5 < metrics["pcfg_f1_le25"] <= 1.0
    assert metrics["pcfg_seconds"] >= 0 and metrics["pcfg_rules"] > 0 and metrics["pcfg_parsed"] > 0.9
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["task"] == "parsing" and meta["special_ids"]["end"] == 3
    assert meta["parsing"]["constrained"] is True
    assert max(meta["parity"]["onnx_max_abs_diff"]["decoder_step"].values()) <= 1e-5


def test_predictor_returns_a_tree_over_the_input_words_even_when_repair_is_needed(parsing_run):
    import serving
    from serving import trees
    from serving.parsing import ParsingPredictor

    out, _ = parsing_run
    predictor = serving.load(out)
    assert isinstance(predictor, ParsingPredictor) and predictor.input_kind == "text"
    predictor.constrained = False  # the 2-epoch model's raw outputs: some need repair
    texts = ["the old man saw a dog in the park .", "Zorglub quickly bought three shares ."]
    results = predictor.predict_batch(texts)
    for text, result in zip(texts, results):
        tree = trees.read_tree(result.tree)
        assert tree.leaves() == text.split()
        assert result.repaired == (not result.well_formed)
        assert trees.delinearize(result.linearized.split(), text.split()).leaves() == text.split()
        assert json.loads(json.dumps(result.to_dict()))["tree"] == result.tree
    assert results[1].unknown_words == ["Zorglub"]
    assert predictor.predict(texts[0], beam_size=1).tree == predictor.predict_batch(texts[:1], beam_size=1)[0].tree


def test_predictor_refuses_bad_input(parsing_run):
    import serving
    from serving import InputError

    predictor = serving.load(parsing_run[0])
    with pytest.raises(InputError, match="empty"):
        predictor.predict("   ")
    with pytest.raises(InputError, match=r"31 tokens; this model reads at most 30"):
        predictor.predict(" ".join(["dog"] * 31))
    with pytest.raises(InputError, match="must be a string"):
        predictor.predict(42)


def test_cli_prints_the_tree(parsing_run, capsys):
    from serving.__main__ import main

    assert main(["predict", str(parsing_run[0]), "the dog saw a cat ."]) == 0
    text, tree = capsys.readouterr().out.splitlines()
    assert text == "the dog saw a cat ."
    assert read_tree(tree.strip().removesuffix("(repaired)")).leaves() == text.split()
    assert main(["predict", "--json", str(parsing_run[0]), "a dog ."]) == 0
    assert json.loads(capsys.readouterr().out)["words"] == ["a", "dog", "."]


def test_weights_that_do_not_fit_are_refused_and_leave_no_run_dir(parsing_run, tmp_path):
    from pipelines.parsing import ParsingConfig, run

    common = dict(synthetic_size=200, saved_model=False, max_len=30, epochs=1)
    with pytest.raises(DataError, match="--weights: no such file"):
        run(ParsingConfig(out=str(tmp_path / "a"), weights=str(tmp_path / "missing.h5"), **common))
    with pytest.raises(DataError, match="does not fit this model"):
        run(ParsingConfig(out=str(tmp_path / "b"), weights=str(parsing_run[0] / "model.weights.h5"), hidden=16,
                          **common))  # the run has 32 units
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_constrained_decoding_is_the_default_and_can_be_turned_off(parsing_run):
    import serving
    from serving.parsing import ParsingPredictor
    from serving.seq2seq import Seq2SeqPredictor

    predictor = serving.load(parsing_run[0])
    assert predictor.constrained
    texts = ["the old man saw a dog in the park .", "Zorglub quickly bought three shares .", "a dog .",
             "the man said that the dog saw a cat with the telescope in the park ."]
    words = [t.split() for t in texts]
    for beam in (1, 2):
        held = predictor.predict_batch(texts, beam_size=beam)
        assert all(r.well_formed and not r.repaired and r.finished for r in held)
        assert all(len(r.output_tokens) + 1 <= 3 * len(r.words) + 16 for r in held)
        free = predictor.decode_tokens(words, beam_size=beam, constrained=False)
        guard = 3 * max(len(w) for w in words) + 16
        assert [h.ids for h in free] == [h.ids for h in Seq2SeqPredictor.decode_tokens(predictor, words, beam, guard)]
        for h, r in zip(free, held if beam == 1 else []):  # greedy leaves alone what was already a tree
            output = predictor.output_tokens(h)
            if h.finished and trees_ok(output, r.words) and len(output) + 1 <= 3 * len(r.words) + 16:
                assert output == r.output_tokens
    meta = dict(predictor.metadata)
    old = {**meta, "parsing": {k: v for k, v in meta["parsing"].items() if k != "constrained"}}
    assert ParsingPredictor(predictor.model, old).constrained  # run dirs from before the key: constrained too
    assert not ParsingPredictor(predictor.model, meta, constrained=False).constrained
    assert not ParsingPredictor(predictor.model, {**meta, "parsing": {"constrained": False}}).constrained
    with pytest.raises(serving.InputError, match="needs at least 6 output tokens"):
        predictor.decode_tokens([["a", "dog", "."]], max_len=5)


def trees_ok(tokens, words):
    try:
        delinearize(tokens, words)
    except TreeError:
        return False
    return True
