"""Training pieces the runner (``pipelines.runner``) and the lessons share: seeding, the log, Adam with gradient
clipping (and EMA), the per-epoch data seed, the weights checksum and the float32 copy for export."""

from __future__ import annotations

import contextlib
import sys
import warnings
from pathlib import Path

import keras
import tensorflow as tf


def set_seed(seed: int) -> None:
    """Seeds Python, numpy and TensorFlow, and asks TensorFlow for deterministic ops, so a run repeats."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def quiet_warnings() -> None:
    """Silences Keras' warning that a length-bucketed dataset (of unknown size) ran out of data: that is how
    every epoch of such a dataset ends."""
    warnings.filterwarnings("ignore", message="Your input ran out of data")


class _Tee:
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self):
        for stream in self.streams:
            stream.flush()

    def isatty(self):
        return self.streams[0].isatty()


@contextlib.contextmanager
def training_log(path: Path):
    """Copies everything printed to stdout (progress, metrics) into ``path`` as well."""
    with open(path, "a", encoding="utf-8") as log:
        stdout = sys.stdout
        sys.stdout = _Tee(stdout, log)
        try:
            yield
        finally:
            sys.stdout = stdout


def optimizer(learning_rate: float, clipnorm: float | None, ema: float = 0.0) -> keras.optimizers.Optimizer:
    """Adam; ``clipnorm`` rescales each gradient whose norm exceeds it (None or 0: no clipping). With ``ema`` (a
    momentum such as 0.99) it also keeps an exponential moving average of the weights (Polyak averaging), which
    ``runner.train`` swaps in for validation and keeps."""
    return keras.optimizers.Adam(learning_rate=learning_rate, clipnorm=clipnorm or None, use_ema=bool(ema),
                                 ema_momentum=ema or 0.99)


def weights_checksum(model) -> str:
    """SHA-256 over the model's weights: equal on every worker of a cluster, and between repeated seeded runs."""
    import hashlib

    import numpy as np

    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return digest.hexdigest()[:16]


def epoch_dataset(make, seed: int, epoch: int, distributed: bool = False):
    """The training data of one epoch: a function of the run's seed and the epoch only.

    Args:
      make: seed → a dataset shuffled with ``reshuffle_each_iteration`` (and seeded augmentation).
      distributed: several replicas or workers.

    On one replica it is ``make(seed)`` with its reshuffling advanced by ``epoch`` iterations (creating an iterator
    draws the next order), which are exactly the batches one ``fit`` over all the epochs would see. A strategy
    rebuilds the dataset it is given (and its reshuffling state), so a distributed run seeds each epoch with
    :func:`epoch_seed` instead.
    """
    if distributed:
        return make(epoch_seed(seed, epoch))
    dataset = make(seed)
    for _ in range(epoch):
        iter(dataset)
    return dataset


def epoch_seed(seed: int, epoch: int) -> int:
    """The data seed of one epoch (shuffle order, word dropout): a function of the run's seed and the epoch only."""
    return (seed * 1_000_003 + epoch * 7_919 + 1) % (2**31 - 1)


def float32_model(build, model):
    """A float32 copy of a mixed-precision ``model`` (``build()`` makes the same architecture), for export: the
    variables are float32 already, only the compute dtype changes. Returns ``model`` itself when it is float32."""
    if keras.mixed_precision.global_policy().name == "float32":
        return model
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        copy = build()
        copy.set_weights(model.get_weights())
    finally:
        keras.mixed_precision.set_global_policy(policy)
    return copy
