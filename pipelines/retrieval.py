"""Query-by-example retrieval metrics: every utterance queries all the others, ranked by a similarity.

For a query q with ranked list r_1, r_2, ... (q itself left out) and R relevant items (same label as q):

- average precision AP(q) = (1/R) * sum over the ranks k of relevant items of precision@k;
- precision@10 = the share of same-label items among the first 10;

and the figures are their means over the queries that have at least one relevant item. Ties keep the candidates'
order (a stable sort), so a ranking is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def cosine_similarities(vectors: np.ndarray) -> np.ndarray:
    """[n, n] cosine similarity between the rows of ``vectors`` [n, d] (an all-zero row is similar to nothing)."""
    vectors = np.asarray(vectors, np.float64)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return unit @ unit.T


def rankings(similarity: np.ndarray) -> list[np.ndarray]:
    """For each query row, the other items' indices from most to least similar (the query itself left out)."""
    similarity = np.asarray(similarity, np.float64)
    n = len(similarity)
    if similarity.shape != (n, n):
        raise ValueError(f"similarity must be square, got shape {similarity.shape}")
    out = []
    for q in range(n):
        order = np.argsort(-similarity[q], kind="stable")
        out.append(order[order != q])
    return out


def average_precision(relevant: Sequence[bool]) -> float:
    """AP of one ranked list given as relevance flags (rank 1 first); 0 when nothing is relevant."""
    relevant = np.asarray(relevant, bool)
    if not relevant.any():
        return 0.0
    hits = np.cumsum(relevant)
    ranks = np.arange(1, len(relevant) + 1)
    return float((hits[relevant] / ranks[relevant]).mean())


def retrieval_scores(similarity: np.ndarray, labels: Sequence, k: int = 10) -> dict:
    """Mean average precision and precision@k of "same label" retrieval, each item a query against all others.

    Args:
      similarity: [n, n], higher means more alike (pass ``-distance`` for a distance such as DTW's).
      labels: the n items' labels (e.g. the spoken word).
      k: the cut-off of precision@k.

    Returns:
      ``{"map": ..., "precision_at_{k}": ..., "queries": ...}``, over queries with at least one relevant item.
    """
    labels = np.asarray(labels)
    aps, precisions = [], []
    for q, order in enumerate(rankings(similarity)):
        relevant = labels[order] == labels[q]
        if not relevant.any():
            continue
        aps.append(average_precision(relevant))
        precisions.append(float(relevant[:k].mean()))
    if not aps:
        raise ValueError("no query has another item with its label")
    return {"map": float(np.mean(aps)), f"precision_at_{k}": float(np.mean(precisions)), "queries": len(aps)}
