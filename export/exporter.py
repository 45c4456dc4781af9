"""Writes a run's exports (saved_model/, model.onnx, metadata.json) and verifies them against Keras."""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

import keras
import numpy as np
import onnx
import tensorflow as tf

from export import parity, seq2seq_export
from export.errors import ExportError, ParityError
from export.onnx_export import embed_metadata, to_onnx, versions
from export.parity import PARITY_FILE
from export.registry import DEFAULT_OPSET
from export.rundir import staged, write_card
from export.saved_model import SIGNATURE, write_saved_model
from serving import metadata as meta_format
from serving.session import OnnxModel

MODEL_FILE, ONNX_FILE, METADATA_FILE, SAVED_MODEL_DIR = "model.keras", "model.onnx", "metadata.json", "saved_model"
GENERATED = ("format", "format_version", "exported_at", "versions", "parity", "onnx_converter")

__all__ = ["ExportError", "ParityError", "export_model", "reexport"]


def _per_step_outputs(task_meta: dict) -> set[str]:
    return {name for name, spec in task_meta["outputs"].items() if "time" in spec.get("shape", [])}


def _keras_runner(model):
    def run(feeds):
        out = model(feeds if len(feeds) > 1 else next(iter(feeds.values())), training=False)
        return {name: np.asarray(value) for name, value in out.items()}

    return run


def _saved_model_runner(path: Path):
    signature = tf.saved_model.load(str(path)).signatures[SIGNATURE]

    def run(feeds):
        return {name: value.numpy() for name, value in signature(**{k: tf.constant(v) for k, v in feeds.items()}).items()}

    return run


def export_model(
    model: keras.Model, run_dir: Path, task_meta: dict, batches: list[dict], opset: int = DEFAULT_OPSET
) -> dict:
    """Exports ``model`` into ``run_dir`` (a staging folder: see ``export.rundir.staged``) and verifies it.

    Args:
      model: the trained Keras model.
      run_dir: where ``saved_model/``, ``model.onnx``, ``metadata.json`` and ``parity_inputs.npz`` go.
      task_meta: the task's metadata (``task``, ``inputs``, ``outputs``, vocabularies, tokenizer spec, limits).
      batches: real input batches of mixed lengths, each a dict of input name → array plus ``lengths``.
      opset: the ONNX opset.

    Returns:
      The metadata written, including the parity figures.

    Raises:
      ParityError: ONNX or SavedModel outputs differ from Keras' by more than 1e-5.
    """
    run_dir = Path(run_dir)
    if not batches:
        raise ExportError("export needs at least one parity batch")
    per_step = _per_step_outputs(task_meta)
    log_scale = parity.log_scale_outputs(task_meta)
    reference = _keras_runner(model)

    write_saved_model(model, run_dir / SAVED_MODEL_DIR)
    saved_diff = parity.verify("SavedModel", reference, _saved_model_runner(run_dir / SAVED_MODEL_DIR), batches, per_step,
                               log_scale=log_scale)

    proto, route = to_onnx(model, opset)
    onnx_path = run_dir / ONNX_FILE
    onnx.save(proto, str(onnx_path))
    onnx_model = OnnxModel(onnx_path)
    onnx_diff = parity.verify("ONNX", reference, onnx_model.run, batches, per_step, log_scale=log_scale)

    meta = {
        **task_meta,
        "format": meta_format.FORMAT,
        "format_version": meta_format.FORMAT_VERSION,
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(opset),
        "onnx_converter": route,
        "parity": {"tolerance": parity.TOLERANCE, "batches": len(batches), "relative_beyond_1": sorted(log_scale),
                   "onnx_max_abs_diff": onnx_diff, "saved_model_max_abs_diff": saved_diff},
    }
    embed_metadata(proto, meta)
    onnx.save(proto, str(onnx_path))
    parity.save_batches(run_dir / PARITY_FILE, batches)
    run_meta = {**meta, "files": {ONNX_FILE: {"sha256": meta_format.sha256(onnx_path)}}}
    (run_dir / METADATA_FILE).write_text(json.dumps(run_meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return meta


def _add_int8(run_dir: Path, meta: dict) -> dict:
    from export.quantize import INT8_FILE, quantize_int8

    report = quantize_int8(run_dir / ONNX_FILE, run_dir / INT8_FILE, parity.load_batches(run_dir / PARITY_FILE),
                           _per_step_outputs(meta))
    run_meta = json.loads((run_dir / METADATA_FILE).read_text(encoding="utf-8"))
    run_meta["files"][INT8_FILE] = {"sha256": meta_format.sha256(run_dir / INT8_FILE), "vs_float": report}
    (run_dir / METADATA_FILE).write_text(json.dumps(run_meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return report


def reexport(run_dir: str | Path, opset: int = DEFAULT_OPSET, quantize: str | None = None) -> dict:
    """Re-exports an existing run dir, atomically (the run dir changes only on success).

    A single-model run is re-exported from its ``model.keras``. A seq2seq run (translation, parsing, text
    auto-encoder: ``encoder.onnx`` + ``decoder_step.onnx``) has its two graphs rebuilt from ``metadata.json`` and
    its trainer's ``model.weights.h5`` (see :func:`export.seq2seq_export.reexport_seq2seq`).

    With ``quantize="int8"`` it also writes ``model.int8.onnx`` (dynamic int8 quantization) and records in
    metadata.json how far its outputs move from the float model's on the parity batches (single-model runs only).

    The model card (``README.md``, ``tokenizer_conformance.json``) is rewritten from the new metadata.

    Raises:
      ExportError: the run dir lacks a file the export needs (the message names it), or ``quantize`` is unknown.
      ParityError: as :func:`export_model`.
    """
    run_dir = Path(run_dir)
    if quantize not in (None, "int8"):
        raise ExportError(f"unknown quantization {quantize!r}; the one supported is int8")
    if not (run_dir / METADATA_FILE).is_file():
        raise ExportError(f"{run_dir} is not a run dir: {METADATA_FILE} is missing")
    try:
        run_meta = meta_format.read_file(run_dir / METADATA_FILE)
    except meta_format.ModelError as err:
        raise ExportError(str(err)) from None
    if seq2seq_export.is_seq2seq_run(run_meta):
        return seq2seq_export.reexport_seq2seq(run_dir, run_meta, opset=opset, quantize=quantize)
    for name in (MODEL_FILE, PARITY_FILE):
        if not (run_dir / name).is_file():
            raise ExportError(f"{run_dir} is not a run dir: {name} is missing")
    task_meta = {k: v for k, v in run_meta.items() if k not in GENERATED and k != "files"}
    import models  # noqa: F401  (registers the custom layers and losses for loading)

    model = keras.saving.load_model(run_dir / MODEL_FILE, compile=False)
    batches = parity.load_batches(run_dir / PARITY_FILE)
    with staged(run_dir, copy_existing=True) as tmp:
        (tmp / ONNX_FILE).unlink(missing_ok=True)
        (tmp / "model.int8.onnx").unlink(missing_ok=True)  # it would no longer match the new model.onnx
        shutil.rmtree(tmp / SAVED_MODEL_DIR, ignore_errors=True)
        meta = export_model(model, tmp, task_meta, batches, opset)
        if quantize == "int8":
            meta = {**meta, "int8": _add_int8(tmp, meta)}
        write_card(tmp, run_dir)
    return meta
