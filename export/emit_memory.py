"""Native ONNX emitter for the End-To-End Memory Network layer (``models.memory.MemN2N``), registered with
``export.registry.emits``: Gather + Einsum + Softmax, the same maths as the Keras layer (position-encoded bags,
temporal encoding, masked attention per hop); and for the recurrent reader (``models.memory.RecurrentReader``):
ONNX ``GRU`` ops for its sentence encoder (the padded words, at the end of each sentence, become ``sequence_lens``)
and for each hop's controller step."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from export.registry import UnsupportedLayer, emits
from models.memory import MemN2N, RecurrentReader


def _weights(g, layer, arrays: dict, hint: str) -> dict:
    return {name: g.const(np.asarray(value, np.float32), f"{hint}_{name}") for name, value in arrays.items()}


def _position_weights(g, ids: str, width: int, position_encoding: bool, hint: str, formula: str = "paper",
                      embed_dim: int = 1):
    """(a, c, real) float tensors [..., words]: the position-encoding factors l_kj = a_j - (k/d) c_j, masked
    (``models.memory._position_bags``)."""
    real = g.op("Cast", [g.op("Not", [g.op("Equal", [ids, g.const(np.int32(0), f"{hint}_zero")], hint)], hint)],
                hint, to=TensorProto.FLOAT)
    if not position_encoding:
        return real, None, real
    if formula == "code":
        centred = np.arange(1, width + 1, dtype=np.float32) - (width + 1) / 2
        a_j = (1 - 2 * (embed_dim + 1) * centred / (embed_dim * width)).astype(np.float32)
        c_j = (-4 * centred / width).astype(np.float32)
        return (g.op("Mul", [g.const(a_j, f"{hint}_a"), real], hint), g.op("Mul", [g.const(c_j, f"{hint}_c"), real], hint),
                real)
    length = g.op("Max", [g.reduce("ReduceSum", real, [-1], hint, keepdims=1), g.const(np.float32(1), f"{hint}_one")],
                  hint)
    j = g.op("Div", [g.const(np.arange(1, width + 1, dtype=np.float32), f"{hint}_positions"), length], hint)
    one = g.const(np.float32(1), f"{hint}_one")
    a = g.op("Mul", [g.op("Sub", [one, j], hint), real], hint)
    c = g.op("Mul", [g.op("Sub", [one, g.op("Mul", [j, g.const(np.float32(2), f"{hint}_two")], hint)], hint), real],
             hint)
    return a, c, real


def _embed(g, layer, ids: str, table: str, a: str, c: str | None, letters: str, hint: str) -> str:
    """Σ_j l_j E[x_j] for ids [b(, m), w]: Gather then Einsum over the words."""
    gathered = g.op("Gather", [table, ids], hint)  # [..., w, d]
    out = g.op("Einsum", [a, gathered], hint, equation=f"{letters}w,{letters}wd->{letters}d")
    if c is not None:
        k = g.const((np.arange(1, layer.embed_dim + 1) / layer.embed_dim).astype(np.float32), f"{hint}_k")
        term = g.op("Einsum", [c, gathered], hint, equation=f"{letters}w,{letters}wd->{letters}d")
        out = g.op("Sub", [out, g.op("Mul", [k, term], hint)], hint)
    return out


@emits(MemN2N)
def _memn2n(g, layer, call):
    """MemN2N: [story, question] → (answer probabilities, attention [batch, hops, slots])."""
    if layer.members != 1:
        raise UnsupportedLayer(layer, f"{layer.members} members side by side (export one, see extract_member)")
    story, question = call.first
    if story.shape[-1] is None:
        raise UnsupportedLayer(layer, "sentence length not fixed")
    hint, width = layer.name, int(story.shape[-1])
    w = _weights(g, layer, layer.member_weights(0), hint)
    gate = float(np.asarray(layer.softmax_gate))
    style = (layer.position_formula, layer.embed_dim)
    a, c, real = _position_weights(g, story.name, width, layer.position_encoding, f"{hint}_story", *style)
    qa, qc, _ = _position_weights(g, question.name, width, layer.position_encoding, f"{hint}_question", *style)
    valid = g.op("Cast", [g.op("Greater", [g.reduce("ReduceSum", real, [-1], hint),
                                           g.const(np.float32(0), f"{hint}_zero_f")], hint)], hint,
                 to=TensorProto.FLOAT)  # [batch, slots]
    slots = g.op("Slice", [g.op("Shape", [story.name], hint), g.const([1], f"{hint}_s1", np.int64),
                           g.const([2], f"{hint}_s2", np.int64)], hint)
    memories = []
    for k in range(layer.hops + 1):
        m = _embed(g, layer, story.name, w[f"embedding_{k}"], a, c, "bm", f"{hint}_m{k}")
        if layer.temporal:
            t = g.op("Slice", [w[f"temporal_{k}"], g.const([0], f"{hint}_t0", np.int64), slots,
                               g.const([0], f"{hint}_tax", np.int64)], hint)
            m = g.op("Add", [m, t], hint)
        memories.append(m)
    u = _embed(g, layer, question.name, w["embedding_0"], qa, qc, "b", f"{hint}_u")
    floor = g.const(np.float32(-1e9), f"{hint}_floor")
    if layer.softmax_slots:  # [batch, 1]: log(S - n) where S > n statements, else the floor
        empty = g.op("Sub", [g.const(np.float32(layer.softmax_slots), f"{hint}_S"),
                             g.reduce("ReduceSum", valid, [-1], hint, keepdims=1)], hint)
        log_empty = g.op("Log", [g.op("Max", [empty, g.const(np.float32(1), f"{hint}_one")], hint)], hint)
        sink = g.op("Where", [g.op("Greater", [empty, g.const(np.float32(0), f"{hint}_zero_e")], hint), log_empty,
                              floor], hint)
    weights = []
    for k in range(layer.hops):
        scores = g.op("Einsum", [u, memories[k]], hint, equation="bd,bmd->bm")
        masked = g.op("Where", [g.op("Greater", [valid, g.const(np.float32(0), f"{hint}_zero_v")], hint), scores, floor],
                      hint)
        if layer.softmax_slots:  # the empty slots' share: one extra column scoring log(S - n), dropped after
            masked = g.op("Concat", [masked, sink], hint, axis=-1)
        p = g.op("Softmax", [masked], hint, axis=-1)
        if layer.softmax_slots:
            p = g.op("Slice", [p, g.const([0], f"{hint}_p0", np.int64), slots, g.const([1], f"{hint}_pax", np.int64)],
                     hint)
        p = g.op("Mul", [p, valid], hint)
        if gate != 1.0:  # linear start (never in a finished model, kept exact anyway)
            linear = g.op("Mul", [scores, valid], hint)
            p = g.op("Add", [g.op("Mul", [p, g.const(np.float32(gate), f"{hint}_gate")], hint),
                             g.op("Mul", [linear, g.const(np.float32(1 - gate), f"{hint}_ungate")], hint)], hint)
        weights.append(g.unsqueeze(p, [1], hint))
        u = g.op("Add", [u, g.op("Einsum", [p, memories[k + 1]], hint, equation="bm,bmd->bd")], hint)
    answers = np.asarray(layer.member_weights(0)[f"embedding_{layer.hops}"])[layer.answer_ids].T
    logits = g.op("MatMul", [u, g.const(answers.astype(np.float32), f"{hint}_answers")], hint)
    probs = g.op("Softmax", [logits], hint, axis=-1)
    attention = weights[0] if len(weights) == 1 else g.op("Concat", weights, hint, axis=1)
    return [(probs, None), (attention, None)]


def _gru(g, w: dict, prefix: str, x_tm: str, lens: str | None, initial: str | None, hint: str) -> str:
    """An ONNX GRU over time-major ``x_tm`` with the reader's weights ``prefix``_kernel / _recurrent / _bias
    (models.memory._gru_step: Keras' reset_after layout, gates z, r, h as ONNX's): its final state [1, batch, units]."""
    kernel, recurrent, bias = (np.asarray(w[f"{prefix}_{k}"], np.float32) for k in ("kernel", "recurrent", "bias"))
    _, h_final = g.op("GRU", [x_tm, g.const(kernel.T[None], f"{hint}_W"), g.const(recurrent.T[None], f"{hint}_R"),
                              g.const(bias.reshape(1, -1), f"{hint}_B"), lens or "", initial or ""], hint, n_out=2,
                      hidden_size=recurrent.shape[0], linear_before_reset=1)
    return h_final


def _encode(g, w: dict, table: str, ids: str, hint: str) -> str:
    """ids [rows, words] → the encoder GRU's last states [1, rows, units]; the padded words (0, at the end of each
    sentence) leave the state as it was: they are past each row's ``sequence_lens``."""
    lens = g.reduce("ReduceSum", g.op("Cast", [g.op("Cast", [ids], hint, to=TensorProto.BOOL)], hint,
                                      to=TensorProto.INT32), [1], hint)
    x_tm = g.op("Transpose", [g.op("Gather", [table, ids], hint)], hint, perm=[1, 0, 2])
    return _gru(g, w, "encoder", x_tm, lens, None, hint)


@emits(RecurrentReader)
def _recurrent_reader(g, layer, call):
    """RecurrentReader: [story, question] → (answer probabilities, attention [batch, hops, slots]), its formulas step
    by step: a GRU over each sentence's words, then per hop score_i = v · tanh(W [m_i * u; |m_i - u|] + b) softmaxed
    over the real sentences, o = Σ p_i m_i, u ← GRU step(o, u); softmax(V [u; q] + c)."""
    if layer.members != 1:
        raise UnsupportedLayer(layer, f"{layer.members} members side by side (export one, see extract_member)")
    (story, question), hint = call.first, layer.name
    w, units = layer.member_weights(0), layer.units
    table = g.const(w["embedding"], f"{hint}_embedding")
    flat = g.op("Reshape", [story.name, g.const([-1, layer.sentence_len], f"{hint}_flat", np.int64)], hint)
    shape = g.op("Concat", [g.shape_slice(story.name, 0, 2, hint), g.const([units], f"{hint}_units", np.int64)], hint,
                 axis=0)
    slots = g.shape_slice(story.name, 1, 2, hint)
    temporal = g.op("Slice", [g.const(w["temporal"], f"{hint}_temporal"), g.const([0], f"{hint}_t0", np.int64), slots,
                              g.const([0], f"{hint}_tax", np.int64)], hint)
    memory = g.op("Add", [g.op("Reshape", [_encode(g, w, table, flat, f"{hint}_story"), shape], hint), temporal],
                  hint)  # [batch, slots, units]
    q = _encode(g, w, table, question.name, f"{hint}_question")  # [1, batch, units]
    words = g.op("Cast", [g.op("Cast", [story.name], hint, to=TensorProto.BOOL)], hint, to=TensorProto.FLOAT)
    valid = g.op("Cast", [g.reduce("ReduceMax", words, [-1], hint)], hint, to=TensorProto.BOOL)  # any word != 0
    attention_kernel, score = g.const(w["attention_kernel"], f"{hint}_att_kernel"), g.const(
        w["attention_score"][:, None], f"{hint}_att_score")
    attention_bias, floor = g.const(w["attention_bias"], f"{hint}_att_bias"), g.const(np.float32(-1e9), f"{hint}_floor")
    u, weights = q, []
    for _ in range(layer.hops):
        uu = g.op("Transpose", [u], hint, perm=[1, 0, 2])  # [batch, 1, units]
        features = g.op("Concat", [g.op("Mul", [memory, uu], hint), g.op("Abs", [g.op("Sub", [memory, uu], hint)],
                                                                         hint)], hint, axis=-1)
        hidden = g.op("Tanh", [g.op("Add", [g.op("MatMul", [features, attention_kernel], hint), attention_bias], hint)],
                      hint)
        scores = g.squeeze(g.op("MatMul", [hidden, score], hint), [2], hint)
        p = g.op("Softmax", [g.op("Where", [valid, scores, floor], hint)], hint, axis=-1)
        p = g.op("Mul", [p, g.op("Cast", [valid], hint, to=TensorProto.FLOAT)], hint)
        weights.append(g.unsqueeze(p, [1], hint))
        read = g.op("MatMul", [g.unsqueeze(p, [1], hint), memory], hint)  # [batch, 1, units]
        u = _gru(g, w, "controller", g.op("Transpose", [read], hint, perm=[1, 0, 2]), None, u, f"{hint}_controller")
    logits = g.op("Add", [g.op("MatMul", [g.squeeze(g.op("Concat", [u, q], hint, axis=-1), [0], hint),
                                          g.const(w["output_kernel"], f"{hint}_out_kernel")], hint),
                          g.const(w["output_bias"], f"{hint}_out_bias")], hint)
    attention = weights[0] if len(weights) == 1 else g.op("Concat", weights, hint, axis=1)
    return [(g.op("Softmax", [logits], hint, axis=-1), None), (attention, None)]
