"""A naive-Bayes n-gram path beside a recurrent classifier (Wang & Manning 2012's MNB features; Mesnil et al. 2014
combine such a model with RNNs): per-class log-likelihoods of a text's n-grams, mixed log-linearly with the
recurrent model's class probabilities.

N-grams are looked up exactly, inside the graph, so the exported model still takes token ids alone: an n-gram's key
is its token ids read as a number in base ``vocab_size``, found by binary search in the sorted keys of the n-grams
seen in training (no hashing: a hashed table of workable size gives unseen n-grams the scores of the seen ones they
collide with, which cost this path 2.5 points of test accuracy on rt-polarity). The tables are counted on the
training texts (``pipelines/ngrams.py``) and the mixing weights are fitted on dev; neither is trained by gradient
descent.
"""

from __future__ import annotations

import keras
from keras import ops

UNSEEN = -1  # the first key of every order: below every real key, its table row is zeros


def ngram_keys(token_ids, n: int, vocab_size: int):
    """(keys, real) of the n-grams starting at each step of right-padded ``token_ids`` [batch, time]: keys [batch,
    time] int64, ``t0 * V^(n-1) + t1 * V^(n-2) + ... + t(n-1)``; real a bool mask: the n-gram ends on a real token
    (not padding, not past the end)."""
    ids = ops.cast(token_ids, "int64")
    batch, time = ops.shape(ids)[0], ops.shape(ids)[1]
    padded = ops.pad(ids, [[0, 0], [0, n - 1]])

    def window(k):  # the k-th token of every n-gram
        return ops.slice(padded, (0, k), (batch, time))

    keys = window(0)
    for k in range(1, n):
        keys = keys * vocab_size + window(k)
    return keys, ops.not_equal(window(n - 1), 0)


@keras.saving.register_keras_serializable(package="rnn_toolkit")
class NaiveBayesNgrams(keras.layers.Layer):
    """Σ over a text's real n-grams (n = 1 .. order) of a per-class score table → [batch, n_classes].

    The unigram table has one row per token id. Order n > 1 has ``sizes[n - 2]`` sorted int64 keys (the first is
    ``UNSEEN``) and a table with a row per key; an n-gram whose key is not there reads row 0, zeros. The weights are
    not trainable: set them with counted log-likelihoods.
    """

    def __init__(self, vocab_size: int, n_classes: int, sizes: list[int] | tuple = (), **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.n_classes, self.sizes = vocab_size, n_classes, [int(k) for k in sizes]
        self.order = 1 + len(self.sizes)
        if min(self.sizes, default=1) < 1:
            raise ValueError(f"every order needs at least its UNSEEN key, got sizes {self.sizes}")
        if vocab_size ** self.order >= 2**63:
            raise ValueError(f"{self.order}-gram keys over {vocab_size} tokens overflow int64")
        self.trainable = False

    def build(self, input_shape):
        self.unigrams = self.add_weight(shape=(self.vocab_size, self.n_classes), initializer="zeros",
                                        trainable=False, name="order_1")
        self.keys, self.tables = [], []
        for n, size in enumerate(self.sizes, start=2):
            self.keys.append(self.add_weight(shape=(size,), initializer="zeros", dtype="int64", trainable=False,
                                             name=f"order_{n}_keys"))
            self.tables.append(self.add_weight(shape=(size, self.n_classes), initializer="zeros", trainable=False,
                                               name=f"order_{n}"))

    def call(self, token_ids):
        def summed(table, rows, real):  # in float64: exact for these sums, so padding never changes a score
            scores = ops.cast(ops.take(table, rows, axis=0), "float64")
            return ops.sum(scores * ops.cast(ops.expand_dims(real, -1), "float64"), axis=1)

        total = summed(self.unigrams, ops.cast(token_ids, "int32"), ops.not_equal(token_ids, 0))
        for n, (keys, table) in enumerate(zip(self.keys, self.tables), start=2):
            grams, real = ngram_keys(token_ids, n, self.vocab_size)
            flat = ops.reshape(grams, (-1,))
            at = ops.minimum(ops.cast(ops.searchsorted(keys, flat), "int64"), ops.shape(keys)[0] - 1)
            rows = ops.reshape(ops.where(ops.equal(ops.take(keys, at), flat), at, 0), ops.shape(grams))
            total = total + summed(table, rows, real)
        return ops.cast(total, self.unigrams.dtype)

    def compute_mask(self, token_ids, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n_classes)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "n_classes": self.n_classes,
                "sizes": self.sizes}


@keras.saving.register_keras_serializable(package="rnn_toolkit")
class LogLinearMix(keras.layers.Layer):
    """softmax(a · log p + b · s + c): class probabilities ``p`` and class scores ``s`` [batch, n_classes] mixed with
    fitted weights ``a``, ``b`` (scalars) and ``c`` (a per-class bias). Not trainable."""

    FLOOR = 1e-30  # keeps log p finite where a probability underflows

    def __init__(self, n_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.n_classes = n_classes
        self.trainable = False

    def build(self, input_shape):
        self.weight_probs = self.add_weight(shape=(), initializer="ones", trainable=False, name="weight_probs")
        self.weight_scores = self.add_weight(shape=(), initializer="zeros", trainable=False, name="weight_scores")
        self.bias = self.add_weight(shape=(self.n_classes,), initializer="zeros", trainable=False, name="bias")

    def call(self, inputs):
        probs, scores = inputs
        logits = (self.weight_probs * ops.log(ops.maximum(probs, self.FLOOR)) + self.weight_scores * scores
                  + self.bias)
        return ops.softmax(logits, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "n_classes": self.n_classes}


def with_naive_bayes(model: keras.Model, vocab_size: int, *, output: str, sizes: list[int]) -> keras.Model:
    """The trained ``model`` (one int token-id input, a dict output holding ``output`` class probabilities) with a
    naive-Bayes n-gram path (orders 1 .. 1 + len(sizes)) mixed into ``output``; its other outputs pass through.

    The new layers are ``naive_bayes`` (:class:`NaiveBayesNgrams`, zero tables) and ``mix`` (:class:`LogLinearMix`,
    initially the identity on the probabilities); set their weights before use.
    """
    probs = model.output[output]
    n_classes = probs.shape[-1]
    scores = NaiveBayesNgrams(vocab_size, n_classes, sizes, name="naive_bayes")(model.input)
    mixed = LogLinearMix(n_classes, name="mix")([probs, scores])
    return keras.Model(model.input, {**model.output, output: mixed}, name=f"{model.name}_nb")
