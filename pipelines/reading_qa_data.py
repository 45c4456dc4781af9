"""Reading-comprehension data: vocabularies, story → id arrays (memory layout), tf.data batches.

Memory layout (shared with ``models.memory`` and ``serving.reading_qa``): slot 0 holds the most recent statement;
a story longer than ``memory_size`` statements keeps its most recent ``memory_size``; each sentence (and the
question) keeps its first ``sentence_len`` words; 0 pads.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from pipelines.babi import QAExample
from serving.vocab import PAD, UNK, Vocabulary


def build_vocabularies(train: list[QAExample]) -> tuple[list[str], list[str]]:
    """(words, answers): ``<pad>``, ``<unk>``, then every word of the training stories, questions and answers,
    sorted; the answers seen in training, sorted. Answers are words too (the MemN2N output reads their rows)."""
    words, answers = set(), set()
    for ex in train:
        for sentence in ex.story:
            words.update(sentence)
        words.update(ex.question)
        answers.add(ex.answer)
    words |= answers
    return [PAD, UNK] + sorted(words), sorted(answers)


def encode_story(story, vocab: Vocabulary, memory_size: int, sentence_len: int) -> np.ndarray:
    """Statements (oldest first, each a word sequence) → int32 [slots, sentence_len], most recent first."""
    kept = list(story)[-memory_size:][::-1]
    ids = np.zeros((len(kept), sentence_len), np.int32)
    for row, sentence in enumerate(kept):
        words = list(sentence)[:sentence_len]
        ids[row, : len(words)] = vocab.ids(words)
    return ids


def encode_question(question, vocab: Vocabulary, sentence_len: int) -> np.ndarray:
    ids = np.zeros(sentence_len, np.int32)
    words = list(question)[:sentence_len]
    ids[: len(words)] = vocab.ids(words)
    return ids


def longest_sentence(splits: dict[str, list[QAExample]]) -> int:
    """The most words in one statement or question anywhere in ``splits``."""
    return max(max([len(ex.question)] + [len(s) for s in ex.story]) for part in splits.values() for ex in part)


def encode(examples: list[QAExample], vocab: Vocabulary, answers: list[str], memory_size: int, sentence_len: int):
    """Examples → (stories: list of [slots, words] int32, questions [n, words] int32, labels [n] int32; an answer
    unseen in training gets -1, which is never predicted right)."""
    index = {a: i for i, a in enumerate(answers)}
    stories = [encode_story(ex.story, vocab, memory_size, sentence_len) for ex in examples]
    questions = np.stack([encode_question(ex.question, vocab, sentence_len) for ex in examples])
    labels = np.array([index.get(ex.answer, -1) for ex in examples], np.int32)
    return stories, questions, labels


def pad_stories(stories: list[np.ndarray], slots: int | None = None) -> np.ndarray:
    """Stacks [slots_i, words] stories into [n, slots, words] (empty slots are zeros; at least one slot)."""
    slots = max(1, slots or max(len(s) for s in stories))
    out = np.zeros((len(stories), slots, stories[0].shape[1]), np.int32)
    for i, story in enumerate(stories):
        out[i, : len(story)] = story[:slots]
    return out


def _insert_noise(story, rate: float, memory_size: int):
    """Random noise (Sukhbaatar et al. 2015, "RN"): empty slots inserted at random among the statements, so the
    temporal encoding sees gaps and does not learn absolute positions too closely. Empty slots are masked out of
    the attention, so only the slot indices move."""
    n = tf.shape(story)[0]
    gaps = tf.cast(tf.random.uniform([n]) < rate, tf.int32)
    positions = tf.range(n) + tf.cumsum(gaps)
    keep = positions < memory_size
    positions, rows = tf.boolean_mask(positions, keep), tf.boolean_mask(story, keep)
    length = tf.reduce_max(tf.concat([positions + 1, [1]], 0))
    return tf.scatter_nd(positions[:, None], rows, tf.stack([length, tf.shape(story)[1]]))


def dataset(stories, questions, labels, *, batch_size: int, members: int = 1, shuffle: bool = False,
            seed: int = 0, noise: float = 0.0, memory_size: int = 50) -> tf.data.Dataset:
    """Batches of ({"story", "question"}, {"answer_probs": labels}) padded to each batch's longest story.

    With ``members`` > 1 the labels are repeated per member ([batch, members]); ``noise`` inserts empty slots at
    that rate (training only); ``shuffle`` reshuffles every epoch (seeded).
    """
    sentence_len = questions.shape[1]

    def generate():
        yield from zip(stories, questions, labels)

    data = tf.data.Dataset.from_generator(generate, output_signature=(
        tf.TensorSpec([None, sentence_len], tf.int32), tf.TensorSpec([sentence_len], tf.int32),
        tf.TensorSpec([], tf.int32))).cache()
    if shuffle:
        data = data.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    if noise:
        data = data.map(lambda s, q, y: (_insert_noise(s, noise, memory_size), q, y),
                        num_parallel_calls=tf.data.AUTOTUNE)

    def to_model(s, q, y):
        y = tf.repeat(y[..., None], members, axis=-1) if members > 1 else y
        return {"story": s, "question": q}, {"answer_probs": y}

    return data.padded_batch(batch_size).map(to_model).prefetch(tf.data.AUTOTUNE)
