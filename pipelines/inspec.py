"""Reader for Inspec (Hulth 2003): abstracts with gold key phrases, as the KeywordExtractor-Datasets zip ships it.

The zip holds ``Inspec/docsutf8/<id>.txt`` (a title, ``\\r\\n``, then the abstract, wrapped with ``\\n\\t``) and
``Inspec/keys/<id>.key`` (one phrase per line, with stray TABs and mixed line endings). ``--data-dir`` may name
the folder holding ``Inspec.zip``, the zip itself, or an extracted ``Inspec/`` folder (or the folder above it).

Cleaning: a document keeps its title and its abstract as two lines (split at ``\\r\\n``; the baseline's
candidates do not cross that line); inside each, every run of white space (TABs, the ``\\n`` of wrapped lines)
becomes one space. Key lines are split on any line break, white space is collapsed, empty lines dropped, and
repeats (compared case-folded) removed.

Split (../shared/data/SPLITS.md): by numeric id, train = the smallest half (1000 of 2000), dev = the next
quarter (500), test = the largest quarter (500).
"""

from __future__ import annotations

import re
import zipfile
import zlib
from pathlib import Path

from pipelines.keyphrases import KeyDocument
from pipelines.readers import DataError

ZIP_NAME = "Inspec.zip"
DOCS, KEYS = "Inspec/docsutf8/", "Inspec/keys/"
_MEMBER = re.compile(r"^Inspec/(docsutf8|keys)/([^/]+)\.(txt|key)$")


def clean_document(raw: str) -> str:
    """Title and abstract as two lines, each with its white space collapsed to single spaces."""
    raw = raw.lstrip("\ufeff")
    parts = (" ".join(part.split()) for part in re.split(r"\r\n|\r", raw))
    return "\n".join(part for part in parts if part)


def clean_keys(raw: str) -> tuple[str, ...]:
    """One phrase per line; white space collapsed; empty lines and case-folded repeats dropped."""
    phrases, seen = [], set()
    for line in raw.lstrip("\ufeff").splitlines():
        phrase = " ".join(line.split())
        if phrase and phrase.casefold() not in seen:
            seen.add(phrase.casefold())
            phrases.append(phrase)
    return tuple(phrases)


class _Source:
    """The members of an Inspec zip or folder: relative name (``Inspec/keys/2.key``) → bytes."""

    def __init__(self, path: Path):
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        self.root: Path | None = None
        if path.is_dir() and (path / ZIP_NAME).is_file():
            path = self.path = path / ZIP_NAME
        if path.is_file():
            try:
                self.zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as err:
                raise DataError(f"{path} is not a readable zip file ({err})") from None
            self.names = [n for n in self.zip.namelist() if not n.endswith("/")]
        elif path.is_dir():
            root = path if (path / "docsutf8").is_dir() or (path / "keys").is_dir() else path / "Inspec"
            if not root.is_dir():
                raise DataError(f"{path} holds neither {ZIP_NAME} nor an extracted Inspec/ folder")
            self.root = root.parent
            self.names = sorted(p.relative_to(self.root).as_posix() for p in root.rglob("*") if p.is_file())
        else:
            raise DataError(f"no such Inspec data: {path} (give the folder holding {ZIP_NAME}, the zip, or Inspec/)")

    def where(self, name: str) -> str:
        return f"{self.path}:{name}" if self.zip else str(self.root / name)

    def read_text(self, name: str) -> str:
        try:
            data = self.zip.read(name) if self.zip else (self.root / name).read_bytes()
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
            raise DataError(f"cannot read {self.where(name)} ({err})") from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise DataError(f"{self.where(name)} is not UTF-8 text (byte 0x{data[err.start]:02x} at offset "
                            f"{err.start})") from None


def _numeric_id(name: str, doc_id: str, source: _Source) -> int:
    if not doc_id.isdigit():
        raise DataError(f"{source.where(name)}: document ids must be numbers (the split is by id), got {doc_id!r}")
    return int(doc_id)


def read_documents(path: str | Path) -> list[KeyDocument]:
    """Every document with its gold phrases, in numeric id order.

    Raises:
      DataError: the path is missing; the zip is corrupt; ``Inspec/docsutf8/`` or ``Inspec/keys/`` has no
        members; a document has no key file or a key file no document; a member is not UTF-8, or is empty
        (a document) or holds no phrase (a key file). The message names the member.
    """
    source = _Source(Path(path))
    members: dict[str, dict[str, str]] = {"docsutf8": {}, "keys": {}}
    for name in source.names:
        match = _MEMBER.match(name)
        if match and (match.group(1) == "docsutf8") == (match.group(3) == "txt"):
            members[match.group(1)][match.group(2)] = name
    for folder, ext in (("docsutf8", "txt"), ("keys", "key")):
        if not members[folder]:
            raise DataError(f"{source.path} has no Inspec/{folder}/<id>.{ext} members: is it the Inspec data "
                            f"of KeywordExtractor-Datasets?")
    for doc_id, name in members["docsutf8"].items():
        if doc_id not in members["keys"]:
            raise DataError(f"{source.where(name)} has no key file ({KEYS}{doc_id}.key is missing)")
    for doc_id, name in members["keys"].items():
        if doc_id not in members["docsutf8"]:
            raise DataError(f"{source.where(name)} has no document ({DOCS}{doc_id}.txt is missing)")
    documents = []
    for doc_id in sorted(members["docsutf8"], key=lambda d: _numeric_id(members["docsutf8"][d], d, source)):
        doc_name, key_name = members["docsutf8"][doc_id], members["keys"][doc_id]
        text = clean_document(source.read_text(doc_name))
        if not text:
            raise DataError(f"{source.where(doc_name)} is empty")
        phrases = clean_keys(source.read_text(key_name))
        if not phrases:
            raise DataError(f"{source.where(key_name)} holds no key phrase")
        documents.append(KeyDocument(doc_id, text, phrases))
    return documents


def split_documents(documents: list[KeyDocument]) -> dict[str, list[KeyDocument]]:
    """SPLITS.md's rule, on documents in id order: train = the first half, valid = the next quarter, test = the
    rest (1000 / 500 / 500 for Inspec's 2000)."""
    n = len(documents)
    if n < 4:
        raise DataError(f"{n} documents are too few to split into train, dev and test")
    a, b = n // 2, n // 2 + n // 4
    return {"train": documents[:a], "valid": documents[a:b], "test": documents[b:]}


def read_inspec(path: str | Path) -> dict[str, list[KeyDocument]]:
    """Reads and splits Inspec (see :func:`read_documents` for the errors)."""
    return split_documents(read_documents(path))
