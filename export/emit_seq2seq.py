"""Native ONNX emitters for the seq2seq layers (``models.attention``): attention, padding mask, log-softmax and
the word pointer's memory lookup,
registered with ``export.registry.emits``. With them both seq2seq graphs (encoder, decoder step) convert natively.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from export.registry import emits, numpy_dtype
from models.attention import NEG_INF, LogSoftmax, PaddingMask, PointedMemory, SeqAttention


@emits(SeqAttention)
def _seq_attention(g, layer, call):
    """SeqAttention: scores → masked softmax → context, exactly as models.attention computes them."""
    q, m, mask, hint = call.args["query"].name, call.args["memory"].name, call.args["memory_mask"].name, layer.name
    memory_kernel = g.const(np.asarray(layer.memory_kernel, np.float32), f"{hint}_memory_kernel")
    if layer.mode == "additive":
        qk = g.unsqueeze(g.op("MatMul", [q, g.const(np.asarray(layer.query_kernel, np.float32), f"{hint}_qk")], hint),
                         [2], hint)  # [b, tq, 1, u]
        mk = g.unsqueeze(g.op("MatMul", [m, memory_kernel], hint), [1], hint)  # [b, 1, tm, u]
        hidden = g.op("Tanh", [g.op("Add", [g.op("Add", [qk, mk], hint),
                                            g.const(np.asarray(layer.bias, np.float32), f"{hint}_bias")], hint)], hint)
        score = g.const(np.asarray(layer.score, np.float32)[:, None], f"{hint}_score")
        scores = g.squeeze(g.op("MatMul", [hidden, score], hint), [3], hint)  # [b, tq, tm]
    else:
        keys = g.op("Transpose", [g.op("MatMul", [m, memory_kernel], hint)], hint, perm=[0, 2, 1])  # [b, dq, tm]
        scores = g.op("MatMul", [q, keys], hint)
    mask3 = g.unsqueeze(mask, [1], hint)  # [b, 1, tm]
    pad = g.op("Sub", [g.const(np.float32(1.0), f"{hint}_one"), mask3], hint)
    scores = g.op("Add", [g.op("Mul", [scores, mask3], hint),
                          g.op("Mul", [pad, g.const(np.float32(NEG_INF), f"{hint}_neg")], hint)], hint)
    weights = g.op("Softmax", [scores], hint, axis=-1)
    context = g.op("MatMul", [weights, m], hint)
    return [(context, None), (weights, None)]


@emits(PaddingMask)
def _padding_mask(g, layer, call):
    ids = call.first.name
    zero = g.const(np.zeros((), numpy_dtype(call.first.dtype)), f"{layer.name}_zero")
    real = g.op("Not", [g.op("Equal", [ids, zero], layer.name)], layer.name)
    return [(g.op("Cast", [real], layer.name, to=TensorProto.FLOAT), None)]


@emits(LogSoftmax)
def _log_softmax(g, layer, call):
    return [(g.op("LogSoftmax", [call.first.name], layer.name, axis=-1), None)]


@emits(PointedMemory)
def _pointed_memory(g, layer, call):
    """PointedMemory: positions clipped to [0, real rows - 1], one-hot over the memory's steps, times the memory."""
    m, mask, hint = call.args["memory"].name, call.args["memory_mask"].name, layer.name
    real = g.op("Cast", [g.reduce("ReduceSum", mask, [1], hint, keepdims=1)], hint, to=TensorProto.INT64)  # [b, 1]
    last = g.op("Sub", [real, g.const(np.int64(1), f"{hint}_one")], hint)
    positions = g.op("Cast", [call.args["positions"].name], hint, to=TensorProto.INT64)
    positions = g.op("Max", [g.op("Min", [positions, last], hint), g.const(np.int64(0), f"{hint}_zero")], hint)
    time = g.gather(g.op("Shape", [m], hint), 1, 0, f"{hint}_time")
    steps = g.op("Range", [g.const(np.int64(0), f"{hint}_start"), time, g.const(np.int64(1), f"{hint}_step")], hint)
    one_hot = g.op("Cast", [g.op("Equal", [g.unsqueeze(positions, [2], hint), steps], hint)], hint,
                   to=TensorProto.FLOAT)  # [b, tq, tm]
    return [(g.op("MatMul", [one_hot, m], hint), None)]
