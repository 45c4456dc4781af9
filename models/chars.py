"""Character-level word features: what a word looks like, for words the vocabulary has never seen."""

from __future__ import annotations

import keras
from keras import ops

CHAR_INPUT = "char_ids"


@keras.saving.register_keras_serializable(package="rnn_toolkit")
class CharFeatures(keras.layers.Layer):
    """Appends to each word vector a character CNN's summary of the word.

    Called on ``[word_vectors [batch, time, dim], char_ids [batch, time, chars]]`` (0 pads both the characters of
    a word and the steps past a sentence's end): character embeddings → a 1-D convolution over the word's
    characters ("same" padding, padded characters read as zeros) → tanh → max over the word's real characters
    (0 for a padded step). Returns ``[batch, time, dim + filters]`` with the word vectors' mask.
    """

    def __init__(self, n_chars: int, char_dim: int = 32, filters: int = 64, width: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.n_chars, self.char_dim, self.filters, self.width = n_chars, char_dim, filters, width
        self.supports_masking = True

    def build(self, input_shape):
        self.embeddings = self.add_weight(name="embeddings", shape=(self.n_chars, self.char_dim),
                                          initializer="uniform")
        self.kernel = self.add_weight(name="kernel", shape=(self.width, self.char_dim, self.filters),
                                      initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def call(self, inputs, mask=None):
        words, chars = inputs
        chars = ops.cast(chars, "int32")
        shape = ops.shape(chars)
        valid = ops.expand_dims(ops.reshape(chars > 0, (-1, shape[2])), -1)  # [batch*time, chars, 1]
        embedded = ops.take(self.embeddings, ops.reshape(chars, (-1, shape[2])), axis=0)
        embedded = embedded * ops.cast(valid, embedded.dtype)
        hidden = ops.tanh(ops.conv(embedded, self.kernel, padding="same") + self.bias)
        pooled = ops.max(ops.where(valid, hidden, -1.0), axis=1)  # tanh > -1: the max is a real character's
        pooled = pooled * ops.cast(ops.any(valid, axis=1), pooled.dtype)
        pooled = ops.reshape(pooled, (shape[0], shape[1], self.filters))
        return ops.concatenate([words, ops.cast(pooled, words.dtype)], axis=-1)

    def compute_mask(self, inputs, mask=None):
        return None if mask is None else mask[0]

    def compute_output_shape(self, input_shape):
        words, _ = input_shape
        return (*words[:-1], words[-1] + self.filters)

    def get_config(self):
        return {**super().get_config(), "n_chars": self.n_chars, "char_dim": self.char_dim,
                "filters": self.filters, "width": self.width}
