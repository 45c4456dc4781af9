"""The one predictor protocol of serving: what every task's predictor and result provide, and the task registry.

A new task (say ``pos_tagging``) needs its own module, named after the task, and nothing else:

    # serving/pos_tagging.py
    @register("pos_tagging")
    class PosTaggingPredictor(Predictor):
        input_kind = "text"
        def __init__(self, model, metadata): ...          # what serving.load passes: OnnxModel, metadata dict
        def predict(self, text) -> PosTaggingResult: ...
        def predict_batch(self, texts, batch_size=64) -> list[PosTaggingResult]: ...

    @dataclasses.dataclass(frozen=True)
    class PosTaggingResult(Result):                        # to_dict() comes with Result; __str__ is required
        ...

:func:`serving.load` picks the class from the ``task`` field of the exported model's metadata
(:func:`predictor_class`), importing ``serving/<task>.py`` the first time a task is not registered yet; there is no
edit to ``load``, the CLI, the batch predictor or the server. The one optional line: ``"serving.pos_tagging"`` in
:data:`PREDICTOR_MODULES` below, so that ``import serving`` registers it at once (it is then in ``serving.PREDICTORS``
and in the known tasks an error lists); a module not named after its task (``serving/speech.py`` holds
``speech_ctc``) must be listed there. ``docs/predictors.md`` has the naming rule and the result types.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import warnings
from collections.abc import Sequence
from typing import ClassVar

from serving.errors import ModelError

INPUT_KINDS = ("text", "audio", "record")

# The modules that define predictors, imported by `import serving` (which runs their @register): the one place to
# list a predictor module; a module named serving/<task>.py is also found without it, when a model of its task loads.
PREDICTOR_MODULES = (
    "serving.slot_filling",
    "serving.sentiment",
    "serving.key_terms",
    "serving.reading_qa",
    "serving.seq2seq",
    "serving.translation",
    "serving.parsing",
    "serving.text_autoencoder",
    "serving.speech",
    "serving.speech_search",
)

PREDICTORS: dict[str, type] = {}
"""task name → predictor class. Filled by :func:`register`; plain assignment (``PREDICTORS[task] = cls``) works
too, for stand-ins in tests."""


class UnknownTaskError(ModelError):
    """No predictor is registered for a task. ``task`` is the name asked for, ``known`` the registered ones."""

    def __init__(self, task, known: Sequence[str], source: str | None = None):
        self.task, self.known = task, sorted(known)
        where = f"{source}: " if source else ""
        super().__init__(f"{where}task {task!r} has no predictor here (known: {', '.join(self.known) or 'none'})")


class Predictor:
    """The base of the task predictors: declares the protocol and documents it.

    Attributes:
      task: the task name, the ``task`` field of the model's metadata (``"slot_filling"``, ``"speech_ctc"``...).
      input_kind: ``"text"`` (a string), ``"audio"`` (a WAV path, WAV bytes or ``(samples, rate)``) or
        ``"record"`` (a dict such as ``{"story": [...], "question": "...?"}``); the CLI, the batch predictor and the
        HTTP server read inputs by it.
      metadata: the model's metadata (set by the constructor).

    Methods every predictor has:
      predict(x): the task's main output for one input, a ``*Result``.
      predict_batch(inputs, batch_size=...): ``[predict(x) for x in inputs]``, ``batch_size`` inputs per
        onnxruntime call.
    """

    task: ClassVar[str] = ""  # set by @register("task") when the class does not set it
    input_kind: ClassVar[str] = ""  # each predictor must say (checked by register)
    metadata: dict

    def predict(self, x):
        raise NotImplementedError

    def predict_batch(self, inputs: Sequence, batch_size: int = 64) -> list:
        raise NotImplementedError


class Result:
    """The base of every result type (a dataclass mixin): ``to_dict()`` gives a JSON-ready dict (what the server
    answers and ``--json`` prints; tuples in it become JSON arrays); ``str(result)`` is the readable printout of ``python -m serving predict``.

    A subclass must define ``__str__`` (checked when the class is made); its name must end in ``Result``.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.__name__.endswith("Result"):
            raise TypeError(f"result type {cls.__name__} must be named *Result")
        if cls.__str__ is Result.__str__ or cls.__str__ is object.__str__:
            raise TypeError(f"{cls.__name__} must define __str__ (the readable printout of the CLI)")

    def to_dict(self) -> dict:
        return plain(self)

    def __str__(self) -> str:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError


_ATOMS = (str, int, float, type(None))


def plain(value):
    """What ``dataclasses.asdict`` gives (dataclasses as dicts, lists and tuples rebuilt, recursively), without its
    deep copies of strings and numbers: about ten times faster on a result, which the server converts per request."""
    if isinstance(value, _ATOMS):
        return value
    if isinstance(value, list):
        return [v if isinstance(v, _ATOMS) else plain(v) for v in value]
    if isinstance(value, tuple):
        items = [v if isinstance(v, _ATOMS) else plain(v) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return copy.deepcopy(value)


def register(task: str | type):
    """Registers a predictor class under its task: ``@register("pos_tagging")`` above the class (which then gets
    ``task = "pos_tagging"`` if it does not say so itself), or ``register(cls)`` to use ``cls.task``.

    Raises:
      TypeError: the class lacks the protocol (``predict``, ``predict_batch``, ``input_kind`` in
        :data:`INPUT_KINDS`), or its ``task`` differs from the name given.
      ValueError: another class is already registered under the task.
    """
    if isinstance(task, type):
        return register(task.task)(task)

    def decorate(cls: type) -> type:
        if not cls.__dict__.get("task"):
            cls.task = task
        if cls.task != task:
            raise TypeError(f"{cls.__name__}.task is {cls.task!r} but it is registered as {task!r}")
        check_predictor_class(cls)
        known = PREDICTORS.get(task)
        if known is not None and _qualname(known) != _qualname(cls):  # (a reloaded module re-registers its class)
            raise ValueError(f"task {task!r} already has a predictor: {_qualname(known)}")
        PREDICTORS[task] = cls
        return cls

    return decorate


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def check_predictor_class(cls: type) -> None:
    """Checks that ``cls`` has the protocol: a ``task`` name, ``input_kind`` in :data:`INPUT_KINDS`, and
    ``predict`` / ``predict_batch`` methods, the latter taking ``batch_size``.

    Raises:
      TypeError: naming what is missing.
    """
    if not isinstance(getattr(cls, "task", None), str) or not cls.task:
        raise TypeError(f"{cls.__name__} has no task name")
    if getattr(cls, "input_kind", None) not in INPUT_KINDS:
        raise TypeError(f"{cls.__name__}.input_kind is {getattr(cls, 'input_kind', None)!r}; "
                        f"one of {', '.join(INPUT_KINDS)} is needed")
    for method in ("predict", "predict_batch"):
        if not callable(getattr(cls, method, None)):
            raise TypeError(f"{cls.__name__} has no {method} method")
    if "batch_size" not in inspect.signature(cls.predict_batch).parameters:
        raise TypeError(f"{cls.__name__}.predict_batch takes no batch_size")


def import_predictor_modules() -> None:
    """Imports every module of :data:`PREDICTOR_MODULES` (which registers their predictors)."""
    for name in PREDICTOR_MODULES:
        importlib.import_module(name)


def predictor_class(task: str, source: str | None = None) -> type:
    """The predictor class registered for ``task``.

    Args:
      source: the model file asking, named in the error.

    Raises:
      UnknownTaskError (a ModelError): no predictor for ``task``; the message lists the known tasks.
    """
    import_predictor_modules()
    cls = PREDICTORS.get(task)
    if cls is None and isinstance(task, str) and task.isidentifier():
        try:  # by convention a task's predictor lives in serving/<task>.py: no list to extend
            importlib.import_module(f"serving.{task}")
        except ModuleNotFoundError as err:
            if err.name != f"serving.{task}":
                raise
        cls = PREDICTORS.get(task)
    if cls is None:
        raise UnknownTaskError(task, PREDICTORS, source)
    return cls


def deprecated_alias(new_name: str, old_name: str):
    """A method ``old_name`` that warns (DeprecationWarning) and calls ``self.<new_name>``."""

    def alias(self, *args, **kwargs):
        warnings.warn(f"{type(self).__name__}.{old_name} is deprecated; use {new_name}", DeprecationWarning,
                      stacklevel=2)
        return getattr(self, new_name)(*args, **kwargs)

    alias.__name__ = old_name
    alias.__doc__ = f"Deprecated alias of :meth:`{new_name}` (emits DeprecationWarning)."
    alias.deprecated_for = new_name
    return alias
