"""Serving: exported models over onnxruntime, with numpy and onnxruntime only (never TensorFlow).

    import serving
    predictor = serving.load("runs/slot_filling")       # a run dir, or a single model.onnx
    predictor.predict("show me flights from boston to denver")

Every predictor follows one protocol (``serving/base.py``, ``docs/predictors.md``): ``task``, ``input_kind``,
``predict(x)``, ``predict_batch(inputs, batch_size=...)``, results with ``to_dict()`` and a readable ``str()``.
"""

from __future__ import annotations

from pathlib import Path

from serving import metadata as _metadata
from serving import seq2seq as _seq2seq
from serving.base import (INPUT_KINDS, PREDICTOR_MODULES, PREDICTORS, Predictor, Result, UnknownTaskError,
                          import_predictor_modules, predictor_class, register)
from serving.errors import InputError, ModelError, ServingError
from serving.key_terms import KeyTerm, KeyTermsPredictor, KeyTermsResult
from serving.parsing import ParsingPredictor, ParsingResult
from serving.reading_qa import ReadingQAPredictor, ReadingQAResult
from serving.sentiment import SentimentPredictor, SentimentResult
from serving.seq2seq import Seq2SeqPredictor, Seq2SeqResult
from serving.session import OnnxModel
from serving.slot_filling import SlotFillingPredictor, SlotFillingResult
from serving.speech import SpeechRecognizer, SpeechResult, TimedSymbol
from serving.speech_search import EmbeddingResult, Match, SpeechIndex, SpeechSearch
from serving.text_autoencoder import TextAutoencoderPredictor
from serving.translation import TranslationPredictor

import_predictor_modules()  # registers every task of serving.base.PREDICTOR_MODULES (the one list to extend)

__all__ = [
    "load", "InputError", "ModelError", "ServingError", "UnknownTaskError",
    "INPUT_KINDS", "PREDICTORS", "Predictor", "Result", "register", "predictor_class",
    "KeyTerm", "KeyTermsPredictor", "KeyTermsResult",
    "SentimentPredictor", "SentimentResult", "Seq2SeqPredictor", "Seq2SeqResult", "TranslationPredictor",
    "TextAutoencoderPredictor", "SlotFillingPredictor", "SlotFillingResult",
    "ReadingQAPredictor", "ReadingQAResult",
    "SpeechSearch", "SpeechIndex", "EmbeddingResult", "Match",
    "SpeechRecognizer", "SpeechResult", "TimedSymbol",
    "ParsingPredictor", "ParsingResult",
]


def load(path: str | Path, threads: int | None = None):
    """Loads the predictor for an exported model.

    Args:
      path: a run dir (``model.onnx`` + ``metadata.json``) or a single ``.onnx`` file, whose embedded metadata
        is then all that is needed.
      threads: onnxruntime intra-op threads (None: one per core).

    Returns:
      The task's predictor, e.g. :class:`SlotFillingPredictor`: the class registered for the metadata's ``task``
      (``serving.base.register``), built as ``cls(model, metadata)``.

    Raises:
      ModelError: the path is missing, not an ONNX model, lacks metadata, or its metadata.json does not match;
        UnknownTaskError (a ModelError) when no predictor is registered for its task.
    """
    path = Path(path)
    if _seq2seq.is_seq2seq(path):  # encoder.onnx + decoder_step.onnx
        return _seq2seq.load_run(path, threads=threads)
    if path.is_dir():
        onnx_path = path / "model.onnx"
        if not onnx_path.is_file():
            raise ModelError(f"{path} has no model.onnx; export the run with `python -m export {path}`")
        run_meta = _metadata.read_file(path / "metadata.json")
    elif path.is_file():
        onnx_path, run_meta = path, None
    else:
        raise ModelError(f"no such run dir or model file: {path}")
    model = OnnxModel(onnx_path, threads=threads)
    meta = _metadata.from_onnx_props(model.metadata_props, str(onnx_path))
    if run_meta is not None:
        _metadata.check_run_files(run_meta, meta, path)
    return predictor_class(meta["task"], str(onnx_path))(model, meta)
