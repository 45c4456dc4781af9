"""Two more answers to vanishing gradients, as Keras 3 RNN cells (use them inside ``keras.layers.RNN``).

- :class:`ClockworkRNNCell` (Koutník et al. 2014, "A Clockwork RNN"): the hidden units form modules with clock
  periods 1, 2, 4, ...; module i updates only at the steps t (counted from 0 at the first real step) where its
  period divides t, and keeps its state otherwise; a module reads the recurrent state of itself and of the slower
  modules only. Slow modules change rarely, so the gradient reaches far back through few nonlinearities.
- :class:`SCRNCell` (Mikolov et al. 2015, "Learning longer memory in recurrent neural networks"): a slow context
  state ``s_t = (1 - alpha) x_t B + alpha s_(t-1)`` with a fixed near-identity recurrence (alpha = 0.95), beside a
  fast hidden state ``h_t = sigmoid(s_t P + x_t A + h_(t-1) R + b)``; the output is ``[h_t, s_t]``.

Both take Keras masks (the RNN layer keeps the state over masked steps, the step counter included), work under
``Bidirectional`` and serialise through ``get_config`` (registered under ``rnn_toolkit``).
:func:`clockwork_rnn` and :func:`scrn` build the ``keras.layers.RNN`` layers the encoder factory
(:mod:`models.recurrent`) hands out for ``--cell cwrnn`` and ``--cell scrn``.
"""

from __future__ import annotations

import keras
from keras import ops

PACKAGE = "rnn_toolkit"


def module_sizes(units: int, modules: int) -> list[int]:
    """``units`` split into ``modules`` near-equal blocks (the first blocks one larger when it does not divide)."""
    base, extra = divmod(units, modules)
    return [base + (i < extra) for i in range(modules)]


@keras.saving.register_keras_serializable(package=PACKAGE)
class ClockworkRNNCell(keras.layers.Layer):
    """A Clockwork RNN cell: ``h_t = where(t mod T_u == 0, tanh(x_t W + h_(t-1) U + b), h_(t-1))`` per unit u.

    The units are split into ``len(periods)`` modules, module i (period ``periods[i]``, sorted fastest first)
    taking ``module_sizes(units, len(periods))[i]`` units. The recurrent matrix U is block triangular: module i's
    columns read the rows of modules j >= i only (slower to faster); only those blocks are weights
    (``recurrent_kernels[i]``: ``[units of modules i.., units of module i]``), so ``count_params`` counts the free
    parameters. The states are ``[h, t]``: the hidden state and the step counter (float, 0 at the first step).

    Args:
      units: hidden units (the output size).
      periods: clock periods, increasing; default ``1, 2, 4, ...``, ``min(4, units)`` of them.
      activation: of the candidate state.
      use_bias: whether the candidate has a bias.
      kernel_initializer, recurrent_initializer, bias_initializer: Keras initializers.
    """

    def __init__(self, units: int, periods=None, activation="tanh", use_bias: bool = True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 **kwargs):
        super().__init__(**kwargs)
        if units < 1:
            raise ValueError(f"units must be positive, got {units}")
        periods = tuple(int(p) for p in (periods or [2 ** i for i in range(min(4, units))]))
        if not periods or any(p < 1 for p in periods) or list(periods) != sorted(set(periods)):
            raise ValueError(f"periods must be positive and strictly increasing, got {periods}")
        if len(periods) > units:
            raise ValueError(f"{len(periods)} clock periods need at least as many units, got {units}")
        self.units = units
        self.periods = periods
        self.sizes = module_sizes(units, len(periods))
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.state_size = [units, 1]
        self.output_size = units
        # each unit's period, in unit order: the clock test of every unit at once
        self.unit_periods = [float(p) for p, n in zip(periods, self.sizes) for _ in range(n)]

    def build(self, input_shape):
        features = input_shape[-1]
        self.kernel = self.add_weight(shape=(features, self.units), initializer=self.kernel_initializer,
                                      name="kernel")
        self.recurrent_kernels = []
        start = 0
        for i, size in enumerate(self.sizes):
            self.recurrent_kernels.append(self.add_weight(
                shape=(self.units - start, size), initializer=self.recurrent_initializer,
                name=f"recurrent_kernel_{i}"))
            start += size
        self.bias = (self.add_weight(shape=(self.units,), initializer=self.bias_initializer, name="bias")
                     if self.use_bias else None)
        self.built = True

    @property
    def recurrent_kernel(self):
        """The full ``[units, units]`` recurrent matrix: module i's column block is zero above module i's rows."""
        columns, start = [], 0
        for kernel, size in zip(self.recurrent_kernels, self.sizes):
            if start:
                kernel = ops.concatenate([ops.zeros((start, size), dtype=kernel.dtype), kernel], axis=0)
            columns.append(kernel)
            start += size
        return ops.concatenate(columns, axis=1)

    def active(self, step):
        """bool ``[batch, units]``: which units update at ``step`` (float ``[batch, 1]``)."""
        periods = ops.convert_to_tensor(self.unit_periods, dtype=step.dtype)
        return ops.equal(ops.mod(step, periods), 0)

    def call(self, inputs, states, training=False):
        h_prev, step = states[0], states[1]
        z = ops.matmul(inputs, self.kernel) + ops.matmul(h_prev, self.recurrent_kernel)
        if self.use_bias:
            z = z + self.bias
        h = ops.where(self.active(step), self.activation(z), h_prev)
        return h, [h, step + 1]

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "periods": list(self.periods),
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class SCRNCell(keras.layers.Layer):
    """A structurally constrained recurrent cell: a slow context state beside a fast hidden state.

    ``s_t = (1 - alpha) x_t B + alpha s_(t-1)`` (alpha fixed, not trained) and
    ``h_t = activation(s_t P + x_t A + h_(t-1) R + b)``. The state (and the output) is one vector ``[h_t, s_t]`` of
    ``units`` values: the first ``units - context_units`` are h, the last ``context_units`` are s, so a read-out
    of the output sees both (the paper's ``y = f(U h + V s)``).

    Args:
      units: output (and state) size, hidden plus context.
      context_units: size of the context state s; default ``units // 4`` (at least 1).
      alpha: the context's fixed self-connection (0.95 in the paper).
      activation: of the hidden state (the paper's sigmoid).
      kernel_initializer, recurrent_initializer, bias_initializer: Keras initializers.
    """

    def __init__(self, units: int, context_units: int | None = None, alpha: float = 0.95, activation="sigmoid",
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 **kwargs):
        super().__init__(**kwargs)
        context_units = max(1, units // 4) if context_units is None else int(context_units)
        if not 0 < context_units < units:
            raise ValueError(f"context_units must be between 1 and units - 1 = {units - 1}, got {context_units}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        self.units = units
        self.context_units = context_units
        self.hidden_units = units - context_units
        self.alpha = float(alpha)
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.state_size = units
        self.output_size = units

    def build(self, input_shape):
        features = input_shape[-1]
        self.context_kernel = self.add_weight(shape=(features, self.context_units),
                                              initializer=self.kernel_initializer, name="context_kernel")  # B
        self.kernel = self.add_weight(shape=(features, self.hidden_units), initializer=self.kernel_initializer,
                                      name="kernel")  # A
        self.context_to_hidden = self.add_weight(shape=(self.context_units, self.hidden_units),
                                                 initializer=self.kernel_initializer, name="context_to_hidden")  # P
        self.recurrent_kernel = self.add_weight(shape=(self.hidden_units, self.hidden_units),
                                                initializer=self.recurrent_initializer, name="recurrent_kernel")  # R
        self.bias = self.add_weight(shape=(self.hidden_units,), initializer=self.bias_initializer, name="bias")
        self.built = True

    def call(self, inputs, states, training=False):
        state = states[0] if isinstance(states, (list, tuple)) else states
        h_prev, s_prev = state[:, : self.hidden_units], state[:, self.hidden_units:]
        s = (1.0 - self.alpha) * ops.matmul(inputs, self.context_kernel) + self.alpha * s_prev
        h = self.activation(ops.matmul(s, self.context_to_hidden) + ops.matmul(inputs, self.kernel)
                            + ops.matmul(h_prev, self.recurrent_kernel) + self.bias)
        out = ops.concatenate([h, s], axis=-1)
        return out, [out]

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "context_units": self.context_units,
            "alpha": self.alpha,
            "activation": keras.activations.serialize(self.activation),
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }


def clockwork_rnn(units: int, *, periods=None, **layer_kwargs) -> keras.layers.RNN:
    """A ``keras.layers.RNN`` over a :class:`ClockworkRNNCell` (``layer_kwargs``: ``return_sequences``, ``name``...)."""
    return keras.layers.RNN(ClockworkRNNCell(units, periods=periods), **layer_kwargs)


def scrn(units: int, *, context_units: int | None = None, alpha: float = 0.95, **layer_kwargs) -> keras.layers.RNN:
    """A ``keras.layers.RNN`` over an :class:`SCRNCell` (``layer_kwargs``: ``return_sequences``, ``name``...)."""
    return keras.layers.RNN(SCRNCell(units, context_units=context_units, alpha=alpha), **layer_kwargs)
