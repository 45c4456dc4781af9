"""Task configuration: a frozen dataclass per task, with command-line flags mapped onto its fields."""

from __future__ import annotations

import argparse
import dataclasses
import typing


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser(
    config_cls, description: str, choices: dict[str, tuple] | None = None, prog: str | None = None
) -> argparse.ArgumentParser:
    """Makes a parser with one ``--flag-name`` per field of ``config_cls`` (defaults from the dataclass).

    Booleans take ``--flag`` / ``--no-flag``; a field whose metadata has ``help`` shows it. Fields inherited from
    ``pipelines.training.TrainingOptions`` (strategy, workers, ...) come last.
    """
    from pipelines.training import TRAINING_OPTION_FIELDS

    choices = choices or {}
    parser = argparse.ArgumentParser(prog=prog, description=description)
    hints = typing.get_type_hints(config_cls)
    for field in sorted(dataclasses.fields(config_cls), key=lambda f: f.name in TRAINING_OPTION_FIELDS):
        flag = "--" + field.name.replace("_", "-")
        kind = hints[field.name]
        help_text = f"{field.metadata.get('help', '')} (default: {field.default})".strip()
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default, help=help_text)
            continue
        base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
        parser.add_argument(
            flag, type=base, default=field.default, choices=choices.get(field.name), help=help_text,
            metavar=None if field.name in choices else {int: "N", float: "X"}.get(base, field.name.upper()),
        )
    return parser


def from_args(config_cls, args: argparse.Namespace):
    """Builds the config from parsed arguments."""
    return config_cls(**{field.name: getattr(args, field.name) for field in dataclasses.fields(config_cls)})


def run_command_line(config_cls, run, argv: list[str] | None, *, module_doc: str, prog: str,
                     choices: dict[str, tuple] | None = None):
    """A task's command line: parses ``argv`` into ``config_cls`` (the description is ``module_doc``'s second
    paragraph), calls ``run(config)`` and prints its metrics as JSON.

    Returns:
      (config, metrics). ``metrics`` is None when the run refused its data or settings (``DataError``, printed to
      stderr as one ``error:`` line): the caller exits with 2.
    """
    import json
    import sys

    from pipelines.readers import DataError

    parser = build_parser(config_cls, module_doc.split("\n\n")[1], choices=choices, prog=prog)
    config = from_args(config_cls, parser.parse_args(argv))
    try:
        metrics = run(config)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return config, None
    print(json.dumps(metrics, indent=2))
    return config, metrics
