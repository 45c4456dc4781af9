"""Part-of-speech tagging over onnxruntime: text (or Penn Treebank tokens) in, one tag per token out.

The word → id rule lives here, in plain Python, and training uses this same code (``pipelines.pos_tagging``), so
served ids equal training ids by construction:

1. the word itself, if the vocabulary has it (case kept: ``US`` and ``us`` differ);
2. else its lower-cased form;
3. else its *signature* (:func:`signature`): a class of unknown words by shape and suffix, e.g.
   ``<unk:cap:-ing>`` or ``<unk:num>``, which the model learnt from the training words seen only once;
4. else ``<unk>``.

The metadata states the suffix list and the rule (``word_classes``), so a client in another language can build the
same ids.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import numpy as np

from serving.base import Predictor, Result, register
from serving.errors import InputError, ModelError
from serving.session import OnnxModel
from serving.vocab import PAD_ID, UNK_ID, Vocabulary

# Longest first: the first that matches (leaving a stem of 2+ characters) is taken.
SUFFIXES = ("ation", "ness", "ment", "able", "ible", "ship", "less", "ions", "ing", "ion", "ers", "est", "ity",
            "ive", "ous", "ful", "ize", "ise", "ism", "ist", "ian", "ary", "ant", "ent", "ate", "ed", "ly", "er",
            "al", "ic", "es", "en", "y", "s")
_NUMBER = re.compile(r"^[+-]?(\d+([.,:/-]\d+)*|\d*\.\d+)%?$")

# Penn Treebank tokenisation of raw text: brackets as in the trees, quotes as `` and '', clitics split off.
_BRACKETS = {"(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-", "}": "-RCB-"}
_CLITIC = re.compile(r"(?i)^(.+?)(n't|'s|'re|'ve|'ll|'d|'m)$")
_LEADING = "([{\"'`$#"
_TRAILING = ")]}\"',;:?!%"
TOKENIZER_SPEC = {
    "name": "ptb-simple",
    "rules": "split on white space (str.split); split off leading ([{\"'`$# and trailing )]}\"',;:?!% one "
             "character at a time, after splitting a final '.' off the last token unless it holds another '.'; split the "
             "clitics n't 's 're 've 'll 'd 'm; brackets become -LRB- -RRB- -LSB- -RSB- -LCB- -RCB-; a \" before "
             "a word becomes `` and after one ''",
}


def signature(word: str) -> str:
    """The unknown-word class of ``word``: shape (``num``, ``dig``, ``caps``, ``cap``, ``lc``, ``sym``),
    ``dash`` when it holds a hyphen, and its suffix from :data:`SUFFIXES`."""
    if _NUMBER.match(word):
        return "<unk:num>"
    parts = []
    if any(c.isdigit() for c in word):
        parts.append("dig")
    letters = [c for c in word if c.isalpha()]
    if not letters:
        parts.append("sym")
    elif word.isupper():
        parts.append("caps")
    elif word[0].isupper():
        parts.append("cap")
    else:
        parts.append("lc")
    if "-" in word:
        parts.append("dash")
    lower = word.lower()
    suffix = next((s for s in SUFFIXES if lower.endswith(s) and len(lower) >= len(s) + 2), None)
    if suffix and letters:
        parts.append(f"-{suffix}")
    return f"<unk:{':'.join(parts)}>"


def word_id(word: str, index: dict[str, int]) -> int:
    """The id of ``word`` by the rule in the module docstring (``index``: vocabulary entry → id)."""
    found = index.get(word)
    if found is None:
        found = index.get(word.lower())
    if found is None:
        found = index.get(signature(word), UNK_ID)
    return found


def tokenize(text: str) -> list[str]:
    """Penn Treebank tokens of raw ``text`` (the rules of :data:`TOKENIZER_SPEC`)."""
    tokens: list[str] = []
    pieces = text.split()
    for n, piece in enumerate(pieces):
        head, tail = [], []
        while len(piece) > 1 and piece[0] in _LEADING and not (piece[0] in "'`" and piece[1:2].isalpha()):
            head.append(piece[0])
            piece = piece[1:]
        if n == len(pieces) - 1 and len(piece) > 1 and piece.endswith(".") and "." not in piece[:-1]:
            piece, tail = piece[:-1], ["."]
        while len(piece) > 1 and piece[-1] in _TRAILING and not (piece[-1] == "'" and piece[-2:] in ("s'",)):
            tail.insert(0, piece[-1])
            piece = piece[:-1]
        clitic = _CLITIC.match(piece)
        middle = [clitic.group(1), clitic.group(2)] if clitic else [piece]
        tokens += [_quote(t, opening=True) for t in head] + middle + [_quote(t, opening=False) for t in tail]
    return [_BRACKETS.get(t, t) for t in tokens if t]


def _quote(token: str, opening: bool) -> str:
    if token == '"':
        return "``" if opening else "''"
    return token


@dataclasses.dataclass(frozen=True)
class PosTaggingResult(Result):
    """The tags of one sentence.

    Attributes:
      text: the input (a string, or the tokens joined by spaces).
      words: the tokens the model saw.
      tags: one Penn Treebank tag per token.
      confidences: each tag's probability.
      unknown_words: tokens outside the vocabulary (tagged through their signature or ``<unk>``).
    """

    text: str
    words: list[str]
    tags: list[str]
    confidences: list[float]
    unknown_words: list[str]

    def __str__(self) -> str:
        tagged = " ".join(f"{w}/{t}" for w, t in zip(self.words, self.tags))
        extra = f"\n  unknown words: {' '.join(self.unknown_words)}" if self.unknown_words else ""
        return f"{tagged}{extra}"


@register("pos_tagging")
class PosTaggingPredictor(Predictor):
    """Tags sentences with an exported part-of-speech model. ``predict`` takes raw text (tokenised by
    :func:`tokenize`) or a list of Penn Treebank tokens."""

    task = "pos_tagging"
    input_kind = "text"

    def __init__(self, model: OnnxModel, metadata: dict):
        self.model = model
        self.metadata = metadata
        try:
            self.vocab = Vocabulary(metadata["vocab"], "vocabulary")
            self.tags = Vocabulary(metadata["tags"], "tags")
            self.max_len = int(metadata["max_len"])
            self.input_name = metadata["inputs"]["token_ids"]["name"]
            self.output_name = metadata["outputs"]["tag_probs"]["name"]
            suffixes = tuple(metadata["word_classes"]["suffixes"])
        except KeyError as err:
            raise ModelError(f"{model.path}: part-of-speech metadata lacks {err}") from None
        if suffixes != SUFFIXES:
            raise ModelError(f"{model.path}: the model's signature suffixes differ from this serving version's")
        for name, kind in ((self.input_name, model.inputs), (self.output_name, model.outputs)):
            if name not in kind:
                raise ModelError(f"{model.path}: metadata names {name!r}, not in the graph")
        self.index = {entry: i for i, entry in enumerate(metadata["vocab"])}

    def _tokens(self, x, where: str) -> list[str]:
        if isinstance(x, str):
            words = tokenize(x)
        elif isinstance(x, (list, tuple)) and all(isinstance(w, str) and w and not w.isspace() for w in x):
            words = list(x)
        else:
            raise InputError(f"{where} must be a string or a list of non-empty token strings")
        if not words:
            raise InputError(f"{where} is empty")
        if len(words) > self.max_len:
            raise InputError(f"{where} has {len(words)} tokens; this model takes at most {self.max_len}")
        return words

    def token_ids(self, sentences: Sequence[Sequence[str]]) -> np.ndarray:
        """Padded [batch, time] int32 ids of tokenised sentences (0 = padding)."""
        ids = np.full((len(sentences), max(len(s) for s in sentences)), PAD_ID, dtype=np.int32)
        for row, words in enumerate(sentences):
            ids[row, : len(words)] = [word_id(w, self.index) for w in words]
        return ids

    def predict(self, x) -> PosTaggingResult:
        """Tags one sentence: a string, or a list of tokens.

        Raises:
          InputError: not a string or token list, empty, or longer than ``max_len`` tokens.
        """
        return self.predict_batch([x])[0]

    def predict_batch(self, inputs: Sequence, batch_size: int = 64) -> list[PosTaggingResult]:
        """Tags many sentences, ``batch_size`` per onnxruntime call.

        Raises:
          InputError: as :meth:`predict`, naming the offending index.
        """
        if isinstance(inputs, str):
            raise InputError("predict_batch takes a list of inputs; use predict for one string")
        inputs = list(inputs)
        results = []
        for start in range(0, len(inputs), batch_size):
            chunk = inputs[start : start + batch_size]
            where = (lambda i: "text") if len(inputs) == 1 else (lambda i: f"inputs[{start + i}]")
            sentences = [self._tokens(x, where(i)) for i, x in enumerate(chunk)]
            probs = self.model.run({self.input_name: self.token_ids(sentences)})[self.output_name]
            for row, (x, words) in enumerate(zip(chunk, sentences)):
                best = probs[row, : len(words)].argmax(-1)
                results.append(PosTaggingResult(
                    text=x if isinstance(x, str) else " ".join(x), words=words,
                    tags=[self.tags.token(int(i)) for i in best],
                    confidences=[round(float(probs[row, t, i]), 4) for t, i in enumerate(best)],
                    unknown_words=[w for w in words if w not in self.index and w.lower() not in self.index]))
        return results
