"""Readers for slot-filling data: the ATIS / SNIPS ``seq.in`` / ``seq.out`` / ``label`` format.

A data folder holds one sub-folder per split (``train``, ``valid`` or ``dev``, ``test``), each with three
line-aligned files: words separated by spaces, one IOB tag per word, and one intent per line.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

SPLIT_FOLDERS = {"train": ("train",), "valid": ("valid", "dev"), "test": ("test",)}


class DataError(ValueError):
    """Raised when a data folder or file is missing, empty or malformed."""


@dataclasses.dataclass(frozen=True)
class SlotExample:
    """One utterance: its words, one IOB slot tag per word, and the intent of the whole utterance."""

    words: tuple[str, ...]
    tags: tuple[str, ...]
    intent: str

    def __post_init__(self):
        if not self.words:
            raise DataError("an example has no words")
        if len(self.words) != len(self.tags):
            raise DataError(f"{len(self.words)} words but {len(self.tags)} tags: {' '.join(self.words)!r}")

    @property
    def text(self) -> str:
        return " ".join(self.words)


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"missing data file: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(f"{path} is empty")
    return lines


def read_split(folder: str | Path) -> list[SlotExample]:
    """Reads one split folder holding ``seq.in``, ``seq.out`` and ``label``.

    Args:
      folder: the split folder, e.g. ``data/atis/train``.

    Returns:
      The examples in file order.

    Raises:
      DataError: a file is missing, empty or not UTF-8; the files have different line counts; a line is empty;
        or a line's word and tag counts differ. The message names the file and the 1-based line number.
    """
    folder = Path(folder)
    words_lines = _read_lines(folder / "seq.in")
    tags_lines = _read_lines(folder / "seq.out")
    intents = _read_lines(folder / "label")
    counts = {"seq.in": len(words_lines), "seq.out": len(tags_lines), "label": len(intents)}
    if len(set(counts.values())) != 1:
        detail = ", ".join(f"{name} has {n}" for name, n in counts.items())
        raise DataError(f"{folder}: the files have different line counts ({detail})")
    examples = []
    for number, (words_line, tags_line, intent) in enumerate(zip(words_lines, tags_lines, intents), start=1):
        words, tags, intent = words_line.split(), tags_line.split(), intent.strip()
        if not words:
            raise DataError(f"{folder / 'seq.in'} line {number} is empty")
        if len(words) != len(tags):
            raise DataError(
                f"{folder}: line {number} has {len(words)} words in seq.in but {len(tags)} tags in seq.out"
            )
        if not intent:
            raise DataError(f"{folder / 'label'} line {number} is empty")
        examples.append(SlotExample(tuple(words), tuple(tags), intent))
    return examples


def find_split(data_dir: str | Path, split: str) -> Path | None:
    """Returns the folder of ``split`` (``train``, ``valid`` or ``test``) in ``data_dir``, or None if absent."""
    for name in SPLIT_FOLDERS[split]:
        candidate = Path(data_dir) / name
        if candidate.is_dir():
            return candidate
    return None


def read_dataset(data_dir: str | Path) -> dict[str, list[SlotExample]]:
    """Reads the train, valid (or dev) and test splits of a data folder.

    Raises:
      DataError: the folder does not exist, or it has no ``train`` split, or a split is malformed. A missing
        ``valid`` or ``test`` split is allowed; the caller decides what to do without it.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"data folder not found: {data_dir}")
    splits = {}
    for split in SPLIT_FOLDERS:
        folder = find_split(data_dir, split)
        if folder is not None:
            splits[split] = read_split(folder)
    if "train" not in splits:
        raise DataError(f"{data_dir} has no train/ folder (expected train/, valid/ or dev/, test/)")
    return splits
