"""Keras → ONNX: the native layer-level converter (``export/keras_onnx.py``: ONNX RNN / LSTM / GRU ops), or
tf2onnx for models it cannot convert (with a warning naming the layer). Inputs and outputs are named as the Keras
model names them."""

from __future__ import annotations

import json
import warnings

import keras
import onnx
import tensorflow as tf

from export import keras_onnx
from export.quiet import captured_stderr, quiet_converter_logs
from export.registry import DEFAULT_OPSET
from serving.metadata import ONNX_KEY


def input_signature(model: keras.Model) -> list[tf.TensorSpec]:
    """One TensorSpec per model input, batch and time dimensions left dynamic."""
    return [
        tf.TensorSpec((None,) + tuple(t.shape[1:]), tf.as_dtype(t.dtype), name=t.name.split(":")[0])
        for t in model.inputs
    ]


def serving_function(model: keras.Model) -> tf.types.experimental.GenericFunction:
    """The model in inference mode as a tf.function over :func:`input_signature`, returning its output dict."""
    signature = input_signature(model)
    names = [spec.name for spec in signature]

    @tf.function(input_signature=signature)
    def serve(*inputs):
        return model(dict(zip(names, inputs)) if len(names) > 1 else inputs[0], training=False)

    return serve


ROUTES = ("auto", "native", "tf2onnx")


def to_onnx(model: keras.Model, opset: int = DEFAULT_OPSET, route: str = "auto") -> tuple[onnx.ModelProto, str]:
    """Converts ``model`` to an ONNX ModelProto (opset ``opset``).

    Args:
      route: ``native`` (layer-level converter; raises UnsupportedLayer), ``tf2onnx``, or ``auto``: native, and
        tf2onnx with a warning naming the layer when the native converter cannot handle the model.

    Returns:
      The ModelProto and the route taken (``native`` or ``tf2onnx``).
    """
    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}; choose one of {', '.join(ROUTES)}")
    if route != "tf2onnx":
        try:
            return keras_onnx.convert(model, opset=opset), "native"
        except keras_onnx.UnsupportedLayer as err:
            if route == "native":
                raise
            warnings.warn(f"{err}; converting with tf2onnx instead (recurrent layers become slower Loop graphs)",
                          stacklevel=2)
    return tf2onnx_convert(model, opset), "tf2onnx"


def tf2onnx_convert(model: keras.Model, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Converts ``model`` with tf2onnx from its traced tf.function."""
    quiet_converter_logs()
    fn = serving_function(model)
    with captured_stderr():
        import tf2onnx

        proto, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=opset)
    return proto


def versions(opset: int) -> dict:
    """The converter stack's versions and the opset, as the metadata's ``versions`` records them."""
    import tf2onnx

    return {"tensorflow": tf.__version__, "keras": keras.__version__, "tf2onnx": tf2onnx.__version__,
            "onnx": onnx.__version__, "opset": opset}


def embed_metadata(proto: onnx.ModelProto, meta: dict) -> None:
    """Stores ``meta`` as JSON under the ``metadata.json`` key of the model's ``metadata_props``."""
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {ONNX_KEY: json.dumps(meta, ensure_ascii=False, sort_keys=True)})
    proto.doc_string = f"{meta['task']} model exported by rnn-toolkit; see metadata_props['{ONNX_KEY}']"
