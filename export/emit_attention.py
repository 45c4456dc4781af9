"""Native ONNX emitters for Keras' attention layers: ``Attention`` (dot and concat scores), ``AdditiveAttention`` and
``MultiHeadAttention`` (rank-3 inputs, default attention axes), with their masks. Registered with
``export.registry.emits``.

Each follows Keras' own formulas step by step, masks included: padded keys are pushed down before the softmax exactly
as Keras does it (``scores - 1e9`` for Attention / AdditiveAttention, a large negative for MultiHeadAttention), and
padded queries get what Keras gives them (zeros for Attention; for MultiHeadAttention uniform weights through the
fused ``dot_product_attention`` path, zeros through its ``Softmax`` path, taken with dropout or when it returns the
scores). Masks are the inputs' right-padded lengths (see ``export/keras_onnx.py``).

Not reproduced: Keras' ``MultiHeadAttention.call`` erases the masks of the tensors it reads
(``set_keras_mask(query, None)``), so a layer that reads one of those tensors *after* it, in Keras' execution order,
sees no mask there, while this converter still hands it the tensor's lengths. Explicit ``query_mask`` /
``value_mask`` / ``key_mask`` / ``attention_mask`` arguments, ``use_gate``, ``sliding_window``, non-default
``attention_axes`` / ``output_shape`` are refused.
"""

from __future__ import annotations

import keras
import numpy as np
from export.registry import Call, Graph, UnsupportedLayer, emits

L = keras.layers
_NEG = np.float32(-1e9)


def _steps_mask(g: Graph, x, axes: tuple, hint: str) -> str | None:
    """bool [batch, steps] of a Value's lengths unsqueezed at ``axes``, or None when it has none."""
    return None if x.lens is None else g.time_mask(x.name, x.lens, hint, axes=axes)


def _causal(g: Graph, q: str, v: str, hint: str) -> str:
    """bool [1, Tq, Tv]: query step i sees value steps j <= i (Keras' cumsum rows >= cols)."""
    def steps(x, name):
        time = g.gather(g.op("Shape", [x], hint), 1, 0, f"{hint}_{name}")
        return g.op("Range", [g.const(0, f"{hint}_zero", np.int64), time, g.const(1, f"{hint}_one", np.int64)], hint)

    rows, cols = g.unsqueeze(steps(q, "tq"), [1], hint), g.unsqueeze(steps(v, "tv"), [0], hint)
    return g.unsqueeze(g.op("GreaterOrEqual", [rows, cols], hint), [0], hint)


def _and(g: Graph, masks: list, hint: str) -> str | None:
    masks = [m for m in masks if m is not None]
    out = masks[0] if masks else None
    for m in masks[1:]:
        out = g.op("And", [out, m], hint)
    return out


def _weight(g: Graph, layer, name: str, hint: str) -> str:
    return g.const(np.asarray(getattr(layer, name), np.float32), f"{hint}_{name}")


def _additive_scores(g: Graph, q: str, k: str, scale: str | None, hint: str) -> str:
    """sum(tanh([scale *] (q[:, :, None] + k[:, None])), -1): [batch, Tq, Tv]."""
    total = g.op("Add", [g.unsqueeze(q, [2], hint), g.unsqueeze(k, [1], hint)], hint)
    return total if scale is None else g.op("Mul", [scale, total], hint)


def _scores(g: Graph, layer, q: str, k: str, hint: str) -> str:
    if isinstance(layer, L.AdditiveAttention):
        tanh = g.op("Tanh", [_additive_scores(g, q, k, None, hint)], hint)
        if not layer.use_scale:
            return g.reduce("ReduceSum", tanh, [3], hint)
        # sum(scale * tanh, -1) as one MatMul with the scale column: no [batch, Tq, Tv, dim] product in between
        scale = g.const(np.asarray(layer.scale, np.float32)[:, None], f"{hint}_scale")
        return g.squeeze(g.op("MatMul", [tanh, scale], hint), [3], hint)
    scale = _weight(g, layer, "scale", hint) if layer.use_scale else None
    if layer.score_mode == "dot":
        scores = g.op("MatMul", [q, g.op("Transpose", [k], hint, perm=[0, 2, 1])], hint)
        return scores if scale is None else g.op("Mul", [scores, scale], hint)
    if layer.score_mode != "concat":
        raise UnsupportedLayer(layer, f"score_mode {layer.score_mode!r}")
    summed = g.reduce("ReduceSum", g.op("Tanh", [_additive_scores(g, q, k, scale, hint)], hint), [3], hint)
    return g.op("Mul", [_weight(g, layer, "concat_score_weight", hint), summed], hint)


@emits(L.Attention, L.AdditiveAttention)
def _attention(g: Graph, layer, call: Call):
    """Keras' Attention / AdditiveAttention: scores, padded value steps lowered by 1e9, softmax, weights @ value,
    padded query steps zeroed. Outputs the context [and the weights]; the query's mask flows on."""
    inputs, hint = list(call.first), layer.name
    q, v = inputs[0], inputs[1]
    k = inputs[2] if len(inputs) > 2 else v
    scores = _scores(g, layer, q.name, k.name, hint)
    causal = _causal(g, q.name, v.name, hint) if call.args.get("use_causal_mask") else None
    keep = _and(g, [causal, _steps_mask(g, v, (1,), hint)], hint)
    if keep is not None:
        scores = g.op("Where", [keep, scores, g.op("Add", [scores, g.const(_NEG, f"{hint}_neg")], hint)], hint)
    weights = g.op("Softmax", [scores], hint, axis=-1)
    context = g.op("MatMul", [weights, v.name], hint)
    if q.lens is not None:
        context = g.where_steps(context, q.lens, g.const(np.float32(0), f"{hint}_0"), hint)
    outputs = [(context, q.lens)]
    if call.args.get("return_attention_scores"):
        outputs.append((weights, None))
    return outputs


# --------------------------------------------------------------------------------------------------------------------
# MultiHeadAttention

_PROJECTION, _OUTPUT = "abc,cde->abde", "abcd,cde->abe"


def _project(g: Graph, layer, denses: list, x: str, hint: str) -> list[str]:
    """EinsumDenses ``abc,cde->abde`` of the same input: [batch, steps, dim] → [batch, heads, steps, head_dim] each,
    as one MatMul over their kernels side by side (the same dot products) and a Split."""
    if any(dense.equation != _PROJECTION for dense in denses):
        raise UnsupportedLayer(layer, "a projection other than abc,cde->abde (only rank-3 inputs are supported)")
    kernels = [np.asarray(dense.kernel, np.float32) for dense in denses]
    dim, heads, size = kernels[0].shape
    kernel = np.concatenate([k.reshape(dim, heads * size) for k in kernels], axis=1)
    y = g.op("MatMul", [x, g.const(kernel, f"{hint}_kernel")], hint)
    if denses[0].bias is not None:
        bias = np.concatenate([np.asarray(dense.bias, np.float32).reshape(-1) for dense in denses])
        y = g.op("Add", [y, g.const(bias, f"{hint}_bias")], hint)
    y = g.op("Reshape", [y, g.const([0, 0, len(denses) * heads, size], f"{hint}_heads", np.int64)], hint)
    y = g.op("Transpose", [y], hint, perm=[0, 2, 1, 3])
    if len(denses) == 1:
        return [y]
    return g.op("Split", [y, g.const([heads] * len(denses), f"{hint}_split", np.int64)], hint, n_out=len(denses),
                axis=1)


def _projections(g: Graph, layer, q, k, v, hint: str) -> list[str]:
    """The query, key and value heads; one projection for all three when they read the same tensor with kernels of
    one shape and biases alike (self-attention)."""
    denses = [layer._query_dense, layer._key_dense, layer._value_dense]
    shapes = {(tuple(dense.kernel.shape), dense.bias is None) for dense in denses}
    if q.name == k.name == v.name and len(shapes) == 1:
        return _project(g, layer, denses, q.name, f"{hint}_qkv")
    return [_project(g, layer, [dense], x.name, f"{hint}_{part}")[0]
            for dense, x, part in zip(denses, (q, k, v), ("query", "key", "value"))]


def _mha_refusals(layer, call: Call) -> None:
    for name in ("query_mask", "value_mask", "key_mask", "attention_mask"):
        if call.args.get(name) is not None:
            raise UnsupportedLayer(layer, f"an explicit {name} argument (the inputs' own masks are supported)")
    if layer._use_gate or layer._sliding_window is not None or layer._flash_attention:
        raise UnsupportedLayer(layer, "use_gate, sliding_window or flash attention")
    if layer._output_dense.equation != _OUTPUT:
        raise UnsupportedLayer(layer, "attention_axes or output_shape other than the defaults")


@emits(L.MultiHeadAttention)
def _multi_head_attention(g: Graph, layer, call: Call):
    """Projections, scaled dot products, Keras' masked softmax, output projection; the query's mask flows on."""
    _mha_refusals(layer, call)
    q, v, hint = call.args["query"], call.args["value"], layer.name
    k = call.args.get("key") or v
    scores_out = bool(call.args.get("return_attention_scores"))
    softmax_path = scores_out or layer._dropout > 0  # Keras' Softmax layer, else ops.dot_product_attention
    heads_q, heads_k, heads_v = _projections(g, layer, q, k, v, hint)
    scale = g.const(np.float32(layer._inverse_sqrt_key_dim), f"{hint}_scale")
    keys = g.op("Transpose", [heads_k], hint, perm=[0, 1, 3, 2])
    if softmax_path:
        scores = g.op("MatMul", [g.op("Mul", [heads_q, scale], hint), keys], hint)
    else:
        scores = g.op("Mul", [g.op("MatMul", [heads_q, keys], hint), scale], hint)  # [b, heads, Tq, Tv]
    key_mask = _steps_mask(g, k, (1, 2), hint) if call.args.get("key") is not None else None
    causal = g.unsqueeze(_causal(g, q.name, v.name, hint), [1], hint) if call.args.get("use_causal_mask") else None
    # [b or 1, 1, Tq, Tv]
    keep = _and(g, [_steps_mask(g, q, (1, 3), hint), _steps_mask(g, v, (1, 2), hint), key_mask, causal], hint)
    if keep is not None:
        floor = np.float32(-1e9) if softmax_path else np.float32(3.38953e38 * -0.7)
        scores = g.op("Where", [keep, scores, g.const(floor, f"{hint}_floor")], hint)
    weights = g.op("Softmax", [scores], hint, axis=-1)
    if keep is not None and softmax_path:
        weights = g.op("Where", [keep, weights, g.const(np.float32(0), f"{hint}_0")], hint)
    context = g.op("Transpose", [g.op("MatMul", [weights, heads_v], hint)], hint, perm=[0, 2, 1, 3])
    dense = layer._output_dense
    kernel = np.asarray(dense.kernel, np.float32)
    flat = g.op("Reshape", [context, g.const([0, 0, -1], f"{hint}_merge", np.int64)], hint)
    y = g.op("MatMul", [flat, g.const(kernel.reshape(-1, kernel.shape[-1]), f"{hint}_out_kernel")], hint)
    if dense.bias is not None:
        y = g.op("Add", [y, g.const(np.asarray(dense.bias, np.float32), f"{hint}_out_bias")], hint)
    return [(y, q.lens), (weights, None)] if scores_out else [(y, q.lens)]
