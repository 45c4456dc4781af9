"""The classical parsing baseline (pipelines/pcfg_baseline.py): PCFG induction with nltk, numpy CKY, scoring."""

import numpy as np
import pytest

from pipelines import pcfg_baseline as pb
from pipelines.pcfg import synthetic_splits
from serving.trees import read_tree, to_string

PTB_LIKE = [
    "(S (NP (NNP Pierre) (NNP Vinken)) (VP (MD will) (VP (VB join) (NP (DT the) (NN board)))) (. .))",
    "(S (VP (VB Go)) (. .))",
    "(NP (NP (DT a) (NN man)) (PP (IN with) (NP (DT a) (JJ big) (JJ old) (NN telescope))))",
    "(TOP (NP (NNP Ms.) (NNP Haag)) (VP (VBZ plays) (NP (NNP Elianti))) (. .))",
]


@pytest.fixture(scope="module")
def splits():
    return synthetic_splits(300, seed=5)


@pytest.mark.parametrize("horz, vert", [(2, 0), (1, 1), (None, 0)])
def test_binarisation_is_undone_exactly(horz, vert):
    for text in PTB_LIKE:
        tree = read_tree(text)
        cnf = pb.binarize(pb.to_nltk(tree, tree.leaves()), horz, vert)
        assert all(len(p.rhs()) == 2 or isinstance(p.rhs()[0], str) for p in cnf.productions())  # CNF
        cnf.un_chomsky_normal_form(expandUnary=True)
        assert to_string(pb.from_nltk(cnf, tree.leaves())) == text


def test_numpy_cky_finds_the_viterbi_parse_of_nltk(splits):
    import nltk

    trees = [ex.tree for ex in splits["train"][:150]]
    known = {w for tree in trees for w in tree.leaves()}
    grammar = pb.induce(trees, known, horz_markov=1, vert_markov=0)
    productions = [p for t in trees for p in pb.binarize(pb.to_nltk(t, t.leaves()), 1, 0).productions()]
    pcfg = nltk.induce_pcfg(nltk.Nonterminal("S"), productions)
    viterbi = nltk.ViterbiParser(pcfg)
    rule_logp = {(p.lhs(), p.rhs()): np.log(p.prob()) for p in pcfg.productions()}
    s = grammar.symbols.index("S")
    for tree in trees[:12]:
        words = tree.leaves()
        expected = next(viterbi.parse(words))
        table = pb.chart(grammar, words)
        assert table[0, len(words), s] == pytest.approx(np.log(expected.prob()), abs=1e-3)
        ours = pb.backtrack(grammar, table, words, 0, len(words), s)
        logp = sum(rule_logp[(p.lhs(), p.rhs())] for p in ours.productions())
        assert logp == pytest.approx(np.log(expected.prob()), abs=1e-3)  # a best tree (ties may differ)


def test_the_baseline_parses_the_synthetic_grammar_well(splits):
    out = pb.baseline(splits, rare_words=1, max_len=60, evaluate_on=("test",))
    test = out["test"]
    assert test["f1"] > 0.8 and test["parsed"] > 0.9 and test["sentences"] == 50
    assert 0 < test["f1_le25"] <= 1 and test["sentences_le25"] <= 50 and test["seconds"] >= 0
    assert out["rules"] > 0 and out["symbols"] > 0 and out["induce_seconds"] >= 0


def test_unknown_words_are_read_by_their_shape_and_no_parse_still_gives_a_tree(splits):
    from pipelines.parsing import known_words

    known = known_words(splits["train"], 1)
    grammar = pb.induce([ex.tree for ex in splits["train"]], known)
    words = "the Zorglub saw a dog .".split()
    assert grammar.terminals(words)[1] == "<unk-cap>"
    tree, complete = pb.parse(grammar, words)
    assert tree.leaves() == words and complete
    backwards = list(reversed(words))  # no tree of the grammar ends with "the"
    tree, complete = pb.parse(grammar, backwards)
    assert tree.leaves() == backwards and not complete and tree.label == "S"
    with pytest.raises(ValueError, match="no words"):
        pb.parse(grammar, [])


def test_cli_prints_dev_and_test_figures(monkeypatch, capsys, splits):
    import pipelines.parsing

    small = {name: examples[:40] for name, examples in splits.items()}
    monkeypatch.setattr(pipelines.parsing, "load_data", lambda config: small)
    assert pb.main(["--horz-markov", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("grammar: ") and "binary rules" in lines[0]
    assert lines[1].startswith("dev: F1 ") and lines[2].startswith("test: F1 ") and "<= 25 words" in lines[2]
