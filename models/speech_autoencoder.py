"""The speech auto-encoder (Audio Word2Vec, Chung et al. 2016): a sequence of acoustic feature frames in, one fixed
vector out, and a decoder that must rebuild the whole sequence from that vector alone.

The encoder reads the frames with a recurrent layer; its final state (both directions' final states, concatenated,
when bidirectional) is the utterance vector. The decoder gets that vector as its initial state and as its input at
every step (no teacher forcing, so everything it rebuilds has to pass through the vector) and a Dense layer maps each
decoder step back to a feature frame. Padded frames are all-zero and masked out (``keras.layers.Masking``): they never
touch the encoder's state, and the training loss weights them 0.

:func:`build_speech_autoencoder` returns both the training model and the encoder-only model that shares its
layers, which is what gets exported.
"""

from __future__ import annotations

import keras
from keras import ops

from models.recurrent import CELL_TABLE, CELLS, recurrent_layer, recurrent_stack

INPUT = "features"
OUTPUT = "embedding"
RECONSTRUCTION = "reconstruction"
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
