"""Native ONNX emitters for the Keras layers users put around recurrent layers: Masking, Conv1D and 1-D pooling,
global pooling, layer / RMS / batch normalization, TimeDistributed, Activation and the activation layers (ReLU,
LeakyReLU, ELU, Softmax), Reshape / Permute / Flatten / RepeatVector, and the speech models' mask layers
(``models.speech``). Registered with ``export.registry.emits``.

Masks travel as sequence lengths (int32 [batch]), so they are assumed RIGHT-padded (see ``export/keras_onnx.py``).
``Masking`` counts the real steps of each row: a row whose masked steps are not all at its end (an all-``mask_value``
frame in the middle of a clip) cannot be expressed as lengths and converts inexactly. That is not checked when the
graph is built (it depends on the data); the export's parity check on right-padded batches is what vouches for it.

Layers that mix steps (Conv1D, pooling, Reshape, Flatten, GlobalMaxPooling1D) read the padded steps too: the
emitters upstream reproduce Keras' values there (zeros after Masking, ``embeddings[0]`` after an Embedding, what
the recurrent layers leave), so they are exact; like Keras, Conv1D and the 1-D poolings drop the mask.
"""

from __future__ import annotations

import inspect

import keras
import numpy as np
from keras.src.ops.numpy import GetItem
from onnx import TensorProto

from export.registry import Call, Graph, UnsupportedLayer, Value, emitter_for, emits
from models.speech import FrameMask, SubsampleMask

L = keras.layers


def _channels_first(g: Graph, x: str, layer, hint: str) -> str:
    """[batch, steps, channels] → [batch, channels, steps] unless the layer already reads channels first."""
    return x if layer.data_format == "channels_first" else g.op("Transpose", [x], hint, perm=[0, 2, 1])


def _channels_back(g: Graph, y: str, layer, hint: str) -> str:
    return y if layer.data_format == "channels_first" else g.op("Transpose", [y], hint, perm=[0, 2, 1])


def _rank3(layer, x: Value) -> None:
    if len(x.shape) != 3:
        raise UnsupportedLayer(layer, f"input of rank {len(x.shape)}; expected [batch, steps, channels]")


# --------------------------------------------------------------------------------------------------------------------
# Masks


@emits(L.Masking)
def _masking(g: Graph, layer, call: Call):
    """Zeros the steps equal to ``mask_value`` everywhere; the mask becomes lengths: the count of the other steps."""
    x, hint = call.first, layer.name
    _rank3(layer, x)
    if x.dtype != "float32":
        raise UnsupportedLayer(layer, f"{x.dtype} inputs (Masking is emitted for float32 frames)")
    if np.ndim(layer.mask_value) != 0:
        raise UnsupportedLayer(layer, "a mask_value that is not a scalar")
    value = g.const(np.float32(layer.mask_value), f"{hint}_value")
    differs = g.op("Cast", [g.op("Not", [g.op("Equal", [x.name, value], hint)], hint)], hint, to=TensorProto.FLOAT)
    real = g.op("Cast", [g.reduce("ReduceMax", differs, [2], hint, keepdims=1)], hint, to=TensorProto.BOOL)
    y = g.op("Where", [real, x.name, g.const(np.float32(0), f"{hint}_0")], hint)  # real: bool [batch, time, 1]
    steps = g.squeeze(real, [2], hint)
    lens = g.reduce("ReduceSum", g.op("Cast", [steps], hint, to=TensorProto.INT32), [1], hint)
    g.set_time_mask(lens, steps)
    g.set_time_mask(lens, real, axes=(2,))
    return [(y, lens)]


def _mask_lens(g: Graph, lens: str, steps: str, hint: str) -> str:
    """int32 lengths clipped to [0, steps] (int64 scalar ``steps``)."""
    steps32 = g.op("Cast", [steps], hint, to=TensorProto.INT32)
    return g.op("Max", [g.op("Min", [lens, steps32], hint), g.const(np.int32(0), f"{hint}_zero")], hint)


@emits(FrameMask)
def _frame_mask(g: Graph, layer, call: Call):
    """models.speech.FrameMask: step t of row b is real when t < frames[b]; its lengths travel with it."""
    features, frames = call.first
    hint = layer.name
    frames32 = g.op("Cast", [frames.name], hint, to=TensorProto.INT32)
    lens = _mask_lens(g, frames32, g.gather(g.op("Shape", [features.name], hint), 1, 0, hint), hint)
    return [(g.time_mask(features.name, lens, hint), lens)]


@emits(SubsampleMask)
def _subsample_mask(g: Graph, layer, call: Call):
    """models.speech.SubsampleMask: every ``stride``-th step; right-padded lengths become ceil(lens / stride)."""
    mask, hint, stride = call.first, layer.name, layer.stride
    if mask.lens is None:
        raise UnsupportedLayer(layer, "a mask that is not a right-padded mask with known lengths")
    kept = g.op("Slice", [mask.name, g.const([0], f"{hint}_start", np.int64),
                          g.const([np.iinfo(np.int64).max], f"{hint}_end", np.int64),
                          g.const([1], f"{hint}_axis", np.int64), g.const([stride], f"{hint}_step", np.int64)], hint)
    lens = g.op("Div", [g.op("Add", [mask.lens, g.const(np.int32(stride - 1), f"{hint}_round")], hint),
                        g.const(np.int32(stride), f"{hint}_stride")], hint)
    return [(kept, lens)]


# --------------------------------------------------------------------------------------------------------------------
# Convolution and pooling over steps: ONNX wants channels first


def _window_attrs(layer, padding: str, kernel: int, stride: int, dilation: int = 1) -> dict:
    """ONNX Conv / pool attributes for Keras' padding: valid, same (TensorFlow's: extra padding at the end, which is
    ONNX's SAME_UPPER) or causal (all of it at the start)."""
    attrs = {"kernel_shape": [kernel], "strides": [stride]}
    if padding == "same":
        return {**attrs, "auto_pad": "SAME_UPPER"}
    if padding == "causal":
        return {**attrs, "pads": [(kernel - 1) * dilation, 0]}
    if padding == "valid":
        return {**attrs, "pads": [0, 0]}
    raise UnsupportedLayer(layer, f"padding {padding!r}")


@emits(L.Conv1D)
def _conv1d(g: Graph, layer, call: Call):
    """Conv (group = Keras' groups). Keras drops the mask: the padded steps are read as they are."""
    x, hint = call.first, layer.name
    _rank3(layer, x)
    if getattr(layer, "quantization_mode", None):
        raise UnsupportedLayer(layer, f"quantized ({layer.quantization_mode}) kernels")
    (kernel,), (stride,), (dilation,) = layer.kernel_size, layer.strides, layer.dilation_rate
    attrs = _window_attrs(layer, layer.padding, kernel, stride, dilation)
    weights = np.asarray(layer.kernel, np.float32).transpose(2, 1, 0)  # [out, in / groups, kernel]
    inputs = [_channels_first(g, x.name, layer, hint), g.const(weights, f"{hint}_kernel")]
    if layer.use_bias:
        inputs.append(g.const(np.asarray(layer.bias, np.float32), f"{hint}_bias"))
    y = g.op("Conv", inputs, hint, dilations=[dilation], group=layer.groups, **attrs)
    y = _channels_back(g, y, layer, hint)
    return [(g.activation(layer, layer.activation, y, hint), None)]


@emits(L.MaxPooling1D, L.AveragePooling1D)
def _pooling1d(g: Graph, layer, call: Call):
    """MaxPool / AveragePool (TensorFlow's same padding averages over the real values only)."""
    x, hint = call.first, layer.name
    _rank3(layer, x)
    (size,), (stride,) = layer.pool_size, layer.strides
    attrs = _window_attrs(layer, layer.padding, size, stride)
    if isinstance(layer, L.AveragePooling1D):
        op_type, attrs = "AveragePool", {**attrs, "count_include_pad": 0}
    else:
        op_type = "MaxPool"
    y = g.op(op_type, [_channels_first(g, x.name, layer, hint)], hint, **attrs)
    return [(_channels_back(g, y, layer, hint), None)]


def _steps_axis(layer) -> int:
    return 2 if layer.data_format == "channels_first" else 1


@emits(L.GlobalMaxPooling1D)
def _global_max_pooling(g: Graph, layer, call: Call):
    """Max over every step: Keras' GlobalMaxPooling1D ignores the mask (padded steps included)."""
    x = call.first
    _rank3(layer, x)
    return [(g.reduce("ReduceMax", x.name, [_steps_axis(layer)], layer.name, keepdims=int(layer.keepdims)), None)]


@emits(L.GlobalAveragePooling1D)
def _global_average_pooling(g: Graph, layer, call: Call):
    """Mean over the steps, the masked ones left out as Keras does (a row with no real step gives NaN, as there)."""
    x, hint, lens = call.first, layer.name, call.mask
    _rank3(layer, x)
    axis, keep = _steps_axis(layer), int(layer.keepdims)
    if lens is None:
        return [(g.reduce("ReduceMean", x.name, [axis], hint, keepdims=keep), None)]
    if axis != 1:
        raise UnsupportedLayer(layer, "a mask with data_format='channels_first'")
    valid = g.time_mask(x.name, lens, hint, axes=(2,))  # bool [batch, time, 1]
    total = g.reduce("ReduceSum", g.op("Where", [valid, x.name, g.const(np.float32(0), f"{hint}_0")], hint), [axis],
                     hint, keepdims=keep)
    count = g.reduce("ReduceSum", g.op("Cast", [valid], hint, to=TensorProto.FLOAT), [axis], hint, keepdims=keep)
    return [(g.op("Div", [total, count], hint), None)]


# --------------------------------------------------------------------------------------------------------------------
# Normalization


def _axes(layer, axis, rank: int) -> list[int]:
    axes = sorted(a % rank for a in ([axis] if isinstance(axis, int) else axis))
    if 0 in axes:
        raise UnsupportedLayer(layer, "normalizing over the batch axis")
    return axes


def _broadcast(param, axes: list[int], shape: tuple) -> np.ndarray:
    """A per-feature parameter reshaped to broadcast against inputs of ``shape`` (features on ``axes``)."""
    return np.asarray(param, np.float32).reshape([shape[i] if i in axes else 1 for i in range(len(shape))])


def _rsqrt(g: Graph, v: str, epsilon: float, hint: str, scale: str | None = None) -> str:
    """1 / sqrt(v + epsilon), or with ``scale``: scale / sqrt(v + epsilon) (one Div for Reciprocal + Mul)."""
    root = g.op("Sqrt", [g.op("Add", [v, g.const(np.float32(epsilon), f"{hint}_eps")], hint)], hint)
    return g.op("Reciprocal", [root], hint) if scale is None else g.op("Div", [scale, root], hint)


@emits(L.LayerNormalization)
def _layer_normalization(g: Graph, layer, call: Call):
    """Keras' formula: inv = rsqrt(var + eps) * gamma; x * inv + (beta - mean * inv). rms_scaling: x * inv.

    Not ONNX's LayerNormalization-17: onnxruntime's kernel drifts 5e-6 from Keras where this stays under 1e-6."""
    x, hint = call.first, layer.name
    axes = _axes(layer, layer.axis, len(x.shape))
    if any(x.shape[a] is None for a in axes):
        raise UnsupportedLayer(layer, "normalizing over an axis of unknown size")
    mean = g.reduce("ReduceMean", x.name, axes, hint, keepdims=1)
    centered = g.op("Sub", [x.name, mean], hint)
    variance = g.reduce("ReduceMean", g.op("Mul", [centered, centered], hint), axes, hint, keepdims=1)
    gamma = g.const(_broadcast(layer.gamma, axes, x.shape), f"{hint}_gamma") if layer.scale else None
    inv = _rsqrt(g, variance, layer.epsilon, hint, gamma)
    if layer.rms_scaling:
        return [(g.op("Mul", [x.name, inv], hint), x.lens)]
    mean_inv = g.op("Mul", [mean, inv], hint)
    if layer.center:  # beta - mean * inv (Sub: one op fewer than Neg + Add, the same float)
        shift = g.op("Sub", [g.const(_broadcast(layer.beta, axes, x.shape), f"{hint}_beta"), mean_inv], hint)
    else:
        shift = g.op("Neg", [mean_inv], hint)
    return [(g.op("Add", [g.op("Mul", [x.name, inv], hint), shift], hint), x.lens)]


@emits(L.RMSNormalization)
def _rms_normalization(g: Graph, layer, call: Call):
    """x * rsqrt(mean(x^2) + eps) * scale."""
    x, hint = call.first, layer.name
    axes = _axes(layer, layer.axis, len(x.shape))
    mean_square = g.reduce("ReduceMean", g.op("Mul", [x.name, x.name], hint), axes, hint, keepdims=1)
    inv = _rsqrt(g, mean_square, layer.epsilon, hint)
    scale = g.const(_broadcast(layer.scale, axes, x.shape), f"{hint}_scale")
    y = g.op("Mul", [g.op("Mul", [x.name, inv], hint), scale], hint)
    return [(y, x.lens)]


@emits(L.BatchNormalization)
def _batch_normalization(g: Graph, layer, call: Call):
    """Inference: x * inv + (beta - moving_mean * inv), inv = rsqrt(moving_variance + eps) * gamma, folded."""
    x, hint = call.first, layer.name
    axes = _axes(layer, layer.axis, len(x.shape))
    inv = (1.0 / np.sqrt(np.asarray(layer.moving_variance, np.float32) + np.float32(layer.epsilon))).astype(np.float32)
    if layer.scale:
        inv = inv * np.asarray(layer.gamma, np.float32)
    shift = -np.asarray(layer.moving_mean, np.float32) * inv
    if layer.center:
        shift = shift + np.asarray(layer.beta, np.float32)
    y = g.op("Mul", [x.name, g.const(_broadcast(inv, axes, x.shape), f"{hint}_scale")], hint)
    return [(g.op("Add", [y, g.const(_broadcast(shift, axes, x.shape), f"{hint}_shift")], hint), x.lens)]


# --------------------------------------------------------------------------------------------------------------------
# Activation, shape layers and TimeDistributed


@emits(L.Activation)
def _activation(g: Graph, layer, call: Call):
    return [(g.activation(layer, layer.activation, call.first.name, layer.name), call.first.lens)]


@emits(L.ReLU, L.LeakyReLU, L.ELU, L.Softmax)
def _activation_layer(g: Graph, layer, call: Call):
    """The activation layers: ReLU (plain or capped), LeakyReLU, ELU, Softmax over one axis without a mask."""
    x, hint = call.first, layer.name
    if isinstance(layer, L.ReLU):
        if layer.negative_slope or layer.threshold:
            raise UnsupportedLayer(layer, "negative_slope or threshold")
        y = g.op("Relu", [x.name], hint)
        if layer.max_value is not None:
            y = g.op("Min", [y, g.const(np.float32(layer.max_value), f"{hint}_max")], hint)
    elif isinstance(layer, L.LeakyReLU):
        y = g.op("LeakyRelu", [x.name], hint, alpha=float(layer.negative_slope))
    elif isinstance(layer, L.ELU):
        y = g.op("Elu", [x.name], hint, alpha=float(layer.alpha))
    else:
        if call.mask is not None or not isinstance(layer.axis, int):
            raise UnsupportedLayer(layer, "a mask, or several axes")
        y = g.op("Softmax", [x.name], hint, axis=layer.axis)
    return [(y, x.lens)]


@emits(L.Reshape)
def _reshape(g: Graph, layer, call: Call):
    """Reshape to [batch, *target_shape] (0 copies the batch size; Keras' -1 is ONNX's)."""
    shape = g.const([0, *layer.target_shape], f"{layer.name}_shape", np.int64)
    return [(g.op("Reshape", [call.first.name, shape], layer.name), None)]


@emits(L.Permute)
def _permute(g: Graph, layer, call: Call):
    return [(g.op("Transpose", [call.first.name], layer.name, perm=[0, *layer.dims]), None)]


@emits(L.Flatten)
def _flatten(g: Graph, layer, call: Call):
    x, hint = call.first.name, layer.name
    rank = len(call.first.shape)
    if layer.data_format == "channels_first" and rank > 2:  # Keras moves the channels last first
        x = g.op("Transpose", [x], hint, perm=[0, *range(2, rank), 1])
    return [(g.op("Flatten", [x], hint, axis=1), None)]


@emits(L.RepeatVector)
def _repeat_vector(g: Graph, layer, call: Call):
    """[batch, features] → [batch, n, features]."""
    x = g.unsqueeze(call.first.name, [1], layer.name)
    return [(g.op("Tile", [x, g.const([1, layer.n, 1], f"{layer.name}_repeats", np.int64)], layer.name), None)]


# Layers that compute each vector along the last axis alone, whatever the rank: TimeDistributed applies them as they are
_PER_VECTOR = (L.Dense, L.Activation)


@emits(GetItem)
def _get_item(g: Graph, op, call: Call):
    """``x[key]`` (Keras' GetItem op) for a key of ints, slices with constant bounds and one Ellipsis: one Slice,
    then a Gather per int (``y[..., :split]`` reads the NTM's output). ``None`` (new axes) and tensor keys refuse."""
    x, hint = call.first, op.name
    key = list(call.args["key"]) if isinstance(call.args["key"], (list, tuple)) else [call.args["key"]]
    if key.count(Ellipsis) > 1 or not all(k is Ellipsis or isinstance(k, (int, slice)) for k in key):
        raise UnsupportedLayer(op, f"index {call.args['key']!r} (ints, slices and one Ellipsis only)")
    if Ellipsis in key:
        at = key.index(Ellipsis)
        key[at:at + 1] = [slice(None)] * (len(x.shape) - len(key) + 1)
    big, spans, picks = np.iinfo(np.int64).max, [], []
    for axis, k in enumerate(key):
        if isinstance(k, int):
            picks.append((axis, k))
        elif k != slice(None):
            if not all(b is None or isinstance(b, int) for b in (k.start, k.stop, k.step)) or k.step == 0:
                raise UnsupportedLayer(op, f"slice {k!r} (constant int bounds only)")
            step = 1 if k.step is None else k.step
            start = (0 if step > 0 else -1) if k.start is None else k.start
            stop = (big if step > 0 else -big - 1) if k.stop is None else k.stop
            spans.append((start, stop, axis, step))  # in the order of Slice's inputs
    y = x.name
    if spans:
        y = g.op("Slice", [y] + [g.const([s[i] for s in spans], f"{hint}_{part}", np.int64)
                                 for i, part in enumerate(("start", "end", "axis", "step"))], hint)
    for axis, index in reversed(picks):  # the highest axis first: the lower ones keep their place
        y = g.gather(y, index, axis, hint)
    return [(y, None)]


@emits(L.TimeDistributed)
def _time_distributed(g: Graph, layer, call: Call):
    """The wrapped layer's emitter over [batch * time, ...], reshaped back to [batch, time, ...] (a Dense or an
    Activation straight on [batch, time, ...]: the same values without the reshapes); the mask flows."""
    x, hint, inner = call.first, layer.name, layer.layer
    params = inspect.signature(inner.call).parameters
    if x.lens is not None and "mask" in params:
        raise UnsupportedLayer(layer, f"a masked input to a wrapped {type(inner).__name__}, which takes a mask")
    if len(x.shape) < 3:
        raise UnsupportedLayer(layer, f"input of rank {len(x.shape)}; expected [batch, time, ...]")
    if type(inner) in _PER_VECTOR:
        return [(emitter_for(inner)(g, inner, Call({next(iter(params)): x}, x, None))[0][0], x.lens)]
    flat_shape = g.op("Concat", [g.const([-1], f"{hint}_flat", np.int64), g.shape_slice(x.name, 2, None, hint)], hint,
                      axis=0)
    flat = Value(g.op("Reshape", [x.name, flat_shape], hint), None, (None, *x.shape[2:]), x.dtype)
    produced = emitter_for(inner)(g, inner, Call({next(iter(params)): flat}, flat, None))
    if len(produced) != 1:
        raise UnsupportedLayer(layer, f"the wrapped {type(inner).__name__} has {len(produced)} outputs")
    y = produced[0][0]
    shape = g.op("Concat", [g.shape_slice(x.name, 0, 2, hint), g.shape_slice(y, 1, None, hint)], hint, axis=0)
    return [(g.op("Reshape", [y, shape], hint), x.lens)]
