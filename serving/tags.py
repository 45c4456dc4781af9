"""IOB tags to slot spans, the conlleval way (an I- tag that does not continue a span starts one)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


class Slot(NamedTuple):
    """A tagged span: the slot name, its words joined by spaces, and the word range [start, end)."""

    name: str
    text: str
    start: int
    end: int


def _split(tag: str) -> tuple[str, str]:
    if tag == "O" or "-" not in tag:
        return "O", ""
    prefix, name = tag.split("-", 1)
    return prefix, name


def iob_spans(words: Sequence[str], tags: Sequence[str]) -> list[Slot]:
    """Groups IOB-tagged words into slots.

    Args:
      words: the words.
      tags: one tag per word, ``O``, ``B-name`` or ``I-name``.

    Returns:
      The slots in order of appearance.

    Raises:
      ValueError: ``words`` and ``tags`` differ in length.
    """
    if len(words) != len(tags):
        raise ValueError(f"{len(words)} words but {len(tags)} tags")
    slots, start, current = [], None, ""
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, name = _split(tag)
        continues = prefix == "I" and name == current and start is not None
        if start is not None and not continues:
            slots.append(Slot(current, " ".join(words[start:i]), start, i))
            start, current = None, ""
        if prefix in ("B", "I") and not continues:
            start, current = i, name
    return slots


def iob_transitions(tags: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The IOB rules as log-space masks: ``(start [K], transition [K, K])``, 0 where allowed, -inf where not.

    ``I-x`` may only follow ``B-x`` or ``I-x``, and may not start a sentence. A tag set with ``I-x`` but no
    ``B-x`` (the training data never began a span that way) leaves ``I-x`` free, as conlleval reads it.
    """
    parts = [_split(tag) for tag in tags]
    begins = {name for prefix, name in parts if prefix == "B"}
    inside = np.array([prefix == "I" and name in begins for prefix, name in parts])
    allowed = np.array([[(prefix == "B" or prefix == "I") and name == cur for prefix, name in parts]
                        for _, cur in parts]).T  # allowed[prev, cur] when cur continues prev's span
    transition = np.where(~inside[None, :] | allowed, 0.0, -np.inf)
    start = np.where(inside, -np.inf, 0.0)
    return start, transition


def viterbi(log_probs: np.ndarray, start: np.ndarray, transition: np.ndarray) -> np.ndarray:
    """The best tag path through per-step scores ``log_probs`` [T, K] under ``start`` [K] and ``transition``
    [K, K] (log-space, added to the scores): the tag ids [T]."""
    score = log_probs[0] + start
    back = np.zeros(log_probs.shape, dtype=np.int64)
    for t in range(1, len(log_probs)):
        candidates = score[:, None] + transition
        back[t] = candidates.argmax(0)
        score = candidates.max(0) + log_probs[t]
    path = [int(score.argmax())]
    for t in range(len(log_probs) - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return np.array(path[::-1])


class IOBDecoder:
    """Decodes a tag softmax [T, K] into the most probable *well-formed* IOB sequence (constrained Viterbi):
    no ``I-x`` without a ``B-x`` or ``I-x`` before it. ``IOBDecoder(tags)(probs)`` → tag ids [T]."""

    def __init__(self, tags: Sequence[str]):
        self.start, self.transition = iob_transitions(tags)

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return viterbi(np.log(np.asarray(probs, dtype=np.float64)), self.start, self.transition)
