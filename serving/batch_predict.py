"""Batch inference: a file or folder of inputs in, one JSON line per input out, resumable.

Inputs, by the predictor's ``input_kind``:

- ``text``: a text file, one input per line (``id`` = the line number, from 1), or a folder of ``*.txt`` files,
  one input per file (``id`` = the file name; for documents, e.g. key terms).
- ``audio``: a folder of ``*.wav`` files (``id`` = the path under the folder, sorted) or one ``.wav`` file.
- ``record``: a JSON-lines file, one JSON object per line (``id`` = the line number).

Each output line is ``{"id": ..., "output": {...}}`` (the predictor's result) or ``{"id": ..., "error": "..."}``
for an input the model refuses (the other inputs of its batch are still predicted). Lines are appended and
flushed batch by batch; re-running the same command after an interruption drops a torn last line, skips the ids
already written, and goes on, so no input appears twice.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from serving.errors import InputError, ServingError
from serving.registry import input_kind

SUFFIXES = {"text": ".txt", "audio": ".wav"}


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        for number, line in enumerate(f, 1):
            yield number, line.rstrip("\r\n")


def list_inputs(path: str | Path, kind: str) -> tuple[int, Iterator[tuple[object, object]]]:
    """How many inputs ``path`` holds, and an iterator of (id, input) pairs read lazily.

    Raises:
      InputError: the path is missing, or is of a form this input kind does not read.
    """
    path = Path(path)
    if path.is_dir():
        suffix = SUFFIXES.get(kind)
        if suffix is None:
            raise InputError(f"{path} is a folder; a {kind} model reads a JSON-lines file")
        files = sorted(p for p in path.rglob(f"*{suffix}") if p.is_file())
        if not files:
            raise InputError(f"{path} holds no {suffix} files")
        if kind == "audio":
            return len(files), ((str(p.relative_to(path)), str(p)) for p in files)
        return len(files), ((str(p.relative_to(path)), p.read_text(encoding="utf-8")) for p in files)
    if not path.is_file():
        raise InputError(f"no such input file or folder: {path}")
    if kind == "audio":
        if path.suffix.lower() != ".wav":
            raise InputError(f"{path}: an audio model reads a .wav file or a folder of them")
        return 1, iter([(path.name, str(path))])
    try:
        with open(path, encoding="utf-8", newline="") as f:
            total = sum(1 for _ in f)
    except UnicodeDecodeError as err:
        raise InputError(f"{path} is not UTF-8 text (byte offset {err.start})") from None
    if kind == "text":
        return total, iter(_lines(path))
    return total, ((n, _record(line, path, n)) for n, line in _lines(path))


class _BadRecord:
    def __init__(self, message: str):
        self.message = message


def _record(line: str, path: Path, number: int):
    try:
        value = json.loads(line)
    except json.JSONDecodeError as err:
        return _BadRecord(f"{path.name} line {number} is not valid JSON ({err.msg})")
    return value if isinstance(value, dict) else _BadRecord(f"{path.name} line {number} is not a JSON object")


def completed_ids(output: Path) -> set:
    """The ids already in ``output``; a torn last line (an interrupted write) is cut off the file."""
    if not output.exists():
        return set()
    data = output.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep < len(data):
        with open(output, "r+b") as f:
            f.truncate(keep)
    done = set()
    for line in data[:keep].splitlines():
        try:
            done.add(_key(json.loads(line)["id"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return done


def _key(value):
    return str(value)


class Progress:
    """A small progress bar on stderr (redrawn in place on a terminal, a line every few seconds otherwise)."""

    def __init__(self, total: int, stream=None, enabled: bool = True):
        self.total, self.stream, self.enabled = total, stream or sys.stderr, enabled
        self.start = self.last = time.monotonic()
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def update(self, done: int, new: int, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not (final or self.tty or now - self.last >= 5):
            return
        self.last = now
        width = 30
        filled = width * done // max(self.total, 1)
        rate = new / max(now - self.start, 1e-9)
        line = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} inputs, {rate:.1f}/s"
        self.stream.write(("\r" + line + ("\n" if final else "")) if self.tty else line + "\n")
        self.stream.flush()


def predict_file(predictor, inputs: str | Path, output: str | Path, batch_size: int = 64, progress: bool = True,
                 on_batch: Callable[[int], None] | None = None) -> dict:
    """Predicts every input of ``inputs`` into the JSON-lines file ``output``, resuming where it stopped.

    Args:
      predictor: a loaded predictor (``serving.load``).
      inputs: a file or folder (see the module docstring).
      output: the ``.jsonl`` file to write or to resume.
      batch_size: inputs per ``predict_batch`` call.
      progress: draw a progress bar on stderr.
      on_batch: called with the number of inputs written after each batch (tests use it to interrupt a run).

    Returns:
      ``{"total", "skipped", "written", "errors"}``: inputs found, already in ``output``, written now, and how
      many of those are error lines.

    Raises:
      InputError: the input path cannot be read as this model's input kind.
    """
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    kind = input_kind(predictor)
    total, items = list_inputs(inputs, kind)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    done = completed_ids(output)
    bar = Progress(total, enabled=progress)
    stats = {"total": total, "skipped": 0, "written": 0, "errors": 0}
    with open(output, "a", encoding="utf-8", newline="\n") as out:
        batch = []

        def flush():
            records = _predict(predictor, batch)
            out.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
            out.flush()
            os.fsync(out.fileno())
            stats["written"] += len(records)
            stats["errors"] += sum("error" in record for record in records)
            batch.clear()
            bar.update(stats["skipped"] + stats["written"], stats["written"])
            if on_batch is not None:
                on_batch(stats["written"])

        for ident, x in items:
            if _key(ident) in done:
                stats["skipped"] += 1
                continue
            batch.append((ident, x))
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
    bar.update(stats["skipped"] + stats["written"], stats["written"], final=True)
    return stats


def _predict(predictor, batch: list) -> list[dict]:
    """One output line per (id, input): the whole batch in one call, one by one if an input is refused."""
    good = [(i, x) for i, x in batch if not isinstance(x, _BadRecord)]
    lines = {_key(i): {"id": i, "error": x.message} for i, x in batch if isinstance(x, _BadRecord)}
    try:
        results = predictor.predict_batch([x for _, x in good]) if good else []
        for (i, _), result in zip(good, results):
            lines[_key(i)] = {"id": i, "output": result.to_dict()}
    except ServingError:
        for i, x in good:
            try:
                lines[_key(i)] = {"id": i, "output": predictor.predict_batch([x])[0].to_dict()}
            except ServingError as err:
                lines[_key(i)] = {"id": i, "error": str(err)}
    return [lines[_key(i)] for i, _ in batch]
