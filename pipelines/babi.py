"""Reader for the bAbI question-answering tasks (Weston et al. 2015), format v1.2, English.

A task file holds stories; a story starts at a line numbered 1. A line ``N sentence.`` is a statement; a line
``N question?<TAB>answer<TAB>supporting line numbers`` is a question, which sees the statements of its story before
it. Splits follow ../shared/data/SPLITS.md: the stories of ``qaK_*_train.txt`` except the last 10% (train), those
last 10% (valid), and ``qaK_*_test.txt`` (test, 1000 questions per task).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from pipelines.readers import DataError
from serving.reading_qa import tokenize

TASK_NAMES = {
    1: "single-supporting-fact", 2: "two-supporting-facts", 3: "three-supporting-facts", 4: "two-arg-relations",
    5: "three-arg-relations", 6: "yes-no-questions", 7: "counting", 8: "lists-sets", 9: "simple-negation",
    10: "indefinite-knowledge", 11: "basic-coreference", 12: "conjunction", 13: "compound-coreference",
    14: "time-reasoning", 15: "basic-deduction", 16: "basic-induction", 17: "positional-reasoning",
    18: "size-reasoning", 19: "path-finding", 20: "agents-motivations",
}
DEV_FRACTION = 0.1
_LINE = re.compile(r"^(\d+) (.*)$")


@dataclasses.dataclass(frozen=True)
class QAExample:
    """One question about a story.

    Attributes:
      story: the statements before the question, oldest first, each a tuple of lower-case words.
      question: the question's words.
      answer: the answer token (multi-word answers stay one token, e.g. ``n,s`` or ``apple,football``).
      supporting: indices into ``story`` of the supporting statements.
      task: the bAbI task number (1-20), or 0 for built-in data without one.
    """

    story: tuple[tuple[str, ...], ...]
    question: tuple[str, ...]
    answer: str
    supporting: tuple[int, ...] = ()
    task: int = 0


def parse_stories(lines: list[str], task: int = 0, where: str = "input") -> list[list[QAExample]]:
    """Parses bAbI lines into stories, each a list of its questions.

    Raises:
      DataError: a line is not ``N text`` or a question line lacks its answer, naming the line.
    """
    stories: list[list[QAExample]] = []
    statements: list[tuple[str, ...]] = []
    line_index: dict[int, int] = {}  # story line number → index in ``statements``
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        match = _LINE.match(raw.strip("\ufeff\r\n"))
        if not match:
            raise DataError(f"{where} line {number}: expected 'N text', got {raw[:60]!r}")
        n, text = int(match.group(1)), match.group(2)
        if n == 1:
            stories.append([])
            statements, line_index = [], {}
        elif not stories:
            raise DataError(f"{where} line {number}: the first story does not start at a line numbered 1")
        if "\t" in text:
            parts = text.split("\t")
            if len(parts) < 2 or not parts[1].strip():
                raise DataError(f"{where} line {number}: a question line needs a tab and an answer")
            support = [int(s) for s in parts[2].split()] if len(parts) > 2 else []
            try:
                supporting = tuple(line_index[s] for s in support)
            except KeyError as err:
                raise DataError(f"{where} line {number}: supporting line {err} is not a statement of the story") from None
            stories[-1].append(QAExample(tuple(statements), tuple(tokenize(parts[0])), parts[1].strip(),
                                         supporting, task))
        else:
            line_index[n] = len(statements)
            statements.append(tuple(tokenize(text)))
    return stories


def task_files(data_dir: str | Path, task: int) -> tuple[Path, Path]:
    """The (train, test) files of ``task`` in ``data_dir``.

    Raises:
      DataError: the folder or a file is missing.
    """
    folder = Path(data_dir)
    if not folder.is_dir():
        raise DataError(f"no such bAbI folder: {folder}")
    found = []
    for split in ("train", "test"):
        matches = sorted(folder.glob(f"qa{task}_*_{split}.txt"))
        if not matches:
            raise DataError(f"{folder} has no qa{task}_*_{split}.txt (is it tasks_1-20_v1-2/en?)")
        found.append(matches[0])
    return found[0], found[1]


def _read(path: Path, task: int) -> list[list[QAExample]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    stories = parse_stories(lines, task, str(path))
    if not stories:
        raise DataError(f"{path} holds no stories")
    return stories


def dev_story_count(n_stories: int) -> int:
    """How many of the last training stories form the dev split: 10%, rounded, at least one."""
    return max(1, round(n_stories * DEV_FRACTION))


def read_task(data_dir: str | Path, task: int) -> dict[str, list[QAExample]]:
    """Reads one task's splits: ``{"train", "valid", "test"}`` → examples, as SPLITS.md fixes them.

    Raises:
      DataError: ``task`` is not 1-20, or a file is missing or malformed.
    """
    if task not in TASK_NAMES:
        raise DataError(f"bAbI tasks are numbered 1-20, got {task}")
    train_path, test_path = task_files(data_dir, task)
    stories = _read(train_path, task)
    cut = len(stories) - dev_story_count(len(stories))
    flat = lambda parts: [ex for story in parts for ex in story]  # noqa: E731
    return {"train": flat(stories[:cut]), "valid": flat(stories[cut:]), "test": flat(_read(test_path, task))}


def read_tasks(data_dir: str | Path, tasks: list[int]) -> dict[str, list[QAExample]]:
    """The splits of several tasks, concatenated (joint training); each example keeps its task number."""
    splits: dict[str, list[QAExample]] = {"train": [], "valid": [], "test": []}
    for task in tasks:
        for name, examples in read_task(data_dir, task).items():
            splits[name].extend(examples)
    return splits
