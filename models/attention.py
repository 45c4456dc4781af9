"""Attention over a memory (the encoder's outputs) for the seq2seq decoder, plus the two small layers the
seq2seq graphs need: the memory's padding mask and a log-softmax.

Scores (Luong et al. 2015 name them; Bahdanau et al. 2015 introduced the first):
  ``additive`` (Bahdanau): score(q, m) = v · tanh(W_q q + W_m m)
  ``dot`` (Luong's "general"): score(q, m) = q · (W_m m)
Padded memory steps (mask 0) get weight 0; the weights [batch, query steps, memory steps] are an output, so they
can be plotted. The query is the decoder's recurrent output at each step (Luong's placement), so a whole target
sequence is attended in one call during teacher-forced training, and one step at a time when decoding.
"""

from __future__ import annotations

import keras
from keras import ops

MODES = ("none", "additive", "dot")
NEG_INF = -1e9


@keras.saving.register_keras_serializable(package="rnn_toolkit")
class SeqAttention(keras.layers.Layer):
    """Attends from queries [batch, tq, dq] over a memory [batch, tm, dm] with a mask [batch, tm] (1 real, 0 pad).

    ``call(query, memory, memory_mask)`` returns ``(context [batch, tq, dm], weights [batch, tq, tm])``.

    Args:
      mode: ``additive`` (Bahdanau) or ``dot`` (Luong's general score).
      units: width of the additive score's hidden layer (ignored by ``dot``).
    """

    def __init__(self, mode: str = "additive", units: int = 64, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("additive", "dot"):
            raise ValueError(f"unknown attention {mode!r}; choose additive or dot")
        self.mode, self.units = mode, units

    def build(self, query_shape, memory_shape=None, memory_mask_shape=None):
        dq, dm = query_shape[-1], memory_shape[-1]
        if self.mode == "additive":
            self.query_kernel = self.add_weight(name="query_kernel", shape=(dq, self.units), initializer="glorot_uniform")
            self.memory_kernel = self.add_weight(name="memory_kernel", shape=(dm, self.units),
                                                 initializer="glorot_uniform")
            self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
            self.score = self.add_weight(name="score", shape=(self.units,), initializer="glorot_uniform")
        else:
            self.memory_kernel = self.add_weight(name="memory_kernel", shape=(dm, dq), initializer="glorot_uniform")

    def scores(self, query, memory):
        """Raw scores [batch, tq, tm]."""
        if self.mode == "additive":
            q = ops.expand_dims(ops.matmul(query, self.query_kernel), 2)  # [b, tq, 1, u]
            m = ops.expand_dims(ops.matmul(memory, self.memory_kernel), 1)  # [b, 1, tm, u]
            return ops.sum(ops.tanh(q + m + self.bias) * self.score, axis=-1)
        keys = ops.matmul(memory, self.memory_kernel)  # [b, tm, dq]
        return ops.matmul(query, ops.transpose(keys, (0, 2, 1)))

    def call(self, query, memory, memory_mask):
        scores = self.scores(query, memory)
        mask = ops.expand_dims(ops.cast(memory_mask, scores.dtype), 1)  # [b, 1, tm]
        scores = scores * mask + (1.0 - mask) * NEG_INF
        weights = ops.softmax(scores, axis=-1)
        return ops.matmul(weights, memory), weights

    def compute_output_shape(self, query_shape, memory_shape=None, memory_mask_shape=None):
        return (query_shape[0], query_shape[1], memory_shape[-1]), (query_shape[0], query_shape[1], memory_shape[1])

    def compute_mask(self, *args, **kwargs):
        return None, None

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "units": self.units}


@keras.saving.register_keras_serializable(package="rnn_toolkit")
class PaddingMask(keras.layers.Layer):
    """ids [batch, time] → float32 [batch, time]: 1 at real tokens, 0 at padding (id 0)."""

    def call(self, ids):
        return ops.cast(ops.not_equal(ids, 0), "float32")

    def compute_output_shape(self, shape):
        return tuple(shape)


@keras.saving.register_keras_serializable(package="rnn_toolkit")
class LogSoftmax(keras.layers.Layer):
    """Log-probabilities over the last axis."""

    def call(self, x):
        return ops.log_softmax(x, axis=-1)

    def compute_output_shape(self, shape):
        return tuple(shape)


@keras.saving.register_keras_serializable(package="rnn_toolkit")
class PointerPositions(keras.layers.Layer):
    """The word pointer's position at each decoder input step: how many ``pointer_id`` tokens (the parser's
    ``XX``, one per word) the inputs hold up to and including this step, so step t points at the next word the
    output will place. Training only: a decoder step is fed these counts (``word_position``) by its caller."""

    def __init__(self, pointer_id: int, **kwargs):
        super().__init__(**kwargs)
        self.pointer_id = int(pointer_id)

    def call(self, token_ids):
        return ops.cumsum(ops.cast(ops.equal(token_ids, self.pointer_id), "int32"), axis=1)

    def compute_output_spec(self, token_ids):
        return keras.KerasTensor(token_ids.shape, "int32")

    def get_config(self):
        return {**super().get_config(), "pointer_id": self.pointer_id}


@keras.saving.register_keras_serializable(package="rnn_toolkit")
class PointedMemory(keras.layers.Layer):
    """The memory row each position points at: ``call(memory [b, tm, d], memory_mask [b, tm], positions [b, tq])``
    → [b, tq, d], positions past the last real row clipped to it (a one-hot product, so the row is copied exactly).
    ``memory_mask`` says which rows are real; a Keras mask riding on the memory is read through it and dropped."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def compute_mask(self, *args, **kwargs):
        return None

    def call(self, memory, memory_mask, positions):
        last = ops.cast(ops.sum(memory_mask, axis=1, keepdims=True), "int32") - 1  # [b, 1]
        positions = ops.maximum(ops.minimum(ops.cast(positions, "int32"), last), 0)
        one_hot = ops.one_hot(positions, ops.shape(memory)[1], dtype=memory.dtype)  # [b, tq, tm]
        return ops.matmul(one_hot, memory)

    def compute_output_spec(self, memory, memory_mask, positions):
        return keras.KerasTensor((memory.shape[0], positions.shape[1], memory.shape[2]), memory.dtype)
