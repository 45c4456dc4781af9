"""Translation over onnxruntime: English text in, the decoded translation out (``Seq2SeqResult``)."""

from __future__ import annotations

from serving.base import register
from serving.seq2seq import Seq2SeqPredictor


@register("translation")
class TranslationPredictor(Seq2SeqPredictor):
    """Translates texts with an exported translation run (beam search by default; ``beam_size=1``: greedy).
    Build one with :func:`serving.load`; see :class:`serving.seq2seq.Seq2SeqPredictor`."""

    task = "translation"
