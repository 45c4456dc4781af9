"""The options every task shares, and the one flag vocabulary.

Every task's config is a frozen dataclass that extends :class:`CommonOptions` (a task re-declares a common field
to change its default). :func:`build_parser` turns any such class into a command line: one ``--flag-name`` per
field, the common ones grouped last, and each task's deprecated spellings (``DEPRECATED_FLAGS``) still accepted
with a warning that names the new flag.

The vocabulary (docs/flags.md lists it whole): the same name for the same concept in every task.

=====================  ===============================================================================
``--hidden``           recurrent units per direction (the width)
``--embed-dim``        token embedding size
``--layers``           stacked recurrent layers
``--cell``             the recurrent cell, from the one cell table (``models.recurrent.CELL_TABLE``)
``--dropout``          dropout between layers
``--token-dropout``    rate of input tokens (words or characters) replaced by ``<unk>`` while training
``--beam-size``        hypotheses kept by beam search
``--max-len``          longest input in tokens / steps (seq2seq: the source); ``--max-target-len`` for outputs
``--max-minutes``      training time budget: the run stops after the epoch that reaches it (0: none)
``--epochs`` ...       see :class:`CommonOptions`
=====================  ===============================================================================
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
import warnings
from typing import ClassVar

from pipelines.readers import DataError


def _help(text: str, default=dataclasses.MISSING):
    return dataclasses.field(default=default, metadata={"help": text})


@dataclasses.dataclass(frozen=True)
class CommonOptions:
    """Settings every task has. A task's config extends this class; its fields are the task's own flags."""

    data_dir: str | None = _help("real data folder; none: the built-in generator", None)
    out: str = _help("run dir to write", "runs/run")
    epochs: int = _help("most epochs (early stopping or --max-minutes may end sooner)", 10)
    batch_size: int = _help("examples per batch (and replica)", 32)
    learning_rate: float = _help("initial learning rate", 1e-3)
    clipnorm: float = _help("gradient norm clip; 0 disables", 1.0)
    patience: int = _help("epochs without a better dev score before stopping", 5)
    ema: float = _help("weight averaging (Polyak) momentum, e.g. 0.99; 0 disables", 0.0)
    max_minutes: float = _help("training time budget in minutes, checked after each epoch; 0: none", 0.0)
    seed: int = _help("random seed (data order, initial weights, dropout)", 0)
    quick: bool = _help("a seconds-long smoke run: tiny model, data and epochs", False)
    export: bool = _help("export (SavedModel + ONNX with parity) at the end", True)
    resume: bool = _help("carry on from the state a killed run saved in OUT.resume/", True)
    strategy: str = _help("auto, one_device, mirrored (this machine's GPUs) or multi_worker", "auto")
    workers: str | None = _help("multi_worker cluster, host:port,host:port,... (else TF_CONFIG)", None)
    task_index: int | None = _help("this worker's index in --workers", None)
    mixed_precision: bool = _help("mixed_float16 compute (GPU); outputs and loss stay float32", False)

    # old spelling → field; accepted on the command line with a warning (see build_parser)
    DEPRECATED_FLAGS: ClassVar[dict[str, str]] = {}

    def check(self) -> None:
        """Raises DataError naming the first common setting out of range; a task's ``check`` calls this too."""
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise DataError(f"--{flag(name)} must be at least 1, got {getattr(self, name)}")
        if self.learning_rate < 0:
            raise DataError(f"--learning-rate must be positive, got {self.learning_rate}")
        if self.clipnorm < 0 or self.patience < 0:
            raise DataError("--clipnorm and --patience must not be negative")
        if not 0 <= self.ema < 1:
            raise DataError(f"--ema must be in [0, 1), got {self.ema}")
        if self.max_minutes < 0:
            raise DataError(f"--max-minutes must not be negative, got {self.max_minutes}")

    def resolved(self):
        """The config actually run (``--quick`` and automatic values filled in); the identity by default."""
        return self


COMMON_FIELDS = tuple(f.name for f in dataclasses.fields(CommonOptions))


def flag(name: str) -> str:
    """A field's flag name, without the dashes: ``max_len`` → ``max-len``."""
    return name.replace("_", "-")


def check_positive(config, *names: str) -> None:
    """Raises DataError for the first field of ``names`` below 1."""
    for name in names:
        if getattr(config, name) < 1:
            raise DataError(f"--{flag(name)} must be at least 1, got {getattr(config, name)}")


def check_rate(config, *names: str) -> None:
    """Raises DataError for the first field of ``names`` outside [0, 1)."""
    for name in names:
        if not 0 <= getattr(config, name) < 1:
            raise DataError(f"--{flag(name)} must be in [0, 1), got {getattr(config, name)}")


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def deprecated(old: str, new: str) -> None:
    """Warns (FutureWarning, shown by default) that ``--old`` is deprecated in favour of ``--new``."""
    warnings.warn(f"--{flag(old)} is deprecated; use --{flag(new)}", FutureWarning, stacklevel=3)


class _Deprecated(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        deprecated(option_string.lstrip("-"), self.dest)
        setattr(namespace, self.dest, values)


def build_parser(config_cls, description: str, choices: dict[str, tuple] | None = None,
                 prog: str | None = None) -> argparse.ArgumentParser:
    """Makes a parser with one ``--flag-name`` per field of ``config_cls`` (defaults from the dataclass).

    Booleans take ``--flag`` / ``--no-flag``; a field whose metadata has ``help`` shows it; ``choices`` restricts
    a field's values. The :class:`CommonOptions` fields come last, in their own group. Each entry of the class's
    ``DEPRECATED_FLAGS`` adds the old spelling, which sets the new field and warns.
    """
    choices = choices or {}
    parser = argparse.ArgumentParser(prog=prog, description=description)
    common = parser.add_argument_group("options every task shares (docs/flags.md)")
    hints = typing.get_type_hints(config_cls)
    fields = {field.name: field for field in dataclasses.fields(config_cls)}
    for field in sorted(fields.values(), key=lambda f: f.name in COMMON_FIELDS):
        group = common if field.name in COMMON_FIELDS else parser
        _add(group, "--" + flag(field.name), field, hints[field.name], choices.get(field.name))
    for old, new in getattr(config_cls, "DEPRECATED_FLAGS", {}).items():
        kind = hints[new]
        base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
        parser.add_argument("--" + flag(old), dest=new, action=_Deprecated, choices=choices.get(new),
                            type=_parse_bool if base is bool else base, help=f"deprecated: use --{flag(new)}",
                            default=argparse.SUPPRESS)
    return parser


def _add(group, option: str, field, kind, choices) -> None:
    help_text = f"{field.metadata.get('help', '')} (default: {field.default})".strip()
    if kind is bool:
        group.add_argument(option, action=argparse.BooleanOptionalAction, default=field.default, help=help_text)
        return
    base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
    group.add_argument(option, type=base, default=field.default, choices=choices, help=help_text,
                       metavar=None if choices else {int: "N", float: "X"}.get(base, field.name.upper()))


def from_args(config_cls, args: argparse.Namespace):
    """Builds the config from parsed arguments."""
    return config_cls(**{field.name: getattr(args, field.name) for field in dataclasses.fields(config_cls)})


def with_deprecated(config_cls, **kwargs):
    """``config_cls(**kwargs)`` where a keyword may still be an old spelling (warns, like the command line)."""
    renames = getattr(config_cls, "DEPRECATED_FLAGS", {})
    fixed = {}
    for key, value in kwargs.items():
        if key in renames:
            deprecated(key, renames[key])
            key = renames[key]
        fixed[key] = value
    return config_cls(**fixed)


def is_terminal() -> bool:
    """Whether stdout is a terminal (a progress bar is drawn only then)."""
    return sys.stdout.isatty()
