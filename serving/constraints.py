"""Constrained decoding for parsing as translation: the decoder may only write well-formed linearised trees.

At every step the log-probabilities of the tokens that would break a rule are set to -inf before greedy or beam
search chooses (``serving/beam.py``, argument ``constraint``), so every output is one tree, with no repair:

- brackets balance: a closer only when something is open, ``</s>`` only when the one root tree is closed;
- a closer ``)L`` only for the innermost open ``(L``; an opener whose closer is not in the vocabulary never;
- exactly one ``XX`` per input word: no ``XX`` outside a bracket or beyond the n-th, no closing of the root
  before the n-th (which would start a second top-level tree), no opener once all n are placed;
- no constituent without a word: a closer never right after its own opener;
- at most ``max_open_run`` openers in a row (this bounds unary chains; the PTB sample's trees need 6);
- a length bound per sentence: a token is allowed only if what is still missing afterwards (the remaining
  ``XX``, one closer per open bracket, ``</s>``) fits in the tokens left, so when the budget is just enough,
  only the tokens that complete the tree are allowed.

Only the target vocabulary is needed (``(L``, ``)L``, ``XX``, ``</s>``), so this is numpy only, like all serving.

    rules = TreeRules(target_vocab_entries, end_id)
    constraint = rules.for_batch(n_words=[5, 9], limits=[31, 43])    # one per decoded batch
    greedy(step, states, 2, ..., constraint=constraint)

A bound constraint follows the protocol ``serving.beam`` drives: ``start(rows)`` gives the state (a dict of arrays,
one row per hypothesis, reordered with the hypotheses like the decoder states), ``allowed(state)`` the boolean
mask [rows, V] of the next tokens, ``update(state, tokens)`` the state after them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from serving.trees import WORD

OTHER, OPEN, CLOSE, XX, END = range(5)
"""Token kinds."""

MAX_OPEN_RUN = 8
"""Default most openers in a row (the deepest run in the PTB sample's training trees is 6)."""


def min_length(n_words: int) -> int:
    """Fewest output tokens (``</s>`` included) of a tree over ``n_words``: ``(L XX ... XX )L </s>``."""
    return n_words + 3


class TreeRules:
    """The bracket rules of a target vocabulary; :meth:`for_batch` binds them to the sentences of a batch.

    Raises:
      ValueError: the vocabulary lacks ``XX``, or has no opener ``(L`` with its closer ``)L``, or ``end_id`` is
        outside it.
    """

    def __init__(self, vocab: Sequence[str], end_id: int, max_open_run: int = MAX_OPEN_RUN):
        vocab = list(vocab)
        if WORD not in vocab:
            raise ValueError(f"the target vocabulary has no {WORD!r}: not a parsing vocabulary")
        if not 0 <= end_id < len(vocab):
            raise ValueError(f"end id {end_id} is outside the vocabulary of {len(vocab)}")
        if max_open_run < 1:
            raise ValueError(f"max_open_run must be at least 1, got {max_open_run}")
        ids = {token: i for i, token in enumerate(vocab)}
        self.size, self.end_id, self.max_open_run = len(vocab), end_id, max_open_run
        self.kinds = np.full(len(vocab), OTHER, np.int8)
        self.closer_of = np.full(len(vocab), -1, np.int64)  # opener id → its closer id
        for i, token in enumerate(vocab):
            if token.startswith("(") and f"){token[1:]}" in ids and len(token) > 1:
                self.kinds[i], self.closer_of[i] = OPEN, ids[f"){token[1:]}"]
            elif token.startswith(")") and f"({token[1:]}" in ids and len(token) > 1:
                self.kinds[i] = CLOSE
        self.kinds[ids[WORD]], self.kinds[end_id] = XX, END
        self.word_id = ids[WORD]
        self.openers = np.flatnonzero(self.kinds == OPEN)
        if not len(self.openers):
            raise ValueError("the target vocabulary has no bracket pair (L ... )L")

    def for_batch(self, n_words: Sequence[int], limits: Sequence[int]) -> "TreeConstraint":
        """The constraint for a batch: sentence i has ``n_words[i]`` words and at most ``limits[i]`` output
        tokens (``</s>`` included; the decoder's ``max_len`` must be at least the largest).

        Raises:
          ValueError: a sentence without words, or a limit below :func:`min_length`.
        """
        n_words, limits = np.asarray(n_words, np.int64), np.asarray(limits, np.int64)
        if n_words.shape != limits.shape or not len(n_words):
            raise ValueError(f"{len(n_words)} sentence lengths for {len(limits)} limits")
        if (n_words < 1).any():
            raise ValueError("a sentence without words has no tree")
        short = np.flatnonzero(limits < n_words + 3)
        if len(short):
            i = int(short[0])
            raise ValueError(f"sentence {i}: a tree over {n_words[i]} words needs at least {min_length(n_words[i])} "
                             f"output tokens, the limit is {limits[i]}")
        return TreeConstraint(self, n_words, limits)


class TreeConstraint:
    """The rules bound to the sentences of one batch (see the module docstring for the protocol)."""

    def __init__(self, rules: TreeRules, n_words: np.ndarray, limits: np.ndarray):
        self.rules, self.n_words, self.limits = rules, n_words, limits

    def start(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The state before the first token; ``rows[i]`` is the sentence hypothesis row i decodes."""
        rows = np.asarray(rows, np.int64)
        n = len(rows)
        counts = {name: np.zeros(n, np.int64) for name in ("steps", "placed", "depth", "run")}
        flags = {name: np.zeros(n, bool) for name in ("filled", "started", "ended")}
        return {"words": self.n_words[rows], "limit": self.limits[rows], **counts, **flags,
                "stack": np.zeros((n, int(self.limits.max())), np.int64)}

    def allowed(self, state: dict[str, np.ndarray]) -> np.ndarray:
        """Boolean mask [rows, V]: the tokens each hypothesis may write next. An ended hypothesis may only
        write ``</s>`` again (beam search keeps copies of finished rows)."""
        rules, depth, ended = self.rules, state["depth"], state["ended"]
        left = state["limit"] - state["steps"] - 1  # tokens still free after this one
        missing = state["words"] - state["placed"]
        live = ~ended
        can_word = live & (depth > 0) & (missing > 0) & (missing + depth <= left)
        can_open = (live & (missing > 0) & ((depth > 0) | ~state["started"]) & (state["run"] < rules.max_open_run)
                    & (missing + depth + 2 <= left))
        can_close = (live & (depth > 0) & state["filled"] & ((depth > 1) | (missing == 0))
                     & (missing + depth <= left))
        can_end = ended | (state["started"] & (depth == 0) & (left >= 0))
        mask = np.zeros((len(depth), rules.size), bool)
        mask[:, rules.word_id] = can_word
        mask[:, rules.openers] = can_open[:, None]
        rows = np.flatnonzero(can_close)
        mask[rows, state["stack"][rows, depth[rows] - 1]] = True
        mask[:, rules.end_id] = can_end
        return mask

    def update(self, state: dict[str, np.ndarray], tokens: np.ndarray) -> dict[str, np.ndarray]:
        """The state after each hypothesis wrote ``tokens[i]`` (a token :meth:`allowed` allowed)."""
        tokens = np.asarray(tokens, np.int64)
        kind = self.rules.kinds[tokens]
        new = {name: value.copy() for name, value in state.items()}
        is_word, is_open, is_close = kind == XX, kind == OPEN, kind == CLOSE
        new["steps"] += 1
        new["placed"] += is_word
        opened = np.flatnonzero(is_open)
        new["stack"][opened, new["depth"][opened]] = self.rules.closer_of[tokens[opened]]
        new["depth"] += is_open.astype(np.int64) - is_close
        new["run"] = np.where(is_open, new["run"] + 1, 0)
        new["filled"] = np.where(is_open, False, new["filled"] | is_word | is_close)
        new["started"] |= is_open
        new["ended"] |= kind == END
        return new
