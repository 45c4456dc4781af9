"""Built-in parsing data: sentences sampled from a small probabilistic context-free grammar, with their trees.

The grammar has Penn Treebank labels (S, NP, VP, PP, SBAR, ADJP, ADVP, PRT and the usual tags), recursion
(prepositional phrases, relative-free clauses after "said that", coordination), punctuation (scored as EVALB
deletes it) and the classic attachment ambiguity: "saw the man with the telescope" is sampled both with the PP under
the VP and under the NP, so even a perfect parser cannot reach F1 1.0 on it.
"""

from __future__ import annotations

import random

from pipelines.treebank import ParseExample, example
from serving.trees import Tree

# label -> [(weight, right-hand side)]; a symbol is a phrase (in GRAMMAR) or a tag (in LEXICON).
GRAMMAR: dict[str, list[tuple[float, tuple[str, ...]]]] = {
    "S": [(0.70, ("NP", "VP", ".")), (0.12, ("SBAR_ADV", ",", "NP", "VP", ".")),
          (0.10, ("S_IN", ",", "CC", "S_IN", ".")), (0.08, ("ADVP", ",", "NP", "VP", "."))],
    "S_IN": [(1.0, ("NP", "VP"))],
    "NP": [(0.32, ("DT", "NN")), (0.16, ("DT", "JJ", "NN")), (0.14, ("NNP",)), (0.10, ("PRP",)),
           (0.08, ("DT", "NNS")), (0.05, ("CD", "NNS")), (0.11, ("NP", "PP")), (0.04, ("NP", "CC", "NP"))],
    "VP": [(0.26, ("VBD", "NP")), (0.12, ("VBD",)), (0.18, ("VBD", "NP", "PP")), (0.08, ("VBD_SAY", "SBAR")),
           (0.10, ("MD", "VP_B")), (0.08, ("VBD", "ADJP")), (0.08, ("VBD", "PRT", "NP")),
           (0.06, ("VBD", "ADVP")), (0.04, ("VP", "CC", "VP"))],
    "VP_B": [(0.5, ("VB", "NP")), (0.3, ("VB",)), (0.2, ("VB", "NP", "PP"))],
    "PP": [(1.0, ("IN", "NP"))],
    "SBAR": [(0.7, ("IN_THAT", "S_IN")), (0.3, ("S_IN",))],
    "SBAR_ADV": [(1.0, ("IN_WHEN", "S_IN"))],
    "ADJP": [(0.6, ("JJ",)), (0.4, ("RB", "JJ"))],
    "ADVP": [(1.0, ("RB",))],
    "PRT": [(1.0, ("RP",))],
}

# Phrase names used inside the grammar for variety, printed with their Penn Treebank label.
LABELS = {"S_IN": "S", "VP_B": "VP", "SBAR_ADV": "SBAR"}

LEXICON: dict[str, tuple[str, ...]] = {
    "DT": ("the", "a", "every", "this", "that"),
    "NN": ("dog", "cat", "man", "woman", "telescope", "park", "company", "report", "market", "city", "teacher",
           "book", "car", "garden", "letter"),
    "NNS": ("dogs", "shares", "children", "reports", "stocks", "investors", "apples", "years"),
    "JJ": ("big", "small", "old", "new", "happy", "red", "quiet", "strong", "late"),
    "NNP": ("John", "Mary", "Paris", "Sony", "Vinken", "Chicago", "Alice"),
    "PRP": ("he", "she", "they", "it", "we"),
    "CD": ("two", "three", "ten", "61", "100"),
    "VBD": ("saw", "liked", "bought", "found", "sold", "watched", "chased", "visited", "was", "seemed"),
    "VBD_SAY": ("said", "thought", "knew", "reported"),
    "VB": ("see", "buy", "find", "sell", "leave", "win"),
    "MD": ("will", "can", "might", "should"),
    "IN": ("with", "in", "on", "near", "from", "of", "under"),
    "IN_THAT": ("that",),
    "IN_WHEN": ("when", "because", "although", "if"),
    "CC": ("and", "but", "or"),
    "RB": ("very", "quickly", "yesterday", "still", "really"),
    "RP": ("up", "out", "off"),
    ",": (",",),
    ".": (".",),
}
TAGS = {"VBD_SAY": "VBD", "IN_THAT": "IN", "IN_WHEN": "IN"}
RECURSIVE = {"NP": {("NP", "PP"), ("NP", "CC", "NP")}, "VP": {("VP", "CC", "VP")}}


def sample_tree(rng: random.Random, max_depth: int = 6) -> Tree:
    """One tree from the grammar; below ``max_depth`` only non-recursive rules are drawn."""

    def expand(symbol: str, depth: int) -> Tree:
        if symbol in LEXICON:
            return Tree(TAGS.get(symbol, symbol), [rng.choice(LEXICON[symbol])])
        rules = GRAMMAR[symbol]
        if depth >= max_depth:
            rules = [r for r in rules if r[1] not in RECURSIVE.get(symbol, ()) and symbol not in r[1]] or rules
        weights = [w for w, _ in rules]
        rhs = rng.choices([r for _, r in rules], weights=weights)[0]
        return Tree(LABELS.get(symbol, symbol), [expand(s, depth + 1) for s in rhs])

    return expand("S", 0)


def sample(n: int, seed: int = 0, max_words: int = 25, exclude: set[str] | None = None) -> list[ParseExample]:
    """``n`` distinct examples of at most ``max_words`` words, none whose text is in ``exclude``."""
    rng = random.Random(seed)
    seen = set(exclude or ())
    out: list[ParseExample] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 50 * n + 1000:
            raise RuntimeError(f"the grammar gave only {len(out)} distinct sentences of the {n} asked for")
        ex = example(sample_tree(rng))
        if len(ex.words) <= max_words and ex.text not in seen:
            seen.add(ex.text)
            out.append(ex)
    return out


def synthetic_splits(train_size: int, seed: int = 0, max_words: int = 25) -> dict[str, list[ParseExample]]:
    """Train / valid / test sets from the grammar; no sentence of valid or test occurs in train (or each other).

    valid and test hold ``max(50, train_size // 10)`` sentences each.
    """
    train = sample(train_size, seed, max_words)
    held = max(50, train_size // 10)
    seen = {ex.text for ex in train}
    valid = sample(held, seed + 1, max_words, seen)
    test = sample(held, seed + 2, max_words, seen | {ex.text for ex in valid})
    return {"train": train, "valid": valid, "test": test}
