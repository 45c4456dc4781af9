"""Sentiment (text classification) over onnxruntime: text in, label and probability out."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import numpy as np

from serving.base import Predictor, Result, register
from serving.errors import InputError, ModelError
from serving.session import OnnxModel
from serving.tokenizer import make_tokenizer
from serving.vocab import PAD_ID, Vocabulary


class TruncatedInputWarning(UserWarning):
    """An input longer than the model's ``max_len`` was cut to its first ``max_len`` tokens."""


@dataclasses.dataclass(frozen=True)
class SentimentResult(Result):
    """What the model says about one text.

    Attributes:
      text: the input text.
      label: the most probable label.
      confidence: its probability.
      probabilities: every label's probability.
      tokens: the tokens the model saw (words or characters; ``▁`` stands for a space).
      unknown_tokens: tokens not in the vocabulary (seen as ``<unk>``).
      truncated: the text was longer than ``max_len`` tokens and only its first ``max_len`` were read.
      attention: (token, weight) pairs, for a model with an attention read-out; else empty.
    """

    text: str
    label: str
    confidence: float
    probabilities: dict[str, float]
    tokens: list[str]
    unknown_tokens: list[str]
    truncated: bool
    attention: list[tuple[str, float]]

    def __str__(self) -> str:
        lines = [self.text, f"  {self.label} ({self.confidence:.3f})"]
        if self.truncated:
            lines.append(f"  (truncated to the first {len(self.tokens)} tokens)")
        if self.attention:
            top = sorted(self.attention, key=lambda tw: -tw[1])[:5]
            lines.append("  attention: " + ", ".join(f"{t} {w:.2f}" for t, w in top))
        return "\n".join(lines)


@register("sentiment")
class SentimentPredictor(Predictor):
    """Classifies texts with an exported sentiment model. Use :func:`serving.load` to build one.

    Texts longer than the model's ``max_len`` tokens are truncated to their first ``max_len`` tokens, with a
    :class:`TruncatedInputWarning` and ``truncated=True`` in the result.
    """

    task = "sentiment"
    input_kind = "text"

    def __init__(self, model: OnnxModel, metadata: dict):
        self.model = model
        self.metadata = metadata
        try:
            self.vocab = Vocabulary(metadata["vocab"], "vocabulary")
            self.labels = Vocabulary(metadata["labels"], "labels")
            self.tokenizer = make_tokenizer(metadata["tokenizer"])
            self.max_len = int(metadata["max_len"])
            self.input_name = metadata["inputs"]["token_ids"]["name"]
            self.output = metadata["outputs"]["class_probs"]["name"]
            self.attention_output = metadata["outputs"].get("attention_weights", {}).get("name")
        except KeyError as err:
            raise ModelError(f"{model.path}: sentiment metadata lacks {err}") from None
        self._check_graph()

    def _check_graph(self) -> None:
        if self.input_name not in self.model.inputs:
            raise ModelError(f"{self.model.path}: metadata names input {self.input_name!r}, not in the graph")
        for name in filter(None, (self.output, self.attention_output)):
            if name not in self.model.outputs:
                raise ModelError(f"{self.model.path}: metadata names output {name!r}, not in the graph")
        width = self.model.output_shape(self.output)[-1]
        if isinstance(width, int) and width != len(self.labels):
            raise ModelError(f"{self.model.path}: output {self.output!r} has {width} classes but the metadata "
                             f"lists {len(self.labels)} labels")

    def _tokens(self, text, where: str) -> tuple[list[str], bool]:
        if isinstance(text, (bytes, bytearray)):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as err:
                raise InputError(f"{where} is not UTF-8 text (byte 0x{text[err.start]:02x} at offset {err.start}); "
                                 f"decode it first or send UTF-8") from None
        if not isinstance(text, str):
            raise InputError(f"{where} must be a string, got {type(text).__name__}")
        tokens = self.tokenizer(text)
        if not tokens:
            raise InputError(f"{where} is empty")
        if len(tokens) > self.max_len:
            warnings.warn(f"{where} has {len(tokens)} tokens; this model reads at most {self.max_len}, so the rest "
                          f"was cut", TruncatedInputWarning, stacklevel=3)
            return tokens[: self.max_len], True
        return tokens, False

    def predict(self, text: str) -> SentimentResult:
        """Classifies one text (``str``, or UTF-8 ``bytes``).

        Raises:
          InputError: ``text`` is not a string, is empty or white space only, or is bytes that are not UTF-8.
        """
        if isinstance(text, (list, tuple)):
            raise InputError("predict takes one string; use predict_batch for many")
        return self.predict_batch([text])[0]

    def predict_batch(self, texts: Sequence[str], batch_size: int = 64) -> list[SentimentResult]:
        """Classifies many texts, ``batch_size`` per onnxruntime call.

        Raises:
          InputError: as :meth:`predict`, naming the offending index.
        """
        if isinstance(texts, (str, bytes)):
            raise InputError("predict_batch takes a list of strings; use predict for one string")
        texts = list(texts)
        if not texts:
            return []
        results = []
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            where = (lambda i: "text") if len(texts) == 1 else (lambda i: f"texts[{start + i}]")
            tokenized = [self._tokens(text, where(i)) for i, text in enumerate(chunk)]
            ids = np.full((len(chunk), max(len(t) for t, _ in tokenized)), PAD_ID, dtype=np.int32)
            for row, (tokens, _) in enumerate(tokenized):
                ids[row, : len(tokens)] = self.vocab.ids(tokens)
            out = self.model.run({self.input_name: ids})
            probs = out[self.output]
            weights = out.get(self.attention_output) if self.attention_output else None
            for row, (text, (tokens, truncated)) in enumerate(zip(chunk, tokenized)):
                best = int(probs[row].argmax())
                results.append(SentimentResult(
                    text=text if isinstance(text, str) else bytes(text).decode("utf-8"),
                    label=self.labels.token(best),
                    confidence=float(probs[row, best]),
                    probabilities={label: float(p) for label, p in zip(self.labels.entries, probs[row])},
                    tokens=tokens,
                    unknown_tokens=[t for t in tokens if t not in self.vocab],
                    truncated=truncated,
                    attention=[] if weights is None else
                    [(t, round(float(w), 6)) for t, w in zip(tokens, weights[row, : len(tokens)])],
                ))
        return results
