"""Seq2seq export: ``encoder.onnx`` + ``decoder_step.onnx`` (the way Hugging Face optimum splits seq2seq models),
each parity-checked against Keras (max abs diff ≤ 1e-5) and each carrying the same metadata (vocabularies, special
ids, tokenizer rules, max lengths, state names), which is also written as ``metadata.json``.

Both graphs go through the native layer-level converter (``export/keras_onnx.py``): this module registers emitters
for the seq2seq layers (attention, padding mask, log-softmax). The decoder's embedding is unmasked, so its GRU/LSTM
with an initial state converts to one native op; a masked input with ``initial_state`` would fall back to tf2onnx
(a Loop graph), which the step graph, run once per output token, must not pay for.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from export import keras_onnx, parity
from export.onnx_export import DEFAULT_OPSET, embed_metadata, to_onnx
from export.parity import ParityError
from models.attention import NEG_INF, LogSoftmax, PaddingMask, SeqAttention
from models.seq2seq import LOG_PROBS, MEMORY, MEMORY_MASK, SOURCE, TOKENS, Seq2SeqModels
from serving import metadata as meta_format
from serving.session import OnnxModel

ENCODER_FILE, DECODER_FILE = "encoder.onnx", "decoder_step.onnx"
METADATA_FILE, PARITY_FILES = "metadata.json", ("parity_encoder.npz", "parity_decoder_step.npz")
SAVED_MODEL_DIR = "saved_model"

__all__ = ["ENCODER_FILE", "DECODER_FILE", "ParityError", "export_seq2seq", "decoder_parity_batches"]


# --------------------------------------------------------------------------------------------------------------------
# Native ONNX emitters for the seq2seq layers (registered into keras_onnx.EMITTERS on import).


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


def _padding_mask(g, layer, call):
    ids = call.first.name
    zero = g.const(np.zeros((), keras_onnx._numpy_dtype(call.first.dtype)), f"{layer.name}_zero")
    real = g.op("Not", [g.op("Equal", [ids, zero], layer.name)], layer.name)
    return [(g.op("Cast", [real], layer.name, to=TensorProto.FLOAT), None)]


def _log_softmax(g, layer, call):
    return [(g.op("LogSoftmax", [call.first.name], layer.name, axis=-1), None)]


keras_onnx.EMITTERS.update({SeqAttention: _seq_attention, PaddingMask: _padding_mask, LogSoftmax: _log_softmax})


# --------------------------------------------------------------------------------------------------------------------
# Parity inputs


def _keras_runner(model):
    def run(feeds):
        out = model(feeds if len(feeds) > 1 else next(iter(feeds.values())), training=False)
        return {name: np.asarray(value) for name, value in out.items()}

    return run


def decoder_parity_batches(models: Seq2SeqModels, source_batches: list[np.ndarray], start_id: int,
                           steps: int = 2) -> list[dict]:
    """Decoder-step inputs from real source batches: the encoder's outputs and states, then ``steps`` greedy steps
    (``<s>`` first, then each step's best token and new states), each a parity batch."""
    spec, batches = models.spec, []
    for ids in source_batches:
        enc = _keras_runner(models.encoder)(
            {SOURCE: ids})
        states = {name: enc[name] for name in spec.state_names}
        tokens = np.full((len(ids), 1), start_id, np.int32)
        for _ in range(steps):
            feeds = {TOKENS: tokens, **states}
            if spec.attention != "none":
                feeds.update({MEMORY: enc[MEMORY], MEMORY_MASK: enc[MEMORY_MASK]})
            batches.append({**feeds, "lengths": np.ones(len(ids), np.int64)})
            out = _keras_runner(models.decoder_step)(feeds)
            tokens = out[LOG_PROBS][:, -1].argmax(-1).astype(np.int32)[:, None]
            states = {name: out[f"new_{name}"] for name in spec.state_names}
    return batches


# --------------------------------------------------------------------------------------------------------------------
# Export


def _io(model_proto: onnx.ModelProto) -> tuple[dict, dict]:
    def spec(v):
        t = v.type.tensor_type
        dims = [d.dim_param or d.dim_value for d in t.shape.dim]
        return {"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, "shape": dims}

    return ({v.name: spec(v) for v in model_proto.graph.input}, {v.name: spec(v) for v in model_proto.graph.output})


def _saved_model_runner(path: Path):
    import tensorflow as tf

    from export.saved_model import SIGNATURE

    signature = tf.saved_model.load(str(path)).signatures[SIGNATURE]

    def run(feeds):
        return {k: v.numpy() for k, v in signature(**{k: tf.constant(v) for k, v in feeds.items()}).items()}

    return run


def export_seq2seq(models: Seq2SeqModels, run_dir: str | Path, task_meta: dict, source_batches: list[np.ndarray],
                   *, start_id: int, saved_model: bool = True, opset: int = DEFAULT_OPSET) -> dict:
    """Writes ``encoder.onnx``, ``decoder_step.onnx`` (and ``saved_model/encoder``, ``saved_model/decoder_step``),
    verifies each against Keras, and writes ``metadata.json``.

    Args:
      models: the trained graphs (``models.seq2seq.build_seq2seq``).
      run_dir: the (staging) run dir.
      task_meta: the task's metadata: ``task``, vocabularies, special ids, tokenizer specs, max lengths...
      source_batches: real padded source-id batches [b, s] (int32) of mixed lengths.
      start_id: the ``<s>`` id, fed as the first decoder token in the decoder's parity batches.
      saved_model: also write and verify the SavedModels.

    Returns:
      The metadata written (also embedded in both ONNX files).

    Raises:
      ParityError: an export differs from Keras by more than 1e-5 (names the graph, output and batch).
    """
    from export.saved_model import write_saved_model

    run_dir = Path(run_dir)
    if not source_batches:
        raise ValueError("export needs at least one source batch")
    enc_batches = [{SOURCE: np.asarray(ids, np.int32), "lengths": (np.asarray(ids) != 0).sum(1)}
                   for ids in source_batches]
    dec_batches = decoder_parity_batches(models, [b[SOURCE] for b in enc_batches], start_id)
    graphs, protos, routes = {}, {}, {}
    diffs = {"onnx_max_abs_diff": {}, "saved_model_max_abs_diff": {}}
    for key, model, file, batches, per_step in (
        ("encoder", models.encoder, ENCODER_FILE, enc_batches, {MEMORY}),
        ("decoder_step", models.decoder_step, DECODER_FILE, dec_batches, set()),
    ):
        reference = _keras_runner(model)
        if saved_model:
            write_saved_model(model, run_dir / SAVED_MODEL_DIR / key)
            runner = _saved_model_runner(run_dir / SAVED_MODEL_DIR / key)
            diffs["saved_model_max_abs_diff"][key] = parity.verify(f"{key} SavedModel", reference, runner, batches,
                                                                   per_step)
        proto, routes[key] = to_onnx(model, opset)
        onnx.save(proto, str(run_dir / file))
        diffs["onnx_max_abs_diff"][key] = parity.verify(f"{key} ONNX", reference, OnnxModel(run_dir / file).run,
                                                        batches, per_step)
        inputs, outputs = _io(proto)
        graphs[key] = {"file": file, "inputs": inputs, "outputs": outputs}
        protos[key] = proto
    spec = models.spec
    meta = {
        **task_meta,
        "inputs": graphs["encoder"]["inputs"],
        "outputs": graphs["decoder_step"]["outputs"],
        "graphs": graphs,
        "states": spec.state_names,
        "attention": spec.attention,
        "model": {"cell": spec.cell, "embed_dim": spec.embed_dim, "hidden": spec.hidden, "layers": spec.layers,
                  "bidirectional": spec.bidirectional, "attention": spec.attention,
                  "decoder_units": spec.decoder_units},
        "format": meta_format.FORMAT,
        "format_version": meta_format.FORMAT_VERSION,
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(opset),
        "onnx_converter": routes,
        "parity": {"tolerance": parity.TOLERANCE, "batches": {"encoder": len(enc_batches),
                                                              "decoder_step": len(dec_batches)}, **diffs},
    }
    files = {}
    for key, proto in protos.items():
        embed_metadata(proto, meta)
        onnx.save(proto, str(run_dir / graphs[key]["file"]))
        files[graphs[key]["file"]] = {"sha256": meta_format.sha256(run_dir / graphs[key]["file"])}
    parity.save_batches(run_dir / PARITY_FILES[0], enc_batches)
    parity.save_batches(run_dir / PARITY_FILES[1], dec_batches)
    (run_dir / METADATA_FILE).write_text(json.dumps({**meta, "files": files}, indent=2, ensure_ascii=False) + "\n",
                                         encoding="utf-8")
    return meta


def _versions(opset: int) -> dict:
    import keras
    import tensorflow as tf
    import tf2onnx

    return {"tensorflow": tf.__version__, "keras": keras.__version__, "tf2onnx": tf2onnx.__version__,
            "onnx": onnx.__version__, "opset": opset}
