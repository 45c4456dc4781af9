"""Key-term extraction over onnxruntime: a document in, ranked key terms with scores and character offsets out.

The model tags every token ``O``, ``B-KP`` or ``I-KP`` (in / out of a key phrase). Decoding, shared with the
training side's evaluation (``pipelines.key_terms`` imports these functions):

1. Long documents: a document of more than ``max_len`` tokens is read in sliding windows of ``max_len`` tokens,
   ``stride`` apart (the last one flush with the end); each token takes its tag probabilities from the window
   in which it is most central. ``result.windows`` says how many windows were read.
2. Spans: a token is inside a key phrase when its in-phrase probability 1 − P(O) exceeds ``threshold``; it
   starts a new phrase when P(B-KP) ≥ P(I-KP) or the token before is outside. Tokens without a letter or digit
   are trimmed from the ends of a span. A span's score is the mean, over its tokens, of the probability of the
   in-phrase tag read there (the larger of P(B-KP) and P(I-KP)).
3. Merging: occurrences of the same term (same case-folded tokens, the last word's English plural folded:
   ``filter banks`` = ``Filter bank``) become one term, whose score is the best occurrence's (``merge="max"``)
   or the noisy-or of all (``merge="noisy_or"``: 1 − Π(1 − s), frequency-aware). The term's text is its best
   occurrence's text as written in the document; ``offsets`` lists every occurrence's ``[start, end)``.
4. Ranking: by score, then by first occurrence.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from serving.base import Predictor, Result, register
from serving.doc_tokenizer import DocToken, DocTokenizer
from serving.errors import InputError, ModelError
from serving.session import OnnxModel
from serving.vocab import PAD_ID, Vocabulary

TAGS = ("O", "B-KP", "I-KP")
MERGES = ("max", "noisy_or")
DECODING = {"threshold": 0.5, "merge": "max"}


class KeyTerm(NamedTuple):
    """One ranked key term: its text as in the document, its score in [0, 1], and the ``[start, end)`` character
    offsets of each of its occurrences."""

    term: str
    score: float
    offsets: list[tuple[int, int]]


@dataclasses.dataclass(frozen=True)
class KeyTermsResult(Result):
    """What the model says about one document.

    Attributes:
      text: the input text.
      terms: the key terms, best first (see :class:`KeyTerm`).
      tokens: the tokens the model read (case-folded).
      tags: one IOB tag per token, as decoded.
      windows: how many ``max_len``-token windows were read (1 unless the document is longer than ``max_len``).
      unknown_tokens: tokens not in the vocabulary (read as ``<unk>``).
    """

    text: str
    terms: list[KeyTerm]
    tokens: list[str]
    tags: list[str]
    windows: int
    unknown_tokens: list[str]

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["terms"] = [{"term": t.term, "score": t.score, "offsets": [list(o) for o in t.offsets]} for t in self.terms]
        return out

    def __str__(self) -> str:
        lines = [self.text if len(self.text) <= 100 else self.text[:100] + "...",
                 f"  {len(self.tokens)} tokens, {self.windows} window{'s' if self.windows > 1 else ''}"]
        lines += [f"  {i}. {t.term} ({t.score:.3f}) at " + ", ".join(f"{a}-{b}" for a, b in t.offsets)
                  for i, t in enumerate(self.terms, 1)] or ["  (no key terms)"]
        return "\n".join(lines)


def window_starts(n: int, max_len: int, stride: int) -> list[int]:
    """Start indices of the windows covering ``n`` tokens: 0, stride, 2·stride, ..., and ``n - max_len``."""
    if n <= max_len:
        return [0]
    return list(range(0, n - max_len, stride)) + [n - max_len]


def stitch(window_probs: Sequence[np.ndarray], starts: Sequence[int], n: int) -> np.ndarray:
    """Per-token probabilities [n, tags] from per-window ones: each token from the window where it is most
    central (farthest from the window's nearer edge; ties go to the earlier window)."""
    out = np.zeros((n, window_probs[0].shape[-1]), dtype=np.float32)
    best = np.full(n, -1)
    for probs, start in zip(window_probs, starts):
        index = np.arange(start, start + len(probs))
        centrality = np.minimum(index - start, start + len(probs) - 1 - index)
        take = centrality > best[index]
        out[index[take]] = probs[take]
        best[index[take]] = centrality[take]
    return out


def _tag_ids(tags: Sequence[str]) -> tuple[int, int, int]:
    try:
        return tags.index("O"), tags.index("B-KP"), tags.index("I-KP")
    except ValueError:
        raise ModelError(f"key-term tags must be {list(TAGS)} in some order, got {list(tags)}") from None


def _has_word(token: str) -> bool:
    return any(ch.isalnum() for ch in token)


def decode_spans(probs: np.ndarray, tags: Sequence[str], tokens: Sequence[str], threshold: float = 0.5
                 ) -> tuple[list[tuple[int, int, float]], list[str]]:
    """Tagged spans from per-token probabilities (rules in the module docstring).

    Args:
      probs: [n, len(tags)] tag probabilities of one document.
      tags: the tag names, in the model's order.
      tokens: the n tokens (to trim spans to letters and digits).
      threshold: least in-phrase probability 1 − P(O) of a tagged token.

    Returns:
      ([(first token, end token, score)], one decoded tag per token).
    """
    o, b, i = _tag_ids(list(tags))
    inside = 1.0 - probs[:, o] > threshold
    read = np.maximum(probs[:, b], probs[:, i])
    decoded, spans, start = [], [], None
    for t in range(len(probs) + 1):
        begins = t < len(probs) and inside[t] and (start is None or probs[t, b] >= probs[t, i])
        if start is not None and (t == len(probs) or not inside[t] or begins):
            first, end = start, t
            while first < end and not _has_word(tokens[first]):
                first += 1
            while end > first and not _has_word(tokens[end - 1]):
                end -= 1
            if end > first:
                spans.append((first, end, float(read[first:end].mean())))
            start = None
        if t == len(probs):
            break
        if begins:
            start = t
        decoded.append("O" if not inside[t] else "B-KP" if begins else "I-KP")
    return spans, decoded


def fold_plural(word: str) -> str:
    """A tiny English plural folding for de-duplication: ``-ies`` → ``-y``, ``-sses/-shes/-ches/-xes`` lose
    ``-es``, other ``-s`` (not ``-ss``, ``-us``, ``-is``) is dropped, in words of four letters or more."""
    if len(word) < 4 or not word.endswith("s"):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes")):
        return word[:-2]
    if word.endswith(("ss", "us", "is")):
        return word
    return word[:-1]


def term_key(tokens: Sequence[str]) -> str:
    """The de-duplication key of a term: its case-folded tokens, the last one's plural folded."""
    tokens = list(tokens)
    return " ".join(tokens[:-1] + [fold_plural(tokens[-1])])


def rank_terms(text: str, tokens: Sequence[DocToken], spans: Sequence[tuple[int, int, float]],
               merge: str = "max") -> list[KeyTerm]:
    """Merges the spans of one document into ranked, de-duplicated key terms (see the module docstring)."""
    if merge not in MERGES:
        raise ModelError(f"unknown merge rule {merge!r}; known: {', '.join(MERGES)}")
    groups: dict[str, list[tuple[int, int, float]]] = {}
    for first, end, score in spans:
        key = term_key([t.text for t in tokens[first:end]])
        groups.setdefault(key, []).append((tokens[first].start, tokens[end - 1].end, score))
    terms = []
    for occurrences in groups.values():
        scores = np.array([s for _, _, s in occurrences])
        score = float(scores.max()) if merge == "max" else float(1.0 - np.prod(1.0 - scores))
        best = max(occurrences, key=lambda o: o[2])  # the first of the best, max keeps the first
        offsets = sorted((s, e) for s, e, _ in occurrences)
        terms.append(KeyTerm(text[best[0] : best[1]], round(score, 6), offsets))
    terms.sort(key=lambda term: (-term.score, term.offsets[0][0]))
    return terms


def key_terms(text: str, tokens: Sequence[DocToken], probs: np.ndarray, tags: Sequence[str],
              threshold: float = 0.5, merge: str = "max") -> tuple[list[KeyTerm], list[str]]:
    """Ranked key terms and the decoded tags of one document from its per-token tag probabilities."""
    spans, decoded = decode_spans(probs, tags, [t.text for t in tokens], threshold)
    return rank_terms(text, tokens, spans, merge), decoded


def as_text(text, where: str) -> str:
    """``text`` as a string: a ``str``, or ``bytes`` that decode as UTF-8.

    Raises:
      InputError: not a string or bytes, or bytes that are not UTF-8 (the message names the byte offset).
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            return bytes(text).decode("utf-8")
        except UnicodeDecodeError as err:
            raise InputError(f"{where} is not UTF-8 text (byte 0x{text[err.start]:02x} at offset {err.start}); "
                             f"decode it first or send UTF-8") from None
    if not isinstance(text, str):
        raise InputError(f"{where} must be a string, got {type(text).__name__}")
    return text


@register("key_terms")
class KeyTermsPredictor(Predictor):
    """Extracts ranked key terms from documents with an exported key-term tagger. Use :func:`serving.load`.

    Documents longer than the model's ``max_len`` tokens are read in overlapping sliding windows (no truncation);
    ``result.windows`` says how many.
    """

    task = "key_terms"
    input_kind = "text"

    def __init__(self, model: OnnxModel, metadata: dict):
        self.model = model
        self.metadata = metadata
        try:
            self.vocab = Vocabulary(metadata["vocab"], "vocabulary")
            self.tags = list(metadata["tags"])
            self.tokenizer = DocTokenizer(metadata["tokenizer"])
            self.max_len = int(metadata["max_len"])
            self.stride = int(metadata["window"]["stride"])
            self.threshold = float(metadata["decoding"]["threshold"])
            self.merge = metadata["decoding"]["merge"]
            self.input_name = metadata["inputs"]["token_ids"]["name"]
            self.output = metadata["outputs"]["tag_probs"]["name"]
        except KeyError as err:
            raise ModelError(f"{model.path}: key-term metadata lacks {err}") from None
        _tag_ids(self.tags)
        if self.merge not in MERGES or not 0 < self.stride <= self.max_len:
            raise ModelError(f"{model.path}: bad decoding settings (merge {self.merge!r}, stride {self.stride}, "
                             f"max_len {self.max_len})")
        if self.input_name not in model.inputs or self.output not in model.outputs:
            raise ModelError(f"{model.path}: metadata names input {self.input_name!r} and output {self.output!r}; "
                             f"the graph has {sorted(model.inputs)} and {sorted(model.outputs)}")
        width = model.output_shape(self.output)[-1]
        if isinstance(width, int) and width != len(self.tags):
            raise ModelError(f"{model.path}: output {self.output!r} has {width} tags but the metadata lists "
                             f"{len(self.tags)}")

    def _prepare(self, text, where: str) -> tuple[str, list[DocToken]]:
        text = as_text(text, where)
        tokens = self.tokenizer(text)
        if not tokens:
            raise InputError(f"{where} is empty" + (" (white space only)" if text else ""))
        return text, tokens

    def probabilities(self, token_lists: Sequence[Sequence[str]], batch_size: int = 32) -> list[np.ndarray]:
        """Per-token tag probabilities of tokenized documents, each [n, tags], read in windows as needed."""
        windows = []  # (document, start, ids)
        for doc, tokens in enumerate(token_lists):
            ids = np.asarray(self.vocab.ids(tokens), dtype=np.int32)
            for start in window_starts(len(ids), self.max_len, self.stride):
                windows.append((doc, start, ids[start : start + self.max_len]))
        order = sorted(range(len(windows)), key=lambda w: len(windows[w][2]))
        probs: list = [None] * len(windows)
        for at in range(0, len(order), batch_size):
            chunk = order[at : at + batch_size]
            batch = np.full((len(chunk), max(len(windows[w][2]) for w in chunk)), PAD_ID, dtype=np.int32)
            for row, w in enumerate(chunk):
                batch[row, : len(windows[w][2])] = windows[w][2]
            out = self.model.run({self.input_name: batch}, [self.output])[self.output]
            for row, w in enumerate(chunk):
                probs[w] = out[row, : len(windows[w][2])]
        per_doc: list[list] = [[] for _ in token_lists]
        for (doc, start, _), p in zip(windows, probs):
            per_doc[doc].append((start, p))
        return [stitch([p for _, p in parts], [s for s, _ in parts], len(tokens))
                for parts, tokens in zip(per_doc, token_lists)]

    def predict(self, text) -> KeyTermsResult:
        """Extracts the key terms of one document (``str``, or UTF-8 ``bytes``).

        Raises:
          InputError: ``text`` is not a string, is empty or white space only, or is bytes that are not UTF-8.
        """
        if isinstance(text, (list, tuple)):
            raise InputError("predict takes one document; use predict_batch for many")
        return self.predict_batch([text])[0]

    def predict_batch(self, texts: Sequence, batch_size: int = 32) -> list[KeyTermsResult]:
        """Extracts the key terms of many documents, ``batch_size`` windows per onnxruntime call.

        Raises:
          InputError: as :meth:`predict`, naming the offending index.
        """
        if isinstance(texts, (str, bytes, bytearray)):
            raise InputError("predict_batch takes a list of documents; use predict for one")
        texts = list(texts)
        where = (lambda i: "text") if len(texts) == 1 else (lambda i: f"texts[{i}]")
        prepared = [self._prepare(text, where(i)) for i, text in enumerate(texts)]
        token_lists = [[t.text for t in tokens] for _, tokens in prepared]
        results = []
        for (text, tokens), words, probs in zip(prepared, token_lists, self.probabilities(token_lists, batch_size)):
            terms, tags = key_terms(text, tokens, probs, self.tags, self.threshold, self.merge)
            results.append(KeyTermsResult(
                text=text, terms=terms, tokens=words, tags=tags,
                windows=len(window_starts(len(words), self.max_len, self.stride)),
                unknown_tokens=[w for w in words if w not in self.vocab],
            ))
        return results
