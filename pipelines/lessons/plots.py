"""Matplotlib without a screen (Agg), small PNGs, and Chinese labels that degrade to pinyin without a CJK font."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import font_manager  # noqa: E402

DPI = 90
PINYIN = {"好": "hǎo", "棒": "bàng", "φ": "φ"}


def figure(width: float = 10.0, height: float = 4.0, **kwargs):
    """A new figure and its axes (``plt.subplots``), with a size in inches."""
    return plt.subplots(figsize=(width, height), **kwargs)


def save(fig, path: Path) -> None:
    """Saves ``fig`` as a PNG at :data:`DPI` and closes it."""
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _cjk_font() -> str | None:
    for font in font_manager.fontManager.ttflist:
        if any(key in font.name for key in ("CJK", "WenQuanYi", "Hei", "Ming", "Song", "Droid Sans Fallback")):
            return font.name
    return None


def cjk(text: str) -> str:
    """``text`` for a figure label: as is when a CJK font is installed (it is then selected), else each known
    Chinese character in pinyin (``好`` → ``hǎo``), so the figure never shows empty boxes."""
    font = _cjk_font()
    if font:
        if font not in matplotlib.rcParams["font.sans-serif"]:
            matplotlib.rcParams["font.sans-serif"] = [font, *matplotlib.rcParams["font.sans-serif"]]
        return text
    return " ".join(PINYIN.get(ch, ch) for ch in text) if any(ch in PINYIN for ch in text) else text
