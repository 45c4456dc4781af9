"""The classical baseline for parsing: a PCFG read off the training trees, parsed by CKY (Viterbi) in numpy.

    python -m pipelines.pcfg_baseline --data-dir ../shared/data/ptb-treebank-sample   # dev and test F1, seconds

The grammar is induced with nltk from the same training trees the seq2seq parser learns from: unary chains are
collapsed into one symbol (``S+VP``, ``NP+NNP``, ``Tree.collapse_unary``), the trees are put in Chomsky normal
form (``Tree.chomsky_normal_form``, horizontal Markov order ``--horz-markov``, parent annotation with
``--vert-markov 1``) and ``nltk.induce_pcfg`` gives the rule probabilities (relative frequencies). The terminals
are what the seq2seq encoder reads: a word seen more than ``--rare-words`` times in training as itself, any other
by its shape class (``serving.parsing.word_class``), so test words unseen in training still get tags; no gold
part-of-speech tag is used at test time. ``nltk.ViterbiParser`` is pure Python and far too slow on a grammar of
thousands of rules (see docs/parsing.md), so the Viterbi CKY here is vectorised over the rules with numpy.
The best tree is turned back (``Tree.un_chomsky_normal_form``) and scored with the project's EVALB-style scorer
(``serving.trees.score``), on the whole split and on its sentences of at most 25 words.

Not to be confused with ``pipelines/pcfg.py``, the built-in grammar that samples the synthetic sentences.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import sys
import time
from collections.abc import Sequence

import numpy as np

SHORT = 25
"""The subset reported beside the whole split: sentences of at most this many words."""

UNK = "<unk>"


@dataclasses.dataclass
class Grammar:
    """A PCFG in Chomsky normal form, as arrays.

    Attributes:
      symbols: the non-terminal names (collapsed unary chains ``A+B``, binarised ``A|<B-C>``).
      left, right, parent, logp: the binary rules ``parent → left right`` with their log-probabilities, sorted by
        parent.
      heads, segments: the parents that have rules and where each one's rules start (for ``np.maximum.reduceat``).
      lexicon: terminal → (symbol ids, log P(terminal | symbol)).
      root: log P(a tree's root is the symbol) per symbol, -inf for symbols never at the root.
      known: the words read as themselves (the others by their shape class).
    """

    symbols: list[str]
    left: np.ndarray
    right: np.ndarray
    parent: np.ndarray
    logp: np.ndarray
    heads: np.ndarray
    segments: np.ndarray
    lexicon: dict[str, tuple[np.ndarray, np.ndarray]]
    root: np.ndarray
    known: frozenset

    def terminals(self, words: Sequence[str]) -> list[str]:
        """The terminals the grammar reads for ``words`` (unknown words by their shape class)."""
        from serving.parsing import source_tokens

        return source_tokens(words, self.known)

    def lexical(self, terminal: str) -> tuple[np.ndarray, np.ndarray]:
        """(symbol ids, log-probabilities) of ``terminal``; a class never seen in training reads as ``<unk>``,
        and without that, as any pre-terminal with a tiny probability."""
        if terminal in self.lexicon:
            return self.lexicon[terminal]
        if UNK in self.lexicon:
            return self.lexicon[UNK]
        preterminals = np.unique(np.concatenate([ids for ids, _ in self.lexicon.values()]))
        return preterminals, np.full(len(preterminals), -20.0, np.float32)


# --- induction -------------------------------------------------------------------------------------------------------

def to_nltk(tree, terminals: Sequence[str]):
    """A ``serving.trees.Tree`` as an ``nltk.Tree`` whose leaves are ``terminals`` (in order)."""
    from nltk import Tree as NltkTree

    position = iter(terminals)

    def walk(node):
        if node.is_preterminal():
            return NltkTree(node.label, [next(position)])
        return NltkTree(node.label, [walk(child) for child in node.children])

    return walk(tree)


def binarize(tree, horz_markov: int | None, vert_markov: int):
    """``tree`` (an ``nltk.Tree``, changed in place and returned) in Chomsky normal form: unary chains
    collapsed (pre-terminals and the root included), then binarised."""
    tree.collapse_unary(collapsePOS=True, collapseRoot=True)
    tree.chomsky_normal_form(horzMarkov=horz_markov, vertMarkov=vert_markov)
    return tree


def induce(trees: Sequence, known: set[str], horz_markov: int | None = 2, vert_markov: int = 1) -> Grammar:
    """The PCFG of ``trees`` (``serving.trees.Tree`` with part-of-speech tags), words outside ``known`` read by
    their shape class.

    Raises:
      ValueError: no trees.
    """
    import nltk

    from serving.parsing import source_tokens

    if not trees:
        raise ValueError("no training trees to induce a grammar from")
    productions, roots = [], collections.Counter()
    for tree in trees:
        cnf = binarize(to_nltk(tree, source_tokens(tree.leaves(), known)), horz_markov, vert_markov)
        productions += cnf.productions()
        roots[cnf.label()] += 1
    pcfg = nltk.induce_pcfg(nltk.Nonterminal("ROOT"), productions)
    return _arrays(pcfg.productions(), roots, frozenset(known))


def _arrays(productions, roots: collections.Counter, known: frozenset) -> Grammar:
    symbols = sorted({str(p.lhs()) for p in productions} | {str(s) for p in productions for s in p.rhs()
                                                            if not isinstance(s, str)})
    index = {name: i for i, name in enumerate(symbols)}
    binary = sorted((index[str(p.lhs())], index[str(p.rhs()[0])], index[str(p.rhs()[1])], np.log(p.prob()))
                    for p in productions if len(p.rhs()) == 2)
    parent, left, right, logp = (np.array(column) for column in zip(*binary))
    heads, segments = np.unique(parent, return_index=True)
    words = collections.defaultdict(list)
    for p in productions:
        if len(p.rhs()) == 1 and isinstance(p.rhs()[0], str):
            words[p.rhs()[0]].append((index[str(p.lhs())], np.log(p.prob())))
    lexicon = {w: (np.array([s for s, _ in pairs]), np.array([lp for _, lp in pairs], np.float32))
               for w, pairs in words.items()}
    total = sum(roots.values())
    root = np.full(len(symbols), -np.inf, np.float32)
    for name, count in roots.items():
        root[index[name]] = np.log(count / total)
    return Grammar(symbols, left, right, parent, logp.astype(np.float32), heads, segments, lexicon, root, known)


# --- CKY ------------------------------------------------------------------------------------------------------------

def chart(grammar: Grammar, terminals: Sequence[str]) -> np.ndarray:
    """The Viterbi chart [n, n + 1, symbols]: the best log-probability of each symbol over each span."""
    n = len(terminals)
    table = np.full((n, n + 1, len(grammar.symbols)), -np.inf, np.float32)
    for i, terminal in enumerate(terminals):
        ids, logp = grammar.lexical(terminal)
        table[i, i + 1, ids] = logp
    for length in range(2, n + 1):
        for start in range(n - length + 1):
            _fill(grammar, table, start, start + length)
    return table


def _fill(g: Grammar, table: np.ndarray, start: int, end: int) -> None:
    """Fills the chart cell (start, end) from its splits, over the rules whose two children were built there
    (the chart is sparse: a rule-by-rule pass over only those is several times faster than over all)."""
    mids = np.arange(start + 1, end)
    lefts, rights = table[start, mids], table[mids, end]  # [splits, symbols]
    active = np.flatnonzero(np.isfinite(lefts).any(axis=0)[g.left] & np.isfinite(rights).any(axis=0)[g.right])
    if not len(active):
        return
    best = (lefts[:, g.left[active]] + rights[:, g.right[active]]).max(axis=0) + g.logp[active]
    parents = g.parent[active]  # sorted, as the rules are
    segments = np.flatnonzero(np.concatenate([[True], parents[1:] != parents[:-1]]))
    table[start, end, parents[segments]] = np.maximum.reduceat(best, segments)


def backtrack(grammar: Grammar, table: np.ndarray, terminals: Sequence[str], i: int, j: int, symbol: int):
    """The best ``nltk.Tree`` of ``symbol`` over the span i..j of a filled chart."""
    from nltk import Tree as NltkTree

    g = grammar
    name = g.symbols[symbol]
    if j == i + 1:
        return NltkTree(name, [terminals[i]])
    segment = np.searchsorted(g.heads, symbol)
    rules = np.arange(g.segments[segment], g.segments[segment + 1] if segment + 1 < len(g.heads) else len(g.parent))
    mids = np.arange(i + 1, j)
    scores = table[i, mids][:, g.left[rules]] + table[mids, j][:, g.right[rules]] + g.logp[rules]
    split, rule = np.unravel_index(np.argmax(scores), scores.shape)
    k, rule = int(mids[split]), int(rules[rule])
    return NltkTree(name, [backtrack(g, table, terminals, i, k, int(g.left[rule])),
                           backtrack(g, table, terminals, k, j, int(g.right[rule]))])


def parse(grammar: Grammar, words: Sequence[str]):
    """The Viterbi parse of ``words`` as a ``serving.trees.Tree`` (tags as the grammar predicts them) and whether
    the grammar derives the whole sentence; when it does not, the fewest best constituents that cover it
    (:func:`fragments`), under one ``S``.

    Raises:
      ValueError: no words.
    """
    from serving.trees import Tree

    if not words:
        raise ValueError("no words to parse")
    terminals = grammar.terminals(words)
    table = chart(grammar, terminals)
    top = table[0, len(words)] + grammar.root
    if np.isfinite(top.max()):
        spans, complete = [(0, len(words), int(np.argmax(top)))], True
    else:
        spans, complete = fragments(grammar, table), False
    parts = []
    for start, end, symbol in spans:
        part = backtrack(grammar, table, terminals, start, end, symbol)
        part.un_chomsky_normal_form(expandUnary=True)
        parts.append(from_nltk(part, words[start:end]))
    return (parts[0] if complete else Tree("S", parts)), complete


def fragments(grammar: Grammar, table: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, end, symbol) of the fewest constituents that cover the sentence, the most probable among those;
    binarisation symbols (``A|<...>``) are not constituents. Every word alone is one, so a cover always exists."""
    n = len(table)
    real = np.array(["|" not in name for name in grammar.symbols])
    best = [(0, 0.0, None)] + [(n + 1, -np.inf, None)] * n  # per end: (parts, log-probability, last span)
    for end in range(1, n + 1):
        for start in range(end):
            scores = np.where(real, table[start, end], -np.inf)
            symbol = int(np.argmax(scores))
            if np.isfinite(scores[symbol]):
                parts, logp, _ = best[start]
                candidate = (parts + 1, logp + float(scores[symbol]), (start, symbol))
                if (candidate[0], -candidate[1]) < (best[end][0], -best[end][1]):
                    best[end] = candidate
    spans, end = [], n
    while end:
        start, symbol = best[end][2]
        spans.append((start, end, symbol))
        end = start
    return spans[::-1]


def from_nltk(tree, words: Sequence[str]):
    """An ``nltk.Tree`` as a ``serving.trees.Tree`` over ``words`` (its leaves replaced in order)."""
    from serving.trees import Tree

    position = iter(words)

    def walk(node):
        if all(isinstance(child, str) for child in node):
            return Tree(node.label(), [next(position) for _ in node])
        return Tree(node.label(), [walk(child) for child in node])

    return walk(tree)


# --- evaluation ------------------------------------------------------------------------------------------------------

def evaluate(grammar: Grammar, examples: Sequence) -> dict:
    """Bracket F1 (EVALB-style, ``serving.trees.score``) of the grammar's parses of ``examples`` (objects with
    ``words`` and ``tree``), on all of them and on those of at most :data:`SHORT` words, with the parsing time."""
    from serving.trees import score

    started, parses, found = time.time(), [], 0
    for example in examples:
        tree, ok = parse(grammar, list(example.words))
        parses.append(tree)
        found += ok
    seconds = time.time() - started
    short = [i for i, ex in enumerate(examples) if len(ex.words) <= SHORT]
    whole = score([ex.tree for ex in examples], parses)
    subset = score([examples[i].tree for i in short], [parses[i] for i in short]) if short else None
    return {"f1": whole.f1, "precision": whole.precision, "recall": whole.recall, "exact_match": whole.exact_match,
            "f1_le25": subset.f1 if subset else 0.0, "sentences": len(examples), "sentences_le25": len(short),
            "parsed": found / len(examples) if examples else 0.0, "seconds": seconds}


def baseline(splits: dict, rare_words: int, max_len: int, evaluate_on: Sequence[str] = ("test",),
             horz_markov: int | None = 2, vert_markov: int = 1) -> dict:
    """Induces the grammar from ``splits["train"]`` (sentences of at most ``max_len`` words, the known words as
    the seq2seq parser's) and evaluates it on each split of ``evaluate_on``: {split: figures, "induce_seconds": s}.
    """
    from pipelines.parsing import known_words

    started = time.time()
    known = known_words(splits["train"], rare_words)
    grammar = induce([ex.tree for ex in splits["train"] if len(ex.words) <= max_len], known, horz_markov,
                     vert_markov)
    out = {"induce_seconds": time.time() - started, "rules": len(grammar.logp), "symbols": len(grammar.symbols)}
    for name in evaluate_on:
        out[name] = evaluate(grammar, splits[name])
    return out


def main(argv: list[str] | None = None) -> int:
    from pipelines.parsing import ParsingConfig, load_data
    from pipelines.readers import DataError

    parser = argparse.ArgumentParser(prog="python -m pipelines.pcfg_baseline", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", help="the folder holding treebank.zip (default: the built-in PCFG sentences)")
    parser.add_argument("--rare-words", type=int, default=1, help="training words seen this often or less are read "
                                                                  "by their shape class (default: 1, as the parser)")
    parser.add_argument("--max-len", type=int, default=60, help="longest training sentence in words (default: 60)")
    parser.add_argument("--horz-markov", type=int, default=2, help="horizontal Markov order of the binarisation; "
                                                                   "-1: none (default: 2)")
    parser.add_argument("--vert-markov", type=int, default=1, help="parent annotation: 0 none, 1 parent, 2 grandparent "
                                                                   "too (default: 1)")
    args = parser.parse_args(argv)
    try:
        splits = load_data(ParsingConfig(data_dir=args.data_dir))
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    horz = None if args.horz_markov < 0 else args.horz_markov
    out = baseline(splits, args.rare_words, args.max_len, ("valid", "test"), horz, args.vert_markov)
    print(f"grammar: {out['symbols']} symbols, {out['rules']} binary rules, induced in {out['induce_seconds']:.1f} s")
    for name, label in (("valid", "dev"), ("test", "test")):
        r = out[name]
        print(f"{label}: F1 {r['f1']:.3f} (P {r['precision']:.3f} R {r['recall']:.3f}, {r['sentences']} sentences), "
              f"F1 <= {SHORT} words {r['f1_le25']:.3f} ({r['sentences_le25']} sentences), parsed {r['parsed']:.3f}, "
              f"{r['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
