"""Reader for the Penn Treebank sample (NLTK's ``treebank.zip``: ``treebank/combined/wsj_0001.mrg`` … ``wsj_0199.mrg``).

Trees are cleaned as parsing work usually does: empty elements (``-NONE-``) are removed with any constituent left
empty, function tags and co-indices are cut from the labels (``NP-SBJ-1`` → ``NP``, ``PP-CLR`` → ``PP``), and the
unlabelled wrapper ``( (S ...) )`` is dropped. The split is by file, as ../shared/data/SPLITS.md fixes:
wsj_0001–0159 train, 0160–0179 dev ("valid"), 0180–0199 test.
"""

from __future__ import annotations

import dataclasses
import re
import zipfile
from pathlib import Path

from pipelines.readers import DataError
from serving.trees import ROOT, Tree, TreeError, linearize, read_trees

ZIP_NAME = "treebank.zip"
SPLIT_FILES = {"train": range(1, 160), "valid": range(160, 180), "test": range(180, 200)}
_FILE = re.compile(r"wsj_(\d{4})\.mrg$")


@dataclasses.dataclass(frozen=True)
class ParseExample:
    """One sentence with its gold tree.

    Attributes:
      words: the tokens (Penn Treebank tokenisation), the source side.
      tree: the cleaned gold tree, with the part-of-speech tags (scoring uses them to delete punctuation).
      target: the linearisation of ``tree`` (``(S (NP XX )NP ... )S``), the target side.
    """

    words: tuple[str, ...]
    tree: Tree
    target: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.words)


def example(tree: Tree) -> ParseExample:
    """A :class:`ParseExample` for a cleaned tree."""
    return ParseExample(tuple(tree.leaves()), tree, tuple(linearize(tree)))


def clean_label(label: str) -> str:
    """``NP-SBJ-1`` → ``NP``, ``S=2`` → ``S``, ``ADVP|PRT`` → ``ADVP``; labels starting with ``-`` (``-NONE-``,
    ``-LRB-``) are kept whole."""
    if label.startswith("-"):
        return label
    return re.split(r"[-=|]", label, maxsplit=1)[0] or label


def clean_tree(tree: Tree) -> Tree | None:
    """The tree without empty elements, function tags, co-indices and the unlabelled wrapper; None when
    nothing is left (a tree of empty elements only)."""

    def walk(node: Tree) -> Tree | None:
        if node.is_preterminal():
            return None if node.label == "-NONE-" else Tree(node.label, list(node.children))
        children = [c for c in (walk(child) for child in node.children if isinstance(child, Tree)) if c]
        return Tree(clean_label(node.label), children) if children else None

    cleaned = walk(tree)
    if cleaned is None:
        return None
    if cleaned.label == "":
        if len(cleaned.children) == 1 and not cleaned.children[0].is_preterminal():
            return cleaned.children[0]
        return Tree(ROOT, cleaned.children)
    return cleaned


def _sources(path: Path) -> list[tuple[int, str, callable]]:
    """(file number, name, reader) for every ``wsj_NNNN.mrg`` in a zip, a folder holding the zip, or a folder
    of ``.mrg`` files."""
    zip_path = path if path.is_file() else path / ZIP_NAME
    if zip_path.is_file():
        try:
            archive = zipfile.ZipFile(zip_path)
        except zipfile.BadZipFile:
            raise DataError(f"{zip_path} is not a zip file") from None
        names = [n for n in archive.namelist() if "/combined/" in f"/{n}" and _FILE.search(n)]
        return [(int(_FILE.search(n).group(1)), n, lambda n=n: archive.read(n)) for n in names]
    if path.is_dir():
        files = [p for p in path.rglob("wsj_*.mrg") if _FILE.search(p.name)]
        return [(int(_FILE.search(p.name).group(1)), str(p), p.read_bytes) for p in files]
    raise DataError(f"no such treebank: {path} (give the folder holding {ZIP_NAME}, the zip, or a folder of .mrg files)")


def read_treebank(data_dir: str | Path) -> dict[str, list[ParseExample]]:
    """Reads and splits the treebank sample.

    Args:
      data_dir: the folder holding ``treebank.zip`` (e.g. ``../shared/data/ptb-treebank-sample``), the zip
        itself, or a folder with the ``wsj_NNNN.mrg`` files.

    Returns:
      ``{"train": [...], "valid": [...], "test": [...]}``, in file and tree order.

    Raises:
      DataError: no ``.mrg`` files, a file that is not ASCII/UTF-8 or has unbalanced brackets, or an empty split.
    """
    path = Path(data_dir)
    sources = sorted(_sources(path), key=lambda s: s[0])
    if not sources:
        raise DataError(f"{path}: no treebank/combined/wsj_NNNN.mrg files found")
    splits: dict[str, list[ParseExample]] = {name: [] for name in SPLIT_FILES}
    for number, name, read in sources:
        split = next((s for s, numbers in SPLIT_FILES.items() if number in numbers), None)
        if split is None:
            continue
        try:
            text = read().decode("utf-8")
        except UnicodeDecodeError as err:
            raise DataError(f"{name}: not UTF-8/ASCII text (byte {err.start})") from None
        try:
            trees = read_trees(text, name)
        except TreeError as err:
            raise DataError(str(err)) from None
        for tree in trees:
            cleaned = clean_tree(tree)
            if cleaned is not None:
                splits[split].append(example(cleaned))
    empty = [name for name, examples in splits.items() if not examples]
    if empty:
        raise DataError(f"{path}: no trees for the {', '.join(empty)} split(s) (files wsj_0001–0199 expected)")
    return splits
