"""The models a server holds, by name, with their input policy and hot reload.

A :class:`Registry` maps model names to :class:`ModelEntry` objects (a loaded predictor plus what the server needs
to know about it). Each request looks its entry up once and uses that entry's predictor to the end, so reloading a
model is an atomic swap: the new predictor is built and checked completely (checksums included) before it replaces
the old one in the table, and requests already running finish on the old one. A run dir that is mid-write (a
half-copied file, a missing folder between the two renames of ``export.rundir.replace_dir``) fails to load or to
fingerprint; the old model then stays in service and the next poll tries again.

The input policy (:class:`Limits`, :func:`check_input`) is generic over the predictor contract's ``input_kind``:
``"text"`` (a string), ``"audio"`` (WAV file bytes, read here only to measure the duration) or ``"record"``
(a JSON object such as ``{"story": [...], "question": "..."}``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from serving.base import INPUT_KINDS
from serving.errors import InputError, ModelError

log = logging.getLogger("serving.registry")


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request may hold; each bound is answered with a 4xx and a JSON error when exceeded.

    Attributes:
      max_body_bytes: request body size.
      max_batch: inputs in one request.
      max_text_chars: characters of one text input (for a record: of all its strings together).
      max_audio_seconds: duration of one audio input.
    """

    max_body_bytes: int = 4 * 1024 * 1024
    max_batch: int = 64
    max_text_chars: int = 10_000
    max_audio_seconds: float = 30.0


class LimitError(InputError):
    """An input is well formed but over a configured limit. ``code`` names the limit (e.g. ``text_too_long``)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def wav_duration(data: bytes) -> float:
    """The duration in seconds of a RIFF/WAVE file (any sample format: the ``data`` size over the byte rate).

    Raises:
      InputError: the bytes are not a WAV file, or its header is inconsistent.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise InputError("audio is not a WAV file (no RIFF/WAVE header)")
    at, byte_rate, data_size = 12, None, None
    while at + 8 <= len(data):
        chunk, size = data[at : at + 4], struct.unpack("<I", data[at + 4 : at + 8])[0]
        if chunk == b"fmt ":
            if size < 16 or at + 24 > len(data):
                raise InputError("audio WAV header: 'fmt ' chunk is too short")
            channels, rate, byte_rate = struct.unpack("<HII", data[at + 10 : at + 20])
            if not channels or not rate or not byte_rate:
                raise InputError(f"audio WAV header: {channels} channels at {rate} Hz ({byte_rate} bytes/s)")
        elif chunk == b"data":
            data_size = min(size, len(data) - at - 8)  # a streamed WAV may declare 0 or 0xFFFFFFFF
            if size in (0, 0xFFFFFFFF):
                data_size = len(data) - at - 8
            break
        at += 8 + size + (size & 1)
    if byte_rate is None or data_size is None:
        raise InputError("audio WAV file lacks a " + ("'fmt '" if byte_rate is None else "'data'") + " chunk")
    return data_size / byte_rate


def _record_chars(value, depth: int = 0) -> int:
    if depth > 32:
        raise InputError("record is nested too deeply")
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(len(str(k)) + _record_chars(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return sum(_record_chars(v, depth + 1) for v in value)
    return 0


def check_input(kind: str, x, limits: Limits, where: str = "input"):
    """Checks one input of kind ``kind`` against ``limits``; returns it (audio: WAV bytes).

    Raises:
      LimitError: over a limit (``text_too_long``, ``audio_too_long``).
      InputError: of the wrong type for the model (the message names ``where``).
    """
    if kind == "text":
        if not isinstance(x, str):
            raise InputError(f"{where} must be a string for this text model, got {_json_type(x)}")
        if len(x) > limits.max_text_chars:
            raise LimitError("text_too_long", f"{where} has {len(x)} characters; the limit is "
                                              f"{limits.max_text_chars}")
        _check_unicode(x, where)
        return x
    if kind == "audio":
        if not isinstance(x, (bytes, bytearray)):
            raise InputError(f"{where} must be WAV file bytes for this audio model, got {_json_type(x)}")
        try:
            seconds = wav_duration(bytes(x))
        except InputError as err:
            raise InputError(f"{where}: {err}") from None
        if seconds > limits.max_audio_seconds:
            raise LimitError("audio_too_long", f"{where} lasts {seconds:.2f} s; the limit is "
                                               f"{limits.max_audio_seconds:g} s")
        return bytes(x)
    if kind == "record":
        if not isinstance(x, dict):
            raise InputError(f"{where} must be a JSON object for this model, got {_json_type(x)}")
        chars = _record_chars(x)
        if chars > limits.max_text_chars:
            raise LimitError("text_too_long", f"{where} holds {chars} characters of text; the limit is "
                                              f"{limits.max_text_chars}")
        _check_unicode(x, where)
        return x
    raise ModelError(f"unknown input kind {kind!r}; known: {', '.join(INPUT_KINDS)}")


def _check_unicode(x, where: str) -> None:
    """Refuses strings that cannot be UTF-8 encoded (lone surrogates, which JSON's ``\\ud800`` escapes allow)."""
    if isinstance(x, dict):
        for key, value in x.items():
            _check_unicode(key, where)
            _check_unicode(value, f"{where}.{key}")
    elif isinstance(x, list):
        for i, value in enumerate(x):
            _check_unicode(value, f"{where}[{i}]")
    elif isinstance(x, str):
        try:
            x.encode("utf-8")
        except UnicodeEncodeError as err:
            raise InputError(f"{where} holds a lone surrogate (U+{ord(x[err.start]):04X} at index {err.start}); "
                             f"send valid Unicode") from None


def _json_type(x) -> str:
    names = {str: "a string", dict: "an object", list: "an array", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null", bytes: "bytes"}
    return names.get(type(x), type(x).__name__)


def input_kind(predictor) -> str:
    """The predictor's ``input_kind`` (contract), ``"text"`` for a class that predates it.

    Raises:
      ModelError: the kind is not one of :data:`INPUT_KINDS`.
    """
    kind = getattr(type(predictor), "input_kind", "text")
    if kind not in INPUT_KINDS:
        raise ModelError(f"{type(predictor).__name__}.input_kind is {kind!r}; known: {', '.join(INPUT_KINDS)}")
    return kind


def fingerprint(path: Path) -> tuple:
    """What changes when a run dir (or model file) changes on disk: identity, size and mtime of its files.

    Raises:
      OSError: the path is missing (e.g. between the renames of an atomic replace).
    """
    stat = path.stat()
    if not path.is_dir():
        return ((path.name, stat.st_ino, stat.st_size, stat.st_mtime_ns),)
    files = [(path.name, stat.st_ino, 0, 0)]
    for child in sorted(os.scandir(path), key=lambda e: e.name):
        if child.is_file() and (child.name.endswith(".onnx") or child.name == "metadata.json"):
            s = child.stat()
            files.append((child.name, s.st_ino, s.st_size, s.st_mtime_ns))
    return tuple(files)


@dataclasses.dataclass
class ModelEntry:
    """One served model: its name, where it came from, the loaded predictor and its input kind.

    Attributes:
      name: the name in URLs (``/v1/models/{name}``).
      path: the run dir or ``.onnx`` file.
      predictor: the task's predictor (``predict_batch`` is called from several threads: onnxruntime sessions are
        thread-safe and the predictors keep no per-call state).
      kind: ``input_kind`` of the predictor.
      task: the metadata's task.
      version: a counter, 1 at first load, +1 per reload.
      loaded_at: UNIX time of the load.
      stamp: the fingerprint of ``path`` when loaded.
      batcher: the dynamic batcher in front of ``predictor`` (None: batching off).
    """

    name: str
    path: Path
    predictor: object
    kind: str
    task: str
    version: int
    loaded_at: float
    stamp: tuple
    batcher: object = None

    @property
    def metadata(self) -> dict:
        return getattr(self.predictor, "metadata", {}) or {}

    def describe(self) -> dict:
        """A JSON summary for the model list."""
        return {"name": self.name, "task": self.task, "input_kind": self.kind, "path": str(self.path),
                "version": self.version, "loaded_at": self.loaded_at,
                "dynamic_batching": self.batcher is not None}


def model_name(path: Path) -> str:
    """The default name of a model: its run dir's name (a ``.onnx`` file's stem when the path is a file)."""
    path = Path(path)
    return path.stem if path.is_file() else path.name


class Registry:
    """Models by name, loaded from run dirs, reloaded when their files change.

    Args:
      specs: ``path`` or ``name=path`` strings (or (name, path) pairs).
      loader: builds a predictor from a path (default :func:`serving.load`).
      make_batcher: builds a dynamic batcher for a predictor (None: no batching).
      threads: onnxruntime intra-op threads per session, passed to ``loader`` when given.

    Raises:
      ModelError: a model fails to load, or two models share a name.
    """

    def __init__(self, specs: Iterable, loader: Callable | None = None, make_batcher: Callable | None = None,
                 threads: int | None = None):
        if loader is None:
            import serving

            loader = serving.load
        self._loader = loader
        self._threads = threads
        self._make_batcher = make_batcher
        self._lock = threading.Lock()
        self._entries: dict[str, ModelEntry] = {}
        self.reload_errors: dict[str, str] = {}
        self.reloads = {}
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        for spec in specs:
            name, path = self._parse(spec)
            if name in self._entries:
                raise ModelError(f"two models are named {name!r}; name them with NAME=PATH")
            self._entries[name] = self._load(name, path, 1)
            self.reloads[name] = 0
        if not self._entries:
            raise ModelError("no models to serve")

    @staticmethod
    def _parse(spec) -> tuple[str, Path]:
        if isinstance(spec, (tuple, list)):
            return str(spec[0]), Path(spec[1])
        spec = str(spec)
        if "=" in spec and not Path(spec).exists():
            name, path = spec.split("=", 1)
            return name, Path(path)
        return model_name(Path(spec)), Path(spec)

    def _load(self, name: str, path: Path, version: int) -> ModelEntry:
        try:
            stamp = fingerprint(path)
        except OSError:
            raise ModelError(f"no such run dir or model file: {path}") from None
        predictor = self._loader(path, threads=self._threads) if self._threads else self._loader(path)
        kind = input_kind(predictor)
        entry = ModelEntry(name=name, path=path, predictor=predictor, kind=kind,
                           task=getattr(predictor, "task", "?"), version=version, loaded_at=time.time(), stamp=stamp)
        if self._make_batcher is not None:
            entry.batcher = self._make_batcher(predictor, name)
        return entry

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[ModelEntry]:
        return [self._entries[name] for name in self.names()]

    def get(self, name: str) -> ModelEntry | None:
        """The entry now in service for ``name`` (None if unknown). Keep it for the whole request."""
        return self._entries.get(name)

    def reload_changed(self) -> list[str]:
        """Reloads every model whose files changed since it was loaded; returns the names swapped in.

        A model that fails to load stays as it was (the error is kept in ``reload_errors`` and logged).
        """
        swapped = []
        for name, entry in list(self._entries.items()):
            try:
                stamp = fingerprint(entry.path)
            except OSError:
                continue  # mid-replace; try on the next poll
            if stamp == entry.stamp:
                continue
            try:
                new = self._load(name, entry.path, entry.version + 1)
            except Exception as err:  # keep serving the old model, whatever went wrong
                message = f"{type(err).__name__}: {err}"
                if self.reload_errors.get(name) != message:
                    log.warning("reload of %s from %s failed, the old model stays: %s", name, entry.path, message)
                self.reload_errors[name] = message
                continue
            if new.stamp != fingerprint_or_none(entry.path):
                self._close(new)  # it changed again while loading; load the newer files next time
                continue
            with self._lock:
                self._entries[name] = new
                self.reloads[name] += 1
            self.reload_errors.pop(name, None)
            self._close(entry)
            log.info("reloaded %s from %s (version %d)", name, entry.path, new.version)
            swapped.append(name)
        return swapped

    @staticmethod
    def _close(entry: ModelEntry) -> None:
        if entry.batcher is not None:
            entry.batcher.close()  # finishes what it holds, then stops

    def watch(self, interval: float) -> None:
        """Polls the models' files every ``interval`` seconds in a daemon thread (0: no watching)."""
        if interval <= 0 or self._watcher is not None:
            return

        def loop():
            while not self._stop.wait(interval):
                try:
                    self.reload_changed()
                except Exception:  # the watcher must not die
                    log.exception("model reload check failed")

        self._watcher = threading.Thread(target=loop, name="model-watcher", daemon=True)
        self._watcher.start()

    def close(self) -> None:
        """Stops watching and drains the batchers."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        for entry in self._entries.values():
            self._close(entry)


def fingerprint_or_none(path: Path) -> tuple | None:
    try:
        return fingerprint(path)
    except OSError:
        return None
