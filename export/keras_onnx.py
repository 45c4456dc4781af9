"""Keras 3 functional model → ONNX with native ``RNN`` / ``LSTM`` / ``GRU`` ops, built layer by layer.

tf2onnx converts the traced TensorFlow graph: masked recurrent layers become ``Loop`` graphs (5-7x slower in
onnxruntime) and the GPU's CudnnRNNV3 kernels do not convert at all. This converter instead reads each layer's
config and weights and emits the equivalent ONNX ops, a Keras mask becoming the recurrent ops' ``sequence_lens``.

Masks are carried as sequence lengths (int32 [batch]), so they are assumed RIGHT-padded: an ``Embedding`` with
``mask_zero=True`` fed ids whose zeros all sit at the end of each row. Any layer or option that cannot be converted
exactly raises :class:`UnsupportedLayer` (callers fall back to tf2onnx).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import keras
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models.heads import AttentionPooling, MaskedPooling

DEFAULT_OPSET = 17
MIN_OPSET = 14  # RNN/LSTM/GRU-14: the first versions with the `layout` attribute; ReduceSum takes axes as input

__all__ = ["DEFAULT_OPSET", "UnsupportedLayer", "convert"]


class UnsupportedLayer(Exception):
    """A layer (or one of its options) has no exact native ONNX translation here."""

    def __init__(self, layer, why: str):
        self.layer_name = layer.name
        self.layer_class = type(layer).__name__
        self.why = why
        super().__init__(f"layer {layer.name!r} ({self.layer_class}) cannot be converted to native ONNX: {why}")


@dataclass(frozen=True)
class Value:
    """The ONNX tensor standing for a Keras tensor: its name, its mask as sequence lengths (or None), its shape."""

    name: str
    lens: str | None = None
    shape: tuple = ()
    dtype: str = "float32"


# --------------------------------------------------------------------------------------------------------------------
# Graph building


class _Graph:
    """Accumulates nodes and initializers under unique names."""

    def __init__(self, opset: int):
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.lens_of_ids: dict[str, str] = {}  # ids tensor → its mask lengths, shared by every Embedding reading it
        self._used: set[str] = set()

    def reserve(self, names: list[str]) -> None:
        """Keeps ``names`` (the graph's inputs and outputs) from being handed out by :meth:`fresh`."""
        self._used.update(names)

    def fresh(self, hint: str) -> str:
        name, i = hint, 1
        while name in self._used:
            i += 1
            name = f"{hint}_{i}"
        self._used.add(name)
        return name

    def const(self, value, hint: str, dtype=None) -> str:
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str, n_out: int = 1, **attrs):
        """Adds one node; returns its output name, or the list of them when ``n_out > 1``."""
        outputs = [self.fresh(f"{hint}_{op_type}" if n_out == 1 else f"{hint}_{op_type}_{i}") for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=self.fresh(f"{hint}/{op_type}"), **attrs))
        return outputs[0] if n_out == 1 else outputs

    def reduce(self, op_type: str, x: str, axes: list[int], hint: str, keepdims: int = 0) -> str:
        """A Reduce* op: ``axes`` is an input from opset 13 for ReduceSum and from 18 for the others."""
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, [x, self.const(axes, f"{hint}_axes", np.int64)], hint, keepdims=keepdims)
        return self.op(op_type, [x], hint, axes=axes, keepdims=keepdims)

    def unsqueeze(self, x: str, axes: list[int], hint: str) -> str:
        return self.op("Unsqueeze", [x, self.const(axes, f"{hint}_axes", np.int64)], hint)

    def squeeze(self, x: str, axes: list[int], hint: str) -> str:
        return self.op("Squeeze", [x, self.const(axes, f"{hint}_axes", np.int64)], hint)

    def gather(self, x: str, index: int, axis: int, hint: str) -> str:
        """``x`` indexed at ``index`` along ``axis`` (the axis is dropped)."""
        return self.op("Gather", [x, self.const(index, f"{hint}_index", np.int64)], hint, axis=axis)

    def time_mask(self, x: str, lens: str, hint: str) -> str:
        """bool [batch, time] (right-padded): step t of row b is real when t < lens[b]."""
        time = self.gather(self.op("Shape", [x], hint), 1, 0, f"{hint}_time")
        steps = self.op("Range", [self.const(0, f"{hint}_zero", np.int64), time, self.const(1, f"{hint}_one", np.int64)],
                        hint)
        lens64 = self.op("Cast", [lens], hint, to=TensorProto.INT64)
        return self.op("Less", [self.unsqueeze(steps, [0], hint), self.unsqueeze(lens64, [1], hint)], hint)


# --------------------------------------------------------------------------------------------------------------------
# Layer emitters: each takes (graph, layer, call) and returns one (onnx name, mask lengths) per Keras output tensor.


@dataclass
class _Call:
    """A layer call: its bound arguments (Keras tensors replaced by Values) and the mask Keras passes to call()."""

    args: dict
    first: object  # the first argument: a Value, or a list of them
    mask: object  # lengths (or a list of them) Keras hands call() as `mask`; None when it passes none


def _identity(g: _Graph, layer, call: _Call):
    """Dropout and friends: identity at inference; the mask flows through."""
    return [(call.first.name, call.first.lens)]


_DENSE_ACTIVATIONS = {"linear": None, "relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "softmax": "Softmax"}


def _dense(g: _Graph, layer, call: _Call):
    """MatMul + Add + activation; on [batch, time, features] it applies per step, so the mask flows through."""
    if layer.quantization_mode:
        raise UnsupportedLayer(layer, f"quantized ({layer.quantization_mode}) kernels")
    activation = keras.activations.serialize(layer.activation)
    if activation not in _DENSE_ACTIVATIONS:
        raise UnsupportedLayer(layer, f"activation {activation!r}; supported: {', '.join(_DENSE_ACTIVATIONS)}")
    x = call.first
    y = g.op("MatMul", [x.name, g.const(np.asarray(layer.kernel, np.float32), f"{layer.name}_kernel")], layer.name)
    if layer.use_bias:
        y = g.op("Add", [y, g.const(np.asarray(layer.bias, np.float32), f"{layer.name}_bias")], layer.name)
    if _DENSE_ACTIVATIONS[activation] == "Softmax":
        y = g.op("Softmax", [y], layer.name, axis=-1)
    elif _DENSE_ACTIVATIONS[activation]:
        y = g.op(_DENSE_ACTIVATIONS[activation], [y], layer.name)
    return [(y, x.lens)]


def _embedding(g: _Graph, layer, call: _Call):
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
        zero = g.const(np.zeros((), _numpy_dtype(ids.dtype)), f"{layer.name}_zero")
        real = g.op("Not", [g.op("Equal", [ids.name, zero], layer.name)], layer.name)
        g.lens_of_ids[ids.name] = g.reduce("ReduceSum", g.op("Cast", [real], layer.name, to=TensorProto.INT32), [1],
                                           f"{layer.name}_lens")
    return [(y, g.lens_of_ids[ids.name])]


def _same_mask(layer, inputs: list[Value]) -> str | None:
    """The one mask shared by merged inputs. Keras ORs differing masks (and a merge of masked with unmasked inputs
    makes padded steps real), which would expose padded steps whose values this converter does not reproduce."""
    masks = {v.lens for v in inputs}
    if len(masks) > 1:
        raise UnsupportedLayer(layer, "merges tensors with different masks (or masked with unmasked ones)")
    return masks.pop()


def _concatenate(g: _Graph, layer, call: _Call):
    inputs = list(call.first)
    lens = _same_mask(layer, inputs)
    rank = len(inputs[0].shape)
    if lens is not None and layer.axis not in (-1, rank - 1):
        raise UnsupportedLayer(layer, f"concatenation along axis {layer.axis} of masked tensors")
    return [(g.op("Concat", [v.name for v in inputs], layer.name, axis=layer.axis), lens)]


def _add(g: _Graph, layer, call: _Call):
    inputs = list(call.first)
    lens = _same_mask(layer, inputs)
    y = inputs[0].name
    for v in inputs[1:]:
        y = g.op("Add", [y, v.name], layer.name)
    return [(y, lens)]


def _average(g: _Graph, layer, call: _Call):
    inputs = list(call.first)
    return [(g.op("Mean", [v.name for v in inputs], layer.name), _same_mask(layer, inputs))]


def _masked_pooling(g: _Graph, layer, call: _Call):
    """Mean / max over the unmasked steps (models.heads.MaskedPooling); its output carries no mask."""
    x, lens, hint = call.first, call.mask, layer.name
    pooled = []
    if lens is None:  # Keras pools over all steps
        if layer.mode in ("mean", "mean_max"):
            pooled.append(g.reduce("ReduceMean", x.name, [1], hint))
        if layer.mode in ("max", "mean_max"):
            pooled.append(g.reduce("ReduceMax", x.name, [1], hint))
    else:
        valid = g.unsqueeze(g.time_mask(x.name, lens, hint), [2], hint)  # bool [batch, time, 1]
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


def _attention_pooling(g: _Graph, layer, call: _Call):
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
# Recurrent layers

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


def _activation(owner, rnn, attr: str):
    name = keras.activations.serialize(getattr(rnn.cell, attr))
    if name not in _RNN_ACTIVATIONS:
        raise UnsupportedLayer(owner, f"{attr} {name!r} is not an ONNX recurrent activation this converter emits; "
                                      f"supported: {', '.join(_RNN_ACTIVATIONS)}")
    return _RNN_ACTIVATIONS[name]


def _gate_blocks(a: np.ndarray, order: list[int], units: int) -> np.ndarray:
    """Reorders the gate blocks of ``a``'s last axis."""
    return np.concatenate([a[..., k * units:(k + 1) * units] for k in order], axis=-1)


def _cell_spec(owner, rnn) -> _CellSpec:
    """The ONNX op for one Keras SimpleRNN / LSTM / GRU layer (``owner`` is the layer named in errors)."""
    if type(rnn) not in _RECURRENT_OPS:
        raise UnsupportedLayer(owner, f"wraps a {type(rnn).__name__}; only SimpleRNN, LSTM and GRU are supported")
    if rnn.stateful:
        raise UnsupportedLayer(owner, "stateful=True (state carried across batches)")
    if getattr(rnn, "time_major", False):
        raise UnsupportedLayer(owner, "time_major=True")
    cell, units = rnn.cell, rnn.cell.units
    op_type = _RECURRENT_OPS[type(rnn)]
    kernel = np.asarray(cell.kernel, np.float32)
    recurrent = np.asarray(cell.recurrent_kernel, np.float32)
    gates = {"RNN": 1, "GRU": 3, "LSTM": 4}[op_type]
    bias = np.asarray(cell.bias, np.float32) if cell.use_bias else np.zeros(gates * units, np.float32)
    recurrent_bias = np.zeros(gates * units, np.float32)
    attrs = {}
    if op_type == "RNN":
        activations = [_activation(owner, rnn, "activation")]
    elif op_type == "GRU":
        # Keras GRU columns are z, r, h like ONNX's. reset_after=True applies the reset gate after the recurrent
        # matmul (ONNX linear_before_reset=1) and has two bias rows: input bias → Wb, recurrent bias → Rb.
        activations = [_activation(owner, rnn, "recurrent_activation"), _activation(owner, rnn, "activation")]
        attrs["linear_before_reset"] = int(cell.reset_after)
        if cell.reset_after and cell.use_bias:
            bias, recurrent_bias = bias[0], bias[1]
    else:
        activation = _activation(owner, rnn, "activation")
        activations = [_activation(owner, rnn, "recurrent_activation"), activation, activation]
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


def _recurrent(g: _Graph, layer, call: _Call, directions: list, merge_mode: str | None = None):
    """One ONNX RNN/LSTM/GRU op for a recurrent layer (one direction) or a Bidirectional (both, forward first)."""
    specs = [_cell_spec(layer, rnn) for rnn in directions]
    first = specs[0]
    for spec in specs[1:]:
        if (spec.op_type, spec.units, spec.activations, spec.attrs) != (first.op_type, first.units, first.activations,
                                                                       first.attrs):
            raise UnsupportedLayer(layer, "forward and backward layers differ in cell, units, activations or options")
    rnn = directions[0]
    backwards = [d.go_backwards for d in directions]
    if len(directions) == 2 and backwards != [False, True]:
        raise UnsupportedLayer(layer, "the forward layer goes backwards or the backward layer forwards")
    x, hint = call.args["sequences"], layer.name
    if len(x.shape) != 3:
        raise UnsupportedLayer(layer, f"input of rank {len(x.shape)}; expected [batch, time, features]")
    initial_state = call.args.get("initial_state")
    if initial_state is not None and x.lens is not None:
        # Keras passes call() the mask only when the layer gets a single tensor argument: with initial_state it
        # runs over the padded steps too, yet the mask still flows downstream.
        raise UnsupportedLayer(layer, "initial_state on a masked sequence (Keras then ignores the mask)")
    lens = call.mask
    if lens is not None and not rnn.return_sequences and getattr(rnn, "zero_output_for_mask", False):
        raise UnsupportedLayer(layer, "zero_output_for_mask with return_sequences=False returns zeros for padded rows")

    n_dir = len(directions)
    W = g.const(np.stack([s.W for s in specs]), f"{hint}_W")
    R = g.const(np.stack([s.R for s in specs]), f"{hint}_R")
    B = g.const(np.stack([s.B for s in specs]), f"{hint}_B")
    inputs = [g.op("Transpose", [x.name], f"{hint}_time_major", perm=[1, 0, 2]), W, R, B, lens or ""]
    if initial_state is not None:
        states = initial_state if isinstance(initial_state, (list, tuple)) else [initial_state]
        per_dir = len(states) // n_dir  # Keras orders them [h(, c)] per direction, forward first
        for k in range(per_dir):  # initial_h, then initial_c: [directions, batch, units]
            parts = [g.unsqueeze(states[d * per_dir + k].name, [0], f"{hint}_state") for d in range(n_dir)]
            inputs.append(parts[0] if n_dir == 1 else g.op("Concat", parts, f"{hint}_state", axis=0))
    direction = "bidirectional" if n_dir == 2 else ("reverse" if rnn.go_backwards else "forward")
    n_out = 3 if first.op_type == "LSTM" else 2
    Y, Y_h, *Y_c = g.op(first.op_type, inputs, hint, n_out=n_out, hidden_size=first.units, direction=direction,
                        **_activation_attrs(first.activations, n_dir), **first.attrs)

    outputs = []
    if rnn.return_sequences:  # Y: [time, directions, batch, units]; padded steps are zeros
        if n_dir == 1:
            y = g.squeeze(Y, [1], hint)
            if rnn.go_backwards:
                # A lone go_backwards layer returns its outputs in reversed time order (all steps, padding included:
                # Keras' padded steps come first then, as zeros), but leaves the mask as it was.
                y = g.op("Slice", [y, g.const([-1], f"{hint}_start", np.int64),
                                   g.const([np.iinfo(np.int64).min], f"{hint}_end", np.int64),
                                   g.const([0], f"{hint}_axis", np.int64), g.const([-1], f"{hint}_step", np.int64)],
                         f"{hint}_reversed")
            outputs.append(g.op("Transpose", [y], hint, perm=[1, 0, 2]))
        else:
            # Bidirectional flips the backward layer's outputs back into input order, which is where ONNX's reverse
            # direction writes them (step t of the backward pass over the real steps of each row).
            y = g.op("Transpose", [Y], hint, perm=[2, 0, 1, 3])  # [batch, time, directions, units]
            outputs += _merge(g, y, 2, merge_mode, hint)
        outputs = [(name, x.lens) for name in outputs]
    else:  # Keras' last output: the state after the last real step (after step 0 for the backward direction) = Y_h
        if n_dir == 1:
            outputs.append((g.squeeze(Y_h, [0], hint), None))
        else:
            y = g.op("Transpose", [Y_h], hint, perm=[1, 0, 2])  # [batch, directions, units]
            outputs += [(name, None) for name in _merge(g, y, 1, merge_mode, hint)]
    if rnn.return_state:  # [h(, c)] per direction, forward first
        for d in range(n_dir):
            for state in [Y_h] + Y_c:
                outputs.append((g.gather(state, d, 0, f"{hint}_state"), None))
    return outputs


def _merge(g: _Graph, y: str, axis: int, merge_mode: str | None, hint: str) -> list[str]:
    """Merges the directions ``axis`` of ``y`` as Bidirectional's ``merge_mode`` does (concat: forward first)."""
    if merge_mode is None:
        return [g.gather(y, 0, axis, f"{hint}_forward"), g.gather(y, 1, axis, f"{hint}_backward")]
    if merge_mode == "concat":
        shape = [0] * axis + [-1]
        return [g.op("Reshape", [y, g.const(shape, f"{hint}_shape", np.int64)], hint)]
    reducer = {"sum": "ReduceSum", "ave": "ReduceMean", "mul": "ReduceProd"}[merge_mode]
    return [g.reduce(reducer, y, [axis], hint)]


def _simple_recurrent(g: _Graph, layer, call: _Call):
    return _recurrent(g, layer, call, [layer])


def _bidirectional(g: _Graph, layer, call: _Call):
    return _recurrent(g, layer, call, [layer.forward_layer, layer.backward_layer], layer.merge_mode)


_RECURRENT_OPS = {keras.layers.SimpleRNN: "RNN", keras.layers.LSTM: "LSTM", keras.layers.GRU: "GRU"}

EMITTERS = {
    keras.layers.Embedding: _embedding,
    keras.layers.Dropout: _identity,
    keras.layers.SpatialDropout1D: _identity,
    keras.layers.Dense: _dense,
    keras.layers.Concatenate: _concatenate,
    keras.layers.Add: _add,
    keras.layers.Average: _average,
    keras.layers.SimpleRNN: _simple_recurrent,
    keras.layers.LSTM: _simple_recurrent,
    keras.layers.GRU: _simple_recurrent,
    keras.layers.Bidirectional: _bidirectional,
    MaskedPooling: _masked_pooling,
    AttentionPooling: _attention_pooling,
}


# --------------------------------------------------------------------------------------------------------------------
# Graph walk


def _numpy_dtype(dtype) -> np.dtype:
    return np.dtype(keras.backend.standardize_dtype(dtype))


def _dims(shape) -> list:
    """Keras shape → ONNX dims, unknown ones named batch, time, then dim<i>."""
    names = ["batch", "time"]
    return [d if d is not None else (names[i] if i < 2 else f"dim{i}") for i, d in enumerate(shape)]


def _to_values(value, values: dict):
    """Replaces the Keras tensors in a (nested list/tuple/dict) call argument by their Values."""
    if isinstance(value, keras.KerasTensor):
        return values[id(value)]
    if isinstance(value, (list, tuple)):
        return [_to_values(v, values) for v in value]
    if isinstance(value, dict):
        return {k: _to_values(v, values) for k, v in value.items()}
    return value


def _data_inputs(node) -> list:
    """The Keras tensors a node computes from: its tensor arguments but ``mask``, which travels as lengths."""
    kwargs = {k: v for k, v in node.arguments.kwargs.items() if k != "mask"}
    return [t for t in keras.tree.flatten((node.arguments.args, kwargs)) if isinstance(t, keras.KerasTensor)]


def _needed_nodes(model) -> set[int]:
    """ids of the nodes the outputs' data depends on. The ops computing Keras' boolean masks (NotEqual after an
    Embedding, LogicalOr/Any after a merge...) are left out: masks are rebuilt from sequence lengths instead."""
    needed, stack = set(), list(model.outputs)
    while stack:
        operation, node_index, _ = stack.pop()._keras_history
        node = operation._inbound_nodes[node_index]
        if id(node) not in needed:
            needed.add(id(node))
            stack.extend(_data_inputs(node))
    return needed


def _embedding_ids(tensor):
    """The ids tensor of the Embedding that ``tensor`` descends from (through first data inputs), or None."""
    for _ in range(1000):
        operation, node_index, _ = tensor._keras_history
        node = operation._inbound_nodes[node_index]
        if isinstance(operation, keras.layers.Embedding):
            return node.arguments.args[0]
        inputs = _data_inputs(node)
        if not inputs:
            return None
        tensor = inputs[0]
    return None


def _is_padding_mask_of(mask, tensor) -> bool:
    """True when ``mask`` is ``ids != 0`` for the ids of the Embedding ``tensor`` descends from: how a model loaded
    from a .keras file records the mask that Keras propagated from that Embedding."""
    if not isinstance(mask, keras.KerasTensor) or not isinstance(tensor, keras.KerasTensor):
        return False
    operation, node_index, _ = mask._keras_history
    if type(operation).__name__ != "NotEqual":
        return False
    args = operation._inbound_nodes[node_index].arguments.args
    ids = _embedding_ids(tensor)
    return len(args) == 2 and ids is not None and args[0] is ids and isinstance(args[1], int) and args[1] == 0


def _bind(layer, node, values: dict) -> _Call:
    """Binds a node's recorded arguments to ``layer.call``.

    Building a functional model, Keras (Layer.__call__) records the mask it hands call() as an explicit ``mask``
    argument: the first argument's own mask, and only when the call has exactly one tensor argument (so not with
    ``initial_state``). That mask is taken as the first argument's lengths; any other mask argument raises.
    """
    signature = inspect.signature(layer.call)
    params = signature.parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in node.arguments.kwargs.items() if k in params or takes_kwargs}
    bound = signature.bind(*node.arguments.args, **kwargs).arguments
    first_name = next(iter(bound))
    keras_mask, first = bound.pop("mask", None), bound[first_name]
    mask = None
    if keras_mask is not None:
        lens = values[id(first)].lens if isinstance(first, keras.KerasTensor) else None
        own_mask = keras_mask is getattr(first, "_keras_mask", None) or _is_padding_mask_of(keras_mask, first)
        if lens is None or not own_mask:
            raise UnsupportedLayer(layer, "a mask argument other than the right-padded mask of its input")
        mask = lens
    elif "mask" in params and isinstance(first, keras.KerasTensor):
        # At run time Keras hands call() the mask of the only tensor argument (``initial_state=None`` is not a
        # tensor), whether or not the node recorded it.
        tensors = [t for t in keras.tree.flatten(list(bound.values())) if isinstance(t, keras.KerasTensor)]
        if len(tensors) == 1:
            mask = values[id(first)].lens
    args = {name: _to_values(value, values) for name, value in bound.items()}
    return _Call(args, args[first_name], mask)


def _output_names(model) -> list[str]:
    """Graph output names: the output dict's keys, else the output layers' names (made unique)."""
    struct = model._outputs_struct
    if isinstance(struct, dict):
        return ["/".join(str(p) for p in path) for path, _ in keras.tree.flatten_with_path(struct)]
    names = list(model.output_names)
    return [n if names.count(n) == 1 else f"{n}_{i}" for i, n in enumerate(names)]


def convert(model: keras.Model, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Converts a Keras 3 functional ``model`` to ONNX (``opset`` >= 14) with native recurrent ops.

    Graph inputs are named like the Keras inputs, graph outputs like the model's output dict keys (or its output
    layers). Raises UnsupportedLayer for anything it cannot convert exactly.
    """
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} < {MIN_OPSET}: native recurrent conversion needs opset {MIN_OPSET} or later")
    if not hasattr(model, "_nodes_by_depth"):
        raise UnsupportedLayer(model, "only functional models can be walked layer by layer")
    g = _Graph(opset)
    output_names = _output_names(model)
    g.reserve(output_names)
    values: dict[int, Value] = {}
    graph_inputs = []
    for tensor in model.inputs:
        values[id(tensor)] = Value(tensor.name, None, tuple(tensor.shape), tensor.dtype)
        elem = helper.np_dtype_to_tensor_dtype(_numpy_dtype(tensor.dtype))
        graph_inputs.append(helper.make_tensor_value_info(tensor.name, elem, _dims(tensor.shape)))
        g.reserve([tensor.name])

    needed = _needed_nodes(model)
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.is_input or id(node) not in needed:
                continue
            layer = node.operation
            emitter = EMITTERS.get(type(layer))
            if emitter is None:
                raise UnsupportedLayer(layer, "no native ONNX emitter for this layer class")
            if keras.backend.standardize_dtype(getattr(layer, "compute_dtype", "float32")) != "float32":
                raise UnsupportedLayer(layer, f"compute dtype {layer.compute_dtype} (only float32 is emitted)")
            produced = emitter(g, layer, _bind(layer, node, values))
            if len(produced) != len(node.outputs):  # a guard on the emitters themselves
                raise UnsupportedLayer(layer, f"emitted {len(produced)} outputs for {len(node.outputs)} Keras outputs")
            for tensor, (name, lens) in zip(node.outputs, produced):
                lens = lens if layer.supports_masking else None
                values[id(tensor)] = Value(name, lens, tuple(tensor.shape), tensor.dtype)

    graph_outputs = []
    for name, tensor in zip(output_names, model.outputs):
        g.nodes.append(helper.make_node("Identity", [values[id(tensor)].name], [name], name=g.fresh(f"{name}/Identity")))
        elem = helper.np_dtype_to_tensor_dtype(_numpy_dtype(tensor.dtype))
        graph_outputs.append(helper.make_tensor_value_info(name, elem, _dims(tensor.shape)))

    graph = helper.make_graph(g.nodes, model.name, graph_inputs, graph_outputs, g.initializers)
    imports = [helper.make_opsetid("", opset)]
    if any(node.domain == "ai.onnx.ml" for node in g.nodes):  # LabelEncoder (models.ngrams)
        imports.append(helper.make_opsetid("ai.onnx.ml", 2))
    proto = helper.make_model(graph, opset_imports=imports, producer_name="rnn-toolkit keras_onnx")
    onnx.checker.check_model(proto)
    return proto
import export.emit_memory  # noqa: E402,F401  (registers the MemN2N emitter; imported last: it reads EMITTERS)
import export.emit_ngrams  # noqa: E402,F401  (the naive-Bayes n-gram path)
