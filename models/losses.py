"""Losses."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="rnn_toolkit")
class SummedSequenceCrossEntropy(keras.losses.Loss):
    """Cross-entropy between each step's output distribution and its reference label, summed over the sequence
    and averaged over the batch: the lecture's slot-filling loss.

    ``y_true`` is [batch, time] integer labels with -1 at padded steps (which add nothing); ``y_pred`` is
    [batch, time, classes] probabilities.
    """

    def __init__(self, name: str = "summed_sequence_crossentropy", **kwargs):
        kwargs.pop("reduction", None)
        super().__init__(name=name, reduction="sum", **kwargs)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        valid = ops.cast(y_true >= 0, y_pred.dtype)
        step_loss = keras.losses.sparse_categorical_crossentropy(ops.maximum(y_true, 0), y_pred)
        batch = ops.cast(ops.shape(y_true)[0], y_pred.dtype)
        # Summed with reduction="sum": sum over steps and sentences, divided by the number of sentences.
        return step_loss * valid / batch

    def get_config(self):
        return {"name": self.name}
