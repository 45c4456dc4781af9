"""Constituency trees for parsing as translation ("Grammar as a foreign language", Vinyals et al. 2015).

Pure Python (no numpy): reading bracketed trees, the depth-first linearisation the decoder emits, turning a
decoded token sequence back into a tree (with repair of ill-formed output), and labelled bracket scoring in the
manner of EVALB with its ``COLLINS.prm`` settings.

The linearisation of ``(S (NP (DT the) (NN dog)) (VP (VBD barked)))`` is::

    (S (NP XX XX )NP (VP XX )VP )S

Every non-terminal opens with ``(LABEL`` and closes with ``)LABEL``; every word, with its part-of-speech tag,
becomes ``XX`` (the words are on the source side; a decoded tree gets them back by position).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence

WORD = "XX"
"""The target-side stand-in for a word (and its part-of-speech tag)."""

ROOT = "TOP"
"""Label of the root added when a tree or a decoded sequence has several top-level parts; never scored."""

DELETE_LABELS = frozenset({"TOP", "-NONE-", ",", ":", "``", "''", "."})
"""EVALB ``COLLINS.prm`` DELETE_LABEL: a pre-terminal with one of these tags is deleted with its word (punctuation,
empty elements); a non-terminal with one (the root) loses its bracket but keeps its children."""

EQUIVALENT_LABELS = {"PRT": "ADVP"}
"""EVALB ``COLLINS.prm`` EQ_LABEL ADVP PRT: labels scored as the same."""


class TreeError(ValueError):
    """A bracketed string or a token sequence is not a well-formed tree."""


@dataclasses.dataclass
class Tree:
    """A constituency tree node: a label and children, each a :class:`Tree` or a word (str).

    A pre-terminal is a node whose only child is a word: ``Tree("NN", ["dog"])``.
    """

    label: str
    children: list

    def is_preterminal(self) -> bool:
        return len(self.children) == 1 and isinstance(self.children[0], str)

    def leaves(self) -> list[str]:
        """The words, left to right."""
        out = []
        for child in self.children:
            out.extend([child] if isinstance(child, str) else child.leaves())
        return out

    def preterminals(self) -> list["Tree"]:
        """The pre-terminal nodes (tag + word), left to right."""
        if self.is_preterminal():
            return [self]
        return [p for child in self.children if isinstance(child, Tree) for p in child.preterminals()]

    def tags(self) -> list[str]:
        """The part-of-speech tags, one per word."""
        return [p.label for p in self.preterminals()]

    def __str__(self) -> str:
        return to_string(self)


def to_string(tree: Tree) -> str:
    """The tree in Penn Treebank bracket notation on one line: ``(S (NP (XX the) (XX dog)) (VP (XX barked)))``."""
    parts = [to_string(c) if isinstance(c, Tree) else c for c in tree.children]
    return f"({tree.label} {' '.join(parts)})" if parts else f"({tree.label})"


def _tokens(text: str) -> list[str]:
    return text.replace("(", " ( ").replace(")", " ) ").split()


def read_trees(text: str, source: str = "text") -> list[Tree]:
    """Reads every bracketed tree in ``text`` (Penn Treebank ``.mrg`` notation, any layout).

    An unlabelled bracket gets the label ``""`` (the PTB files wrap each tree in one: ``( (S ...) )``).

    Raises:
      TreeError: unbalanced brackets or a word outside any bracket, naming ``source`` and the tree's number.
    """
    trees: list[Tree] = []
    stack: list[Tree] = []
    tokens = _tokens(text)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "(":
            label = ""
            if i + 1 < len(tokens) and tokens[i + 1] not in "()":
                label = tokens[i + 1]
                i += 1
            node = Tree(label, [])
            if stack:
                stack[-1].children.append(node)
            stack.append(node)
        elif token == ")":
            if not stack:
                raise TreeError(f"{source}: tree {len(trees) + 1}: a ')' closes nothing")
            node = stack.pop()
            if not stack:
                trees.append(node)
        elif stack:
            stack[-1].children.append(token)
        else:
            raise TreeError(f"{source}: tree {len(trees) + 1}: word {token!r} outside any bracket")
        i += 1
    if stack:
        raise TreeError(f"{source}: tree {len(trees) + 1} is not closed (missing ')')")
    return trees


def read_tree(text: str) -> Tree:
    """Reads exactly one bracketed tree.

    Raises:
      TreeError: not exactly one well-formed tree.
    """
    trees = read_trees(text)
    if len(trees) != 1:
        raise TreeError(f"expected one tree, found {len(trees)}")
    return trees[0]


# --- linearisation ---------------------------------------------------------------------------------------------------

def linearize(tree: Tree) -> list[str]:
    """The depth-first token sequence of ``tree``: ``(L`` ... ``)L`` per non-terminal, ``XX`` per word."""
    if tree.is_preterminal():
        return [WORD]
    out = [f"({tree.label}"]
    for child in tree.children:
        out.extend(linearize(child) if isinstance(child, Tree) else [WORD])
    out.append(f"){tree.label}")
    return out


def _kind(token: str) -> str:
    if token == WORD:
        return "word"
    if len(token) > 1 and token[0] in "()":
        return "open" if token[0] == "(" else "close"
    return "other"


def delinearize(tokens: Sequence[str], words: Sequence[str]) -> Tree:
    """Rebuilds the tree from a well-formed linearisation, the words attached in order (tag ``XX``).

    Raises:
      TreeError: the sequence is not one balanced tree with matching labels and exactly ``len(words)`` ``XX``.
    """
    stack: list[Tree] = []
    roots: list[Tree] = []
    n = 0
    for position, token in enumerate(tokens):
        kind = _kind(token)
        if kind == "other":
            raise TreeError(f"token {position} {token!r} is not a bracket or {WORD}")
        if roots:
            raise TreeError(f"token {position} {token!r} follows the end of the tree")
        if kind == "open":
            node = Tree(token[1:], [])
            if stack:
                stack[-1].children.append(node)
            stack.append(node)
        elif kind == "close":
            if not stack:
                raise TreeError(f"token {position} {token!r} closes nothing")
            if stack[-1].label != token[1:]:
                raise TreeError(f"token {position} {token!r} closes ({stack[-1].label}")
            node = stack.pop()
            if not node.children:
                raise TreeError(f"token {position} {token!r} closes an empty constituent")
            if not stack:
                roots.append(node)
        else:
            if not stack:
                raise TreeError(f"token {position} {WORD} is outside any bracket")
            if n >= len(words):
                raise TreeError(f"more than {len(words)} {WORD} for {len(words)} words")
            stack[-1].children.append(Tree(WORD, [words[n]]))
            n += 1
    if stack:
        raise TreeError(f"{len(stack)} bracket(s) left open: " + " ".join(f"({node.label}" for node in stack))
    if not roots:
        raise TreeError("no tree")
    if n != len(words):
        raise TreeError(f"{n} {WORD} for {len(words)} words")
    return roots[0]


def repair(tokens: Sequence[str], n_words: int) -> list[str]:
    """Turns any decoded token sequence into a well-formed linearisation with exactly ``n_words`` ``XX``.

    Deterministic rules, applied left to right:
      - a token that is neither a bracket nor ``XX`` (an end or padding symbol) is dropped;
      - ``XX`` beyond the ``n_words``-th is dropped; ``XX`` outside any open bracket is kept (it will hang from
        the root);
      - a closer ``)L`` closes the innermost open ``(L``, closing whatever is open inside it; a closer that
        matches no open bracket is dropped;
      - at the end, missing ``XX`` are added inside the innermost bracket still open (or, when all is closed,
        at the end of the last top-level part) and every open bracket is closed;
      - constituents left without any word are removed;
      - several top-level parts (or words at the top level) are put under one root labelled ``TOP``.

    Returns:
      A sequence that :func:`delinearize` accepts with ``n_words`` words (for ``n_words`` ≥ 1).
    """
    # Build a forest first: nodes are [label, children], words are None.
    forest: list = []
    stack: list[list] = []
    n = 0
    for token in tokens:
        kind = _kind(token)
        if kind == "open":
            node = [token[1:], []]
            (stack[-1][1] if stack else forest).append(node)
            stack.append(node)
        elif kind == "close":
            labels = [node[0] for node in stack]
            if token[1:] in labels:
                del stack[len(labels) - 1 - labels[::-1].index(token[1:]):]
        elif kind == "word" and n < n_words:
            (stack[-1][1] if stack else forest).append(None)
            n += 1
    if n < n_words:
        if stack:
            target = stack[-1][1]
        elif forest and forest[-1] is not None:
            target = forest[-1][1]
        else:
            target = forest
        target.extend([None] * (n_words - n))

    def prune(children: list) -> list:
        kept = []
        for child in children:
            if child is None:
                kept.append(None)
            else:
                child[1] = prune(child[1])
                if child[1]:
                    kept.append(child)
        return kept

    forest = prune(forest)
    if len(forest) != 1 or forest[0] is None:
        forest = [[ROOT, forest]]

    def emit(node: list, out: list[str]) -> None:
        out.append(f"({node[0]}")
        for child in node[1]:
            if child is None:
                out.append(WORD)
            else:
                emit(child, out)
        out.append(f"){node[0]}")

    out: list[str] = []
    emit(forest[0], out)
    return out


@dataclasses.dataclass(frozen=True)
class Decoded:
    """A decoded parse: the tree, and whether the raw output needed repair.

    Attributes:
      tree: the parse with the input words attached (tag ``XX``).
      well_formed: the raw output was already one balanced tree with exactly one ``XX`` per word.
      tokens: the linearisation the tree was built from (the raw output, or its repair).
    """

    tree: Tree
    well_formed: bool
    tokens: list[str]


def to_tree(tokens: Sequence[str], words: Sequence[str]) -> Decoded:
    """The tree for decoded ``tokens`` over ``words``: read as is when well-formed, else after :func:`repair`.

    Raises:
      TreeError: ``words`` is empty.
    """
    if not words:
        raise TreeError("no words to parse")
    try:
        return Decoded(delinearize(tokens, words), True, list(tokens))
    except TreeError:
        fixed = repair(tokens, len(words))
        return Decoded(delinearize(fixed, words), False, fixed)


# --- scoring ---------------------------------------------------------------------------------------------------------

def _label(label: str) -> str:
    return EQUIVALENT_LABELS.get(label, label)


def brackets(tree: Tree, gold_tags: Sequence[str] | None = None) -> Counter:
    """The labelled brackets ``(label, start, end)`` that EVALB (``COLLINS.prm``) scores, as a multiset.

    Words whose gold tag is in :data:`DELETE_LABELS` (punctuation) are deleted before spans are counted;
    pre-terminals are not brackets; a bracket with a deleted label (the root ``TOP`` or an unlabelled wrapper)
    is not counted but its children are; a bracket that covers no remaining word is not counted.

    Args:
      tree: the tree to score.
      gold_tags: the gold part-of-speech tags, which decide what is deleted (EVALB uses the gold tree's); by
        default the tree's own tags.
    """
    tags = list(gold_tags) if gold_tags is not None else tree.tags()
    if len(tags) != len(tree.leaves()):
        raise TreeError(f"{len(tags)} gold tags for {len(tree.leaves())} words")
    kept = [tag not in DELETE_LABELS for tag in tags]
    out: Counter = Counter()

    def walk(node: Tree, position: int, start: int) -> tuple[int, int]:
        # position: index among all words; start: index among the kept words.
        if node.is_preterminal():
            return position + 1, start + int(kept[position])
        end_position, end = position, start
        for child in node.children:
            if isinstance(child, str):  # a bare word under a phrase: treat as a pre-terminal
                end_position, end = end_position + 1, end + int(kept[end_position])
            else:
                end_position, end = walk(child, end_position, end)
        if end > start and node.label and node.label not in DELETE_LABELS:
            out[(_label(node.label), start, end)] += 1
        return end_position, end

    walk(tree, 0, 0)
    return out


@dataclasses.dataclass(frozen=True)
class BracketScore:
    """Corpus-level labelled bracket scores (EVALB's "Bracketing" figures, micro-averaged over sentences).

    Attributes:
      precision, recall, f1: labelled bracket precision, recall and F1 (0 when undefined).
      matched, gold, test: bracket counts: matched, in the gold trees, in the predicted trees.
      sentences: number of sentences scored.
      exact_match: share of sentences whose bracket multisets are equal.
      well_formed: share of predictions that were well-formed before repair (None when not given).
    """

    precision: float
    recall: float
    f1: float
    matched: int
    gold: int
    test: int
    sentences: int
    exact_match: float
    well_formed: float | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def score(golds: Sequence[Tree], predictions: Sequence[Tree],
          well_formed: Iterable[bool] | None = None) -> BracketScore:
    """Scores predicted trees against gold trees, sentence by sentence (same words, same order).

    Raises:
      TreeError: different numbers of trees, or a prediction with a different number of words than its gold.
    """
    if len(golds) != len(predictions):
        raise TreeError(f"{len(golds)} gold trees but {len(predictions)} predictions")
    matched = gold_total = test_total = exact = 0
    for i, (gold, pred) in enumerate(zip(golds, predictions)):
        tags = gold.tags()
        if len(pred.leaves()) != len(tags):
            raise TreeError(f"sentence {i}: prediction has {len(pred.leaves())} words, gold {len(tags)}")
        gold_b, pred_b = brackets(gold), brackets(pred, tags)
        matched += sum((gold_b & pred_b).values())
        gold_total += sum(gold_b.values())
        test_total += sum(pred_b.values())
        exact += gold_b == pred_b
    precision = matched / test_total if test_total else 0.0
    recall = matched / gold_total if gold_total else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    flags = list(well_formed) if well_formed is not None else None
    return BracketScore(
        precision=precision, recall=recall, f1=f1, matched=matched, gold=gold_total, test=test_total,
        sentences=len(golds), exact_match=exact / len(golds) if golds else 0.0,
        well_formed=(sum(flags) / len(flags) if flags else 0.0) if flags is not None else None,
    )
