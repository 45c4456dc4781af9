"""IOB tags to slot spans, the conlleval way (an I- tag that does not continue a span starts one)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


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
