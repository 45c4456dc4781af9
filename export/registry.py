"""The native converter's core: the emitter registry, the graph that emitters write into, and the opset constants.

An *emitter* turns one Keras layer call into ONNX nodes. It is registered for its layer class(es) with
:func:`emits`, and nothing else: no dict is written by hand, no module registers by side effect of another's import.

    from export.registry import UnsupportedLayer, emits

    @emits(MyLayer)
    def _my_layer(g, layer, call):
        # g: Graph (g.op, g.const, ...); call.first / call.args: the inputs as Values; call.mask: Keras' mask
        return [(g.op("Relu", [call.first.name], layer.name), call.first.lens)]  # one (name, lens) per output

A recurrent cell of one's own (inside ``keras.layers.RNN``, possibly under ``Bidirectional``) is registered for its
cell class with :func:`emits_cell`: that emitter then gets the RNN (or Bidirectional) layer, ahead of whatever is
registered for ``keras.layers.RNN`` / ``Bidirectional`` themselves.

Emitter modules live in ``export/emit_*.py`` and import only this module (and ``models``), never the converter,
so there is no import cycle; the converter (``export/keras_onnx.py``) imports every one of them at its top, so the
registry is complete as soon as the converter is importable, whatever was imported before.

This module imports no other ``export`` module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType

import keras
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DEFAULT_OPSET = 17  # the one default ONNX opset of every export (SavedModel → ONNX, native or tf2onnx)
MIN_OPSET = 14  # RNN/LSTM/GRU-14: the first versions with the `layout` attribute; ReduceSum takes axes as input
ML_DOMAIN, ML_OPSET = "ai.onnx.ml", 2  # LabelEncoder-2 (models.ngrams)

__all__ = ["DEFAULT_OPSET", "MIN_OPSET", "ML_DOMAIN", "ML_OPSET", "EMITTERS", "Call", "Graph", "UnsupportedLayer",
           "Value", "emits", "emits_cell", "emitter_for", "numpy_dtype"]


class UnsupportedLayer(Exception):
    """A layer (or one of its options) has no exact native ONNX translation here."""

    def __init__(self, layer, why: str):
        self.layer_name = layer.name
        self.layer_class = type(layer).__name__
        self.why = why
        super().__init__(f"layer {layer.name!r} ({self.layer_class}) cannot be converted to native ONNX: {why}")


# --------------------------------------------------------------------------------------------------------------------
# The registry

Emitter = Callable[["Graph", object, "Call"], list]

_EMITTERS: dict[type, Emitter] = {}
EMITTERS = MappingProxyType(_EMITTERS)  # layer class → emitter; read-only: register with @emits


def _qualname(fn) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


_CELL_EMITTERS: dict[type, Emitter] = {}  # cell class → emitter of the RNN / Bidirectional layers over it


def _registrar(table: dict, classes: tuple, what: str):
    if not classes or not all(isinstance(c, type) for c in classes):
        raise TypeError(f"@{what} takes one or more classes, got {classes!r}")

    def register(fn: Emitter) -> Emitter:
        for cls in classes:
            old = table.get(cls)
            if old is not None and _qualname(old) != _qualname(fn):
                raise ValueError(f"{cls.__module__}.{cls.__qualname__} already has an emitter ({_qualname(old)}); "
                                 f"refusing {_qualname(fn)}")
            table[cls] = fn
        return fn

    return register


def emits(*layer_classes: type):
    """Registers the decorated function as the emitter of ``layer_classes`` (matched exactly, not by subclass).

    Raises:
      TypeError: no class given, or something that is not a class.
      ValueError: another emitter is already registered for one of the classes (re-registering the same function,
        as a module reload does, is allowed).
    """
    return _registrar(_EMITTERS, layer_classes, "emits")


def emits_cell(*cell_classes: type):
    """Registers the decorated function as the emitter of every ``keras.layers.RNN`` over a cell of
    ``cell_classes`` (matched exactly), and of every ``Bidirectional`` over such an RNN. Raises as :func:`emits`."""
    return _registrar(_CELL_EMITTERS, cell_classes, "emits_cell")


def _recurrent_cell(layer):
    """The cell of a plain ``keras.layers.RNN`` (or of the forward RNN of a Bidirectional), else None."""
    if type(layer) is keras.layers.Bidirectional:
        layer = layer.forward_layer
    return layer.cell if type(layer) is keras.layers.RNN else None


def emitter_for(layer) -> Emitter:
    """The emitter registered for ``layer``'s recurrent cell (see :func:`emits_cell`), else for ``type(layer)``.

    Raises:
      UnsupportedLayer: none is.
    """
    emitter = _CELL_EMITTERS.get(type(_recurrent_cell(layer))) or _EMITTERS.get(type(layer))
    if emitter is None:
        raise UnsupportedLayer(layer, "no native ONNX emitter for this layer class")
    return emitter


# --------------------------------------------------------------------------------------------------------------------
# What emitters read and write


@dataclass(frozen=True)
class Value:
    """The ONNX tensor standing for a Keras tensor: its name, its mask as sequence lengths (or None), its shape."""

    name: str
    lens: str | None = None
    shape: tuple = ()
    dtype: str = "float32"


@dataclass
class Call:
    """A layer call: its bound arguments (Keras tensors replaced by Values) and the mask Keras passes to call()."""

    args: dict
    first: object  # the first argument: a Value, or a list of them
    mask: object  # lengths (or a list of them) Keras hands call() as `mask`; None when it passes none


def numpy_dtype(dtype) -> np.dtype:
    """A Keras dtype (string or object) as a numpy dtype."""
    return np.dtype(keras.backend.standardize_dtype(dtype))


class Graph:
    """Accumulates nodes and initializers under unique names."""

    def __init__(self, opset: int):
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.lens_of_ids: dict[str, str] = {}  # ids tensor → its mask lengths, shared by every Embedding reading it
        self.masks: dict[tuple, str] = {}  # (lengths, unsqueezed axes) → its bool step mask: built once per graph
        # Set by the converter before each layer: no model output depends on the layer's first output at its padded
        # steps, so the emitter may leave anything there (an ONNX recurrent op's zeros, say).
        self.padding_unread = False
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

    def subgraph(self) -> Graph:
        """An empty graph (a Scan / Loop body) whose fresh names never clash with this graph's."""
        body = Graph(self.opset)
        body._used = self._used
        return body

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

    def time_mask(self, x: str, lens: str, hint: str, axes: tuple = ()) -> str:
        """bool [batch, time] (right-padded): step t of row b is real when t < lens[b]; unsqueezed at ``axes``.

        Built once per lengths (and axes) and shared by every layer reading them; an emitter that computes the
        lengths from a bool mask registers that mask with :meth:`set_time_mask` instead (no Range / Less chain)."""
        key = (lens, tuple(axes))
        if key not in self.masks:
            if axes:
                mask = self.unsqueeze(self.time_mask(x, lens, hint), list(axes), hint)
            else:
                time = self.gather(self.op("Shape", [x], hint), 1, 0, f"{hint}_time")
                steps = self.op("Range", [self.const(0, f"{hint}_zero", np.int64), time,
                                          self.const(1, f"{hint}_one", np.int64)], hint)
                lens64 = self.op("Cast", [lens], hint, to=TensorProto.INT64)
                mask = self.op("Less", [self.unsqueeze(steps, [0], hint), self.unsqueeze(lens64, [1], hint)], hint)
            self.masks[key] = mask
        return self.masks[key]

    def set_time_mask(self, lens: str, mask: str, axes: tuple = ()) -> None:
        """Registers ``mask`` (bool [batch, time] unsqueezed at ``axes``) as the step mask of ``lens``: right-padded,
        mask[b, t] = t < lens[b]."""
        self.masks[(lens, tuple(axes))] = mask

    def shape_slice(self, x: str, start: int, end: int | None, hint: str) -> str:
        """int64 dims ``start:end`` of ``x``'s shape (``end`` None: to the last)."""
        end = np.iinfo(np.int64).max if end is None else end
        return self.op("Slice", [self.op("Shape", [x], hint), self.const([start], f"{hint}_start", np.int64),
                                 self.const([end], f"{hint}_end", np.int64)], hint)

    def where_steps(self, x: str, lens: str, other: str, hint: str) -> str:
        """``x`` [batch, time, ...] at each row's first ``lens`` steps, ``other`` (broadcast) at the others."""
        return self.op("Where", [self.time_mask(x, lens, hint, axes=(2,)), x, other], hint)

    def activation(self, owner, fn, x: str, hint: str) -> str:
        """Keras activation ``fn`` (a function or its name) on ``x``, as Keras computes it.

        Raises:
          UnsupportedLayer: (naming ``owner``) an activation this converter does not emit.
        """
        name = fn if isinstance(fn, str) else keras.activations.serialize(fn)
        if isinstance(name, dict) or name not in _ACTIVATIONS:
            raise UnsupportedLayer(owner, f"activation {name!r}; supported: {', '.join(_ACTIVATIONS)}")
        return _ACTIVATIONS[name](self, x, hint)


def _unary(op_type: str, **attrs):
    return lambda g, x, hint: g.op(op_type, [x], hint, **attrs)


def _gated(gate):
    """x * gate(x): swish / silu, hard_silu."""
    return lambda g, x, hint: g.op("Mul", [x, gate(g, x, hint)], hint)


def _gelu(g: Graph, x: str, hint: str) -> str:
    """Keras' exact gelu: 0.5 x (1 + erf(x / sqrt 2))."""
    erf = g.op("Erf", [g.op("Mul", [x, g.const(np.float32(1 / np.sqrt(2)), f"{hint}_rsqrt2")], hint)], hint)
    half_x = g.op("Mul", [x, g.const(np.float32(0.5), f"{hint}_half")], hint)
    return g.op("Mul", [half_x, g.op("Add", [erf, g.const(np.float32(1), f"{hint}_one")], hint)], hint)


def _relu6(g: Graph, x: str, hint: str) -> str:
    return g.op("Clip", [x, g.const(np.float32(0), f"{hint}_min"), g.const(np.float32(6), f"{hint}_max")], hint)


_hard_sigmoid = _unary("HardSigmoid", alpha=1.0 / 6.0, beta=0.5)  # Keras 3: relu6(x + 3) / 6

# Keras activation name → emitter (graph, x, hint) → output name.
_ACTIVATIONS = {
    "linear": lambda g, x, hint: x,
    "relu": _unary("Relu"),
    "relu6": _relu6,
    "leaky_relu": _unary("LeakyRelu", alpha=0.2),
    "elu": _unary("Elu", alpha=1.0),
    "selu": _unary("Selu"),
    "sigmoid": _unary("Sigmoid"),
    "hard_sigmoid": _hard_sigmoid,
    "tanh": _unary("Tanh"),
    "softmax": _unary("Softmax", axis=-1),
    "log_softmax": _unary("LogSoftmax", axis=-1),
    "softplus": _unary("Softplus"),
    "softsign": _unary("Softsign"),
    "exponential": _unary("Exp"),
    "silu": _gated(_unary("Sigmoid")),
    "swish": _gated(_unary("Sigmoid")),
    "hard_silu": _gated(_hard_sigmoid),
    "gelu": _gelu,
}
