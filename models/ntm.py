"""A Neural Turing Machine (Graves, Wayne & Danihelka 2014) as a Keras 3 RNN cell: keras.layers / keras.ops only.

An LSTM controller reads the input and the last read vector; from its output, one write head and one read head
each emit an addressing key k, a key strength beta, an interpolation gate g, a shift distribution s over
``-shift_range..shift_range`` and a sharpening exponent gamma (the write head also an erase vector e and an add
vector a). Each head's weighting over the N memory rows is found by

1. content addressing, ``w_c = softmax(beta * cosine(k, M_i))`` (:func:`content_weights`);
2. interpolation with the head's previous weighting, ``w_g = g w_c + (1 - g) w_prev`` (:func:`interpolate`);
3. a circular convolution with the shift distribution, ``w~(i) = sum_k s(k) w_g(i - k)`` (:func:`shift`);
4. sharpening, ``w = w~^gamma / sum w~^gamma`` (:func:`sharpen`).

The write head then erases and adds, ``M <- M * (1 - w e^T) + w a^T`` (:func:`write`), and the read head reads
``r = sum_i w(i) M_i`` (:func:`read`) from the updated memory. The cell's output is ``[controller h, r,
read weighting, write weighting]``; :func:`ntm_model` splits it into the read-out and the two weightings, which
are what the lessons plot over time.
"""

from __future__ import annotations

import keras
from keras import ops

PACKAGE = "rnn_toolkit"
EPS = 1e-8
MEMORY_INIT = 1e-6  # a small constant memory at the start (Collier & Beel 2018: learns faster than random)


# --------------------------------------------------------------------------------------------------------------------
# Addressing: plain functions of keras tensors, batch first


def content_weights(memory, key, beta):
    """Content addressing: ``softmax_i(beta * cos(key, memory[i]))``.

    Args:
      memory: ``[batch, N, M]``.
      key: ``[batch, M]``.
      beta: ``[batch, 1]`` key strength (>= 0).

    Returns:
      ``[batch, N]`` weights summing to 1.
    """
    dot = ops.sum(memory * key[:, None, :], axis=-1)
    norms = ops.sqrt(ops.sum(ops.square(memory), axis=-1) + EPS) * ops.sqrt(ops.sum(ops.square(key), axis=-1,
                                                                                     keepdims=True) + EPS)
    return ops.softmax(beta * dot / norms, axis=-1)


def interpolate(content, previous, gate):
    """Interpolation gate: ``gate * content + (1 - gate) * previous`` (``gate`` ``[batch, 1]`` in [0, 1])."""
    return gate * content + (1.0 - gate) * previous


def shift(weights, kernel):
    """Circular convolution of ``weights`` ``[batch, N]`` with ``kernel`` ``[batch, 2S + 1]``, the probabilities
    of the shifts ``-S..S``: ``out(i) = sum_k kernel(k) * weights((i - k) mod N)`` (shift +1 moves focus down)."""
    radius = (kernel.shape[-1] - 1) // 2
    out = 0.0
    for k in range(-radius, radius + 1):
        out = out + kernel[:, k + radius: k + radius + 1] * ops.roll(weights, k, axis=1)
    return out


def sharpen(weights, gamma):
    """Sharpening: ``w^gamma / sum w^gamma`` (``gamma`` ``[batch, 1]`` >= 1)."""
    powered = ops.power(weights + EPS, gamma)
    return powered / ops.sum(powered, axis=-1, keepdims=True)


def address(memory, previous, key, beta, gate, shifts, gamma):
    """The full addressing pipeline (content, interpolation, shift, sharpening) of one head; ``[batch, N]``."""
    return sharpen(shift(interpolate(content_weights(memory, key, beta), previous, gate), shifts), gamma)


def read(memory, weights):
    """The read vector ``sum_i weights[i] memory[i]``: ``[batch, M]``."""
    return ops.sum(memory * weights[:, :, None], axis=1)


def write(memory, weights, erase, add):
    """Erase then add: ``memory * (1 - w e^T) + w a^T`` (``erase`` in [0, 1], both ``[batch, M]``)."""
    w = weights[:, :, None]
    return memory * (1.0 - w * erase[:, None, :]) + w * add[:, None, :]


# --------------------------------------------------------------------------------------------------------------------
# The cell


@keras.saving.register_keras_serializable(package=PACKAGE)
class NTMCell(keras.layers.Layer):
    """A Neural Turing Machine cell: LSTM controller, an ``N x M`` memory, one read and one write head.

    States: controller h and c, the memory (flattened ``N * M``), the read and write weightings (``N`` each) and
    the last read vector (``M``). At the start the memory holds a small constant, both heads focus on row 0 and
    the read vector is zero. Output: ``[controller h (controller_units), read vector (M), read weighting (N),
    write weighting (N)]``.

    Args:
      controller_units: LSTM controller size.
      memory_size: N, memory rows (the longest sequence it can store one row per step).
      memory_width: M, values per row.
      shift_range: S, shifts ``-S..S`` allowed in one step.
    """

    def __init__(self, controller_units: int = 100, memory_size: int = 128, memory_width: int = 20,
                 shift_range: int = 1, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("controller_units", controller_units), ("memory_size", memory_size),
                            ("memory_width", memory_width), ("shift_range", shift_range)):
            if value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        if 2 * shift_range + 1 > memory_size:
            raise ValueError(f"shift_range {shift_range} needs at least {2 * shift_range + 1} memory rows")
        self.controller_units = controller_units
        self.memory_size = memory_size
        self.memory_width = memory_width
        self.shift_range = shift_range
        n, m, c = memory_size, memory_width, controller_units
        self.state_size = [c, c, n * m, n, n, m]
        self.output_size = c + m + 2 * n
        self.controller = keras.layers.LSTMCell(c, name="controller")
        head = m + 1 + 1 + (2 * shift_range + 1) + 1  # key, beta, gate, shifts, gamma
        self.read_head = keras.layers.Dense(head, name="read_head")
        self.write_head = keras.layers.Dense(head + 2 * m, name="write_head")  # + erase, add

    def build(self, input_shape):
        features = input_shape[-1]
        self.controller.build((None, features + self.memory_width))
        self.read_head.build((None, self.controller_units))
        self.write_head.build((None, self.controller_units))
        self.built = True

    def get_initial_state(self, batch_size=None):
        """Zero controller state, a constant memory, both heads on row 0, a zero read vector."""
        n, m, c = self.memory_size, self.memory_width, self.controller_units
        focus = ops.one_hot(ops.zeros((batch_size,), "int32"), n, dtype=self.compute_dtype)
        return [ops.zeros((batch_size, c), self.compute_dtype), ops.zeros((batch_size, c), self.compute_dtype),
                ops.full((batch_size, n * m), MEMORY_INIT, self.compute_dtype), focus, focus,
                ops.zeros((batch_size, m), self.compute_dtype)]

    def head_parameters(self, params):
        """Splits a head's raw output into (key, beta, gate, shifts, gamma[, erase, add]) with their squashings."""
        m, width = self.memory_width, 2 * self.shift_range + 1
        key = ops.tanh(params[:, :m])
        beta = ops.softplus(params[:, m: m + 1])
        gate = ops.sigmoid(params[:, m + 1: m + 2])
        shifts = ops.softmax(params[:, m + 2: m + 2 + width], axis=-1)
        gamma = 1.0 + ops.softplus(params[:, m + 2 + width: m + 3 + width])
        rest = params[:, m + 3 + width:]
        if rest.shape[-1]:
            return key, beta, gate, shifts, gamma, ops.sigmoid(rest[:, :m]), ops.tanh(rest[:, m:])
        return key, beta, gate, shifts, gamma

    def call(self, inputs, states, training=False):
        h, c, memory, w_read, w_write, read_vector = states
        memory = ops.reshape(memory, (-1, self.memory_size, self.memory_width))
        out, (h, c) = self.controller(ops.concatenate([inputs, read_vector], axis=-1), [h, c], training=training)
        key, beta, gate, shifts, gamma, erase, add = self.head_parameters(self.write_head(out))
        w_write = address(memory, w_write, key, beta, gate, shifts, gamma)
        memory = write(memory, w_write, erase, add)
        w_read = address(memory, w_read, *self.head_parameters(self.read_head(out)))
        read_vector = read(memory, w_read)
        output = ops.concatenate([out, read_vector, w_read, w_write], axis=-1)
        flat = ops.reshape(memory, (-1, self.memory_size * self.memory_width))
        return output, [h, c, flat, w_read, w_write, read_vector]

    def get_config(self):
        return {**super().get_config(), "controller_units": self.controller_units, "memory_size": self.memory_size,
                "memory_width": self.memory_width, "shift_range": self.shift_range}


NTM_OUTPUTS = ("logits", "read_weights", "write_weights")


def ntm_model(features: int, outputs: int, *, controller_units: int = 100, memory_size: int = 128,
              memory_width: int = 20, shift_range: int = 1, name: str = "ntm") -> keras.Model:
    """An NTM over ``[batch, time, features]`` with a per-step Dense read-out of ``[controller h, read vector]``.

    Returns:
      A model to ``{"logits": [batch, time, outputs], "read_weights": [batch, time, N],
      "write_weights": [batch, time, N]}`` (logits without activation).
    """
    x = keras.Input((None, features), name="x")
    cell = NTMCell(controller_units, memory_size, memory_width, shift_range, name="ntm_cell")
    y = keras.layers.RNN(cell, return_sequences=True, name="ntm")(x)
    split = controller_units + memory_width
    logits = keras.layers.Dense(outputs, name="logits")(y[..., :split])
    return keras.Model(x, {"logits": logits, "read_weights": y[..., split: split + memory_size],
                           "write_weights": y[..., split + memory_size:]}, name=name)
