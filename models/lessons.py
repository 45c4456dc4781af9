"""Small Keras models for the training lessons (``python -m pipelines.lessons``): keras.layers / keras.ops only.

- :func:`linear_rnn`: the lecture's 1-neuron linear RNN (input weight 1, output weight 1, recurrent weight w).
- :func:`two_parameter_rnn` and :func:`two_parameter_loss_grid`: a 1-unit sigmoid RNN whose only free parameters
  are its recurrent weight w1 and its bias w2, and its loss over a whole grid of (w1, w2) at once.
- :func:`sequence_classifier`: SimpleRNN / LSTM / GRU over a sequence, a Dense read-out of the last state.
- :class:`ProbeCell` and :func:`probed_classifier`: the same classifier with a zero "probe" added to every hidden
  state, so that the gradient of the loss with respect to the probe at step t is dL/dh_t.
"""

from __future__ import annotations

import keras
from keras import ops

CELLS = {"rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}


def linear_rnn(steps: int, w: float, dtype: str = "float64") -> keras.Model:
    """The 1-neuron linear RNN: h^t = w h^(t-1) + 1 * x^t, y^t = 1 * h^t, no bias, h^0 = 0.

    Args:
      steps: sequence length (1000 in the lecture).
      w: the recurrent weight.
      dtype: ``float64`` keeps w^999 representable for w far from 1, where float32 over- or underflows.

    Returns:
      A model from ``[batch, steps, 1]`` inputs to the last output y^steps, ``[batch, 1]``; its recurrent
      layer is named ``rnn`` (``model.get_layer("rnn").cell.recurrent_kernel`` is w).
    """
    inputs = keras.Input((steps, 1), dtype=dtype, name="x")
    h = keras.layers.SimpleRNN(
        1, activation=None, use_bias=False, kernel_initializer=keras.initializers.Constant(1.0),
        recurrent_initializer=keras.initializers.Constant(w), dtype=dtype, name="rnn",
    )(inputs)
    y = keras.layers.Dense(1, use_bias=False, kernel_initializer=keras.initializers.Constant(1.0), dtype=dtype,
                           name="output")(h)
    return keras.Model(inputs, y, name="linear_rnn")


def two_parameter_rnn(steps: int, w1: float, w2: float, dtype: str = "float64") -> keras.Model:
    """A 1-unit sigmoid RNN run on zero inputs from a given start state: h^t = sigmoid(w1 h^(t-1) + w2).

    Its input weight multiplies zeros, so the output depends on two parameters only: the recurrent weight
    w1 and the bias w2 (``model.get_layer("rnn").cell.recurrent_kernel`` and ``.bias``).

    Args:
      steps: number of steps.
      w1, w2: starting values of the recurrent weight and the bias.
      dtype: the layer's dtype.

    Returns:
      A model from ``[x (batch, steps, 1) zeros, h0 (batch, 1)]`` to h^steps, ``[batch, 1]``.
    """
    x = keras.Input((steps, 1), dtype=dtype, name="x")
    h0 = keras.Input((1,), dtype=dtype, name="h0")
    h = keras.layers.SimpleRNN(
        1, activation="sigmoid", kernel_initializer="zeros", recurrent_initializer=keras.initializers.Constant(w1),
        bias_initializer=keras.initializers.Constant(w2), dtype=dtype, name="rnn",
    )(x, initial_state=[h0])
    return keras.Model([x, h0], h, name="two_parameter_rnn")


def two_parameter_loss_grid(w1, w2, steps: int, h0: float, target: float):
    """The squared error (h^steps - target)^2 of :func:`two_parameter_rnn` for every (w1, w2) pair at once.

    Args:
      w1, w2: arrays of the same shape (e.g. a meshgrid) of recurrent weights and biases.
      steps, h0, target: as for the model; the loss is ``(h^steps - target) ** 2``.

    Returns:
      The loss, same shape as ``w1``.
    """
    w1 = ops.convert_to_tensor(w1)
    w2 = ops.convert_to_tensor(w2)
    h = ops.full_like(w1, h0)
    for _ in range(steps):
        h = ops.sigmoid(w1 * h + w2)
    return ops.square(h - target)


def sequence_classifier(cell: str, units: int, steps: int | None, features: int, outputs: int,
                        name: str | None = None, **layer_kwargs) -> keras.Model:
    """A recurrent layer over ``[batch, steps, features]`` and a Dense read-out of its last state.

    Args:
      cell: ``rnn`` (SimpleRNN, tanh), ``lstm`` or ``gru``.
      units: hidden units.
      steps: sequence length (None: any).
      features: input size per step.
      outputs: read-out size (classes for logits, 1 for a regression).
      name: model name.
      **layer_kwargs: passed to the recurrent layer (e.g. ``recurrent_initializer``).

    Returns:
      The model; its recurrent layer is named ``recurrent``, its read-out ``readout`` (no activation).

    Raises:
      ValueError: unknown cell.
    """
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}; choose one of {', '.join(CELLS)}")
    inputs = keras.Input((steps, features), name="x")
    h = CELLS[cell](units, name="recurrent", **layer_kwargs)(inputs)
    y = keras.layers.Dense(outputs, name="readout")(h)
    return keras.Model(inputs, y, name=name or f"{cell}_classifier")


class ProbeCell(keras.layers.Layer):
    """Wraps a built recurrent cell; adds a probe (the last ``units`` input features) to its new hidden state.

    With a zero probe the wrapped cell computes exactly what the cell computes; the gradient of a loss with
    respect to the probe at step t is the gradient with respect to the hidden state h_t (LSTM: h, not c).
    """

    def __init__(self, cell, **kwargs):
        super().__init__(**kwargs)
        self.cell = cell
        self.units = cell.units
        self.state_size = cell.state_size
        self.output_size = cell.units

    def build(self, input_shape):
        self.built = True

    def call(self, inputs, states, training=False):
        x = inputs[..., : -self.units]
        probe = inputs[..., -self.units:]
        h, new_states = self.cell(x, states, training=training)
        h = h + probe
        if isinstance(new_states, (list, tuple)):
            new_states = [h, *new_states[1:]]
        else:
            new_states = h
        return h, new_states


def probed_classifier(model: keras.Model) -> keras.Model:
    """The :func:`sequence_classifier` ``model`` with a zero-able probe added to every hidden state.

    Shares the model's weights (its cell and read-out).

    Args:
      model: a model from :func:`sequence_classifier`.

    Returns:
      A model from ``[x (batch, steps, features), probe (batch, steps, units)]`` to the read-out (of every
      step when the model's recurrent layer returns sequences).
    """
    recurrent = model.get_layer("recurrent")
    readout = model.get_layer("readout")
    steps, features = model.input.shape[1], model.input.shape[2]
    x = keras.Input((steps, features), name="x")
    probe = keras.Input((steps, recurrent.cell.units), name="probe")
    h = keras.layers.RNN(ProbeCell(recurrent.cell), return_sequences=recurrent.return_sequences, name="probed")(
        ops.concatenate([x, probe], axis=-1))
    return keras.Model([x, probe], readout(h), name=f"{model.name}_probed")
