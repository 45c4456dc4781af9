"""Keras 3 functional model → ONNX with native ``RNN`` / ``LSTM`` / ``GRU`` ops, built layer by layer.

tf2onnx converts the traced TensorFlow graph: masked recurrent layers become ``Loop`` graphs (5-7x slower in
onnxruntime) and the GPU's CudnnRNNV3 kernels do not convert at all. This converter instead reads each layer's
config and weights and emits the equivalent ONNX ops, a Keras mask becoming the recurrent ops' ``sequence_lens``.

Masks are carried as sequence lengths (int32 [batch]), so they are assumed RIGHT-padded: an ``Embedding`` with
``mask_zero=True`` fed ids whose zeros all sit at the end of each row, a ``Masking`` layer fed frames whose masked
steps all sit at the end (not checkable when the graph is built: the parity check on right-padded batches vouches for
it). Any layer or option that cannot be converted exactly raises :class:`UnsupportedLayer` (callers fall back to
tf2onnx).

This module walks the graph; the per-layer emitters live in ``export/emit_*.py``, registered with
``export.registry.emits``. Every emitter module is imported here, at the top, so the registry is complete as soon
as this module is imported (see ``export/registry.py`` to add one).
"""

from __future__ import annotations

import inspect

import keras
import onnx
from onnx import helper

# The emitter modules: each registers its emitters on import and imports only export.registry (no cycle).
from export import (  # noqa: F401
    emit_attention, emit_cells, emit_chars, emit_keras, emit_layers, emit_memory, emit_ngrams, emit_seq2seq,
)
from export.registry import (
    DEFAULT_OPSET,
    EMITTERS,
    MIN_OPSET,
    ML_DOMAIN,
    ML_OPSET,
    Call,
    Graph,
    UnsupportedLayer,
    Value,
    emitter_for,
    numpy_dtype,
)

EMITTER_MODULES = (emit_attention, emit_cells, emit_chars, emit_keras, emit_layers, emit_memory, emit_ngrams,
                   emit_seq2seq)

__all__ = ["DEFAULT_OPSET", "EMITTERS", "EMITTER_MODULES", "UnsupportedLayer", "convert"]


# --------------------------------------------------------------------------------------------------------------------
# Graph walk


def _dims(shape, owner: str | None = None) -> list:
    """Keras shape → ONNX dims, unknown ones named batch, time, then dim<i>.

    With ``owner`` (a model with several inputs) the unknown dims after the batch are named after it
    (``question_time``), or left unnamed (``owner=""``, for outputs): a shared name would tell onnxruntime that,
    say, a story and a question have the same length, and it fails when they do not.
    """
    names = ["batch", "time"]
    named = [d if d is not None else (names[i] if i < 2 else f"dim{i}") for i, d in enumerate(shape)]
    if owner is None:
        return named
    return [d if i == 0 or not isinstance(d, str) else (f"{owner}_{d}" if owner else None) for i, d in enumerate(named)]


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


def _mask_input(node) -> list:
    """The ``mask`` argument of a node when a layer with an emitter computes it (e.g. models.speech.FrameMask: its
    emitter knows the lengths), else nothing."""
    mask = node.arguments.kwargs.get("mask")
    if isinstance(mask, keras.KerasTensor) and type(mask._keras_history[0]) in EMITTERS:
        return [mask]
    return []


def _needed_nodes(model) -> set[int]:
    """ids of the nodes the outputs' data depends on. The ops computing Keras' boolean masks (NotEqual after an
    Embedding, LogicalOr/Any after a merge...) are left out: masks are rebuilt from sequence lengths instead."""
    needed, stack = set(), list(model.outputs)
    while stack:
        operation, node_index, _ = stack.pop()._keras_history
        node = operation._inbound_nodes[node_index]
        if id(node) not in needed:
            needed.add(id(node))
            stack.extend(_data_inputs(node) + _mask_input(node))
    return needed


L = keras.layers
# With a right-padded mask on their input, these layers' values at the real steps never depend on the input's values
# at the padded steps: the per-step ones carry them to their own padded steps only (attention pushes padded keys to a
# weight of exactly 0 and gives padded queries outputs of their own), the masked readers drop them.
_PER_STEP = (L.Dense, L.Activation, L.Dropout, L.SpatialDropout1D, L.Attention, L.AdditiveAttention,
             L.MultiHeadAttention)
_RECURRENT = (L.SimpleRNN, L.LSTM, L.GRU)


def _drops_padding(layer) -> bool:
    if isinstance(layer, L.Bidirectional):
        layer = layer.forward_layer
    return type(layer) in _RECURRENT or (type(layer) is L.GlobalAveragePooling1D and layer.data_format ==
                                         "channels_last")


def _per_step(layer) -> bool:
    if type(layer) is L.LayerNormalization:
        return list(layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]) in ([-1], [2])
    if type(layer) is L.TimeDistributed:
        return type(layer.layer) in (L.Dense, L.Activation)
    return type(layer) in _PER_STEP


def _padding_read(model, needed: set[int]):
    """A function telling whether a model output depends on a Keras tensor's values at its padded steps (then a
    layer must give them as Keras does; else it may leave what is cheapest there)."""
    readers: dict[int, list] = {}
    for nodes in model._nodes_by_depth.values():
        for node in nodes:
            if id(node) in needed and not node.is_input:
                for tensor in _data_inputs(node):
                    readers.setdefault(id(tensor), []).append(node)
    outputs, memo = {id(t) for t in model.outputs}, {}

    def read(tensor) -> bool:
        if id(tensor) not in memo:
            memo[id(tensor)] = id(tensor) in outputs or any(
                not _drops_padding(n.operation) and (not _per_step(n.operation) or any(map(read, n.outputs)))
                for n in readers.get(id(tensor), []))
        return memo[id(tensor)]

    return read


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


def _bind(layer, node, values: dict) -> Call:
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
    keras_mask = bound.pop("mask", None) if first_name != "mask" else None  # SubsampleMask.call(mask): data
    first = bound[first_name]
    mask = None
    if keras_mask is not None:
        lens = values[id(first)].lens if isinstance(first, keras.KerasTensor) else None
        own_mask = keras_mask is getattr(first, "_keras_mask", None) or _is_padding_mask_of(keras_mask, first)
        if not own_mask:  # a mask tensor of its own: usable when its emitter knew its lengths (bool Values only)
            given = values.get(id(keras_mask)) if isinstance(keras_mask, keras.KerasTensor) else None
            lens = given.lens if given is not None and given.dtype == "bool" else None
        if lens is None:
            raise UnsupportedLayer(layer, "a mask argument other than a right-padded mask of known lengths")
        mask = lens
    elif "mask" in params and isinstance(first, keras.KerasTensor):
        # At run time Keras hands call() the mask of the only tensor argument (``initial_state=None`` is not a
        # tensor), whether or not the node recorded it.
        tensors = [t for t in keras.tree.flatten(list(bound.values())) if isinstance(t, keras.KerasTensor)]
        if len(tensors) == 1:
            mask = values[id(first)].lens
    args = {name: _to_values(value, values) for name, value in bound.items()}
    return Call(args, args[first_name], mask)


def _output_names(model) -> list[str]:
    """Graph output names: the output dict's keys, else the output layers' names (made unique)."""
    struct = model._outputs_struct
    if isinstance(struct, dict):
        return ["/".join(str(p) for p in path) for path, _ in keras.tree.flatten_with_path(struct)]
    names = list(model.output_names)
    return [n if names.count(n) == 1 else f"{n}_{i}" for i, n in enumerate(names)]


def _reads(node) -> set[str]:
    """The names ``node`` reads: its inputs and, for a Scan / Loop / If, every name its subgraphs read."""
    names = set(node.input)
    for attr in node.attribute:
        for graph in [attr.g] if attr.HasField("g") else attr.graphs:
            for inner in graph.node:
                names |= _reads(inner)
    return names


def _pruned(g: Graph, outputs: list[str]) -> tuple[list, list]:
    """``g``'s nodes that the graph outputs depend on and the initializers they read (emitters build some values,
    say every final state of a recurrent op, that no layer downstream reads; onnxruntime would still compute them)."""
    needed, kept = set(outputs), []
    for node in reversed(g.nodes):
        if needed.intersection(node.output):
            kept.append(node)
            needed |= _reads(node)
    return kept[::-1], [t for t in g.initializers if t.name in needed]


def convert(model: keras.Model, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Converts a Keras 3 functional ``model`` to ONNX (``opset`` >= 14) with native recurrent ops.

    Graph inputs are named like the Keras inputs, graph outputs like the model's output dict keys (or its output
    layers). Raises UnsupportedLayer for anything it cannot convert exactly.
    """
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} < {MIN_OPSET}: native recurrent conversion needs opset {MIN_OPSET} or later")
    if not hasattr(model, "_nodes_by_depth"):
        raise UnsupportedLayer(model, "only functional models can be walked layer by layer")
    g = Graph(opset)
    output_names = _output_names(model)
    g.reserve(output_names)
    values: dict[int, Value] = {}
    graph_inputs = []
    several = len(model.inputs) > 1
    for tensor in model.inputs:
        values[id(tensor)] = Value(tensor.name, None, tuple(tensor.shape), tensor.dtype)
        elem = helper.np_dtype_to_tensor_dtype(numpy_dtype(tensor.dtype))
        graph_inputs.append(helper.make_tensor_value_info(tensor.name, elem,
                                                          _dims(tensor.shape, tensor.name if several else None)))
        g.reserve([tensor.name])

    needed = _needed_nodes(model)
    padding_read = _padding_read(model, needed)
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.is_input or id(node) not in needed:
                continue
            layer = node.operation
            emitter = emitter_for(layer)
            if keras.backend.standardize_dtype(getattr(layer, "compute_dtype", "float32")) != "float32":
                raise UnsupportedLayer(layer, f"compute dtype {layer.compute_dtype} (only float32 is emitted)")
            g.padding_unread = not padding_read(node.outputs[0])
            produced = emitter(g, layer, _bind(layer, node, values))
            if len(produced) != len(node.outputs):  # a guard on the emitters themselves
                raise UnsupportedLayer(layer, f"emitted {len(produced)} outputs for {len(node.outputs)} Keras outputs")
            for tensor, (name, lens) in zip(node.outputs, produced):
                # A layer's output carries a mask when the layer supports masking; a boolean output (a mask tensor
                # itself, e.g. models.speech.FrameMask) carries its own lengths.
                lens = lens if getattr(layer, "supports_masking", False) or tensor.dtype == "bool" else None
                values[id(tensor)] = Value(name, lens, tuple(tensor.shape), tensor.dtype)

    graph_outputs = []
    for name, tensor in zip(output_names, model.outputs):
        g.nodes.append(helper.make_node("Identity", [values[id(tensor)].name], [name], name=g.fresh(f"{name}/Identity")))
        elem = helper.np_dtype_to_tensor_dtype(numpy_dtype(tensor.dtype))
        graph_outputs.append(helper.make_tensor_value_info(name, elem, _dims(tensor.shape, "" if several else None)))

    nodes, initializers = _pruned(g, output_names)
    graph = helper.make_graph(nodes, model.name, graph_inputs, graph_outputs, initializers)
    imports = [helper.make_opsetid("", opset)]
    if any(node.domain == ML_DOMAIN for node in g.nodes):  # LabelEncoder (models.ngrams)
        imports.append(helper.make_opsetid(ML_DOMAIN, ML_OPSET))
    proto = helper.make_model(graph, opset_imports=imports, producer_name="rnn-toolkit keras_onnx")
    onnx.checker.check_model(proto)
    return proto
