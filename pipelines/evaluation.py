"""Evaluation: span-level slot F1 with seqeval (conlleval-style), intent accuracy, and the Keras callback that
reports them on the validation split every epoch."""

from __future__ import annotations

import keras
import numpy as np
from seqeval.metrics import f1_score, precision_score, recall_score

from pipelines.readers import SlotExample
from pipelines.slot_data import SlotPreprocessor, inference_dataset


def predict_examples(model, examples: list[SlotExample], preprocessor: SlotPreprocessor, tags, intents):
    """Returns (predicted tag lists, predicted intents), one per example, in order."""
    pred_tags, pred_intents = [], []
    row = 0
    for ids in inference_dataset(examples, preprocessor):
        out = model(ids, training=False)
        slot_ids = np.argmax(out["slot_probs"], axis=-1)
        intent_ids = np.argmax(out["intent_probs"], axis=-1)
        for i in range(len(slot_ids)):
            n = len(examples[row].words)
            pred_tags.append([tags[j] for j in slot_ids[i, :n]])
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


def evaluate(model, examples, preprocessor, tags, intents) -> dict:
    """Predicts ``examples`` with ``model`` and scores them (see :func:`slot_metrics`)."""
    pred_tags, pred_intents = predict_examples(model, examples, preprocessor, tags, intents)
    return slot_metrics(examples, pred_tags, pred_intents)


class ValidationMetrics(keras.callbacks.Callback):
    """Adds ``val_slot_f1`` and ``val_intent_accuracy`` to the epoch logs, for checkpointing and early stopping.

    Put it before the callbacks that read those logs.
    """

    def __init__(self, examples, preprocessor, tags, intents):
        super().__init__()
        self.args = (examples, preprocessor, tags, intents)

    def on_epoch_end(self, epoch, logs=None):
        scores = evaluate(self.model, *self.args)
        if logs is not None:
            logs["val_slot_f1"] = scores["slot_f1"]
            logs["val_intent_accuracy"] = scores["intent_accuracy"]
        print(f" - val_slot_f1: {scores['slot_f1']:.4f} - val_intent_accuracy: {scores['intent_accuracy']:.4f}")


class ValidationScore(keras.callbacks.Callback):
    """Adds ``val_<name>`` = ``score()`` (computed on the validation split) to the epoch logs, for checkpointing
    and early stopping. Put it before the callbacks that read it."""

    def __init__(self, name: str, score):
        super().__init__()
        self.name, self.score = name, score

    def on_epoch_end(self, epoch, logs=None):
        value = float(self.score())
        if logs is not None:
            logs[f"val_{self.name}"] = value
        print(f" - val_{self.name}: {value:.4f}")
