"""CTC decoding in numpy: greedy (best path) and prefix beam search, with per-symbol timestamps.

Inputs are one clip's per-frame log-probabilities [time, classes] (only its real frames) and the blank id.
Greedy decoding takes the most probable class at every frame, merges runs of the same class and drops blanks
(so "3 3" survives only with a blank between the two 3s). Prefix beam search sums the probability of every
alignment of each label prefix (Graves 2012; Hannun et al. 2014), keeping the ``beam_width`` best prefixes.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Emission:
    """One decoded symbol: its class id, the frames it spans (first and last, inclusive) and its peak probability."""

    label: int
    start: int
    end: int
    prob: float


def greedy(log_probs: np.ndarray, blank: int = 0) -> list[Emission]:
    """Best-path decoding: argmax per frame, merge repeats, drop blanks.

    Returns:
      The emitted symbols in order, each with the frame span of its run and its highest frame probability.
    """
    log_probs = np.asarray(log_probs)
    if log_probs.ndim != 2:
        raise ValueError(f"log_probs must be [time, classes], got shape {log_probs.shape}")
    best = log_probs.argmax(axis=-1)
    emissions, t = [], 0
    while t < len(best):
        end = t
        while end + 1 < len(best) and best[end + 1] == best[t]:
            end += 1
        if best[t] != blank:
            peak = float(np.exp(log_probs[t:end + 1, best[t]].max()))
            emissions.append(Emission(int(best[t]), t, end, peak))
        t = end + 1
    return emissions


def greedy_confidence(log_probs: np.ndarray) -> float:
    """The best path's mean frame probability: exp(mean over frames of the top log-probability)."""
    return float(np.exp(np.asarray(log_probs).max(axis=-1).mean())) if len(log_probs) else 0.0


def _logsumexp(a: float, b: float) -> float:
    if a == -np.inf:
        return b
    if b == -np.inf:
        return a
    hi = max(a, b)
    return hi + float(np.log1p(np.exp(-abs(a - b))))


def prefix_beam_search(log_probs: np.ndarray, blank: int = 0, beam_width: int = 8,
                       prune: float = -12.0) -> list[tuple[tuple[int, ...], float]]:
    """CTC prefix beam search.

    Args:
      log_probs: [time, classes] log-probabilities of one clip.
      blank: the blank id.
      beam_width: prefixes kept after each frame.
      prune: classes whose frame log-probability is below this are not tried (speed; exp(-12) ~ 6e-6).

    Returns:
      Up to ``beam_width`` (label prefix, total log-probability) pairs, best first.
    """
    log_probs = np.asarray(log_probs, dtype=np.float64)
    # each prefix: (log P(ending in blank), log P(ending in its last label))
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -np.inf)}
    for frame in log_probs:
        candidates = [c for c in np.flatnonzero(frame >= prune)] or [int(frame.argmax())]
        nxt: dict[tuple[int, ...], list[float]] = {}

        def add(prefix, p_blank=-np.inf, p_label=-np.inf):
            slot = nxt.setdefault(prefix, [-np.inf, -np.inf])
            slot[0], slot[1] = _logsumexp(slot[0], p_blank), _logsumexp(slot[1], p_label)

        for prefix, (pb, pl) in beams.items():
            total = _logsumexp(pb, pl)
            for c in candidates:
                p = float(frame[c])
                if c == blank:
                    add(prefix, p_blank=total + p)
                elif prefix and c == prefix[-1]:
                    add(prefix, p_label=pl + p)             # the same label continues (no new symbol)
                    add(prefix + (int(c),), p_label=pb + p)  # a repeat needs a blank in between
                else:
                    add(prefix + (int(c),), p_label=total + p)
        ranked = sorted(nxt.items(), key=lambda kv: -_logsumexp(*kv[1]))[:beam_width]
        beams = {prefix: (pb, pl) for prefix, (pb, pl) in ranked}
    return sorted(((prefix, _logsumexp(pb, pl)) for prefix, (pb, pl) in beams.items()), key=lambda kv: -kv[1])


def align(log_probs: np.ndarray, labels: tuple[int, ...], blank: int = 0) -> list[Emission]:
    """Timestamps for a given label sequence: the most probable CTC alignment (Viterbi over the blank-extended
    label sequence), each label's span being the frames aligned to it. Used to time a beam-search result."""
    log_probs = np.asarray(log_probs, dtype=np.float64)
    if not labels:
        return []
    ext = [blank]
    for label in labels:
        ext += [label, blank]
    n, T = len(ext), len(log_probs)
    score = np.full((T, n), -np.inf)
    back = np.zeros((T, n), dtype=np.int64)
    score[0, 0] = log_probs[0, ext[0]]
    if n > 1:
        score[0, 1] = log_probs[0, ext[1]]
    for t in range(1, T):
        for s in range(n):
            options = [(score[t - 1, s], s)]
            if s >= 1:
                options.append((score[t - 1, s - 1], s - 1))
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                options.append((score[t - 1, s - 2], s - 2))
            best, arg = max(options)
            score[t, s] = best + log_probs[t, ext[s]]
            back[t, s] = arg
    s = n - 1 if n < 2 or score[-1, n - 1] >= score[-1, n - 2] else n - 2
    path = [s]
    for t in range(T - 1, 0, -1):
        s = int(back[t, s])
        path.append(s)
    path.reverse()
    spans: dict[int, list[int]] = {}
    for t, s in enumerate(path):
        if ext[s] != blank:
            spans.setdefault(s, []).append(t)
    return [Emission(int(ext[s]), min(ts), max(ts), float(np.exp(log_probs[ts, ext[s]].max())))
            for s, ts in sorted(spans.items())]
