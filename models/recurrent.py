"""The recurrent encoder factory: SimpleRNN / LSTM / GRU, uni- or bidirectional, stacked."""

from __future__ import annotations

import keras

CELLS = {"rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}


def recurrent_layer(
    cell: str, units: int, *, return_sequences: bool = True, bidirectional: bool = True, name: str | None = None
) -> keras.layers.Layer:
    """One recurrent layer.

    Args:
      cell: ``rnn``, ``lstm`` or ``gru``.
      units: hidden units per direction.
      return_sequences: output every step (True) or the last one.
      bidirectional: wrap in ``Bidirectional`` (forward and backward outputs concatenated).
      name: layer name.

    Raises:
      ValueError: unknown cell.
    """
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}; choose one of {', '.join(CELLS)}")
    layer = CELLS[cell](units, return_sequences=return_sequences, name=None if bidirectional else name)
    if bidirectional:
        return keras.layers.Bidirectional(layer, name=name)
    return layer


def recurrent_stack(
    x, cell: str, units: int, layers: int, *, bidirectional: bool = True, dropout: float = 0.0, prefix: str = "rnn"
):
    """Applies ``layers`` recurrent layers (all returning sequences), with dropout between them.

    The Keras mask from the embedding flows through every layer, so padded steps never update the state.
    """
    for i in range(layers):
        x = recurrent_layer(cell, units, bidirectional=bidirectional, name=f"{prefix}_{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"{prefix}_{i}_dropout")(x)
    return x
