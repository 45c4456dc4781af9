"""Key phrases: documents with gold phrases, Porter stems, IOB labels, the literature's evaluation, and a TF-IDF
n-gram baseline.

Matching follows the keyphrase literature: a predicted phrase equals a gold one when their tokens are equal after
lower-casing and Porter stemming (nltk's ``PorterStemmer``). Tokens come from the document tokenizer
(``casefold_words_v1``: ``serving/doc_tokenizer.py`` and ``pipelines.text.tokenize_with_offsets``).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
from collections.abc import Iterable, Sequence

from nltk.stem import PorterStemmer

from serving.doc_tokenizer import DocToken, DocTokenizer

TAGS = ["O", "B-KP", "I-KP"]
O, B, I = 0, 1, 2
AT_K = (5, 10)

# A short English stop list (no download needed): function words that neither start nor end a key phrase.
STOP_WORDS = frozenset("""
a about above after again against all also although am among an and any are as at be because been before being
below between both but by can could did do does doing down during each either even every few for from further had
has have having he her here hers herself him himself his how however i if in into is it its itself just less
many may me might more most much must my myself neither no nor not of off often on once one only or other our
ours ourselves out over own per rather same several shall she should since so some such than that the their
theirs them themselves then there therefore these they this those though through thus to too under until up upon
us use used uses using very via was we well were what when where whether which while who whom whose why will with
within without would yet you your yours yourself yourselves paper papers present presents presented propose
proposed show shows shown new based given describe describes described
""".split())


@dataclasses.dataclass(frozen=True)
class KeyDocument:
    """One document: an id, its text, and its gold key phrases (as the annotators wrote them)."""

    doc_id: str
    text: str
    keyphrases: tuple[str, ...]


_porter = PorterStemmer()


@functools.lru_cache(maxsize=500_000)
def stem(token: str) -> str:
    """The Porter stem of one (lower-cased) token."""
    return _porter.stem(token.lower())


def stem_key(tokens: Iterable[str]) -> str:
    """A phrase's matching key: its tokens' Porter stems joined by spaces."""
    return " ".join(stem(t) for t in tokens)


def phrase_key(phrase: str) -> str:
    """The matching key of a phrase given as text (tokenized as documents are)."""
    return stem_key(t.text for t in DocTokenizer()(phrase))


def is_word(token: str) -> bool:
    """A token with at least one letter (not punctuation, not a bare number)."""
    return any(ch.isalpha() for ch in token)


def label_document(tokens: Sequence[str], phrases: Sequence[Sequence[str]]) -> tuple[list[int], list[bool]]:
    """IOB-labels every occurrence of every gold phrase in a document, matching on Porter stems.

    Where occurrences overlap, the longer phrase wins (phrases are placed longest first; a shorter one is placed
    only where all its tokens are still free). Two adjacent phrases each start with ``B-KP``.

    Args:
      tokens: the document's tokens.
      phrases: the gold phrases, each as its tokens.

    Returns:
      (one tag id per token: 0 ``O``, 1 ``B-KP``, 2 ``I-KP``; for each phrase, whether it occurs in the text).
    """
    stems = [stem(t) for t in tokens]
    starts: dict[str, list[int]] = collections.defaultdict(list)
    for i, s in enumerate(stems):
        starts[s].append(i)
    labels = [O] * len(tokens)
    present = [False] * len(phrases)
    order = sorted(range(len(phrases)), key=lambda j: -len(phrases[j]))
    for j in order:
        target = [stem(t) for t in phrases[j]]
        if not target:
            continue
        m = len(target)
        for i in starts.get(target[0], ()):
            if stems[i : i + m] != target:
                continue
            present[j] = True
            if all(label == O for label in labels[i : i + m]):
                labels[i : i + m] = [B] + [I] * (m - 1)
    return labels, present


def gold_keys(doc_tokens: Sequence[str], phrases: Sequence[Sequence[str]]) -> tuple[set[str], set[str]]:
    """(all gold keys, the gold keys that occur in the document), as stem keys."""
    doc = " " + stem_key(doc_tokens) + " "
    keys = {stem_key(p) for p in phrases if p}
    return keys, {k for k in keys if f" {k} " in doc}


def dedupe(keys: Iterable[str]) -> list[str]:
    """Keeps the first of equal keys, in order (a ranked list de-duplicated by stem)."""
    seen, out = set(), []
    for key in keys:
        if key and key not in seen:
            seen.add(key)
            out.append(key)
    return out


def prf(predicted: Sequence[str], gold: set[str], k: int | None) -> tuple[float, float, float]:
    """Precision, recall and F1 of a ranked, de-duplicated list against a gold set.

    At ``k``: the top ``k`` predictions, precision = hits / k (a list shorter than k is padded with wrong
    answers, as Chan et al. 2019 do, so that predicting little is not rewarded). ``k=None`` (F1@M): all
    predictions, precision = hits / number predicted. Recall = hits / number of gold phrases.
    """
    top = list(predicted if k is None else predicted[:k])
    hits = sum(key in gold for key in top)
    denominator = len(top) if k is None else k
    p = hits / denominator if denominator else 0.0
    r = hits / len(gold) if gold else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def score_rankings(predicted: Sequence[Sequence[str]], gold_all: Sequence[set[str]],
                   gold_present: Sequence[set[str]]) -> dict:
    """P/R/F1 at 5, 10 and M, macro-averaged over documents, against all gold phrases and against the present
    ones only.

    Args:
      predicted: per document, the ranked predicted stem keys (de-duplicated here).
      gold_all: per document, every gold stem key (absent ones included: the recall denominator).
      gold_present: per document, the gold keys that occur in its text. Documents with none are left out of
        the ``present_*`` averages (``present_documents`` says how many count).

    Returns:
      ``{"f1_at_5": ..., "p_at_5": ..., "r_at_5": ..., ..., "f1_at_m": ..., "present_f1_at_5": ..., ...,
      "documents": n, "present_documents": m, "predicted_per_document": mean}``.
    """
    out: dict[str, float] = {}
    ranked = [dedupe(p) for p in predicted]
    for prefix, golds in (("", gold_all), ("present_", gold_present)):
        rows = [(p, g) for p, g in zip(ranked, golds) if g]
        for k in (*AT_K, None):
            name = "m" if k is None else str(k)
            scores = [prf(p, g, k) for p, g in rows]
            for i, what in enumerate(("p", "r", "f1")):
                out[f"{prefix}{what}_at_{name}"] = round(sum(s[i] for s in scores) / len(scores), 4) if scores else 0.0
    out["documents"] = len(ranked)
    out["present_documents"] = sum(1 for g in gold_present if g)
    out["predicted_per_document"] = round(sum(len(p) for p in ranked) / max(len(ranked), 1), 2)
    return out


def candidate_spans(tokens: Sequence[str], breaks: Iterable[int] = (), max_n: int = 3) -> list[tuple[int, int]]:
    """The baseline's candidates: n-grams (n = 1..max_n) of word tokens (no punctuation or bare numbers) that
    neither start nor end with a stop word and do not cross a ``break`` (a token index that starts a new line).
    """
    breaks = set(breaks)
    spans = []
    for i in range(len(tokens)):
        for n in range(1, max_n + 1):
            j = i + n
            if j > len(tokens) or any(b in breaks for b in range(i + 1, j)):
                break
            if not is_word(tokens[j - 1]):
                break
            if tokens[i] in STOP_WORDS or tokens[j - 1] in STOP_WORDS or not is_word(tokens[i]):
                continue
            spans.append((i, j))
    return spans


def line_breaks(text: str, tokens: Sequence[DocToken]) -> list[int]:
    """Indices of the tokens that follow a line break in ``text`` (the title / abstract boundary)."""
    return [i for i in range(1, len(tokens)) if "\n" in text[tokens[i - 1].end : tokens[i].start]]


class TfidfBaseline:
    """Unsupervised TF-IDF n-gram ranking: score = (occurrences in the document) × log((N + 1) / (df + 1)), with
    N training documents and df the number of them holding the candidate; counted on stem keys, so ``neural
    networks`` and ``neural network`` are one candidate. Ties go to the earlier first occurrence, then to the
    longer candidate.

    Args:
      max_n: longest candidate, in tokens.
    """

    def __init__(self, max_n: int = 3):
        self.max_n = max_n
        self.df: collections.Counter = collections.Counter()
        self.n_docs = 0

    def fit(self, documents: Iterable[tuple[Sequence[str], Iterable[int]]]) -> "TfidfBaseline":
        """Counts document frequencies over (tokens, line breaks) pairs (the training split)."""
        for tokens, breaks in documents:
            self.n_docs += 1
            self.df.update({stem_key(tokens[i:j]) for i, j in candidate_spans(tokens, breaks, self.max_n)})
        return self

    def rank(self, tokens: Sequence[str], breaks: Iterable[int] = ()) -> list[tuple[str, float]]:
        """Ranks the candidates of one document: (stem key, score), best first."""
        counts: collections.Counter = collections.Counter()
        first: dict[str, int] = {}
        for i, j in candidate_spans(tokens, breaks, self.max_n):
            key = stem_key(tokens[i:j])
            counts[key] += 1
            first.setdefault(key, i)
        scores = {k: c * math.log((self.n_docs + 1) / (self.df[k] + 1)) for k, c in counts.items()}
        return sorted(scores.items(), key=lambda kv: (-kv[1], first[kv[0]], -kv[0].count(" ")))
