"""Slot-filling data: vocabularies from the training split, and the tf.data preprocessing.

The vocabulary files (one entry per line, see ``serving/vocab.py``) are written into the run dir and read back
by ``tf.lookup`` here and by ``serving`` after export.
"""

from __future__ import annotations

import collections
from pathlib import Path

import tensorflow as tf

from pipelines import text
from pipelines.batching import bucketed_batches, ordered_batches
from pipelines.readers import DataError, SlotExample
from serving.tokenizer import Tokenizer
from serving.vocab import PAD, UNK, UNK_ID, write_vocab

VOCAB_FILE, TAGS_FILE, INTENTS_FILE, CHARS_FILE = "vocab.txt", "slot_tags.txt", "intents.txt", "chars.txt"
PAD_LABEL = -1  # label at padded steps: masked out of the loss


def build_vocabularies(train: list[SlotExample], min_count: int = 1) -> tuple[list[str], list[str], list[str]]:
    """Words (``<pad>``, ``<unk>``, then by frequency), slot tags (``O`` first) and intents of the training split."""
    normalize = Tokenizer().normalize
    words = collections.Counter(normalize(w) for ex in train for w in ex.words)
    tags = collections.Counter(t for ex in train for t in ex.tags)
    intents = collections.Counter(ex.intent for ex in train)
    ordered = lambda counts: [k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    vocab = [PAD, UNK] + [w for w in ordered(words) if words[w] >= min_count and w not in (PAD, UNK)]
    tag_list = ["O"] + [t for t in ordered(tags) if t != "O"]
    return vocab, tag_list, ordered(intents)


def build_char_vocabulary(vocab: list[str]) -> list[str]:
    """The characters of the (normalized) training words: ``<pad>``, ``<unk>``, then in code-point order."""
    return [PAD, UNK] + sorted({c for word in vocab[2:] for c in word})


def write_vocabularies(run_dir: Path, vocab: list[str], tags: list[str], intents: list[str],
                       chars: list[str] | None = None) -> None:
    write_vocab(run_dir / VOCAB_FILE, vocab, "vocabulary")
    write_vocab(run_dir / TAGS_FILE, tags, "slot tags")
    write_vocab(run_dir / INTENTS_FILE, intents, "intents")
    if chars:
        write_vocab(run_dir / CHARS_FILE, chars, "characters")


def check_lengths(examples: list[SlotExample], max_len: int, split: str) -> None:
    """Raises DataError naming the first example longer than ``max_len`` words."""
    for i, ex in enumerate(examples):
        if len(ex.words) > max_len:
            raise DataError(
                f"{split} example {i + 1} has {len(ex.words)} words, more than max_len={max_len} "
                f"(raise --max-len): {ex.text[:80]!r}"
            )


class SlotPreprocessor:
    """Maps (words line, tags line, intent) strings to (word ids, {slot tag ids, intent id}) inside tf.data.

    Words are split on spaces (the data is pre-tokenized) and normalized as serving normalizes them; unknown
    words map to ``<unk>``. Unknown tags or intents (in dev/test data) map to -1, which the loss ignores.
    With ``word_chars`` (and the run dir's character vocabulary) the inputs are ``{"token_ids": [time],
    "char_ids": [time, word_chars]}``: each word's first ``word_chars`` characters, 0-padded.
    """

    def __init__(self, run_dir: Path, word_chars: int = 0):
        self.words = text.lookup_table(run_dir / VOCAB_FILE, default=UNK_ID)
        self.tags = text.lookup_table(run_dir / TAGS_FILE, default=PAD_LABEL)
        self.intents = text.lookup_table(run_dir / INTENTS_FILE, default=PAD_LABEL)
        self.word_chars = word_chars
        self.chars = text.lookup_table(run_dir / CHARS_FILE, default=UNK_ID) if word_chars else None

    @property
    def padding(self):
        """The padding value of one example's inputs."""
        return {"token_ids": 0, "char_ids": 0} if self.chars is not None else 0

    def ids(self, words_line: tf.Tensor):
        words = text.normalize(tf.strings.split(words_line, sep=" "))
        ids = tf.cast(self.words.lookup(words), tf.int32)
        if self.chars is None:
            return ids
        chars = tf.strings.unicode_split(words, "UTF-8")[:, : self.word_chars]
        char_ids = tf.cast(tf.ragged.map_flat_values(self.chars.lookup, chars), tf.int32)
        return {"token_ids": ids, "char_ids": char_ids.to_tensor(0, shape=[None, self.word_chars])}

    def __call__(self, words_line, tags_line, intent):
        tag_ids = tf.cast(self.tags.lookup(tf.strings.split(tags_line, sep=" ")), tf.int32)
        intent_id = tf.cast(self.intents.lookup(intent), tf.int32)
        return self.ids(words_line), {"slot_probs": tag_ids, "intent_probs": intent_id}


def _columns(examples: list[SlotExample]):
    return (
        [ex.text for ex in examples],
        [" ".join(ex.tags) for ex in examples],
        [ex.intent for ex in examples],
    )


def word_dropout(rate: float, seed: int):
    """Replaces each word id with ``<unk>`` with probability ``rate``, so the model learns what to do with
    words it has never seen."""

    def drop(ids):
        keep = tf.random.uniform(tf.shape(ids), seed=seed) >= rate
        return tf.where(keep | (ids == 0), ids, tf.fill(tf.shape(ids), UNK_ID))

    def apply(inputs, labels):
        if isinstance(inputs, dict):  # the characters stay: they are what the model has of an unknown word
            return {**inputs, "token_ids": drop(inputs["token_ids"])}, labels
        return drop(inputs), labels

    return apply


def training_dataset(
    examples: list[SlotExample], preprocessor: SlotPreprocessor, *, batch_size: int, max_len: int, seed: int,
    word_dropout_rate: float = 0.0, drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Shuffled, length-bucketed, padded batches for ``fit`` (``drop_remainder``: only full batches)."""
    dataset = tf.data.Dataset.from_tensor_slices(_columns(examples))
    dataset = dataset.map(preprocessor, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return bucketed_batches(
        dataset, batch_size, max_len, seed=seed,
        padding_values=(preprocessor.padding, {"slot_probs": PAD_LABEL, "intent_probs": PAD_LABEL}),
        augment=word_dropout(word_dropout_rate, seed) if word_dropout_rate else None,
        drop_remainder=drop_remainder,
    )


def inference_dataset(examples: list[SlotExample], preprocessor: SlotPreprocessor, batch_size: int = 64):
    """Padded word-id batches in input order (no labels), for prediction and evaluation."""
    dataset = tf.data.Dataset.from_tensor_slices([ex.text for ex in examples])
    dataset = dataset.map(preprocessor.ids, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ordered_batches(dataset, batch_size)
