"""The speech auto-encoder (Audio Word2Vec, Chung et al. 2016): a sequence of acoustic feature frames in, one fixed
vector out, and a decoder that must rebuild the whole sequence from that vector alone.

The encoder reads the frames with a recurrent layer; its final state (both directions' final states, concatenated,
when bidirectional) is the utterance vector. The decoder gets that vector as its initial state and as its input at
every step (no teacher forcing, so everything it rebuilds has to pass through the vector) and a Dense layer maps each
decoder step back to a feature frame. Padded frames are all-zero and masked out (``keras.layers.Masking``): they never
touch the encoder's state, and the training loss weights them 0.

:func:`build_speech_autoencoder` returns both the training model and the encoder-only model that shares its
layers, which is what gets exported.

Contrastive training (:func:`build_contrastive_trainer`, :class:`NTXentLoss`) uses the same encoder without labels:
two augmented views of each clip are embedded, and each vector must pick its partner view out of the batch's other
vectors by cosine similarity (NT-Xent, Chen et al. 2020), optionally beside the reconstruction loss.
"""

from __future__ import annotations

import keras
from keras import ops

from models.recurrent import CELL_TABLE, CELLS, recurrent_layer, recurrent_stack

INPUT = "features"
OUTPUT = "embedding"
RECONSTRUCTION = "reconstruction"
CONTRASTIVE = "contrastive"
VIEW_A, VIEW_B = "view_a", "view_b"
OBJECTIVES = ("reconstruct", "contrastive", "both")
# The rows of the cell table whose layer takes a plain initial state (the decoder starts from the sentence vector):
# Keras' own layers; the custom cells carry more state (the Clockwork RNN its step counter).
CELL_CHOICES = tuple(name for name, cell in CELL_TABLE.items()
                     if cell.layer in (keras.layers.SimpleRNN, keras.layers.LSTM, keras.layers.GRU))


@keras.saving.register_keras_serializable(package="rnn_toolkit")
class RepeatOverTime(keras.layers.Layer):
    """Repeats a [batch, dim] vector at every step of a [batch, time, ...] reference sequence: [batch, time, dim].

    The output carries the reference's mask (if any).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        vector, reference = inputs
        return ops.repeat(ops.expand_dims(vector, 1), ops.shape(reference)[1], axis=1)

    def compute_mask(self, inputs, mask=None):
        return None if mask is None else mask[1]

    def compute_output_shape(self, input_shape):
        vector, reference = input_shape
        return (vector[0], reference[1], vector[-1])


def build_speech_encoder(
    n_features: int, *, cell: str = "gru", units: int = 64, layers: int = 1, bidirectional: bool = True,
    name: str = "speech_encoder",
) -> keras.Model:
    """The encoder alone: ``features`` [batch, time, n_features] float32 (padded frames all zero) →
    ``{"embedding": [batch, units * (2 if bidirectional else 1)]}``, the final recurrent state.

    Raises:
      ValueError: unknown cell, or fewer than one layer.
    """
    if cell not in CELL_CHOICES:
        raise ValueError(f"unknown cell {cell!r}; choose one of {', '.join(CELL_CHOICES)}")
    if layers < 1:
        raise ValueError(f"layers must be at least 1, got {layers}")
    features = keras.Input(shape=(None, n_features), dtype="float32", name=INPUT)
    x = keras.layers.Masking(0.0, name="frame_mask")(features)
    x = recurrent_stack(x, cell, units, layers - 1, bidirectional=bidirectional, prefix="encoder_rnn")
    state = recurrent_layer(cell, units, return_sequences=False, bidirectional=bidirectional,
                            name=f"encoder_rnn_{layers - 1}")(x)
    return keras.Model(features, {OUTPUT: state}, name=name)


def build_speech_autoencoder(
    n_features: int, *, cell: str = "gru", units: int = 64, layers: int = 1, bidirectional: bool = True,
) -> tuple[keras.Model, keras.Model]:
    """Builds the auto-encoder and its encoder.

    Args:
      n_features: feature values per frame (e.g. mel bands).
      cell: ``rnn``, ``lstm`` or ``gru`` (encoder and decoder).
      units: recurrent units per encoder direction; the vector has ``units`` (x2 when bidirectional) values and
        the decoder as many units.
      layers: stacked encoder layers.
      bidirectional: a bidirectional encoder.

    Returns:
      ``(autoencoder, encoder)``: the autoencoder maps ``features`` to ``{"reconstruction": [batch, time,
      n_features]}`` (train it with a frame-weighted loss, padded frames weighted 0); the encoder (the same layers)
      maps ``features`` to ``{"embedding": [batch, dim]}``.
    """
    encoder = build_speech_encoder(n_features, cell=cell, units=units, layers=layers, bidirectional=bidirectional)
    features = keras.Input(shape=(None, n_features), dtype="float32", name=INPUT)
    vector = encoder(features)[OUTPUT]
    dim = units * (2 if bidirectional else 1)
    # The decoder runs forward over right-padded frames, so its real steps never see padding; the loss weights the
    # padded steps 0 (the dataset's sample weights).
    steps = RepeatOverTime(name="decoder_inputs")([vector, features])
    initial = [vector, vector] if cell == "lstm" else [vector]
    decoded = CELLS[cell](dim, return_sequences=True, name="decoder_rnn")(steps, initial_state=initial)
    reconstruction = keras.layers.Dense(n_features, name=RECONSTRUCTION)(decoded)
    autoencoder = keras.Model(features, {RECONSTRUCTION: reconstruction}, name="speech_autoencoder")
    return autoencoder, encoder


# --------------------------------------------------------------------------------------------------------------------
# Contrastive training


def nt_xent(a, b, temperature: float = 0.1):
    """NT-Xent (normalized temperature-scaled cross-entropy, SimCLR) of paired vectors ``a`` and ``b`` [batch, dim].

    The 2 x batch vectors are L2-normalised; each one's logits are its cosine similarities to the other 2 x batch - 1
    vectors, divided by ``temperature``, and its target is its partner (row i of ``a`` for row i of ``b`` and back).

    Returns:
      [batch]: each pair's loss, the mean of its two vectors' cross-entropies.
    """
    z = ops.concatenate([a, b], axis=0)
    z = z / ops.maximum(ops.norm(z, axis=-1, keepdims=True), 1e-12)
    n = ops.shape(a)[0]
    steps = ops.arange(2 * n)
    logits = ops.matmul(z, ops.transpose(z)) / temperature
    logits = ops.where(ops.equal(steps[:, None], steps[None, :]), ops.full_like(logits, -1e9), logits)
    partners = ops.concatenate([steps[n:], steps[:n]], axis=0)
    losses = keras.losses.sparse_categorical_crossentropy(partners, logits, from_logits=True)
    return (losses[:n] + losses[n:]) / 2.0


@keras.saving.register_keras_serializable(package="rnn_toolkit")
class NTXentLoss(keras.losses.Loss):
    """:func:`nt_xent` on a trainer's ``contrastive`` output: [batch, 2 x dim], the two views' vectors side by side
    (``y_true`` is ignored: the targets are the pairs themselves)."""

    def __init__(self, temperature: float = 0.1, name: str = "nt_xent", **kwargs):
        super().__init__(name=name, **kwargs)
        self.temperature = temperature

    def call(self, y_true, y_pred):
        a, b = ops.split(y_pred, 2, axis=-1)
        return nt_xent(a, b, self.temperature)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


@keras.saving.register_keras_serializable(package="rnn_toolkit")
class FrameMSE(keras.losses.Loss):
    """Mean squared error over a sequence's real frames: the target's all-zero (padded) frames weigh 0. [batch]."""

    def __init__(self, name: str = "frame_mse", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        real = ops.cast(ops.any(ops.not_equal(y_true, 0.0), axis=-1), y_pred.dtype)
        per_frame = ops.mean(ops.square(y_pred - ops.cast(y_true, y_pred.dtype)), axis=-1)
        return ops.sum(per_frame * real, axis=1) / ops.maximum(ops.sum(real, axis=1), 1.0)


def build_contrastive_trainer(encoder: keras.Model, autoencoder: keras.Model | None = None) -> keras.Model:
    """The training model of contrastive learning around ``encoder`` (shared weights).

    Inputs ``view_a`` and ``view_b`` [batch, time, n_features] (two augmented views of the same clips, each right-
    padded with all-zero frames) → ``{"contrastive": [batch, 2 x dim]}``, both views' vectors side by side (train it
    with :class:`NTXentLoss`). With ``autoencoder`` (objective ``both``) the input ``features`` (the clips, e.g. with
    noise) also goes through the auto-encoder to ``{"reconstruction": ...}`` (train it with :class:`FrameMSE`
    against the clean frames).
    """
    n_features = encoder.input.shape[-1]
    views = {name: keras.Input(shape=(None, n_features), dtype="float32", name=name) for name in (VIEW_A, VIEW_B)}
    pair = keras.layers.Concatenate(name=CONTRASTIVE)([encoder(views[VIEW_A])[OUTPUT], encoder(views[VIEW_B])[OUTPUT]])
    inputs, outputs = dict(views), {CONTRASTIVE: pair}
    if autoencoder is not None:
        inputs[INPUT] = keras.Input(shape=(None, n_features), dtype="float32", name=INPUT)
        outputs[RECONSTRUCTION] = autoencoder(inputs[INPUT])[RECONSTRUCTION]
    return keras.Model(inputs, outputs, name="contrastive_trainer")
