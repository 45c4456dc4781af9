"""Export of any Keras 3 model to ONNX: ``python -m export MODEL.keras [--out model.onnx] [--opset N]``, or
:func:`export_keras_model` from Python.

The native converter (``export/keras_onnx.py``) is tried first: recurrent layers become ONNX ``RNN`` / ``LSTM`` /
``GRU`` ops (or one ``Scan`` for the custom cells), a Keras mask their ``sequence_lens``. When it cannot convert a
layer exactly, or its graph does not match Keras on the parity batches, the model goes through tf2onnx instead and
the reason is printed. Either way the result is checked against Keras on random RIGHT-padded batches (batch 1, an
odd batch and a large one; lengths 1..max): ids within the vocabulary for inputs that feed an ``Embedding``, normal
floats otherwise, padding (id 0, or a ``Masking`` layer's mask value) at the end of each row.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import onnx

from export import keras_onnx, parity
from export.errors import ExportError, ParityError
from export.onnx_export import tf2onnx_convert
from export.registry import DEFAULT_OPSET, UnsupportedLayer, emitter_for

__all__ = ["UserExport", "export_keras_model", "parity_batches"]

BATCHES = (1, 5, 32)  # batch 1, an odd batch, a large one
TIME = 12  # padded length of the first input (each further input 3 steps longer, so outputs match one input)
DEFAULT_VOCAB = 10  # ids drawn for an integer input that feeds no Embedding


@dataclass
class UserExport:
    """What :func:`export_keras_model` did."""

    route: str  # native or tf2onnx
    reason: str | None  # why it fell back to tf2onnx
    layers: list = field(default_factory=list)  # (layer name, class, route): one row per operation
    parity: float = float("nan")  # worst |onnx - keras| / max(1, |keras|) over the parity batches
    nodes: int = 0
    loops: int = 0  # Loop + Scan nodes at the top level
    proto: onnx.ModelProto | None = None
    out: Path | None = None

    def report(self) -> str:
        width = max([len(name) for name, _, _ in self.layers] + [5])
        rows = [f"{'layer':{width}}  {'class':24} route"]
        rows += [f"{name:{width}}  {cls:24} {how}" for name, cls, how in self.layers]
        why = f" (fallback: {self.reason})" if self.reason else ""
        rows.append(f"route: {self.route}{why}")
        rows.append(f"graph: {self.nodes} nodes, {self.loops} Loop/Scan")
        rows.append(f"parity: max |onnx - keras| {self.parity:.2e} (relative beyond 1) on batches of "
                    f"{', '.join(map(str, BATCHES))}, right-padded, lengths 1..{TIME}")
        if self.out:
            rows.append(f"wrote {self.out}")
        return "\n".join(rows)


def _functional(model):
    """A Sequential's inner functional model (same layers), else the model itself."""
    if isinstance(model, keras.Sequential) and getattr(model, "_functional", None) is not None:
        return model._functional
    return model


def _operations(model) -> list:
    return [op for op in getattr(model, "operations", []) if not isinstance(op, keras.layers.InputLayer)]


def _emitter_name(op) -> str:
    try:
        fn = emitter_for(op)
    except UnsupportedLayer:
        return "no native emitter"
    return f"{fn.__module__.removeprefix('export.')}.{fn.__qualname__}"


def _layer_routes(model, route: str, failed: UnsupportedLayer | None) -> list:
    rows, needed = [], keras_onnx._needed_nodes(model)
    for op in _operations(model):
        if not any(id(node) in needed for node in op._inbound_nodes):
            rows.append((op.name, type(op).__name__, "not emitted (computes a mask; masks travel as lengths)"))
            continue
        how = failed.why if failed is not None and op.name == failed.layer_name else _emitter_name(op)
        rows.append((op.name, type(op).__name__, f"{route} ({how})" if route != "native" else f"native: {how}"))
    return rows


# --------------------------------------------------------------------------------------------------------------------
# Parity batches


def _consumers(model, tensor) -> list:
    return [op for op in _operations(model) for node in op._inbound_nodes
            if any(t is tensor for t in keras.tree.flatten(node.arguments.args))]


@dataclass(frozen=True)
class _Kind:
    """How to fill one input: ids below ``vocab`` or normal floats; ``pad`` at the end of rows when masked."""

    ids: bool
    vocab: int
    pad: float
    masked: bool


def _input_kind(model, tensor) -> _Kind:
    """Ids within the smallest consuming Embedding's vocabulary for an integer input, else floats; padded with 0 or
    a consuming Masking layer's mask value, and masked when an Embedding(mask_zero) or Masking layer reads it."""
    consumers = _consumers(model, tensor)
    embeddings = [op for op in consumers if isinstance(op, keras.layers.Embedding)]
    masking = [op for op in consumers if isinstance(op, keras.layers.Masking)]
    vocab = min([op.input_dim for op in embeddings], default=DEFAULT_VOCAB)
    masked = any(op.mask_zero for op in embeddings) or bool(masking)
    return _Kind("int" in str(tensor.dtype), vocab, masking[0].mask_value if masking else 0.0, masked)


def _random_input(tensor, kind: _Kind, batch: int, time: int, lens: np.ndarray, rng) -> np.ndarray:
    shape = [batch] + [time if (i == 0 and d is None) else (d or 4) for i, d in enumerate(tensor.shape[1:])]
    x = rng.integers(1, max(2, kind.vocab), size=shape) if kind.ids else rng.normal(size=shape)
    if len(shape) > 1 and (tensor.shape[1] is None or kind.masked):  # right padding of the time axis
        real = (np.arange(shape[1]) < lens[:, None]).reshape([batch, shape[1]] + [1] * (len(shape) - 2))
        x = np.where(real, x, kind.pad)
    return x.astype(keras.backend.standardize_dtype(tensor.dtype))


def parity_batches(model, seed: int = 0) -> list[tuple[dict, dict]]:
    """Random right-padded batches for ``model``: [(feeds by input name, lengths by padded time size)]."""
    model = _functional(model)
    rng = np.random.default_rng(seed)
    kinds = [_input_kind(model, t) for t in model.inputs]
    batches = []
    for batch in BATCHES:
        feeds, lengths = {}, {}
        for i, (tensor, kind) in enumerate(zip(model.inputs, kinds)):
            time = tensor.shape[1] if len(tensor.shape) > 1 and tensor.shape[1] else TIME + 3 * i
            lens = rng.integers(1, time + 1, size=batch)
            lens[0] = time
            lens[-1] = 1 if batch > 1 else time
            feeds[tensor.name] = _random_input(tensor, kind, batch, time, lens, rng)
            lengths[time] = lens
        batches.append((feeds, lengths))
    return batches


# --------------------------------------------------------------------------------------------------------------------
# Running both sides


def _keras_outputs(model, feeds: dict) -> list[np.ndarray]:
    inputs = [feeds[t.name] for t in model.inputs]
    struct = model._inputs_struct
    if isinstance(struct, dict):
        args = {key: feeds[tensor.name] for key, tensor in struct.items()}
    else:
        args = inputs if isinstance(struct, (list, tuple)) else inputs[0]
    return [np.asarray(v) for v in keras.tree.flatten(model(args, training=False))]


def _worst_diff(model, proto: onnx.ModelProto, batches) -> float:
    """Worst |onnx - keras| / max(1, |keras|) over the batches; per-step outputs at real steps only."""
    import onnxruntime as ort

    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    worst = 0.0
    for feeds, lengths in batches:
        got = session.run(None, feeds)
        for name, want, other in zip(names, _keras_outputs(model, feeds), got):
            steps = want.shape[1] if want.ndim >= 3 else None
            per_step = {name} if steps in lengths else set()
            lens = lengths.get(steps, np.zeros(len(want), int))
            diff = parity.compare({name: want}, {name: other}, lens, per_step, log_scale={name})
            worst = max(worst, diff[name])
    return worst


def _native(model, opset: int, batches) -> tuple[onnx.ModelProto | None, UnsupportedLayer | str | None]:
    """The native graph, or None and why not (the layer refused, or the parity it missed)."""
    try:
        proto = keras_onnx.convert(model, opset=opset)
    except UnsupportedLayer as err:
        return None, err
    diff = _worst_diff(model, proto, batches)
    if not diff <= parity.TOLERANCE:
        return None, f"the native graph differs from Keras by {diff:.2e} (limit {parity.TOLERANCE:g})"
    return proto, None


def export_keras_model(model, out: str | Path | None = None, opset: int = DEFAULT_OPSET) -> UserExport:
    """Converts a Keras 3 model (or a ``.keras`` file) to ONNX, checks it against Keras and writes it to ``out``.

    Args:
      model: a functional or Sequential ``keras.Model`` or the path of a ``.keras`` file (custom
        layers must be registered first; the toolkit's own are).
      out: where to write the ONNX model (None: nothing is written).
      opset: the ONNX opset (>= 14).

    Returns:
      A :class:`UserExport`: the route (``native`` or ``tf2onnx``), the reason for a fallback, the route of every
      layer, the parity figure, node counts; ``report()`` is what the command line prints.

    Raises:
      ExportError: a subclassed model (it declares no inputs; wrap it in a functional model).
      ParityError: even the tf2onnx graph differs from Keras by more than 1e-5 (nothing is written).
    """
    if not isinstance(model, keras.Model):
        import models  # noqa: F401  (registers the toolkit's layers for loading)

        model = keras.saving.load_model(model, compile=False)
    model = _functional(model)
    if not hasattr(model, "_nodes_by_depth"):
        raise ExportError(f"{type(model).__name__} is a subclassed model: it declares no inputs to export. Wrap it: "
                          "x = keras.Input(shape, dtype); export_keras_model(keras.Model(x, model(x)))")
    batches = parity_batches(model)
    proto, why = _native(model, opset, batches)
    route = "native" if proto is not None else "tf2onnx"
    if proto is None:
        proto = tf2onnx_convert(model, opset)
    diff = _worst_diff(model, proto, batches)
    if not diff <= parity.TOLERANCE:
        raise ParityError(f"the {route} ONNX graph differs from Keras by {diff:.2e} (limit {parity.TOLERANCE:g})")
    ops = collections.Counter(node.op_type for node in proto.graph.node)
    failed = why if isinstance(why, UnsupportedLayer) else None
    result = UserExport(route, str(why) if why else None, _layer_routes(model, route, failed), diff,
                        sum(ops.values()), ops["Loop"] + ops["Scan"], proto)
    if out is not None:
        result.out = Path(out)
        onnx.save(proto, str(result.out))
    return result
