"""The recurrent encoder factory: SimpleRNN / LSTM / GRU / Clockwork RNN / SCRN, uni- or bidirectional, stacked."""

from __future__ import annotations

import keras

from models.cells import clockwork_rnn, scrn

# name → layer factory ``(units, return_sequences=..., name=...) -> layer``; the tasks' --cell choices
CELLS = {"rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU,
         "cwrnn": clockwork_rnn, "scrn": scrn}
CELL_CHOICES = tuple(CELLS)


def recurrent_layer(
    cell: str, units: int, *, return_sequences: bool = True, bidirectional: bool = True, name: str | None = None
) -> keras.layers.Layer:
    """One recurrent layer.

    Args:
      cell: ``rnn``, ``lstm``, ``gru``, ``cwrnn`` (:class:`models.cells.ClockworkRNNCell`) or ``scrn``
        (:class:`models.cells.SCRNCell`).
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


def recurrent_classifier(cell: str, units: int, steps: int | None, features: int, outputs: int,
                         name: str | None = None, **layer_kwargs) -> keras.Model:
    """A recurrent layer of any :data:`CELLS` cell over ``[batch, steps, features]`` and a Dense read-out.

    The same contract as :func:`models.lessons.sequence_classifier` (the recurrent layer is named ``recurrent``,
    the read-out ``readout``, no activation), so :func:`models.lessons.probed_classifier` probes it too.

    Args:
      cell: a :data:`CELLS` name.
      units: hidden units (SCRN: hidden plus context).
      steps: sequence length (None: any).
      features: input size per step.
      outputs: read-out size.
      name: model name.
      **layer_kwargs: passed to the recurrent layer (e.g. ``return_sequences``).

    Raises:
      ValueError: unknown cell.
    """
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}; choose one of {', '.join(CELLS)}")
    inputs = keras.Input((steps, features), name="x")
    h = CELLS[cell](units, name="recurrent", **layer_kwargs)(inputs)
    y = keras.layers.Dense(outputs, name="readout")(h)
    return keras.Model(inputs, y, name=name or f"{cell}_classifier")
