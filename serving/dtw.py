"""Dynamic time warping (DTW) between feature sequences, in numpy: the classic query-by-example baseline.

The alignment cost of sequences a [n, d] and b [m, d] is the least total frame distance over monotone paths from
(0, 0) to (n-1, m-1) with steps (1, 0), (0, 1) and (1, 1):

    D[i, j] = c[i, j] + min(D[i-1, j], D[i, j-1], D[i-1, j-1])

and the score is ``D[n-1, m-1] / (n + m)`` (so long and short candidates compare fairly). :func:`dtw_many` scores
one query against many candidates at once: it walks the query's frames, and along the candidate's frames it solves
the left-to-right dependency in closed form. With ``a[j] = min(D[i-1, j], D[i-1, j-1])`` and ``S`` the running sum
of row i's costs, ``D[i, j] = S[j] + min over k <= j of (a[k] - S[k-1])``: a cumulative minimum, so every row is a
handful of vectorised numpy operations over all candidates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DISTANCES = ("euclidean", "cosine")


def frame_distances(a: np.ndarray, b: np.ndarray, distance: str = "euclidean") -> np.ndarray:
    """Distances between every frame of ``a`` [n, d] and of ``b`` [..., m, d]: [..., n, m] (float64).

    Args:
      distance: ``euclidean`` or ``cosine`` (1 - cosine similarity; an all-zero frame is at distance 1).

    Raises:
      ValueError: unknown distance or mismatched feature sizes.
    """
    if distance not in DISTANCES:
        raise ValueError(f"unknown distance {distance!r}; choose one of {', '.join(DISTANCES)}")
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"frames have {a.shape[-1]} and {b.shape[-1]} features")
    if distance == "cosine":
        a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
        b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
        return 1.0 - a @ np.swapaxes(b, -1, -2)
    squared = (a * a).sum(-1)[:, None] + (b * b).sum(-1)[..., None, :] - 2.0 * a @ np.swapaxes(b, -1, -2)
    return np.sqrt(np.maximum(squared, 0.0))


def dtw_costs(cost: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
    """Accumulated DTW costs D[n-1, m_k-1] for cost matrices ``cost`` [k, n, m] (candidate k real up to
    ``lengths[k]`` columns; None: all m). Returns [k] float64, unnormalised."""
    cost = np.asarray(cost, np.float64)
    k, n, m = cost.shape
    lengths = np.full(k, m) if lengths is None else np.asarray(lengths)
    if n == 0 or (lengths < 1).any():
        raise ValueError("DTW needs at least one frame on each side")
    row = np.cumsum(cost[:, 0, :], axis=1)  # the first row: only steps to the right
    for i in range(1, n):
        above = np.minimum(row, np.concatenate([np.full((k, 1), np.inf), row[:, :-1]], axis=1))
        running = np.cumsum(cost[:, i, :], axis=1)
        before = np.concatenate([np.zeros((k, 1)), running[:, :-1]], axis=1)
        row = running + np.minimum.accumulate(above - before, axis=1)
    return row[np.arange(k), lengths - 1]


def dtw_many(query: np.ndarray, candidates: Sequence[np.ndarray], distance: str = "euclidean",
             chunk: int = 256) -> np.ndarray:
    """Length-normalised DTW scores (lower: more alike) of ``query`` [n, d] against each candidate [m_k, d].

    Returns:
      [len(candidates)] float64: ``D[n-1, m_k-1] / (n + m_k)``.

    Raises:
      ValueError: a sequence without frames, or mismatched feature sizes.
    """
    query = np.asarray(query, np.float64)
    if query.ndim != 2 or len(query) == 0:
        raise ValueError(f"the query must be [frames, features] with at least one frame, got shape {query.shape}")
    scores = np.empty(len(candidates))
    for start in range(0, len(candidates), chunk):
        group = [np.asarray(c, np.float64) for c in candidates[start : start + chunk]]
        lengths = np.array([len(c) for c in group])
        if (lengths == 0).any():
            raise ValueError(f"candidate {start + int(np.argmin(lengths))} has no frames")
        for row, c in enumerate(group):
            if c.ndim != 2 or c.shape[1] != query.shape[1]:
                raise ValueError(f"the query's frames have {query.shape[1]} features and candidate {start + row}'s "
                                 f"shape is {c.shape}")
        padded = np.zeros((len(group), lengths.max(), query.shape[1]))
        for row, c in enumerate(group):
            padded[row, : len(c)] = c
        cost = frame_distances(query, padded, distance)
        scores[start : start + len(group)] = dtw_costs(cost, lengths) / (len(query) + lengths)
    return scores


def dtw(a: np.ndarray, b: np.ndarray, distance: str = "euclidean") -> float:
    """Length-normalised DTW score of two sequences [n, d] and [m, d]."""
    return float(dtw_many(a, [b], distance)[0])
