"""Query-by-example retrieval metrics: every utterance queries all the others, ranked by a similarity.

For a query q with ranked list r_1, r_2, ... (q itself left out) and R relevant items (same label as q):

- average precision AP(q) = (1/R) * sum over the ranks k of relevant items of precision@k;
- precision@10 = the share of same-label items among the first 10;

and the figures are their means over the queries that have at least one relevant item. Ties keep the candidates'
order (a stable sort), so a ranking is deterministic.

Leave-speakers-out (:func:`loso_retrieval_scores`): the index holds every speaker's clips, but only the held-out
speakers' clips query it; each query is still ranked against all the other indexed clips, so a vector that encodes
the voice more than the word is caught ranking the query speaker's other words above other speakers' same word.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def cosine_similarities(vectors: np.ndarray) -> np.ndarray:
    """[n, n] cosine similarity between the rows of ``vectors`` [n, d] (an all-zero row is similar to nothing)."""
    vectors = np.asarray(vectors, np.float64)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return unit @ unit.T


def rankings(similarity: np.ndarray, queries: Sequence[int] | None = None) -> list[np.ndarray]:
    """For each query row (all rows, or the indices ``queries``), the other items' indices from most to least
    similar (the query itself left out)."""
    similarity = np.asarray(similarity, np.float64)
    n = len(similarity)
    if similarity.shape != (n, n):
        raise ValueError(f"similarity must be square, got shape {similarity.shape}")
    out = []
    for q in range(n) if queries is None else queries:
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


def retrieval_scores(similarity: np.ndarray, labels: Sequence, k: int = 10, queries: Sequence[int] | None = None
                     ) -> dict:
    """Mean average precision and precision@k of "same label" retrieval, each item (or each of ``queries``) a query
    against all the other items.

    Args:
      similarity: [n, n], higher means more alike (pass ``-distance`` for a distance such as DTW's); only the
        query rows are read.
      labels: the n items' labels (e.g. the spoken word).
      k: the cut-off of precision@k.
      queries: the indices of the items that query (None: every item).

    Returns:
      ``{"map": ..., "precision_at_{k}": ..., "queries": ...}``, over queries with at least one relevant item.
    """
    labels = np.asarray(labels)
    queries = range(len(labels)) if queries is None else [int(q) for q in queries]
    aps, precisions = [], []
    for q, order in zip(queries, rankings(similarity, queries)):
        relevant = labels[order] == labels[q]
        if not relevant.any():
            continue
        aps.append(average_precision(relevant))
        precisions.append(float(relevant[:k].mean()))
    if not aps:
        raise ValueError("no query has another item with its label")
    return {"map": float(np.mean(aps)), f"precision_at_{k}": float(np.mean(precisions)), "queries": len(aps)}


def speaker_queries(speakers: Sequence[str], held_out: Sequence[str]) -> np.ndarray:
    """The indices of the items spoken by one of the ``held_out`` speakers.

    Raises:
      ValueError: no item is by a held-out speaker.
    """
    speakers = np.asarray(speakers)
    found = np.flatnonzero(np.isin(speakers, list(held_out)))
    if not len(found):
        raise ValueError(f"no item is spoken by {', '.join(held_out)} (speakers: {', '.join(sorted(set(speakers)))})")
    return found


def loso_retrieval_scores(similarity: np.ndarray, labels: Sequence, speakers: Sequence[str],
                          held_out: Sequence[str], k: int = 10) -> dict:
    """Leave-speakers-out query by example: the clips of the ``held_out`` speakers query, each ranked against all
    the other n - 1 clips (every speaker's, its own speaker's other clips too); relevant = same label.

    Args:
      similarity: [n, n] over the whole index, higher means more alike.
      labels, speakers: the n clips' labels and speakers.
      held_out: the speakers whose clips query (those the model never heard in training).

    Returns:
      :func:`retrieval_scores` over those queries: ``{"map", "precision_at_{k}", "queries"}``.
    """
    return retrieval_scores(similarity, labels, k, queries=speaker_queries(speakers, held_out))
