"""Seq2seq export: ``encoder.onnx`` + ``decoder_step.onnx`` (the way Hugging Face optimum splits seq2seq models),
each parity-checked against Keras (max abs diff ≤ 1e-5) and each carrying the same metadata (vocabularies, special
ids, tokenizer rules, max lengths, state names), which is also written as ``metadata.json``.

Both graphs go through the native layer-level converter (``export/keras_onnx.py``; the seq2seq layers' emitters are
in ``export/emit_seq2seq.py``). The decoder's embedding is unmasked, so its GRU/LSTM with an initial state converts
to one native op; a masked input with ``initial_state`` would fall back to tf2onnx (a Loop graph), which the step
graph, run once per output token, must not pay for.

:func:`reexport_seq2seq` (``python -m export RUN_DIR``) redoes the export of a finished run: the graphs are rebuilt
from ``metadata.json`` (its ``model`` sizes and vocabularies; ``config.json`` for the attention width of runs
exported before the metadata recorded it) and loaded with the trainer's weights, ``model.weights.h5``.
"""

from __future__ import annotations

import datetime
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx

from export import parity
from export.errors import ExportError, ParityError
from export.onnx_export import embed_metadata, to_onnx, versions
from export.registry import DEFAULT_OPSET
from export.rundir import staged, write_card
from models.seq2seq import (LOG_PROBS, MEMORY, MEMORY_MASK, SOURCE, TOKENS, WORD_POSITION, Seq2SeqModels, Seq2SeqSpec,
                            build_seq2seq)
from serving import metadata as meta_format
from serving.seq2seq import pointer_metadata
from serving.session import OnnxModel

ENCODER_FILE, DECODER_FILE = "encoder.onnx", "decoder_step.onnx"
METADATA_FILE, PARITY_FILES = "metadata.json", ("parity_encoder.npz", "parity_decoder_step.npz")
SAVED_MODEL_DIR = "saved_model"
WEIGHTS_FILE, CONFIG_FILE = "model.weights.h5", "config.json"  # what a seq2seq run writes (pipelines/seq2seq.py)
# What export_seq2seq derives (from the graphs, the spec, the run): a re-export writes them anew.
GENERATED = ("format", "format_version", "exported_at", "versions", "parity", "onnx_converter", "inputs", "outputs",
             "graphs", "states", "attention", "model", "files", "word_pointer")

__all__ = ["ENCODER_FILE", "DECODER_FILE", "WEIGHTS_FILE", "ExportError", "ParityError", "decoder_parity_batches",
           "export_seq2seq", "is_seq2seq_run", "load_seq2seq", "reexport_seq2seq"]


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
    (``<s>`` first, then each step's best token and new states), each a parity batch. A word pointer's positions
    are spread over every row's words and past them (the graph clips those)."""
    spec, batches = models.spec, []
    for ids in source_batches:
        enc = _keras_runner(models.encoder)(
            {SOURCE: ids})
        states = {name: enc[name] for name in spec.state_names}
        tokens = np.full((len(ids), 1), start_id, np.int32)
        for k in range(steps):
            feeds = {TOKENS: tokens, **states}
            if spec.attention != "none":
                feeds.update({MEMORY: enc[MEMORY], MEMORY_MASK: enc[MEMORY_MASK]})
            if spec.pointer_id:
                feeds[WORD_POSITION] = ((np.arange(len(ids)) * 3 + k * 7) % (ids.shape[1] + 2)).astype(np.int32)[:, None]
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
        **(pointer_metadata(spec.pointer_id, task_meta["target_vocab"]) if spec.pointer_id else {}),
        "inputs": graphs["encoder"]["inputs"],
        "outputs": graphs["decoder_step"]["outputs"],
        "graphs": graphs,
        "states": spec.state_names,
        "attention": spec.attention,
        "model": {"cell": spec.cell, "embed_dim": spec.embed_dim, "hidden": spec.hidden, "layers": spec.layers,
                  "bidirectional": spec.bidirectional, "attention": spec.attention,
                  "attention_units": spec.attention_units, "dropout": spec.dropout,
                  "decoder_units": spec.decoder_units, "pointer_id": spec.pointer_id},
        "format": meta_format.FORMAT,
        "format_version": meta_format.FORMAT_VERSION,
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(opset),
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



# --------------------------------------------------------------------------------------------------------------------
# Re-export of a finished run (python -m export RUN_DIR)


def is_seq2seq_run(meta: dict) -> bool:
    """True for the metadata of a seq2seq export (an encoder graph and a decoder-step graph)."""
    graphs = meta.get("graphs")
    return isinstance(graphs, dict) and {"encoder", "decoder_step"} <= set(graphs)


_SPEC_KEYS = ("cell", "embed_dim", "hidden", "layers", "bidirectional", "attention")


def _spec(run_dir: Path, meta: dict) -> Seq2SeqSpec:
    """The network's sizes: ``metadata.json`` (``model``, the vocabularies), and ``config.json`` for what the
    metadata of older exports does not record (the attention width, the dropout)."""
    model = meta.get("model")
    missing = [f"model.{k}" for k in _SPEC_KEYS if k not in (model or {})]
    missing += [k for k in ("source_vocab", "target_vocab") if not isinstance(meta.get(k), list)]
    if missing:
        raise ExportError(f"{run_dir / METADATA_FILE} does not describe the seq2seq graphs: it lacks "
                          f"{', '.join(missing)}")
    sizes = {k: model[k] for k in _SPEC_KEYS}
    extra = {k: model[k] for k in ("attention_units", "dropout") if k in model}
    pointer_id = int(model.get("pointer_id", 0))  # exports before the word pointer have none
    if len(extra) < 2 and (run_dir / CONFIG_FILE).is_file():
        try:
            config = json.loads((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ExportError(f"{run_dir / CONFIG_FILE} is not valid JSON ({err})") from None
        extra = {**{k: config[k] for k in ("attention_units", "dropout") if k in config}, **extra}
    if sizes["attention"] != "none" and "attention_units" not in extra:
        raise ExportError(f"{run_dir}: {CONFIG_FILE} is missing (or has no attention_units), and {METADATA_FILE} does "
                          f"not record model.attention_units: the width of the {sizes['attention']} attention, "
                          "needed to rebuild the decoder, is unknown")
    # Dropout has no weights and is off at inference: the training value only keeps the rebuilt graphs identical.
    spec = Seq2SeqSpec(len(meta["source_vocab"]), len(meta["target_vocab"]), **sizes,
                       attention_units=int(extra.get("attention_units", 64)), dropout=float(extra.get("dropout", 0.0)),
                       pointer_id=pointer_id)
    try:
        spec.check()
    except ValueError as err:
        raise ExportError(f"{run_dir / METADATA_FILE}: {err}") from None
    return spec


def load_seq2seq(run_dir: str | Path, meta: dict | None = None) -> Seq2SeqModels:
    """Rebuilds a finished seq2seq run's graphs from its ``metadata.json`` and ``model.weights.h5``.

    Raises:
      ExportError: a file is missing or does not fit (the message names it).
    """
    run_dir = Path(run_dir)
    if meta is None:
        try:
            meta = meta_format.read_file(run_dir / METADATA_FILE)
        except meta_format.ModelError as err:
            raise ExportError(str(err)) from None
    spec = _spec(run_dir, meta)
    weights = run_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise ExportError(f"{run_dir} cannot be re-exported: {WEIGHTS_FILE} is missing (the seq2seq trainer's "
                          "weights, from which the encoder and the decoder step are rebuilt)")
    models = build_seq2seq(spec)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            models.trainer.load_weights(weights)
        except ValueError as err:
            why = " ".join(str(err).split())
            raise ExportError(f"{weights} does not fit the network {METADATA_FILE} describes: "
                              f"{why[:400]}{'...' if len(why) > 400 else ''}") from None
    skipped = [str(w.message) for w in caught if "Skipping" in str(w.message) or "freshly" in str(w.message)]
    if skipped:  # Keras loads what it can and leaves the rest untrained: parity would still pass
        raise ExportError(f"{weights} does not fit the network {METADATA_FILE} describes: {skipped[0]}")
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return models


def reexport_seq2seq(run_dir: str | Path, meta: dict | None = None, *, opset: int = DEFAULT_OPSET,
                     quantize: str | None = None) -> dict:
    """Re-exports a seq2seq run dir atomically (it changes only when both graphs pass parity): rebuilds the encoder
    and decoder step (:func:`load_seq2seq`), then :func:`export_seq2seq` on the source batches of
    ``parity_encoder.npz`` (the decoder's parity batches are regenerated from them, as the first export did). The
    SavedModels are rewritten when the run dir has them, and the model card from the new metadata.

    Returns:
      The metadata written (also embedded in both ONNX files).

    Raises:
      ExportError: the run dir lacks a file the export needs (the message names it), or ``quantize`` is set.
      ParityError: an export differs from Keras by more than 1e-5.
    """
    run_dir = Path(run_dir)
    if quantize is not None:
        raise ExportError(f"--quantize {quantize} writes model.int8.onnx for single-graph runs; {run_dir} is a seq2seq "
                          f"run ({ENCODER_FILE} + {DECODER_FILE}), which has no int8 export")
    if meta is None:
        try:
            meta = meta_format.read_file(run_dir / METADATA_FILE)
        except meta_format.ModelError as err:
            raise ExportError(str(err)) from None
    start_id = (meta.get("special_ids") or {}).get("start")
    if not isinstance(start_id, int):
        raise ExportError(f"{run_dir / METADATA_FILE} lacks special_ids.start (the <s> id the decoder starts from)")
    if not (run_dir / PARITY_FILES[0]).is_file():
        raise ExportError(f"{run_dir} cannot be re-exported: {PARITY_FILES[0]} is missing (the source batches both "
                          "graphs are verified on)")
    sources = [np.asarray(batch[SOURCE], np.int32) for batch in parity.load_batches(run_dir / PARITY_FILES[0])
               if SOURCE in batch]
    if not sources:
        raise ExportError(f"{run_dir / PARITY_FILES[0]} holds no {SOURCE} batch")
    models = load_seq2seq(run_dir, meta)
    task_meta = {k: v for k, v in meta.items() if k not in GENERATED}
    saved_model = (run_dir / SAVED_MODEL_DIR).is_dir()
    with staged(run_dir, copy_existing=True) as tmp:
        for name in (ENCODER_FILE, DECODER_FILE, *PARITY_FILES):
            (tmp / name).unlink(missing_ok=True)
        shutil.rmtree(tmp / SAVED_MODEL_DIR, ignore_errors=True)
        written = export_seq2seq(models, tmp, task_meta, sources, start_id=start_id, saved_model=saved_model,
                                 opset=opset)
        write_card(tmp, run_dir)
    return written
