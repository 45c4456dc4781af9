"""Syntactic parsing as translation over onnxruntime ("Grammar as a foreign language", Vinyals et al. 2015).

A sentence (pre-tokenized: words separated by spaces, Penn Treebank style) goes into the seq2seq encoder; the
decoder emits the linearised tree (``(S (NP XX XX )NP (VP XX )VP )S``), which is turned back into a bracketed
tree with the input words (see ``serving/trees.py``).

Decoding is constrained by default (``serving/constraints.py``): at each step only the tokens that keep the
output a well-formed tree with one ``XX`` per word, within ``3 × words + 16`` tokens, are allowed, so every output
is well-formed as decoded. The metadata key ``parsing.constrained`` (written true by the pipeline) sets the
default; run dirs exported before it existed lack it and are constrained too, since it is a decoding choice, not a
property of the model. ``ParsingPredictor(..., constrained=False)``, ``predictor.constrained = False`` or
``decode_tokens(..., constrained=False)`` decode unconstrained; an ill-formed output is then repaired.

    predictor = serving.load("runs/parsing")
    predictor.predict("the dog saw a cat .").tree    # '(S (NP (XX the) (XX dog)) (VP (XX saw) ...) (XX .))'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Container, Sequence

import numpy as np

from serving import trees
from serving.base import Result, register
from serving.beam import Hypothesis, beam_search, greedy
from serving.constraints import TreeRules
from serving.errors import InputError, ModelError
from serving.seq2seq import WORD_POSITION, Seq2SeqPredictor

UNKNOWN_SUFFIXES = ("ing", "ed", "ly", "ion", "er", "est", "al", "ive", "able", "s")


def word_class(word: str) -> str:
    """The token an unknown word is read as: its shape (``<unk-num>``, ``<unk-hyphen>``, ``<unk-cap>``) or
    suffix (``<unk-ing>``, ``<unk-ed>``, ...), else ``<unk>``; a parser gets part of the tag from it."""
    if any(ch.isdigit() for ch in word):
        return "<unk-num>"
    if "-" in word[1:-1]:
        return "<unk-hyphen>"
    if word[:1].isupper():
        return "<unk-cap>"
    lower = word.lower()
    for suffix in UNKNOWN_SUFFIXES:
        if lower.endswith(suffix) and len(lower) > len(suffix) + 2:
            return f"<unk-{suffix}>"
    return "<unk>"


def source_tokens(words: Sequence[str], known: Container[str]) -> list[str]:
    """The encoder's tokens for ``words``: a known word as itself, an unknown one as its :func:`word_class`."""
    return [w if w in known else word_class(w) for w in words]


def max_output_len(n_words: int, per_word: int = 3, extra: int = 16) -> int:
    """The decoding guard for a sentence of ``n_words``: a linearised treebank tree has at most 3 tokens per
    word plus a few (the worst training tree of the PTB sample: 3n + 14)."""
    return per_word * n_words + extra


@dataclasses.dataclass(frozen=True)
class ParsingResult(Result):
    """The parse of one sentence.

    Attributes:
      text: the input sentence.
      words: its words (split on white space).
      tree: the parse in bracket notation, words tagged ``XX`` (the model predicts no part-of-speech tags).
      well_formed: the decoder's raw output was already one balanced tree with one ``XX`` per word.
      repaired: the output needed repair (brackets closed or dropped, ``XX`` added or dropped).
      output_tokens: the raw decoded tokens (without ``<s>`` / ``</s>``).
      linearized: the tokens the tree was built from (the raw output or its repair), space-separated.
      unknown_words: words not in the vocabulary (read by their shape class).
      score: sum of the output's log-probabilities.
      finished: the decoder emitted the end symbol; False when the length guard stopped it.
      beam_size: 1 for greedy decoding.
    """

    text: str
    words: list[str]
    tree: str
    well_formed: bool
    repaired: bool
    output_tokens: list[str]
    linearized: str
    unknown_words: list[str]
    score: float
    finished: bool
    beam_size: int

    def __str__(self) -> str:
        return f"{self.text}\n  {self.tree}" + ("" if self.well_formed else "  (repaired)")


@register("parsing")
class ParsingPredictor(Seq2SeqPredictor):
    """Parses sentences with an exported parsing model. Build one with :func:`serving.load`.

    Input: one sentence per text, tokenized (words separated by white space, punctuation as words of its own).
    Empty text and sentences over the model's ``max_source_len`` words raise :class:`serving.InputError`.

    Args:
      constrained: decode under the tree constraints (``serving/constraints.py``); None: the metadata's
        ``parsing.constrained``, true when absent. The attribute ``constrained`` can be changed later.
    """

    task = "parsing"
    input_kind = "text"

    def __init__(self, model, metadata: dict, constrained: bool | None = None):
        super().__init__(model, metadata)
        default = metadata.get("parsing", {}).get("constrained", True)
        self.constrained = bool(default if constrained is None else constrained)
        try:
            self.tree_rules = TreeRules(self.target_vocab.entries, self.end_id)
        except ValueError as err:
            raise ModelError(f"{model.path}: {err}") from None

    def source_ids(self, token_lists):
        return super().source_ids([source_tokens(words, self.source_vocab) for words in token_lists])

    def decode_tokens(self, token_lists, beam_size=None, max_len=None, constrained: bool | None = None):
        """Decodes word lists; ``constrained`` (None: the predictor's ``constrained``) applies the tree
        constraints, each sentence within ``min(max_len, 3 × words + 16)`` tokens."""
        if max_len is None:  # the guard grows with the longest sentence of the batch
            max_len = min(self.max_target_len, max_output_len(max(len(t) for t in token_lists)))
        if not (self.constrained if constrained is None else constrained):
            return super().decode_tokens(token_lists, beam_size, max_len)
        lengths = [len(t) for t in token_lists]
        try:
            constraint = self.tree_rules.for_batch(lengths, [min(max_len, max_output_len(n)) for n in lengths])
        except ValueError as err:
            raise InputError(f"max_len {max_len}: {err}") from None
        return self.decode_states(self.encode_ids(self.source_ids(token_lists)), beam_size, max_len, constraint)

    def decode_states(self, states, beam_size=None, max_len=None, constraint=None):
        """As :meth:`Seq2SeqPredictor.decode_states`; under ``constraint`` (``serving.beam``'s protocol, e.g. a
        bound :class:`serving.constraints.TreeConstraint`) when one is given."""
        if constraint is None:
            return super().decode_states(states, beam_size, max_len)
        beam_size = self.beam_size if beam_size is None else int(beam_size)
        max_len = self.max_target_len if max_len is None else int(max_len)
        if beam_size < 1 or max_len < 1:
            raise InputError(f"beam_size and max_len must be at least 1, got {beam_size} and {max_len}")
        batch = len(next(iter(states.values())))
        if self.pointer_id and WORD_POSITION not in states:  # the word pointer starts at the first word
            states = {**states, WORD_POSITION: np.zeros(batch, np.int32)}
        common = dict(start_id=self.start_id, end_id=self.end_id, max_len=max_len,
                      length_penalty=self.length_penalty, constraint=constraint)
        if beam_size == 1:
            return greedy(self.step, dict(states), batch, **common)
        return beam_search(self.step, dict(states), batch, beam_size=beam_size, **common)

    def make_result(self, text: str, source_tokens: list[str], hyp: Hypothesis, beam_size: int) -> ParsingResult:
        words = list(source_tokens)
        output = self.output_tokens(hyp)
        decoded = trees.to_tree(output, words)
        return ParsingResult(
            text=text, words=words, tree=trees.to_string(decoded.tree), well_formed=decoded.well_formed,
            repaired=not decoded.well_formed, output_tokens=output, linearized=" ".join(decoded.tokens),
            unknown_words=[w for w in words if w not in self.source_vocab], score=hyp.score, finished=hyp.finished,
            beam_size=beam_size,
        )
