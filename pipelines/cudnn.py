"""Will the recurrent layers run on cuDNN? On a GPU, Keras runs LSTM and GRU on the fused cuDNN kernel only with
its default settings; anything else falls back to a step-by-step loop that trains 5-10x slower.

The kernel needs: tanh activation, sigmoid recurrent activation, no recurrent dropout, no unrolling, biases on
(GRU: ``reset_after=True``), and right-padded input (a mask that is True then False along each row). SimpleRNN
and custom cells have no cuDNN kernel at all.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np

SLOWDOWN = "trains 5-10x slower on a GPU than the cuDNN kernel"


def _rnn_layers(model):
    layers = list(model._flatten_layers(include_self=False))
    wrapped = {id(inner) for layer in layers if isinstance(layer, keras.layers.Bidirectional)
               for inner in (layer.forward_layer, layer.backward_layer)}
    for layer in layers:
        if isinstance(layer, keras.layers.Bidirectional):
            yield layer.name, layer.forward_layer
            yield layer.name, layer.backward_layer
        elif isinstance(layer, keras.layers.RNN) and id(layer) not in wrapped:
            yield layer.name, layer


def _reasons(rnn) -> list[str]:
    if isinstance(rnn, keras.layers.SimpleRNN):
        return ["SimpleRNN has no cuDNN kernel"]
    if not isinstance(rnn, (keras.layers.LSTM, keras.layers.GRU)):
        return [f"{type(rnn.cell).__name__} is a custom cell, with no cuDNN kernel"]
    cell, reasons = rnn.cell, []
    if keras.activations.serialize(cell.activation) != "tanh":
        reasons.append(f"activation={keras.activations.serialize(cell.activation)} (cuDNN needs tanh)")
    if keras.activations.serialize(cell.recurrent_activation) != "sigmoid":
        reasons.append(f"recurrent_activation={keras.activations.serialize(cell.recurrent_activation)} "
                       "(cuDNN needs sigmoid)")
    if cell.recurrent_dropout > 0:
        reasons.append(f"recurrent_dropout={cell.recurrent_dropout} (cuDNN needs 0; use dropout between layers)")
    if rnn.unroll:
        reasons.append("unroll=True")
    if not cell.use_bias:
        reasons.append("use_bias=False")
    if isinstance(rnn, keras.layers.GRU) and not cell.reset_after:
        reasons.append("reset_after=False (cuDNN needs reset_after=True)")
    if getattr(rnn, "use_cudnn", "auto") is False:
        reasons.append("use_cudnn=False")
    return reasons


def cudnn_blockers(model) -> dict[str, list[str]]:
    """The recurrent layers that cannot use the cuDNN kernel, by layer name, with the reasons."""
    blockers: dict[str, list[str]] = {}
    for name, rnn in _rnn_layers(model):
        for reason in _reasons(rnn):
            if reason not in blockers.setdefault(name, []):
                blockers[name].append(reason)
    return {name: reasons for name, reasons in blockers.items() if reasons}


def left_padded(ids) -> bool:
    """True when some row of the padded id batch (0 = padding) has padding before a real token."""
    mask = np.asarray(ids) != 0
    return bool((mask[:, 1:] & ~mask[:, :-1]).any())


def warn_cudnn(model, sample_ids=None, gpu: bool | None = None) -> list[str]:
    """Warns, naming each layer, when the recurrent layers (or left-padded ``sample_ids``) rule out cuDNN.

    Args:
      model: the Keras model.
      sample_ids: a padded batch of input ids, to check the padding side.
      gpu: warn only when a GPU is visible (None: ask TensorFlow); True always warns.

    Returns:
      The warning messages (also issued with ``warnings.warn``).
    """
    if gpu is None:
        import tensorflow as tf

        gpu = bool(tf.config.list_logical_devices("GPU"))
    messages = [f"recurrent layer {name!r} cannot use the cuDNN kernel: {'; '.join(reasons)}; it {SLOWDOWN}"
                for name, reasons in cudnn_blockers(model).items()]
    if sample_ids is not None and left_padded(sample_ids):
        messages.append(f"the input is left-padded: cuDNN needs right padding (masks True then False); the "
                        f"recurrent layers {SLOWDOWN}")
    if gpu:
        for message in messages:
            warnings.warn(message, stacklevel=2)
    return messages
