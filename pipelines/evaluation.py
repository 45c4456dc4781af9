"""Evaluation: span-level slot F1 with seqeval (conlleval-style), intent accuracy, and the Keras callback that
reports them on the validation split every epoch."""

from __future__ import annotations

import numpy as np
from seqeval.metrics import f1_score, precision_score, recall_score

from pipelines.readers import SlotExample
from pipelines.slot_data import SlotPreprocessor, inference_dataset
from serving.tags import IOBDecoder


def predict_examples(model, examples: list[SlotExample], preprocessor: SlotPreprocessor, tags, intents,
                     decoding: str = "viterbi"):
    """Returns (predicted tag lists, predicted intents), one per example, in order.

    ``decoding``: ``viterbi`` (the most probable well-formed IOB sequence) or ``argmax`` (each word's best tag).
    """
    decode = IOBDecoder(tags) if decoding == "viterbi" else (lambda probs: probs.argmax(-1))
    pred_tags, pred_intents = [], []
    row = 0
    for ids in inference_dataset(examples, preprocessor):
        out = model(ids, training=False)
        slot_probs = np.asarray(out["slot_probs"])
        intent_ids = np.argmax(out["intent_probs"], axis=-1)
        for i in range(len(slot_probs)):
            n = len(examples[row].words)
            pred_tags.append([tags[j] for j in decode(slot_probs[i, :n])])
            pred_intents.append(intents[intent_ids[i]])
            row += 1
    return pred_tags, pred_intents


def slot_metrics(gold: list[SlotExample], pred_tags: list[list[str]], pred_intents: list[str]) -> dict:
    """Slot precision / recall / F1 over spans (seqeval, conlleval rules), intent accuracy, whole-utterance
    accuracy (every tag and the intent right)."""
    gold_tags = [list(ex.tags) for ex in gold]
    intent_hits = [ex.intent == p for ex, p in zip(gold, pred_intents)]
    exact = [ex.intent == pi and list(ex.tags) == pt for ex, pi, pt in zip(gold, pred_intents, pred_tags)]
    return {
        "slot_f1": float(f1_score(gold_tags, pred_tags, zero_division=0)),
        "slot_precision": float(precision_score(gold_tags, pred_tags, zero_division=0)),
        "slot_recall": float(recall_score(gold_tags, pred_tags, zero_division=0)),
        "intent_accuracy": float(np.mean(intent_hits)),
        "sentence_accuracy": float(np.mean(exact)),
        "examples": len(gold),
    }


def evaluate(model, examples, preprocessor, tags, intents, decoding: str = "viterbi") -> dict:
    """Predicts ``examples`` with ``model`` and scores them (see :func:`slot_metrics`)."""
    pred_tags, pred_intents = predict_examples(model, examples, preprocessor, tags, intents, decoding)
    return slot_metrics(examples, pred_tags, pred_intents)
