"""Plain JSON (numbers, strings, lists; non-finite numbers become null) and the small text tables the lessons print."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np


def plain(value):
    """``value`` as plain JSON data: numpy scalars and arrays become Python numbers and lists, NaN and inf None.

    Args:
      value: nested dicts / lists / tuples of numbers, strings, booleans, None and numpy values.

    Returns:
      The same structure, ready for ``json.dumps(..., allow_nan=False)``.
    """
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def write_json(path: Path, data) -> None:
    """Writes ``data`` (see :func:`plain`) as indented, strictly valid JSON."""
    Path(path).write_text(json.dumps(plain(data), indent=2, ensure_ascii=False, allow_nan=False) + "\n",
                          encoding="utf-8")


def number(value, digits: int = 4) -> str:
    """A number for a table: ``nan``/``inf`` spelled out, very large or small numbers in e-notation."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) >= 10 ** (digits + 1) or abs(value) < 10 ** -(digits - 1)):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


def table(headers: list[str], rows: list[list]) -> str:
    """A fixed-width text table (numbers through :func:`number`)."""
    cells = [[h for h in headers]] + [[c if isinstance(c, str) else number(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
