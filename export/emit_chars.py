"""Native ONNX emitter for :class:`models.chars.CharFeatures`: the character CNN word features."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from export.registry import Call, Graph, emits
from models.chars import CharFeatures


def _flat_chars(g: Graph, chars: str, hint: str) -> tuple[str, str]:
    """int32 [batch, time, chars] → (ids [batch*time, chars], bool valid [batch*time, 1, chars])."""
    shape = g.op("Concat", [g.const([-1], f"{hint}_rows", np.int64), g.shape_slice(chars, 2, 3, hint)], hint, axis=0)
    flat = g.op("Reshape", [chars, shape], hint)
    valid = g.op("Greater", [flat, g.const(np.int32(0), f"{hint}_zero")], hint)
    return flat, g.unsqueeze(valid, [1], hint)


@emits(CharFeatures)
def _char_features(g: Graph, layer, call: Call):
    """Gather → zero the padded characters → Conv ("same") → Tanh → max over real characters → Concat."""
    words, chars = call.first
    hint = layer.name
    flat, valid = _flat_chars(g, chars.name, hint)
    embedded = g.op("Gather", [g.const(np.asarray(layer.embeddings, np.float32), f"{hint}_embeddings"), flat], hint)
    embedded = g.op("Transpose", [embedded], hint, perm=[0, 2, 1])  # [rows, char_dim, chars]
    embedded = g.op("Mul", [embedded, g.op("Cast", [valid], hint, to=TensorProto.FLOAT)], hint)
    kernel = np.transpose(np.asarray(layer.kernel, np.float32), (2, 1, 0))  # [filters, char_dim, width]
    left = (layer.width - 1) // 2
    hidden = g.op("Conv", [embedded, g.const(kernel, f"{hint}_kernel"),
                           g.const(np.asarray(layer.bias, np.float32), f"{hint}_bias")],
                  hint, pads=[left, layer.width - 1 - left])
    hidden = g.op("Where", [valid, g.op("Tanh", [hidden], hint), g.const(np.float32(-1), f"{hint}_floor")], hint)
    real = g.reduce("ReduceMax", g.op("Cast", [valid], hint, to=TensorProto.FLOAT), [2], hint)  # [rows, 1]
    pooled = g.op("Mul", [g.reduce("ReduceMax", hidden, [2], hint), real], hint)  # [rows, filters]
    shape = g.op("Concat", [g.shape_slice(chars.name, 0, 2, hint), g.const([layer.filters], f"{hint}_width", np.int64)],
                 hint, axis=0)
    pooled = g.op("Reshape", [pooled, shape], hint)
    return [(g.op("Concat", [words.name, pooled], hint, axis=-1), words.lens)]
