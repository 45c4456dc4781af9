"""Speech recognition models over log-mel frames: CTC (per-frame log-probabilities over symbols + blank) and the
frame-wise classifier the lecture compares it with (one label per frame, then trimming).

Both read ``features`` [batch, time, n_mels] (padded with zeros) and ``frames`` [batch] (the real frame count
of each clip); the padding mask is built from ``frames`` and handed to every recurrent layer, so a clip's output
does not depend on what else is in its batch. An optional strided Conv1D subsamples time first (``subsample``
frames in, one out: output length ceil(frames / subsample)).
"""

from __future__ import annotations

import keras
from keras import layers, ops

from models.recurrent import CELLS, recurrent_layer

INPUT, FRAMES, OUTPUT = "features", "frames", "log_probs"
FRAME_OUTPUT = "frame_probs"
BLANK = 0  # CTC's blank (and the frame-wise classifier's silence) is class 0; symbol i is class i + 1


@keras.saving.register_keras_serializable(package="rnn_toolkit")
class FrameMask(layers.Layer):
    """[batch, time] boolean mask, True at the first ``frames[b]`` steps of ``features``."""

    def call(self, inputs):
        features, frames = inputs
        steps = ops.arange(ops.shape(features)[1], dtype="int32")
        return ops.less(steps[None, :], ops.cast(frames, "int32")[:, None])

    def compute_output_spec(self, inputs):
        features, _ = inputs
        return keras.KerasTensor(features.shape[:2], dtype="bool")


@keras.saving.register_keras_serializable(package="rnn_toolkit")
class SubsampleMask(layers.Layer):
    """Keeps every ``stride``-th step of a mask: the mask of a ``padding="same"`` Conv1D with that stride."""

    def __init__(self, stride: int, **kwargs):
        super().__init__(**kwargs)
        self.stride = stride

    def call(self, mask):
        return mask[:, :: self.stride]

    def compute_output_spec(self, mask):
        steps = None if mask.shape[1] is None else -(-mask.shape[1] // self.stride)
        return keras.KerasTensor((mask.shape[0], steps), dtype="bool")

    def get_config(self):
        return {**super().get_config(), "stride": self.stride}


def output_frames(frames, subsample: int):
    """Output steps for clips of ``frames`` input frames (numpy or int): ceil(frames / subsample)."""
    return -(-frames // subsample)


def build_speech_model(n_mels: int, n_classes: int, *, head: str = "ctc", cell: str = "gru", units: int = 96,
                       layers_: int = 2, subsample: int = 2, conv_filters: int = 96, dropout: float = 0.2,
                       name: str | None = None) -> keras.Model:
    """The recognizer: [Conv1D subsampling] → stacked bidirectional RNN → per-step classes.

    Args:
      n_mels: feature width.
      n_classes: symbols + 1 (class 0 is CTC's blank, or silence for the frame-wise head).
      head: ``"ctc"``: output ``log_probs`` (log-softmax, for CTC loss and decoding); ``"frames"``: output
        ``frame_probs`` (softmax, for per-frame cross-entropy).
      cell: a row of the cell table (``models.recurrent.CELL_TABLE``).
      units: recurrent units per direction.
      layers_: stacked bidirectional layers.
      subsample: Conv1D stride over time (1: no convolution).
      conv_filters: Conv1D channels.
      dropout: after the convolution and each recurrent layer (training only).

    Returns:
      A functional model: inputs ``{"features", "frames"}``, output dict ``{"log_probs"}`` or ``{"frame_probs"}``.
    """
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}; choose one of {', '.join(CELLS)}")
    features = keras.Input((None, n_mels), name=INPUT)
    frames = keras.Input((), dtype="int32", name=FRAMES)
    mask = FrameMask(name="frame_mask")([features, frames])
    x = features
    if subsample > 1:
        x = layers.Conv1D(conv_filters, kernel_size=2 * subsample + 1, strides=subsample, padding="same",
                          activation="relu", name="subsample")(x)
        x = layers.Dropout(dropout)(x)
        mask = SubsampleMask(subsample, name="subsample_mask")(mask)
    for i in range(layers_):
        x = recurrent_layer(cell, units, return_sequences=True, name=f"birnn_{i}")(x, mask=mask)
        x = layers.Dropout(dropout)(x)
    if head == "ctc":
        out = layers.Dense(n_classes, activation="log_softmax", name=OUTPUT)(x)
        outputs = {OUTPUT: out}
    elif head == "frames":
        outputs = {FRAME_OUTPUT: layers.Dense(n_classes, activation="softmax", name=FRAME_OUTPUT)(x)}
    else:
        raise ValueError(f"unknown head {head!r}; choose ctc or frames")
    return keras.Model({INPUT: features, FRAMES: frames}, outputs, name=name or f"speech_{head}")


@keras.saving.register_keras_serializable(package="rnn_toolkit")
class PackedCTCLoss(keras.losses.Loss):
    """CTC loss (``keras.ops.ctc_loss``, blank = class 0) averaged over the batch.

    ``y_true`` packs what the loss needs besides the outputs: [batch, 1 + max_label] int, column 0 the output
    step count of each clip, then its label ids (symbol i as i + 1) padded with 0 (the padding is ignored:
    the label length is the count of ids > 0). ``y_pred`` is [batch, time, classes] log-probabilities.
    """

    def __init__(self, name: str = "ctc", **kwargs):
        kwargs.pop("reduction", None)
        super().__init__(name=name, reduction="sum_over_batch_size", **kwargs)

    def __call__(self, y_true, y_pred, sample_weight=None):
        # Keras would multiply the per-clip losses by y_pred's [batch, time] padding mask: the output step count
        # in y_true already says which steps count, so the mask is dropped here.
        return super().__call__(y_true, ops.add(y_pred, 0.0), sample_weight)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        out_len, labels = y_true[:, 0], y_true[:, 1:]
        label_len = ops.sum(ops.cast(labels > 0, "int32"), axis=1)
        return ops.ctc_loss(labels, y_pred, label_len, out_len, mask_index=BLANK)

    def get_config(self):
        return {"name": self.name}
