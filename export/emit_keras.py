"""Native ONNX emitters for Keras' own layers (Embedding, Dense, Dropout and noise, merges, SimpleRNN / LSTM / GRU,
keras.layers.RNN over their cells and StackedRNNCells, Bidirectional) and the pooling heads of ``models.heads``.
Registered with ``export.registry.emits``.

Masks travel as sequence lengths (int32 [batch]): a Keras mask becomes the recurrent ops' ``sequence_lens``, so they
are assumed RIGHT-padded (see ``export/keras_onnx.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from onnx import TensorProto

from export.registry import Call, Graph, UnsupportedLayer, Value, emits
from models.heads import AttentionPooling, MaskedPooling


# --------------------------------------------------------------------------------------------------------------------
# Plain layers: each emitter takes (graph, layer, call) and returns one (onnx name, mask lengths) per Keras output


@emits(keras.layers.Dropout, keras.layers.SpatialDropout1D, keras.layers.GaussianNoise, keras.layers.GaussianDropout,
       keras.layers.AlphaDropout, keras.layers.ActivityRegularization)
def _identity(g: Graph, layer, call: Call):
    """Dropout and noise layers: identity at inference; the mask flows through."""
    return [(call.first.name, call.first.lens)]


@emits(keras.layers.Dense)
def _dense(g: Graph, layer, call: Call):
    """MatMul + Add + activation; on [batch, time, features] it applies per step, so the mask flows through."""
    if layer.quantization_mode:
        raise UnsupportedLayer(layer, f"quantized ({layer.quantization_mode}) kernels")
    x = call.first
    y = g.op("MatMul", [x.name, g.const(np.asarray(layer.kernel, np.float32), f"{layer.name}_kernel")], layer.name)
    if layer.use_bias:
        y = g.op("Add", [y, g.const(np.asarray(layer.bias, np.float32), f"{layer.name}_bias")], layer.name)
    return [(g.activation(layer, layer.activation, y, layer.name), x.lens)]


@emits(keras.layers.Embedding)
def _embedding(g: Graph, layer, call: Call):
    """Gather; with ``mask_zero`` the mask is ids != 0, kept as lengths ReduceSum(ids != 0) (right padding)."""
    if layer.quantization_mode:
        raise UnsupportedLayer(layer, f"quantized ({layer.quantization_mode}) embeddings")
    ids = call.first
    if "int" not in ids.dtype:  # Keras casts ids to int32
        ids = Value(g.op("Cast", [ids.name], layer.name, to=TensorProto.INT32), ids.lens, ids.shape, "int32")
    table = g.const(np.asarray(layer.embeddings, np.float32), f"{layer.name}_embeddings")
    y = g.op("Gather", [table, ids.name], layer.name)
    if not layer.mask_zero:
        return [(y, None)]
    if len(ids.shape) != 2:
        raise UnsupportedLayer(layer, f"mask_zero on ids of rank {len(ids.shape)}: only [batch, time] ids are supported")
    if ids.name not in g.lens_of_ids:
        real = g.op("Cast", [ids.name], layer.name, to=TensorProto.BOOL)  # ids != 0
        g.lens_of_ids[ids.name] = g.reduce("ReduceSum", g.op("Cast", [real], layer.name, to=TensorProto.INT32), [1],
                                           f"{layer.name}_lens")
        g.set_time_mask(g.lens_of_ids[ids.name], real)
    return [(y, g.lens_of_ids[ids.name])]


def _same_mask(layer, inputs: list[Value]) -> str | None:
    """The one mask shared by merged inputs. Keras ORs differing masks (and a merge of masked with unmasked inputs
    makes padded steps real), which would expose padded steps whose values this converter does not reproduce."""
    masks = {v.lens for v in inputs}
    if len(masks) > 1:
        raise UnsupportedLayer(layer, "merges tensors with different masks (or masked with unmasked ones)")
    return masks.pop()


@emits(keras.layers.Concatenate)
def _concatenate(g: Graph, layer, call: Call):
    inputs = list(call.first)
    lens = _same_mask(layer, inputs)
    rank = len(inputs[0].shape)
    if lens is not None and layer.axis not in (-1, rank - 1):
        raise UnsupportedLayer(layer, f"concatenation along axis {layer.axis} of masked tensors")
    return [(g.op("Concat", [v.name for v in inputs], layer.name, axis=layer.axis), lens)]


# Keras merge layer → ONNX binary op, applied left to right as Keras does
_MERGES = {keras.layers.Add: "Add", keras.layers.Multiply: "Mul", keras.layers.Subtract: "Sub",
           keras.layers.Maximum: "Max", keras.layers.Minimum: "Min"}


@emits(*_MERGES)
def _merge_layer(g: Graph, layer, call: Call):
    inputs = list(call.first)
    lens = _same_mask(layer, inputs)
    y = inputs[0].name
    for v in inputs[1:]:
        y = g.op(_MERGES[type(layer)], [y, v.name], layer.name)
    return [(y, lens)]


@emits(keras.layers.Average)
def _average(g: Graph, layer, call: Call):
    inputs = list(call.first)
    return [(g.op("Mean", [v.name for v in inputs], layer.name), _same_mask(layer, inputs))]


@emits(MaskedPooling)
def _masked_pooling(g: Graph, layer, call: Call):
    """Mean / max over the unmasked steps (models.heads.MaskedPooling); its output carries no mask."""
    x, lens, hint = call.first, call.mask, layer.name
    pooled = []
    if lens is None:  # Keras pools over all steps
        if layer.mode in ("mean", "mean_max"):
            pooled.append(g.reduce("ReduceMean", x.name, [1], hint))
        if layer.mode in ("max", "mean_max"):
            pooled.append(g.reduce("ReduceMax", x.name, [1], hint))
    else:
        valid = g.time_mask(x.name, lens, hint, axes=(2,))  # bool [batch, time, 1]
        if layer.mode in ("mean", "mean_max"):
            weight = g.op("Cast", [valid], hint, to=TensorProto.FLOAT)
            total = g.reduce("ReduceSum", g.op("Mul", [x.name, weight], hint), [1], hint)
            count = g.op("Max", [g.reduce("ReduceSum", weight, [1], hint), g.const(np.float32(1), f"{hint}_one")], hint)
            pooled.append(g.op("Div", [total, count], hint))
        if layer.mode in ("max", "mean_max"):
            floor = g.const(np.float32(-1e9), f"{hint}_floor")
            pooled.append(g.reduce("ReduceMax", g.op("Where", [valid, x.name, floor], hint), [1], hint))
    y = pooled[0] if len(pooled) == 1 else g.op("Concat", pooled, hint, axis=-1)
    return [(y, None)]


@emits(AttentionPooling)
def _attention_pooling(g: Graph, layer, call: Call):
    """Additive attention over the unmasked steps (models.heads.AttentionPooling): pooled [, weights]."""
    x, lens, hint = call.first, call.mask, layer.name
    kernel = g.const(np.asarray(layer.kernel, np.float32), f"{hint}_kernel")
    hidden = g.op("Tanh", [g.op("Add", [g.op("MatMul", [x.name, kernel], hint),
                                        g.const(np.asarray(layer.bias, np.float32), f"{hint}_bias")], hint)], hint)
    score = g.const(np.asarray(layer.score, np.float32)[:, None], f"{hint}_score")
    scores = g.squeeze(g.op("MatMul", [hidden, score], hint), [2], hint)  # [batch, time]
    if lens is not None:
        scores = g.op("Where", [g.time_mask(x.name, lens, hint), scores, g.const(np.float32(-1e9), f"{hint}_floor")],
                      hint)
    weights = g.op("Softmax", [scores], hint, axis=1)
    pooled = g.reduce("ReduceSum", g.op("Mul", [x.name, g.unsqueeze(weights, [2], hint)], hint), [1], hint)
    return [(pooled, None), (weights, None)] if layer.return_attention else [(pooled, None)]


# --------------------------------------------------------------------------------------------------------------------
# Recurrent layers: SimpleRNN / LSTM / GRU, keras.layers.RNN over their cells (a StackedRNNCells becomes consecutive
# ops), and Bidirectional over any of them

_CELL_OPS = {keras.layers.SimpleRNNCell: "RNN", keras.layers.LSTMCell: "LSTM", keras.layers.GRUCell: "GRU"}
_RNN_LAYERS = (keras.layers.SimpleRNN, keras.layers.LSTM, keras.layers.GRU, keras.layers.RNN)

# Keras activation → (ONNX activation, alpha, beta). Keras 3's hard_sigmoid is relu6(x + 3) / 6 = clip(x/6 + 0.5),
# not ONNX HardSigmoid's default alpha 0.2 (Keras 2's). `linear` would need Affine, which this converter avoids.
_RNN_ACTIVATIONS = {
    "tanh": ("Tanh",),
    "sigmoid": ("Sigmoid",),
    "relu": ("Relu",),
    "hard_sigmoid": ("HardSigmoid", 1.0 / 6.0, 0.5),
}

# Keras LSTM kernel columns are gates i, f, c, o; ONNX LSTM wants i, o, f, c.
_LSTM_GATES = [0, 3, 1, 2]


@dataclass
class _CellSpec:
    """One direction of an ONNX recurrent op: op type, attributes and weights in ONNX layout."""

    op_type: str
    units: int
    activations: list  # [(name, alpha, beta)...] in ONNX order (f[, g[, h]])
    attrs: dict
    W: np.ndarray  # [gates * units, input]
    R: np.ndarray  # [gates * units, units]
    B: np.ndarray  # [2 * gates * units]: input biases, then recurrent biases

    def signature(self) -> tuple:
        return self.op_type, self.units, self.activations, self.attrs


def _activation(owner, cell, attr: str):
    name = keras.activations.serialize(getattr(cell, attr))
    if name not in _RNN_ACTIVATIONS:
        raise UnsupportedLayer(owner, f"{attr} {name!r} is not an ONNX recurrent activation this converter emits; "
                                      f"supported: {', '.join(_RNN_ACTIVATIONS)}")
    return _RNN_ACTIVATIONS[name]


def _gate_blocks(a: np.ndarray, order: list[int], units: int) -> np.ndarray:
    """Reorders the gate blocks of ``a``'s last axis."""
    return np.concatenate([a[..., k * units:(k + 1) * units] for k in order], axis=-1)


def _cells(owner, rnn) -> list:
    """The cells a recurrent layer runs, bottom first (``owner`` is the layer named in errors)."""
    if type(rnn) not in _RNN_LAYERS:
        raise UnsupportedLayer(owner, f"wraps a {type(rnn).__name__}; only SimpleRNN, LSTM, GRU and RNN over their "
                                      "cells are supported")
    if rnn.stateful:
        raise UnsupportedLayer(owner, "stateful=True (state carried across batches)")
    if getattr(rnn, "time_major", False):
        raise UnsupportedLayer(owner, "time_major=True")
    cells = rnn.cell.cells if type(rnn.cell) is keras.layers.StackedRNNCells else [rnn.cell]
    for cell in cells:
        if type(cell) not in _CELL_OPS:
            raise UnsupportedLayer(owner, f"a {type(cell).__name__} cell; only SimpleRNNCell, LSTMCell and GRUCell "
                                          "(alone or in StackedRNNCells) are supported")
    return cells


def _cell_spec(owner, cell) -> _CellSpec:
    """The ONNX op for one SimpleRNN / LSTM / GRU cell (``owner`` is the layer named in errors)."""
    units, op_type = cell.units, _CELL_OPS[type(cell)]
    kernel = np.asarray(cell.kernel, np.float32)
    recurrent = np.asarray(cell.recurrent_kernel, np.float32)
    gates = {"RNN": 1, "GRU": 3, "LSTM": 4}[op_type]
    bias = np.asarray(cell.bias, np.float32) if cell.use_bias else np.zeros(gates * units, np.float32)
    recurrent_bias = np.zeros(gates * units, np.float32)
    attrs = {}
    if op_type == "RNN":
        activations = [_activation(owner, cell, "activation")]
    elif op_type == "GRU":
        # Keras GRU columns are z, r, h like ONNX's. reset_after=True applies the reset gate after the recurrent
        # matmul (ONNX linear_before_reset=1) and has two bias rows: input bias → Wb, recurrent bias → Rb.
        activations = [_activation(owner, cell, "recurrent_activation"), _activation(owner, cell, "activation")]
        attrs["linear_before_reset"] = int(cell.reset_after)
        if cell.reset_after and cell.use_bias:
            bias, recurrent_bias = bias[0], bias[1]
    else:
        activation = _activation(owner, cell, "activation")
        activations = [_activation(owner, cell, "recurrent_activation"), activation, activation]
        kernel, recurrent = _gate_blocks(kernel, _LSTM_GATES, units), _gate_blocks(recurrent, _LSTM_GATES, units)
        bias = _gate_blocks(bias, _LSTM_GATES, units)
    return _CellSpec(op_type, units, activations, attrs, kernel.T, recurrent.T, np.concatenate([bias, recurrent_bias]))


def _activation_attrs(activations: list, n_dir: int) -> dict:
    """ONNX activations, one list per direction (forward first), plus alphas/betas listed only for the functions
    that take them, in order: that is how onnxruntime consumes them."""
    activations = activations * n_dir
    attrs = {"activations": [a[0] for a in activations]}
    alphas = [a[1] for a in activations if len(a) > 1]
    if alphas:
        attrs["activation_alpha"] = alphas
        attrs["activation_beta"] = [a[2] for a in activations if len(a) > 1]
    return attrs


def _op(g: Graph, hint: str, x_tm: str, specs: list, direction: str, lens, initial: list) -> list[str]:
    """One ONNX RNN/LSTM/GRU op over time-major ``x_tm`` (one spec per direction): [Y, Y_h(, Y_c)]."""
    first = specs[0]
    W = g.const(np.stack([s.W for s in specs]), f"{hint}_W")
    R = g.const(np.stack([s.R for s in specs]), f"{hint}_R")
    B = g.const(np.stack([s.B for s in specs]), f"{hint}_B")
    return g.op(first.op_type, [x_tm, W, R, B, lens or "", *initial], hint, n_out=3 if first.op_type == "LSTM" else 2,
                hidden_size=first.units, direction=direction, **_activation_attrs(first.activations, len(specs)),
                **first.attrs)


def _initial_states(g: Graph, layer, call: Call, n_dir: int, levels: int, hint: str) -> list[str]:
    """The ops' initial_h (, initial_c) inputs [directions, batch, units] from ``initial_state``, or []."""
    initial_state = call.args.get("initial_state")
    if initial_state is None:
        return []
    if levels > 1:
        raise UnsupportedLayer(layer, "initial_state on StackedRNNCells")
    if call.args["sequences"].lens is not None:
        # Keras passes call() the mask only when the layer gets a single tensor argument: with initial_state it
        # runs over the padded steps too, yet the mask still flows downstream.
        raise UnsupportedLayer(layer, "initial_state on a masked sequence (Keras then ignores the mask)")
    states = initial_state if isinstance(initial_state, (list, tuple)) else [initial_state]
    per_dir, inputs = len(states) // n_dir, []  # Keras orders them [h(, c)] per direction, forward first
    for k in range(per_dir):
        parts = [g.unsqueeze(states[d * per_dir + k].name, [0], f"{hint}_state") for d in range(n_dir)]
        inputs.append(parts[0] if n_dir == 1 else g.op("Concat", parts, f"{hint}_state", axis=0))
    return inputs


def _run(g: Graph, hint: str, x_tm: str, stacks: list, directions: list[str], lens, initial: list):
    """The ops of every direction: one op over all of them when each runs one cell, else a chain of one-direction
    ops per direction (one per stacked cell). Returns Y of the top cells [time, directions, batch, units], their
    final Y_h [directions, batch, units], and the final states [batch, units], [h(, c)] per cell per direction."""
    if len(stacks[0]) == 1:
        direction = "bidirectional" if len(stacks) == 2 else directions[0]
        Y, *final = _op(g, hint, x_tm, [stack[0] for stack in stacks], direction, lens, initial)
        return Y, final[0], [g.gather(s, d, 0, f"{hint}_state") for d in range(len(stacks)) for s in final]
    tops, top_h, states = [], [], []
    for stack, direction in zip(stacks, directions):
        Y = None
        for level, spec in enumerate(stack):
            y = x_tm if Y is None else g.squeeze(Y, [1], hint)
            Y, *final = _op(g, f"{hint}_{level}", y, [spec], direction, lens, [])
            states += [g.squeeze(s, [0], f"{hint}_state") for s in final]
        tops.append(Y)
        top_h.append(final[0])
    if len(stacks) == 1:
        return tops[0], top_h[0], states
    return g.op("Concat", tops, hint, axis=1), g.op("Concat", top_h, hint, axis=0), states


def _recurrent(g: Graph, layer, call: Call, directions: list, merge_mode: str | None = None):
    """ONNX RNN/LSTM/GRU ops for a recurrent layer (one direction) or a Bidirectional (both, forward first)."""
    stacks = [[_cell_spec(layer, cell) for cell in _cells(layer, rnn)] for rnn in directions]
    if len(stacks) == 2 and [s.signature() for s in stacks[0]] != [s.signature() for s in stacks[1]]:
        raise UnsupportedLayer(layer, "forward and backward layers differ in cell, units, activations or options")
    rnn = directions[0]
    backwards = [d.go_backwards for d in directions]
    if len(directions) == 2 and backwards != [False, True]:
        raise UnsupportedLayer(layer, "the forward layer goes backwards or the backward layer forwards")
    x, hint = call.args["sequences"], layer.name
    if len(x.shape) != 3:
        raise UnsupportedLayer(layer, f"input of rank {len(x.shape)}; expected [batch, time, features]")
    lens = call.mask
    if lens is not None and not rnn.return_sequences and getattr(rnn, "zero_output_for_mask", False):
        raise UnsupportedLayer(layer, "zero_output_for_mask with return_sequences=False returns zeros for padded rows")

    n_dir = len(directions)
    initial = _initial_states(g, layer, call, n_dir, len(stacks[0]), hint)
    names = ["reverse" if back else "forward" for back in backwards]
    x_tm = g.op("Transpose", [x.name], f"{hint}_time_major", perm=[1, 0, 2])
    Y, Y_h, states = _run(g, hint, x_tm, stacks, names, lens, initial)

    outputs = []
    if rnn.return_sequences:  # Y: [time, directions, batch, units]; padded steps are zeros
        if n_dir == 1:
            outputs.append(_one_direction_sequence(g, rnn, Y, Y_h, lens, hint))
        else:
            # Bidirectional flips the backward layer's outputs back into input order, which is where ONNX's reverse
            # direction writes them (step t of the backward pass over the real steps of each row).
            y = g.op("Transpose", [Y], hint, perm=[2, 0, 1, 3])  # [batch, time, directions, units]
            outputs += _merge(g, y, 2, merge_mode, hint)
        outputs = [(name, lens if lens is not None else x.lens) for name in outputs]
    else:  # Keras' last output: the state after the last real step (after step 0 for the backward direction) = Y_h
        if n_dir == 1:
            outputs.append((g.squeeze(Y_h, [0], hint), None))
        else:
            y = g.op("Transpose", [Y_h], hint, perm=[1, 0, 2])  # [batch, directions, units]
            outputs += [(name, None) for name in _merge(g, y, 1, merge_mode, hint)]
    if rnn.return_state:  # [h(, c)] per cell per direction, forward first
        outputs += [(state, None) for state in states]
    return outputs


def _one_direction_sequence(g: Graph, rnn, Y: str, Y_h: str, lens, hint: str) -> str:
    """[batch, time, units] outputs of a lone layer, padded steps as Keras leaves them."""
    y = g.squeeze(Y, [1], hint)
    if rnn.go_backwards:
        # A lone go_backwards layer returns its outputs in reversed time order (all steps, padding included:
        # Keras' padded steps come first then, as zeros), but leaves the mask as it was.
        y = g.op("Slice", [y, g.const([-1], f"{hint}_start", np.int64),
                           g.const([np.iinfo(np.int64).min], f"{hint}_end", np.int64),
                           g.const([0], f"{hint}_axis", np.int64), g.const([-1], f"{hint}_step", np.int64)],
                 f"{hint}_reversed")
    y = g.op("Transpose", [y], hint, perm=[1, 0, 2])
    if lens is None or rnn.go_backwards or rnn.zero_output_for_mask or g.padding_unread:
        return y
    # Without zero_output_for_mask Keras repeats the last real output over the padded steps (ONNX writes zeros):
    # layers that read every step (Conv1D, GlobalMaxPooling1D, Flatten...) see the same values as in Keras.
    return g.where_steps(y, lens, g.op("Transpose", [Y_h], hint, perm=[1, 0, 2]), hint)


def _merge(g: Graph, y: str, axis: int, merge_mode: str | None, hint: str) -> list[str]:
    """Merges the directions ``axis`` of ``y`` as Bidirectional's ``merge_mode`` does (concat: forward first)."""
    if merge_mode is None:
        return [g.gather(y, 0, axis, f"{hint}_forward"), g.gather(y, 1, axis, f"{hint}_backward")]
    if merge_mode == "concat":
        shape = [0] * axis + [-1]
        return [g.op("Reshape", [y, g.const(shape, f"{hint}_shape", np.int64)], hint)]
    reducer = {"sum": "ReduceSum", "ave": "ReduceMean", "mul": "ReduceProd"}[merge_mode]
    return [g.reduce(reducer, y, [axis], hint)]


@emits(keras.layers.SimpleRNN, keras.layers.LSTM, keras.layers.GRU, keras.layers.RNN)
def _simple_recurrent(g: Graph, layer, call: Call):
    return _recurrent(g, layer, call, [layer])


@emits(keras.layers.Bidirectional)
def _bidirectional(g: Graph, layer, call: Call):
    return _recurrent(g, layer, call, [layer.forward_layer, layer.backward_layer], layer.merge_mode)
