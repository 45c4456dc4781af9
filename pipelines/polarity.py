"""Reader for sentence-polarity data: Pang & Lee's rt-polarity (``rt-polarity.pos`` / ``rt-polarity.neg``).

One sentence per line, in Windows-1252 (cp1252), split on ``\\n`` only (cp1252's 0x85 decodes to U+0085, which
``str.splitlines`` would wrongly treat as a line break). The split is fixed by ../shared/data/SPLITS.md: line i
(0-based, per file) goes to test when i % 10 == 0, to dev when i % 10 == 1, and to train otherwise.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pipelines.readers import DataError

FILES = {"positive": "rt-polarity.pos", "negative": "rt-polarity.neg"}
LABELS = ("negative", "positive")


@dataclasses.dataclass(frozen=True)
class TextExample:
    """One text and its class label."""

    text: str
    label: str

    def __post_init__(self):
        if not self.text.strip():
            raise DataError("an example has no text")


def split_of(index: int) -> str:
    """The split of line ``index`` (0-based) of a polarity file."""
    return {0: "test", 1: "valid"}.get(index % 10, "train")


def decode(raw: bytes, path: Path, encoding: str) -> str:
    """Decodes a whole file, with errors that name the file, the line and the byte.

    Raises:
      DataError: the bytes are not ``encoding``, or ``encoding`` is cp1252 but the file is clearly UTF-8 (which
        cp1252 would silently turn into mojibake such as ``Ã©``).
    """
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise DataError(
            f"{path}: not {encoding} text (byte 0x{raw[err.start]:02x} at offset {err.start}, line {line}); "
            f"pass the right --encoding"
        ) from None
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r}") from None
    if encoding.lower().replace("-", "").replace("_", "") in ("cp1252", "windows1252", "latin1", "iso88591"):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            if any(b >= 0x80 for b in raw):
                raise DataError(f"{path} is UTF-8 text, not {encoding}; pass --encoding utf-8")
    return text


def read_lines(path: Path, encoding: str = "cp1252") -> list[str]:
    """The lines of one polarity file.

    Raises:
      DataError: the file is missing, is not ``encoding`` text, or has an empty line.
    """
    if not path.is_file():
        raise DataError(f"missing data file: {path}")
    text = decode(path.read_bytes(), path, encoding)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise DataError(f"{path} is empty")
    for i, line in enumerate(lines):
        if not line.strip():
            raise DataError(f"{path}:{i + 1}: empty line")
    return [line.strip() for line in lines]


def read_polarity(data_dir: str | Path, encoding: str = "cp1252") -> dict[str, list[TextExample]]:
    """Reads ``rt-polarity.pos`` and ``rt-polarity.neg`` from ``data_dir`` into train / valid / test.

    Returns:
      ``{"train": [...], "valid": [...], "test": [...]}``, positives first within each split.

    Raises:
      DataError: a file is missing, empty or not in ``encoding``.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"no such data folder: {data_dir}")
    splits: dict[str, list[TextExample]] = {"train": [], "valid": [], "test": []}
    for label in ("positive", "negative"):
        for i, line in enumerate(read_lines(data_dir / FILES[label], encoding)):
            splits[split_of(i)].append(TextExample(line, label))
    return splits
