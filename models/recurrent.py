"""The recurrent encoder factory: SimpleRNN / LSTM / GRU / Clockwork RNN / SCRN, uni- or bidirectional, stacked."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras

from models.cells import clockwork_rnn, scrn



@dataclasses.dataclass(frozen=True)
class Cell:
    """One row of the cell table.

    Attributes:
      name: the ``--cell`` value.
      layer: factory ``(units, return_sequences=..., name=..., **kwargs) -> keras layer``.
      onnx: how export emits it (``native``: by the native converter, as an ONNX RNN/LSTM/GRU op or, for the
        custom cells, one hand-written Scan per layer (``export/emit_cells.py``); ``tf2onnx``: through tf2onnx).
      decoder: usable as a seq2seq decoder with a one-step export graph (its step has a native emitter).
      description: one line for docs and ``--help``.
    """

    name: str
    layer: Callable
    onnx: str
    decoder: bool
    description: str


# The one cell table: every builder and every task's --cell choices come from it.
CELL_TABLE = {cell.name: cell for cell in (
    Cell("rnn", keras.layers.SimpleRNN, "native", False, "Elman RNN (tanh)"),
    Cell("lstm", keras.layers.LSTM, "native", True, "long short-term memory"),
    Cell("gru", keras.layers.GRU, "native", True, "gated recurrent unit"),
    Cell("cwrnn", clockwork_rnn, "native", False, "Clockwork RNN (Koutnik et al. 2014)"),
    Cell("scrn", scrn, "native", False, "structurally constrained RNN (Mikolov et al. 2015)"),
)}
# name → layer factory (what the builders call)
CELLS = {name: cell.layer for name, cell in CELL_TABLE.items()}
CELL_CHOICES = tuple(CELL_TABLE)


def cell_choices(*, decoder: bool = False) -> tuple[str, ...]:
    """The ``--cell`` choices: every cell, or those that can drive a seq2seq decoder step (``decoder``)."""
    return tuple(name for name, cell in CELL_TABLE.items() if cell.decoder or not decoder)


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
