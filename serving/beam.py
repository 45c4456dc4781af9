"""Greedy and beam-search decoding in numpy over a one-step decoder.

The decoder is any callable ``step(tokens [n] int32, states: dict[str, array [n, ...]]) → (log_probs [n, V],
new_states dict, attention [n, s] or None)``, where n = batch (greedy) or batch * beam (beam search): every step
is ONE call for the whole batch / beam. Decoding starts from ``<s>`` and a hypothesis ends when it emits ``</s>``
(the lecture's "===": without it the decoder would never stop); ``max_len`` output tokens is the guard for a
decoder that never emits it. Read-only per-sentence inputs (the attention memory) live in the states dict too and
are reordered with the hypotheses like the recurrent states.

Both take an optional ``constraint`` (None: unconstrained, as before): an object with ``start(rows)`` → state
(a dict of arrays, one row per hypothesis; ``rows[i]`` is the sentence of row i), ``allowed(state)`` → boolean
mask [rows, V] of the tokens each hypothesis may write next, and ``update(state, tokens)`` → the next state.
Disallowed tokens get log-probability -inf before the choice, and the constraint state is reordered with the
hypotheses. ``serving/constraints.py`` holds the one for parse trees.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class Hypothesis:
    """One decoded output.

    Attributes:
      ids: the output token ids, without ``<s>`` and without ``</s>``.
      score: the sum of the log-probabilities of the emitted tokens (``</s>`` included when finished).
      normalized: ``score`` divided by ``len ** length_penalty`` (the ranking beam search used).
      finished: it ended with ``</s>``; False when the max-length guard stopped it.
      attention: [len(ids) (+1 for ``</s>``), source steps] weights per emitted token, or None.
    """

    ids: list[int]
    score: float
    normalized: float
    finished: bool
    attention: np.ndarray | None = None


def _normalize(score: float, length: int, length_penalty: float) -> float:
    return score / max(length, 1) ** length_penalty


def _take(states: dict, rows: np.ndarray) -> dict:
    return {name: value[rows] for name, value in states.items()}


def _masked(log_probs: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """``log_probs`` with -inf where ``allowed`` is False.

    Raises:
      RuntimeError: a row allows no token (a constraint that cannot be met).
    """
    if not allowed.any(axis=1).all():
        raise RuntimeError(f"the decoding constraint allows no token for row(s) "
                           f"{np.flatnonzero(~allowed.any(axis=1)).tolist()}")
    return np.where(allowed, log_probs, -np.inf)


def _top(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest entries of each row, best first, ties to the lower index: exactly
    ``np.argsort(-scores, kind="stable")[:, :n]``, without sorting whole rows."""
    n = min(n, scores.shape[1])
    kth = -np.partition(-scores, n - 1, axis=1)[:, n - 1]  # the n-th largest value of each row
    out = np.empty((len(scores), n), np.int64)
    for row, (values, threshold) in enumerate(zip(scores, kth)):
        above = np.flatnonzero(values > threshold)
        chosen = np.concatenate([above, np.flatnonzero(values == threshold)[: n - len(above)]])
        out[row] = chosen[np.lexsort((chosen, -values[chosen]))]
    return out


def greedy(step, states: dict, batch: int, *, start_id: int, end_id: int, max_len: int,
           length_penalty: float = 0.0, constraint=None) -> list[Hypothesis]:
    """Picks the most probable token at each step, for ``batch`` sentences at once.

    Args:
      step: the one-step decoder (see the module docstring).
      states: the initial states (and memory), each [batch, ...].
      start_id, end_id: the ``<s>`` and ``</s>`` ids.
      max_len: most output tokens (``</s>`` included); a sentence still going then is returned unfinished.
      length_penalty: only for the ``normalized`` score reported.
      constraint: the tokens allowed at each step (see the module docstring); None: all.

    Returns:
      One :class:`Hypothesis` per sentence.
    """
    states = {name: np.array(value) for name, value in states.items()}  # writable copies
    tokens = np.full(batch, start_id, np.int32)
    outputs = [[] for _ in range(batch)]
    weights = [[] for _ in range(batch)]
    scores = np.zeros(batch, np.float64)
    done = np.zeros(batch, bool)
    rules = constraint.start(np.arange(batch)) if constraint is not None else None
    for _ in range(max_len):
        live = np.flatnonzero(~done)
        if not len(live):
            break
        log_probs, new_states, attention = step(tokens[live], _take(states, live))
        if constraint is not None:
            live_rules = _take(rules, live)
            log_probs = _masked(log_probs, constraint.allowed(live_rules))
        best = log_probs.argmax(-1)
        if constraint is not None:
            for name, value in constraint.update(live_rules, best).items():
                rules[name][live] = value
        for k, row in enumerate(live):
            scores[row] += float(log_probs[k, best[k]])
            if attention is not None:
                weights[row].append(attention[k])
            if best[k] == end_id:
                done[row] = True
            else:
                outputs[row].append(int(best[k]))
        for name, value in new_states.items():
            states[name][live] = value
        tokens[live] = best
    return [Hypothesis(outputs[i], float(scores[i]),
                       _normalize(float(scores[i]), len(outputs[i]) + int(done[i]), length_penalty), bool(done[i]),
                       np.stack(weights[i]) if weights[i] else None) for i in range(batch)]


def beam_search(step, states: dict, batch: int, *, beam_size: int, start_id: int, end_id: int, max_len: int,
                length_penalty: float = 1.0, constraint=None) -> list[Hypothesis]:
    """Keeps the ``beam_size`` best partial outputs per sentence; one ``step`` call per output position for all
    sentences and beams together.

    A hypothesis that emits ``</s>`` is set aside as finished; a sentence is done when it has ``beam_size``
    finished hypotheses, or when no live hypothesis can still beat its best finished one (scores only fall), or at
    ``max_len`` (its live hypotheses then count, unfinished). The best finished hypothesis by
    ``score / length ** length_penalty`` wins (unfinished ones only if none finished). With ``beam_size=1`` this
    is exactly greedy decoding.

    Args:
      step: the one-step decoder.
      states: initial states (and memory), each [batch, ...].
      beam_size: hypotheses kept per sentence.
      start_id, end_id: ``<s>`` and ``</s>`` ids.
      max_len: most output tokens (``</s>`` included).
      length_penalty: 0 ranks by the raw sum of log-probabilities (favours short outputs); 1 by the mean.
      constraint: the tokens allowed at each step (see the module docstring); None: all.

    Returns:
      The best :class:`Hypothesis` per sentence.

    Raises:
      ValueError: ``beam_size`` < 1 or ``max_len`` < 1.
    """
    if beam_size < 1 or max_len < 1:
        raise ValueError(f"beam_size and max_len must be at least 1, got {beam_size} and {max_len}")
    k = beam_size
    rows = np.repeat(np.arange(batch), k)  # hypothesis row → sentence
    states = _take(states, rows)
    tokens = np.full(batch * k, start_id, np.int32)
    scores = np.full((batch, k), -np.inf)
    scores[:, 0] = 0.0  # one live hypothesis at first, so the beams do not start as copies
    history = [[[] for _ in range(k)] for _ in range(batch)]  # emitted ids per live hypothesis
    attn_hist = [[[] for _ in range(k)] for _ in range(batch)]
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    done = np.zeros(batch, bool)
    rules = constraint.start(rows) if constraint is not None else None
    for length in range(1, max_len + 1):
        log_probs, new_states, attention = step(tokens, states)
        if constraint is not None:
            log_probs = _masked(log_probs, constraint.allowed(rules))
        vocab = log_probs.shape[-1]
        total = scores[:, :, None] + log_probs.reshape(batch, k, vocab)  # [batch, k, V]
        flat = total.reshape(batch, k * vocab)
        order = _top(flat, 2 * k)  # enough to refill k live hypotheses after k ends
        next_rows = np.zeros(batch * k, np.int64)
        next_tokens = np.full(batch * k, end_id, np.int32)
        next_scores = np.full((batch, k), -np.inf)
        next_history = [[[] for _ in range(k)] for _ in range(batch)]
        next_attn = [[[] for _ in range(k)] for _ in range(batch)]
        for b in range(batch):
            if done[b]:
                next_rows[b * k: (b + 1) * k] = b * k
                continue
            filled = 0
            for rank, flat_index in enumerate(order[b]):
                score = flat[b, flat_index]
                if not np.isfinite(score) or filled == k:
                    break
                beam, token = divmod(int(flat_index), vocab)
                ids = history[b][beam]
                weights = attn_hist[b][beam] + ([attention[b * k + beam]] if attention is not None else [])
                if token == end_id:
                    if rank < k and len(finished[b]) < k:  # an end ranked below the beam is not a contender
                        finished[b].append(Hypothesis(list(ids), float(score),
                                                      _normalize(float(score), length, length_penalty), True,
                                                      np.stack(weights) if weights else None))
                    continue
                next_rows[b * k + filled] = b * k + beam
                next_tokens[b * k + filled] = token
                next_scores[b, filled] = score
                next_history[b][filled] = ids + [token]
                next_attn[b][filled] = weights
                filled += 1
            for slot in range(filled, k):  # dead slots (tiny vocabularies): copy a live row, score -inf
                next_rows[b * k + slot] = next_rows[b * k]
            if len(finished[b]) >= k or filled == 0:
                done[b] = True
            elif finished[b]:
                # Scores only fall, so a live hypothesis' best reachable normalized score is bounded by its score
                # at the longest length allowed when the penalty is positive, or now when it is zero.
                best_done = max(h.normalized for h in finished[b])
                bound = max(_normalize(float(s), max_len if s < 0 else length, length_penalty)
                            for s in next_scores[b, :filled])
                if bound <= best_done:
                    done[b] = True
        states = _take(new_states, next_rows) | {n: v[next_rows] for n, v in states.items() if n not in new_states}
        if constraint is not None:
            rules = constraint.update(_take(rules, next_rows), next_tokens)
        tokens, scores, history, attn_hist = next_tokens, next_scores, next_history, next_attn
        if done.all():
            break
    results = []
    for b in range(batch):
        pool = finished[b]
        if not pool:  # the max-length guard stopped every hypothesis
            pool = [Hypothesis(history[b][j], float(scores[b, j]),
                               _normalize(float(scores[b, j]), len(history[b][j]), length_penalty), False,
                               np.stack(attn_hist[b][j]) if attn_hist[b][j] else None)
                    for j in range(k) if np.isfinite(scores[b, j])]
        results.append(max(pool, key=lambda h: h.normalized))
    return results
