"""The one vocabulary / label file format, shared by training (``pipelines``) and serving.

A vocabulary file is UTF-8 text with one entry per line; the line number (from 0) is the id. Word vocabularies
start with the reserved entries ``<pad>`` (id 0) and ``<unk>`` (id 1). Label files (slot tags, intents) have no
reserved entries. tf.lookup's ``TextFileInitializer`` reads the same files in the tf.data pipelines.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from serving.errors import ModelError

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1


def check_entries(entries: Sequence[str], what: str = "vocabulary") -> list[str]:
    """Returns ``entries`` as a list after checking they are non-empty, single-line and unique.

    Raises:
      ModelError: an entry is empty, holds whitespace, or appears twice.
    """
    entries = list(entries)
    if not entries:
        raise ModelError(f"the {what} is empty")
    seen = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, str) or not entry or any(ch.isspace() for ch in entry):
            raise ModelError(f"{what} entry {i} is {entry!r}: entries must be non-empty and hold no whitespace")
        if entry in seen:
            raise ModelError(f"{what} entry {entry!r} appears twice")
        seen.add(entry)
    return entries


def write_vocab(path: str | Path, entries: Iterable[str], what: str = "vocabulary") -> None:
    """Writes ``entries`` one per line, atomically (a temp file in the same folder, then a rename)."""
    entries = check_entries(list(entries), what)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(entries) + "\n")
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_vocab(path: str | Path, what: str = "vocabulary") -> list[str]:
    """Reads a file written by :func:`write_vocab`.

    Raises:
      ModelError: the file is missing, not UTF-8, or its entries are not valid.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"{what} file not found: {path}") from None
    except UnicodeDecodeError:
        raise ModelError(f"{what} file {path} is not UTF-8 text") from None
    return check_entries(text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"), what)


class Vocabulary:
    """Maps tokens to ids and back; unknown tokens map to ``<unk>`` when the vocabulary has it."""

    def __init__(self, entries: Sequence[str], what: str = "vocabulary"):
        self.entries = check_entries(entries, what)
        self.what = what
        self._ids = {entry: i for i, entry in enumerate(self.entries)}
        self.unk_id = self._ids.get(UNK)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, token: str) -> bool:
        return token in self._ids

    def id(self, token: str) -> int:
        """Returns the id of ``token``: ``<unk>``'s id if unknown and the vocabulary has ``<unk>``.

        Raises:
          KeyError: ``token`` is unknown and the vocabulary has no ``<unk>`` (a label set).
        """
        found = self._ids.get(token, self.unk_id)
        if found is None:
            raise KeyError(f"unknown {self.what} entry {token!r}")
        return found

    def ids(self, tokens: Iterable[str]) -> list[int]:
        return [self.id(token) for token in tokens]

    def token(self, index: int) -> str:
        return self.entries[index]
