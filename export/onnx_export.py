"""Keras → ONNX through tf2onnx, with the graph's inputs and outputs named as the Keras model names them."""

from __future__ import annotations

import json

import keras
import onnx
import tensorflow as tf

from export.quiet import captured_stderr, quiet_converter_logs
from serving.metadata import ONNX_KEY

DEFAULT_OPSET = 17


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


def to_onnx(model: keras.Model, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Converts ``model`` to an ONNX ModelProto (opset ``opset``)."""
    quiet_converter_logs()
    fn = serving_function(model)
    with captured_stderr():
        import tf2onnx

        proto, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=opset)
    return proto


def embed_metadata(proto: onnx.ModelProto, meta: dict) -> None:
    """Stores ``meta`` as JSON under the ``metadata.json`` key of the model's ``metadata_props``."""
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {ONNX_KEY: json.dumps(meta, ensure_ascii=False, sort_keys=True)})
    proto.doc_string = f"{meta['task']} model exported by rnn-toolkit; see metadata_props['{ONNX_KEY}']"
