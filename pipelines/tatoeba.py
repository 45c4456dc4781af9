"""Reader for the Tatoeba English–Chinese pairs (``tatoeba-cmn/cmn.txt``, the manythings.org format).

Each line is ``English<TAB>Chinese<TAB>attribution``; the file starts with a UTF-8 byte-order mark. The split is the
one ../shared/data/SPLITS.md fixes: pair i (0-based, after dropping the BOM and empty lines) goes to test when
i % 20 == 0, to dev (``valid``) when i % 20 == 1, else to train.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.readers import DataError

FILE = "cmn.txt"


def split_of(index: int) -> str:
    """The split of pair ``index``."""
    return {0: "test", 1: "valid"}.get(index % 20, "train")


def read_tatoeba(path: str | Path) -> dict[str, list[tuple[str, str]]]:
    """Reads (English, Chinese) pairs, split per SPLITS.md.

    Args:
      path: ``cmn.txt`` or the folder holding it.

    Returns:
      ``{"train": [...], "valid": [...], "test": [...]}`` in file order.

    Raises:
      DataError: the file is missing, not UTF-8, empty, or a line lacks the tab-separated English and Chinese
        (the message names the line number).
    """
    path = Path(path)
    if path.is_dir():
        path = path / FILE
    if not path.is_file():
        raise DataError(f"missing data file: {path}")
    try:
        text = path.read_bytes().decode("utf-8-sig")  # drops the BOM
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start})") from None
    splits: dict[str, list[tuple[str, str]]] = {"train": [], "valid": [], "test": []}
    index = 0
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0].strip() or not fields[1].strip():
            raise DataError(f"{path}:{number}: expected 'English<TAB>Chinese[<TAB>attribution]', got {line[:60]!r}")
        splits[split_of(index)].append((fields[0].strip(), fields[1].strip()))
        index += 1
    if not index:
        raise DataError(f"{path} holds no sentence pairs")
    return splits
