"""Text-classification data: the vocabulary of tokens (words or characters), and the tf.data preprocessing.

Tokens come from tensorflow-text (``pipelines/text.py``); ``serving`` replays the same tokenizer in pure Python.
Vocabulary and label files use the shared format of ``serving/vocab.py`` and live in the run dir.
"""

from __future__ import annotations

import collections
from pathlib import Path

import tensorflow as tf

from pipelines import text
from pipelines.batching import bucketed_batches, ordered_batches
from pipelines.polarity import TextExample
from pipelines.slot_data import word_dropout
from serving.tokenizer import CHARS_SPEC, SPEC
from serving.vocab import PAD, UNK, UNK_ID, write_vocab

VOCAB_FILE, LABELS_FILE = "vocab.txt", "labels.txt"
UNITS = {"word": (text.tokenize, SPEC), "char": (text.chars, CHARS_SPEC)}


def tokenizer_spec(units: str) -> dict:
    """The serving tokenizer spec for ``units`` (``word`` or ``char``)."""
    return dict(UNITS[units][1])


def tokenize(texts: list[str], units: str, batch: int = 4096) -> list[list[str]]:
    """Tokens of each text, by the tensorflow-text tokenizer of ``units``."""
    split = UNITS[units][0]
    tokens = []
    for start in range(0, len(texts), batch):
        rows = split(tf.constant(texts[start : start + batch])).to_list()
        tokens += [[t.decode("utf-8") for t in row] for row in rows]
    return tokens


def build_vocabularies(train: list[TextExample], units: str, min_count: int = 1) -> tuple[list[str], list[str]]:
    """Tokens of the training split (``<pad>``, ``<unk>``, then by frequency, those seen ``min_count`` times or
    more) and the labels (sorted)."""
    counts = collections.Counter(t for row in tokenize([ex.text for ex in train], units) for t in row)
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    vocab = [PAD, UNK] + [t for t, n in ordered if n >= min_count and t not in (PAD, UNK)]
    return vocab, sorted({ex.label for ex in train})


def write_vocabularies(run_dir: Path, vocab: list[str], labels: list[str]) -> None:
    write_vocab(run_dir / VOCAB_FILE, vocab, "vocabulary")
    write_vocab(run_dir / LABELS_FILE, labels, "labels")


class TextPreprocessor:
    """Maps (text, label) strings to (token ids [time], label id) inside tf.data.

    Texts longer than ``max_len`` tokens keep their first ``max_len`` (serving does the same, with a warning).
    Unknown tokens map to ``<unk>``; an unknown label maps to -1.
    """

    def __init__(self, run_dir: Path, units: str, max_len: int):
        self.split = UNITS[units][0]
        self.max_len = max_len
        self.tokens = text.lookup_table(run_dir / VOCAB_FILE, default=UNK_ID)
        self.labels = text.lookup_table(run_dir / LABELS_FILE, default=-1)

    def ids(self, texts: tf.Tensor) -> tf.Tensor:
        tokens = self.split(tf.expand_dims(texts, 0))[0][: self.max_len]
        return tf.cast(self.tokens.lookup(tokens), tf.int32)

    def __call__(self, texts, labels):
        return self.ids(texts), tf.cast(self.labels.lookup(labels), tf.int32)


def training_dataset(
    examples: list[TextExample], preprocessor: TextPreprocessor, *, batch_size: int, seed: int,
    token_dropout: float = 0.0, drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Shuffled, length-bucketed, padded batches of (ids, label) for ``fit`` (``drop_remainder``: only full
    batches, for distributed training)."""
    dataset = tf.data.Dataset.from_tensor_slices(([ex.text for ex in examples], [ex.label for ex in examples]))
    dataset = dataset.map(preprocessor, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return bucketed_batches(
        dataset, batch_size, preprocessor.max_len, seed=seed, padding_values=(0, -1),
        augment=word_dropout(token_dropout, seed) if token_dropout else None, drop_remainder=drop_remainder,
    )


def inference_dataset(texts: list[str], preprocessor: TextPreprocessor, batch_size: int = 128) -> tf.data.Dataset:
    """Padded id batches in input order, for prediction."""
    dataset = tf.data.Dataset.from_tensor_slices(list(texts))
    dataset = dataset.map(preprocessor.ids, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ordered_batches(dataset, batch_size)


def language_model_dataset(
    examples: list[TextExample], preprocessor: TextPreprocessor, *, batch_size: int, seed: int, out_vocab: int,
    bidirectional: bool, drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Batches of (ids, {"next": ids shifted left[, "previous": ids shifted right]}) for language-model
    pre-training on the texts alone. Targets beyond the first ``out_vocab`` ids become ``<unk>``; -1 pads."""

    def targets(ids, label):
        clipped = tf.where(ids >= out_vocab, tf.ones_like(ids) * UNK_ID, ids)
        end = tf.constant([-1], tf.int32)
        out = {"next": tf.concat([clipped[1:], end], 0)}
        if bidirectional:
            out["previous"] = tf.concat([end, clipped[:-1]], 0)
        return ids, out

    dataset = tf.data.Dataset.from_tensor_slices(([ex.text for ex in examples], [ex.label for ex in examples]))
    dataset = dataset.map(preprocessor, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.map(targets, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    pads = {"next": -1, "previous": -1} if bidirectional else {"next": -1}
    return bucketed_batches(dataset, batch_size, preprocessor.max_len, seed=seed, padding_values=(0, pads),
                            drop_remainder=drop_remainder)
