"""Constrained decoding of linearised trees (serving/constraints.py) in greedy and beam search (serving/beam.py).

Fake one-step decoders try hard to break each rule (a step that always prefers ``)NP``, one that prefers ``</s>``,
one that never wants ``XX``, ...); whatever they prefer, the output must be one well-formed tree with exactly one
``XX`` per word and matching labels, within the length bound, and an output that was already well-formed and
preferred must come out unchanged.
"""

import numpy as np
import pytest

from serving.beam import beam_search, greedy
from serving.constraints import TreeRules, min_length
from serving.trees import TreeError, delinearize, linearize, read_tree

VOCAB = ["<pad>", "<unk>", "<s>", "</s>", "XX", "(S", ")S", "(NP", ")NP", "(VP", ")VP", "(PP", ")PP", "(ADJP"]
START, END = 2, 3  # "(ADJP" has no closer in this vocabulary: it must never be written
RULES = TreeRules(VOCAB, END)
OPENERS = {"(S", "(NP", "(VP", "(PP"}


def guard(n):
    return 3 * n + 16


def preferring(*tokens, last=()):
    """A step whose log-probabilities rank ``tokens`` first, in that order, and ``last`` below everything."""
    scores = np.full(len(VOCAB), -20.0)
    for rank, token in enumerate(tokens):
        scores[VOCAB.index(token)] = -float(rank)
    for token in last:
        scores[VOCAB.index(token)] = -100.0
    log_probs = (scores - np.log(np.exp(scores).sum())).astype(np.float32)

    def step(tokens_in, states):
        return np.tile(log_probs, (len(tokens_in), 1)), {"h": states["h"]}, None

    return step


def random_step(seed):
    rng = np.random.default_rng(seed)

    def step(tokens_in, states):
        logits = rng.normal(0, 3, (len(tokens_in), len(VOCAB)))
        return (logits - np.log(np.exp(logits).sum(1, keepdims=True))).astype(np.float32), {"h": states["h"]}, None

    return step


def decode(step, n_words, beam_size=1, limits=None, rules=RULES, states=None):
    limits = limits or [guard(n) for n in n_words]
    states = states or {"h": np.zeros((len(n_words), 1), np.float32)}
    common = dict(start_id=START, end_id=END, max_len=max(limits), constraint=rules.for_batch(n_words, limits))
    if beam_size == 1:
        return greedy(step, states, len(n_words), **common)
    return beam_search(step, states, len(n_words), beam_size=beam_size, **common)


def assert_tree(hyp, n_words, limit):
    tokens = [VOCAB[i] for i in hyp.ids]
    assert hyp.finished, tokens
    assert len(tokens) + 1 <= limit, tokens  # </s> included
    assert tokens.count("XX") == n_words, tokens
    tree = delinearize(tokens, [f"w{i}" for i in range(n_words)])  # balanced, labels matching, no empty bracket
    assert linearize(tree) == tokens
    return tokens


STEPS = {
    "prefers )NP": preferring(")NP", ")S", ")VP", ")PP"),
    "prefers </s>": preferring("</s>"),
    "prefers XX": preferring("XX"),
    "never XX": preferring("(NP", ")NP", "</s>", "(VP", ")VP", last=("XX",)),
    "prefers openers": preferring("(NP", "(S", "(VP"),
    "prefers a wrong closer": preferring(")PP", ")VP", "XX"),
    "prefers tokens that are never allowed": preferring("<pad>", "<s>", "<unk>", "(ADJP"),
}


@pytest.mark.parametrize("beam_size", [1, 3])
@pytest.mark.parametrize("name", list(STEPS))
def test_every_output_is_one_tree_with_one_xx_per_word(name, beam_size):
    lengths = [1, 4, 9, 2]
    for hyp, n in zip(decode(STEPS[name], lengths, beam_size), lengths):
        tokens = assert_tree(hyp, n, guard(n))
        assert "(ADJP" not in tokens


@pytest.mark.parametrize("beam_size", [1, 2, 4])
def test_random_decoders_always_give_trees(beam_size):
    for seed in range(8):
        lengths = [1 + (seed * 7 + i * 5) % 17 for i in range(5)]
        for hyp, n in zip(decode(random_step(seed), lengths, beam_size), lengths):
            assert_tree(hyp, n, guard(n))


def test_a_decoder_that_wants_to_stop_gets_the_shortest_tree():
    hyp, = decode(STEPS["prefers </s>"], [1])
    assert [VOCAB[i] for i in hyp.ids] == ["(S", "XX", ")S"]


def test_a_decoder_that_never_wants_xx_still_places_every_word_within_the_bound():
    for n in (1, 5, 20):
        hyp, = decode(STEPS["never XX"], [n])
        tokens = assert_tree(hyp, n, guard(n))
        # it spends the budget on brackets (all but at most one token: an opener-closer pair needs two) until the
        # bound forces the words in
        assert len(tokens) + 1 >= guard(n) - 1


@pytest.mark.parametrize("beam_size", [1, 3])
def test_a_budget_just_large_enough_forces_the_completion(beam_size):
    n = 4
    hyp, = decode(STEPS["prefers openers"], [n], beam_size, limits=[min_length(n)])
    assert [VOCAB[i] for i in hyp.ids] == ["(NP"] + ["XX"] * n + [")NP"]


def test_openers_in_a_row_are_bounded():
    rules = TreeRules(VOCAB, END, max_open_run=3)
    hyp, = decode(STEPS["prefers openers"], [6], rules=rules)
    tokens = assert_tree(hyp, 6, guard(6))
    run = longest = 0
    for token in tokens:
        run = run + 1 if token in OPENERS else 0
        longest = max(longest, run)
    assert longest == 3


def allowed_after(prefix, n_words, limit=None, rules=RULES):
    constraint = rules.for_batch([n_words], [limit or guard(n_words)])
    state = constraint.start(np.array([0]))
    for token in prefix.split():
        assert constraint.allowed(state)[0, VOCAB.index(token)], f"{token} refused after the prefix"
        state = constraint.update(state, np.array([VOCAB.index(token)]))
    return {VOCAB[i] for i in np.flatnonzero(constraint.allowed(state)[0])}


@pytest.mark.parametrize("prefix, n_words, expected", [
    ("", 2, OPENERS),                                     # no XX outside a bracket, no closer, no </s>
    ("(S (NP", 2, OPENERS | {"XX"}),                      # no closer right after its opener (empty NP)
    ("(S (NP XX", 2, OPENERS | {"XX", ")NP"}),            # only the innermost label closes
    ("(S (NP XX XX", 2, {")NP"}),                         # no XX beyond n, no opener without a word left
    ("(S (NP XX )NP", 2, OPENERS | {"XX"}),               # the root stays open until every word is placed
    ("(S XX XX )S", 2, {"</s>"}),                         # one tree, then the end
    ("(S XX (VP XX", 2, {")VP"}),                         # </s> only when everything is closed
])
def test_each_rule_on_its_own(prefix, n_words, expected):
    assert allowed_after(prefix, n_words) == expected


def test_the_length_bound_leaves_only_the_tokens_that_complete_the_tree():
    # after "(S (NP XX" with 3 words, completing needs XX XX )NP )S </s> = 5 tokens
    assert allowed_after("(S (NP XX", 3, limit=3 + 7) == OPENERS | {"XX", ")NP"}
    assert allowed_after("(S (NP XX", 3, limit=3 + 6) == {"XX", ")NP"}  # an opener needs two tokens: no room
    assert allowed_after("(S (NP XX", 3, limit=3 + 5) == {"XX", ")NP"}  # both still complete it in time
    assert allowed_after("(S (NP XX XX", 3, limit=4 + 4) == {"XX", ")NP"}
    assert allowed_after("(S (NP XX XX XX", 3, limit=5 + 3) == {")NP"}


def scripted(scripts, margin=10.0):
    """A step that prefers, for sentence i, the tokens of ``scripts[i]`` in order, then ``</s>``."""
    ids = [[VOCAB.index(t) for t in script] + [END] for script in scripts]

    def step(tokens_in, states):
        log_probs = np.full((len(tokens_in), len(VOCAB)), -margin, np.float32)
        for row, (sentence, pos) in enumerate(zip(states["sentence"], states["pos"])):
            log_probs[row, ids[sentence][min(pos, len(ids[sentence]) - 1)]] = 0.0
        return log_probs, {"pos": states["pos"] + 1}, None

    return step


TREES = ["(S (NP (DT the) (NN dog)) (VP (VBD barked)) (. .))",
         "(NP (NP (NN a)) (PP (IN of) (NP (NN b) (NN c))))",
         "(VP (VB go))",
         "(S (S (NP (PRP it)) (VP (VBD was))) (NP (PRP he)) (VP (VBD said)))"]


@pytest.mark.parametrize("beam_size", [1, 3])
def test_a_preferred_well_formed_output_is_not_changed(beam_size):
    scripts = [linearize(read_tree(text)) for text in TREES]
    lengths = [script.count("XX") for script in scripts]
    states = {"pos": np.zeros(len(scripts), np.int64), "sentence": np.arange(len(scripts))}
    free = (greedy(scripted(scripts), dict(states), len(scripts), start_id=START, end_id=END, max_len=60)
            if beam_size == 1 else
            beam_search(scripted(scripts), dict(states), len(scripts), beam_size=beam_size, start_id=START,
                        end_id=END, max_len=60))
    held = decode(scripted(scripts), lengths, beam_size, states=dict(states))
    for script, a, b in zip(scripts, free, held):
        assert [VOCAB[i] for i in a.ids] == script
        assert a.ids == b.ids and a.score == pytest.approx(b.score) and a.finished and b.finished


def test_the_constraint_overrides_an_ill_formed_preference():
    script = ["(S", "(NP", "XX", ")S", ")NP"]  # wrong closer order, one XX for two words
    states = {"pos": np.zeros(1, np.int64), "sentence": np.zeros(1, np.int64)}
    hyp, = decode(scripted([script]), [2], states=states)
    assert assert_tree(hyp, 2, guard(2))[:3] == ["(S", "(NP", "XX"]
    with pytest.raises(TreeError):
        delinearize(script, ["a", "b"])


def test_bad_vocabularies_and_limits_are_refused():
    with pytest.raises(ValueError, match="no 'XX'"):
        TreeRules(["<pad>", "<unk>", "<s>", "</s>", "(S", ")S"], END)
    with pytest.raises(ValueError, match="no bracket pair"):
        TreeRules(["<pad>", "<unk>", "<s>", "</s>", "XX", "(S"], END)
    with pytest.raises(ValueError, match="needs at least 7 output tokens, the limit is 6"):
        RULES.for_batch([2, 4], [20, 6])
    with pytest.raises(ValueError, match="without words"):
        RULES.for_batch([0], [20])
