"""The long-dependency toy tasks of the lessons: the answer is set at the first step and asked for at the end."""

from __future__ import annotations

import numpy as np


def recall_value(batch: int, length: int, rng: np.random.Generator, noise: float = 0.5):
    """Remember a number: step 1 carries v ~ U(-1, 1), the other steps noise ~ U(-noise, noise); target v.

    Features per step: (value, 1 at the first step else 0).

    Args:
      batch: examples.
      length: steps per example.
      rng: the random generator.
      noise: half-width of the distracting values.

    Returns:
      ``x`` float32 ``[batch, length, 2]`` and ``y`` float32 ``[batch, 1]``. Predicting 0 scores 1/3 (mean
      squared error).
    """
    values = rng.uniform(-noise, noise, (batch, length)).astype("float32")
    values[:, 0] = rng.uniform(-1, 1, batch)
    marker = np.zeros((batch, length), "float32")
    marker[:, 0] = 1
    return np.stack([values, marker], axis=-1), values[:, :1].copy()


def recall_symbol(batch: int, length: int, rng: np.random.Generator, symbols: int = 4):
    """Remember a symbol: every step shows one of ``symbols`` symbols (one-hot), the first one is marked, and the
    target at every step is the first symbol.

    Features per step: ``symbols`` one-hot channels, then 1 at the first step else 0.

    Args:
      batch: examples.
      length: steps per example.
      rng: the random generator.
      symbols: alphabet size (chance accuracy is 1 / symbols).

    Returns:
      ``x`` float32 ``[batch, length, symbols + 1]`` and ``y`` int32 ``[batch, length]`` (all equal to the first
      symbol; the answer that matters is the last one, ``length - 1`` steps after the symbol was seen).
    """
    seen = rng.integers(0, symbols, (batch, length))
    x = np.zeros((batch, length, symbols + 1), "float32")
    np.put_along_axis(x, seen[..., None], 1.0, axis=-1)
    x[:, 0, symbols] = 1
    return x, np.repeat(seen[:, :1], length, axis=1).astype("int32")
