"""The naive-Bayes n-gram path of a text classifier (``models/ngrams.py``): its tables counted on the training texts,
its mixing weights fitted on dev."""

from __future__ import annotations

import numpy as np
import scipy.optimize


def count_tables(id_batches, labels: np.ndarray, n_classes: int, vocab_size: int, order: int,
                 alpha: float = 1.0) -> tuple[list[int], list[np.ndarray]]:
    """Naive-Bayes tables for ``NaiveBayesNgrams``: centred log-likelihoods of the n-grams seen in training.

    Args:
      id_batches: padded token-id batches [batch, time] of the training texts, in the order of ``labels``.
      labels: class index of each text.
      alpha: add-alpha smoothing over the n-grams of each order seen in training.

    Returns:
      (sizes, weights): the number of keys of each order above 1, and the layer's weights in its order: the unigram
      table [vocab_size, n_classes], then for each higher order its sorted int64 keys (``UNSEEN`` first) and its
      table (a zero row first). A score is ``log p(g | c)`` minus its mean over the classes.
    """
    from models.ngrams import UNSEEN, ngram_keys

    grams: list[list[np.ndarray]] = [[] for _ in range(order)]
    classes: list[list[np.ndarray]] = [[] for _ in range(order)]
    start = 0
    for ids in id_batches:
        ids = np.asarray(ids)
        if start + len(ids) > len(labels):
            raise ValueError(f"more texts in the batches than the {len(labels)} labels")
        y = np.repeat(labels[start:start + len(ids)], ids.shape[1]).reshape(ids.shape)
        start += len(ids)
        for n in range(1, order + 1):
            keys, real = (np.asarray(t) for t in ngram_keys(ids, n, vocab_size))
            grams[n - 1].append(keys[real])
            classes[n - 1].append(y[real])
    if start != len(labels):
        raise ValueError(f"{start} texts in the batches but {len(labels)} labels")

    def centred(counts):
        log_p = np.log(counts + alpha) - np.log(counts.sum(axis=0) + alpha * len(counts))
        return (log_p - log_p.mean(axis=1, keepdims=True)).astype(np.float32)

    sizes, weights = [], []
    for n in range(1, order + 1):
        keys, inverse = np.unique(np.concatenate(grams[n - 1]), return_inverse=True)
        counts = np.zeros((len(keys), n_classes))
        np.add.at(counts, (inverse, np.concatenate(classes[n - 1])), 1.0)
        if n == 1:
            table = np.zeros((vocab_size, n_classes), np.float32)
            table[keys] = centred(counts)
            weights.append(table)
        else:
            sizes.append(len(keys) + 1)
            weights += [np.concatenate([[UNSEEN], keys]).astype(np.int64),
                        np.concatenate([np.zeros((1, n_classes), np.float32), centred(counts)])]
    return sizes, weights


def fit_mix(probs: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> tuple[float, float, np.ndarray]:
    """The weights (a, b, c) of softmax(a · log p + b · s + c) with the least cross-entropy on ``labels``
    (a convex problem; L-BFGS-B from a = 1, b = 0, c = 0, the recurrent model alone), with a, b >= 0: a model
    that is no better than chance on dev gets weight 0 rather than a negative one fitted to dev's noise.

    Args:
      probs: the recurrent model's class probabilities [n, classes].
      scores: the naive-Bayes scores [n, classes].
    """
    log_p = np.log(np.maximum(probs, 1e-30)).astype(np.float64)
    scores = scores.astype(np.float64)
    n, k = probs.shape
    rows = np.arange(n)

    def loss(params):
        a, b, c = params[0], params[1], params[2:]
        logits = a * log_p + b * scores + c
        logits -= logits.max(axis=1, keepdims=True)
        log_q = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        error = np.exp(log_q)
        error[rows, labels] -= 1.0
        grad = np.concatenate([[np.sum(error * log_p), np.sum(error * scores)], error.sum(axis=0)]) / n
        return -log_q[rows, labels].mean(), grad

    bounds = [(0.0, None), (0.0, None)] + [(None, None)] * k  # a model is trusted or ignored, never inverted
    result = scipy.optimize.minimize(loss, np.concatenate([[1.0, 0.0], np.zeros(k)]), jac=True, method="L-BFGS-B",
                                     bounds=bounds)
    return float(result.x[0]), float(result.x[1]), result.x[2:].astype(np.float32)
