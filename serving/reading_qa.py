"""Reading comprehension (bAbI-style) over onnxruntime: a story and a question in, an answer out, with the
attention weight the model put on each statement at each hop."""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Sequence

import numpy as np

from serving.base import Predictor, Result, register
from serving.errors import InputError, ModelError
from serving.session import OnnxModel
from serving.vocab import Vocabulary

_WORD = re.compile(r"[a-z0-9]+(?:[',-][a-z0-9]+)*")
TOKENIZER = {"kind": "babi_words", "lowercase": True, "pattern": _WORD.pattern}


def tokenize(text: str) -> list[str]:
    """Lower-case words; punctuation (``.``, ``?``, ``!``) dropped. The same rule in training and serving."""
    return _WORD.findall(text.lower())


class MemoryOverflowWarning(UserWarning):
    """A story had more statements than the model's memory; only the most recent were read."""


@dataclasses.dataclass(frozen=True)
class ReadingQAResult(Result):
    """The answer to one question about one story.

    Attributes:
      question: the question as given.
      answer: the most probable answer word.
      confidence: its probability.
      supporting: the statements the model attended to most (the top one of each hop, in story order, without
        repeats), as (index in the given story, text).
      attention: per hop, the weight on each statement of the given story (statements dropped for lack of memory
        get 0). A MemN2N whose softmax spans empty slots too (metadata ``model.softmax_slots`` > 0, the default) gives
        a short story's statements less than 1 in all: the rest went to the empty slots (nothing read).
      unknown_words: words not in the vocabulary (read as ``<unk>``).
      dropped_statements: how many of the oldest statements did not fit in memory (0 when all did).
      truncated_sentences: indices of statements cut to the model's ``sentence_len`` words.
    """

    question: str
    answer: str
    confidence: float
    supporting: list[tuple[int, str]]
    attention: list[list[float]]
    unknown_words: list[str]
    dropped_statements: int
    truncated_sentences: list[int]

    def __str__(self) -> str:
        return f"{self.question}\n  → {self.answer} ({self.confidence:.3f})\n" + "\n".join(
            f"  supporting [{i}] {text}" for i, text in self.supporting)


@register("reading_qa")
class ReadingQAPredictor(Predictor):
    """Answers questions about stories with an exported reading-comprehension model (MemN2N or recurrent reader).
    Use :func:`serving.load` to build one.

    Input record: ``{"story": [statement, ...], "question": "...?"}``. A story longer than the model's memory keeps
    its most recent ``memory_size`` statements (a :class:`MemoryOverflowWarning`, and ``dropped_statements`` in the
    result); unknown words are read as ``<unk>`` and listed in ``unknown_words``.
    """

    task = "reading_qa"
    input_kind = "record"

    def __init__(self, model: OnnxModel, metadata: dict):
        self.model, self.metadata = model, metadata
        try:
            self.vocab = Vocabulary(metadata["vocab"], "vocabulary")
            self.answers = Vocabulary(metadata["labels"], "answers")
            self.memory_size = int(metadata["memory_size"])
            self.sentence_len = int(metadata["sentence_len"])
            self.story_input = metadata["inputs"]["story"]["name"]
            self.question_input = metadata["inputs"]["question"]["name"]
            self.output = metadata["outputs"]["answer_probs"]["name"]
            self.attention_output = metadata["outputs"]["attention"]["name"]
            tokenizer = metadata["tokenizer"]["kind"]
        except KeyError as err:
            raise ModelError(f"{model.path}: reading_qa metadata lacks {err}") from None
        if tokenizer != TOKENIZER["kind"]:
            raise ModelError(f"{model.path}: unknown tokenizer {tokenizer!r} (this predictor has {TOKENIZER['kind']})")
        for name in (self.story_input, self.question_input):
            if name not in model.inputs:
                raise ModelError(f"{model.path}: metadata names input {name!r}, not in the graph")
        for name in (self.output, self.attention_output):
            if name not in model.outputs:
                raise ModelError(f"{model.path}: metadata names output {name!r}, not in the graph")

    # ---------------------------------------------------------------------------------------------------------------

    def _prepare(self, record, where: str):
        if not isinstance(record, dict):
            raise InputError(f"{where} must be a dict with 'story' (a list of statements) and 'question', "
                             f"got {type(record).__name__}")
        story, question = record.get("story"), record.get("question")
        if isinstance(story, str):
            story = [line for line in story.splitlines() if line.strip()]
        if not isinstance(story, (list, tuple)) or not all(isinstance(s, str) for s in story):
            raise InputError(f"{where}: 'story' must be a list of statements (strings)")
        if not isinstance(question, str):
            raise InputError(f"{where}: 'question' must be a string, got {type(question).__name__}")
        statements = [tokenize(s) for s in story]
        if not any(statements):
            raise InputError(f"{where}: the story is empty (no statement has a word)")
        if "?" not in question:
            raise InputError(f"{where}: the question {question!r} has no '?': is it a statement? End the question "
                             f"with '?'")
        q_words = tokenize(question)
        if not q_words:
            raise InputError(f"{where}: the question has no words")
        kept = [i for i, s in enumerate(statements) if s]  # empty lines hold no memory
        dropped = max(0, len(kept) - self.memory_size)
        if dropped:
            warnings.warn(f"{where}: the story has {len(kept)} statements; the memory holds {self.memory_size}, so "
                          f"the oldest {dropped} were not read", MemoryOverflowWarning, stacklevel=4)
        kept = kept[dropped:]
        ids = np.zeros((len(kept), self.sentence_len), np.int32)
        for row, index in enumerate(reversed(kept)):  # slot 0: the most recent statement
            words = statements[index][: self.sentence_len]
            ids[row, : len(words)] = self.vocab.ids(words)
        q_ids = np.zeros(self.sentence_len, np.int32)
        q_ids[: min(len(q_words), self.sentence_len)] = self.vocab.ids(q_words[: self.sentence_len])
        words = [w for s in statements for w in s] + q_words
        unknown = list(dict.fromkeys(w for w in words if w not in self.vocab))
        truncated = [i for i in kept if len(statements[i]) > self.sentence_len]
        return story, question, kept, ids, q_ids, unknown, dropped, truncated

    def answer(self, story_lines: Sequence[str], question: str) -> ReadingQAResult:
        """Answers ``question`` about ``story_lines`` (statements, oldest first).

        Raises:
          InputError: the story is empty, the question has no '?' or no words, or the types are wrong.
        """
        return self.predict({"story": story_lines, "question": question})

    def predict(self, record: dict) -> ReadingQAResult:
        """Answers one record ``{"story": [...], "question": "...?"}``; see :meth:`answer`."""
        if isinstance(record, (list, tuple)):
            raise InputError("predict takes one record; use predict_batch for many")
        return self.predict_batch([record])[0]

    def predict_batch(self, records: Sequence[dict], batch_size: int = 64) -> list[ReadingQAResult]:
        """Answers many records, ``batch_size`` per onnxruntime call.

        Raises:
          InputError: as :meth:`answer`, naming the offending record.
        """
        if isinstance(records, dict):
            raise InputError("predict_batch takes a list of records; use predict for one")
        records = list(records)
        results = []
        for start in range(0, len(records), batch_size):
            chunk = records[start : start + batch_size]
            where = (lambda i: "record") if len(records) == 1 else (lambda i: f"records[{start + i}]")
            prepared = [self._prepare(r, where(i)) for i, r in enumerate(chunk)]
            slots = max(len(p[3]) for p in prepared)
            story = np.zeros((len(chunk), slots, self.sentence_len), np.int32)
            for row, p in enumerate(prepared):
                story[row, : len(p[3])] = p[3]
            out = self.model.run({self.story_input: story, self.question_input: np.stack([p[4] for p in prepared])})
            for row, p in enumerate(prepared):
                results.append(self._result(p, out[self.output][row], out[self.attention_output][row]))
        return results

    def _result(self, prepared, probs, attention) -> ReadingQAResult:
        story, question, kept, _, _, unknown, dropped, truncated = prepared
        per_hop = np.zeros((attention.shape[0], len(story)), np.float64)
        for slot, index in enumerate(reversed(kept)):
            per_hop[:, index] = attention[:, slot]
        top = sorted({int(per_hop[hop].argmax()) for hop in range(per_hop.shape[0])})
        best = int(probs.argmax())
        return ReadingQAResult(
            question=question, answer=self.answers.token(best), confidence=float(probs[best]),
            supporting=[(i, story[i]) for i in top],
            attention=[[round(float(w), 6) for w in hop] for hop in per_hop],
            unknown_words=unknown, dropped_statements=dropped, truncated_sentences=truncated)
