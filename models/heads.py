"""Output heads and the masked pooling they need."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="rnn_toolkit")
class MaskedPooling(keras.layers.Layer):
    """Pools a [batch, time, features] sequence over its unmasked steps: mean, max, or both concatenated."""

    def __init__(self, mode: str = "mean_max", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("mean", "max", "mean_max"):
            raise ValueError(f"unknown pooling mode {mode!r}")
        self.mode = mode
        self.supports_masking = True

    def call(self, x, mask=None):
        if mask is None:
            mask = ops.ones(ops.shape(x)[:2], dtype="bool")
        valid = ops.cast(ops.expand_dims(mask, -1), x.dtype)
        pooled = []
        if self.mode in ("mean", "mean_max"):
            count = ops.maximum(ops.sum(valid, axis=1), 1.0)
            pooled.append(ops.sum(x * valid, axis=1) / count)
        if self.mode in ("max", "mean_max"):
            pooled.append(ops.max(ops.where(valid > 0, x, ops.full_like(x, -1e9)), axis=1))
        return pooled[0] if len(pooled) == 1 else ops.concatenate(pooled, axis=-1)

    def compute_mask(self, x, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        width = input_shape[-1] * (2 if self.mode == "mean_max" else 1)
        return (input_shape[0], width)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="rnn_toolkit")
class AttentionPooling(keras.layers.Layer):
    """Additive attention read-out: a weighted sum of a [batch, time, features] sequence over its unmasked steps.

    score_t = v · tanh(W x_t + b); weights = softmax of the scores over the real steps (padded steps get 0).
    Called on ``x`` it returns the pooled [batch, features]; with ``return_attention`` also the weights
    [batch, time], which say which steps the read-out looked at.
    """

    def __init__(self, units: int = 64, return_attention: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.return_attention = return_attention
        self.supports_masking = True

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(input_shape[-1], self.units), initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        self.score = self.add_weight(name="score", shape=(self.units,), initializer="glorot_uniform")

    def call(self, x, mask=None):
        scores = ops.sum(ops.tanh(ops.matmul(x, self.kernel) + self.bias) * self.score, axis=-1)
        if mask is not None:
            scores = ops.where(mask, scores, ops.full_like(scores, -1e9))
        weights = ops.softmax(scores, axis=1)
        pooled = ops.sum(x * ops.expand_dims(weights, -1), axis=1)
        return (pooled, weights) if self.return_attention else pooled

    def compute_mask(self, x, mask=None):
        return (None, None) if self.return_attention else None

    def compute_output_shape(self, input_shape):
        pooled = (input_shape[0], input_shape[-1])
        return (pooled, tuple(input_shape[:2])) if self.return_attention else pooled

    def get_config(self):
        return {**super().get_config(), "units": self.units, "return_attention": self.return_attention}


def tagger_head(x, n_tags: int, name: str = "tag_probs"):
    """A softmax over tags at every step: the per-word slot distribution."""
    return keras.layers.Dense(n_tags, activation="softmax", dtype="float32", name=name)(x)


def classifier_head(xs, n_classes: int, *, pooling: str = "mean_max", dropout: float = 0.0, name: str = "class_probs"):
    """Pools each sequence in ``xs`` over its unmasked steps, concatenates, then a softmax over classes.

    Pooling the word embeddings beside the recurrent outputs gives rare key words (``meal``, ``capacity``) a
    direct path to the classifier.
    """
    xs = xs if isinstance(xs, (list, tuple)) else [xs]
    pooled = [MaskedPooling(pooling, name=f"{name}_pooling_{i}")(x) for i, x in enumerate(xs)]
    pooled = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name=f"{name}_features")(pooled)
    if dropout:
        pooled = keras.layers.Dropout(dropout, name=f"{name}_dropout")(pooled)
    return keras.layers.Dense(n_classes, activation="softmax", dtype="float32", name=name)(pooled)
