"""tf.data batching: cache, shuffle, bucket by length, pad, prefetch."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def length_boundaries(max_len: int) -> list[int]:
    """Bucket edges 8, 12, 16, 24, 32, 48, ... below ``max_len``: similar lengths share a batch, so little padding."""
    edges, edge = [], 8
    while edge < max_len:
        edges.append(edge)
        edge = edge * 3 // 2 if len(edges) % 2 else edge * 4 // 3
    return edges


def bucketed_batches(
    dataset: tf.data.Dataset,
    batch_size: int,
    max_len: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    padding_values=None,
    augment=None,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Batches a dataset of (ids, labels) with ids [time], grouping sentences of similar length.

    The preprocessed examples are cached, reshuffled each epoch (seeded), bucketed by length with
    ``bucket_by_sequence_length``, padded (ids with 0, labels with ``padding_values``) and prefetched.
    ``augment`` (e.g. word dropout) maps each example after the cache, so it differs from epoch to epoch.
    ``drop_remainder`` drops each bucket's last short batch (distributed training splits every batch evenly).
    """
    dataset = dataset.cache()
    if shuffle:
        dataset = dataset.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    if augment is not None:
        dataset = dataset.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    boundaries = length_boundaries(max_len)
    dataset = dataset.bucket_by_sequence_length(
        element_length_func=lambda ids, *_: tf.shape(ids["token_ids"] if isinstance(ids, dict) else ids)[0],
        bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        padding_values=padding_values,
        drop_remainder=drop_remainder,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


def ordered_batches(dataset: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    """Pads and batches in input order (for prediction, where outputs must line up with the inputs)."""
    return dataset.padded_batch(batch_size).prefetch(tf.data.AUTOTUNE)


def parity_batches(id_batches, limit: int = 4) -> list[dict]:
    """The first ``limit`` padded id batches as export parity inputs: ``{"token_ids": int32, "lengths": ...}`` (and
    the batch's other inputs, where batches are dicts of inputs)."""
    batches = []
    for ids in id_batches:
        if len(batches) == limit:
            break
        inputs = ids if isinstance(ids, dict) else {"token_ids": ids}
        inputs = {name: np.asarray(value, dtype=np.int32) for name, value in inputs.items()}
        batches.append({**inputs, "lengths": (inputs["token_ids"] != 0).sum(axis=1)})
    return batches
