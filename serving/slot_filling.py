"""Slot filling + intent detection over onnxruntime: text in, intent and (slot, text span) pairs out."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from serving.base import Predictor, Result, deprecated_alias, register
from serving.errors import InputError, ModelError
from serving.session import OnnxModel
from serving.tags import IOBDecoder, iob_spans
from serving.tokenizer import Tokenizer
from serving.vocab import PAD_ID, Vocabulary


@dataclasses.dataclass(frozen=True)
class SlotFillingResult(Result):
    """What the model says about one utterance.

    Attributes:
      text: the input text.
      words: the words the tokenizer produced (normalized, as the model saw them).
      tags: one IOB slot tag per word.
      slots: (slot name, text span) pairs, in order.
      intent: the most probable intent.
      intent_confidence: its probability.
      unknown_words: words not in the vocabulary (the model saw them as ``<unk>``).
    """

    text: str
    words: list[str]
    tags: list[str]
    slots: list[tuple[str, str]]
    intent: str
    intent_confidence: float
    unknown_words: list[str]

    def __str__(self) -> str:
        lines = [self.text, f"  intent: {self.intent} ({self.intent_confidence:.3f})"]
        lines += [f"  {name}: {text}" for name, text in self.slots] or ["  (no slots)"]
        if self.unknown_words:
            lines.append(f"  unknown words: {' '.join(self.unknown_words)}")
        return "\n".join(lines)


@register("slot_filling")
class SlotFillingPredictor(Predictor):
    """Predicts the intent and slots of utterances with an exported slot-filling model.

    Use :func:`serving.load` to build one from a run dir or a ``.onnx`` file.
    """

    task = "slot_filling"
    input_kind = "text"

    def __init__(self, model: OnnxModel, metadata: dict):
        self.model = model
        self.metadata = metadata
        try:
            self.vocab = Vocabulary(metadata["vocab"], "vocabulary")
            self.slot_tags = Vocabulary(metadata["slot_tags"], "slot tags")
            self.intents = Vocabulary(metadata["intents"], "intents")
            self.tokenizer = Tokenizer(metadata["tokenizer"])
            self.max_len = int(metadata["max_len"])
            self.input_name = metadata["inputs"]["token_ids"]["name"]
            self.slot_output = metadata["outputs"]["slot_probs"]["name"]
            self.intent_output = metadata["outputs"]["intent_probs"]["name"]
            self.chars = None
            if "char_ids" in metadata["inputs"]:  # character features: the model's second input
                self.chars = Vocabulary(metadata["chars"], "characters")
                self.char_input = metadata["inputs"]["char_ids"]["name"]
                self.word_chars = int(metadata["word_chars"])
        except KeyError as err:
            raise ModelError(f"{model.path}: slot-filling metadata lacks {err}") from None
        # runs before the IOB rules were decoded by Viterbi: each word's best tag, as they were evaluated
        viterbi = metadata.get("slot_decoding") == "iob_viterbi"
        self.decode_tags = IOBDecoder(self.slot_tags.entries) if viterbi else (lambda probs: probs.argmax(-1))
        self._check_graph()

    def _check_graph(self) -> None:
        if self.input_name not in self.model.inputs:
            raise ModelError(f"{self.model.path}: metadata names input {self.input_name!r}, not in the graph")
        for name, labels in ((self.slot_output, self.slot_tags), (self.intent_output, self.intents)):
            if name not in self.model.outputs:
                raise ModelError(f"{self.model.path}: metadata names output {name!r}, not in the graph")
            width = self.model.output_shape(name)[-1]
            if isinstance(width, int) and width != len(labels):
                raise ModelError(
                    f"{self.model.path}: output {name!r} has {width} classes but the metadata lists {len(labels)}"
                )

    def _words(self, text: str, where: str) -> list[str]:
        if not isinstance(text, str):
            raise InputError(f"{where} must be a string, got {type(text).__name__}")
        words = self.tokenizer(text)
        if not words:
            raise InputError(f"{where} is empty")
        if len(words) > self.max_len:
            raise InputError(f"{where} has {len(words)} words; this model takes at most {self.max_len}")
        return words

    def token_ids(self, texts: Sequence[str]) -> tuple[np.ndarray, list[list[str]]]:
        """Tokenizes and pads ``texts`` into a [batch, time] int32 id matrix (0 = padding); also the words.

        Raises:
          InputError: as :meth:`predict`.
        """
        single = len(texts) == 1
        words = [self._words(text, "text" if single else f"texts[{i}]") for i, text in enumerate(texts)]
        ids = np.full((len(words), max(len(w) for w in words)), PAD_ID, dtype=np.int32)
        for row, sentence in enumerate(words):
            ids[row, : len(sentence)] = self.vocab.ids(sentence)
        return ids, words

    def char_ids(self, words: list[list[str]], time: int) -> np.ndarray:
        """[batch, time, word_chars] int32: each word's first ``word_chars`` characters' ids, 0-padded."""
        ids = np.zeros((len(words), time, self.word_chars), dtype=np.int32)
        for row, sentence in enumerate(words):
            for step, word in enumerate(sentence):
                chars = list(word[: self.word_chars])
                ids[row, step, : len(chars)] = self.chars.ids(chars)
        return ids

    def feeds(self, texts: Sequence[str]) -> tuple[dict[str, np.ndarray], list[list[str]]]:
        """The model's inputs for ``texts`` (word ids, and character ids where the model reads them); the words."""
        ids, words = self.token_ids(texts)
        feeds = {self.input_name: ids}
        if self.chars is not None:
            feeds[self.char_input] = self.char_ids(words, ids.shape[1])
        return feeds, words

    encode = deprecated_alias("token_ids", "encode")  # old name (it is no encoder step): use token_ids

    def predict(self, text: str) -> SlotFillingResult:
        """Predicts one utterance.

        Raises:
          InputError: ``text`` is not a string, is empty or white space only, or has more than ``max_len`` words.
        """
        if not isinstance(text, str):
            raise InputError(f"text must be a string, got {type(text).__name__}; use predict_batch for many")
        return self.predict_batch([text])[0]

    def predict_batch(self, texts: Sequence[str], batch_size: int = 64) -> list[SlotFillingResult]:
        """Predicts many utterances, ``batch_size`` per onnxruntime call.

        Raises:
          InputError: as :meth:`predict`, naming the offending index.
        """
        if isinstance(texts, str):
            raise InputError("predict_batch takes a list of strings; use predict for one string")
        texts = list(texts)
        results = []
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            feeds, words = self.feeds(chunk)
            out = self.model.run(feeds)
            slot_probs, intent_probs = out[self.slot_output], out[self.intent_output]
            for row, (text, sentence) in enumerate(zip(chunk, words)):
                tags = [self.slot_tags.token(i) for i in self.decode_tags(slot_probs[row, : len(sentence)])]
                intent_id = int(intent_probs[row].argmax())
                results.append(
                    SlotFillingResult(
                        text=text,
                        words=sentence,
                        tags=tags,
                        slots=[(slot.name, slot.text) for slot in iob_spans(sentence, tags)],
                        intent=self.intents.token(intent_id),
                        intent_confidence=float(intent_probs[row, intent_id]),
                        unknown_words=[w for w in sentence if w not in self.vocab],
                    )
                )
        return results
