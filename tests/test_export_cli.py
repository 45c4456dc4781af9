"""``python -m export MODEL.keras``: any user's Keras model to ONNX, with the route per layer, the parity against
Keras and the reason for a tf2onnx fallback (export/user_model.py)."""

from __future__ import annotations

import re

import keras
import numpy as np
import onnxruntime as ort
import pytest

from export.__main__ import main
from export.user_model import export_keras_model, parity_batches

L = keras.layers


@keras.saving.register_keras_serializable(package="test_export_cli")
class Doubled(L.Layer):
    """A user's own layer: no native emitter exists for it."""

    def call(self, x):
        return x * 2.0


def _classifier():
    ids = keras.Input((None,), dtype="int32", name="ids")
    x = L.Embedding(40, 8, mask_zero=True, name="embedding")(ids)
    x = L.LSTM(6, name="lstm")(x)
    return keras.Model(ids, L.Dense(3, activation="softmax", name="probs")(x))


def _parity(out: str) -> float:
    return float(re.search(r"parity: max \|onnx - keras\| (\S+)", out).group(1))


def test_a_saved_classifier_converts_natively_and_matches_keras(tmp_path, capsys):
    model = _classifier()
    model.save(tmp_path / "clf.keras")
    assert main([str(tmp_path / "clf.keras"), "--out", str(tmp_path / "clf.onnx")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^embedding\s+Embedding\s+native: emit_keras\._embedding$", out, re.M)
    assert re.search(r"^lstm\s+LSTM\s+native: emit_keras\.", out, re.M)
    assert "route: native\n" in out
    assert _parity(out) <= 1e-5
    session = ort.InferenceSession(str(tmp_path / "clf.onnx"), providers=["CPUExecutionProvider"])
    ids = np.array([[5, 7, 9, 0, 0], [3, 0, 0, 0, 0]], np.int32)
    np.testing.assert_allclose(session.run(None, {"ids": ids})[0], np.asarray(model(ids)), atol=1e-5)


def test_an_unsupported_layer_falls_back_to_tf2onnx_with_the_reason(tmp_path, capsys):
    x = keras.Input((None, 3), name="x")
    y = L.GRU(4, return_sequences=True, name="gru")(Doubled(name="doubled")(x))
    keras.Model(x, y).save(tmp_path / "own.keras")
    assert main([str(tmp_path / "own.keras")]) == 0  # default out: own.onnx beside it
    out = capsys.readouterr().out
    assert "route: tf2onnx (fallback: layer 'doubled' (Doubled) cannot be converted to native ONNX" in out
    assert re.search(r"^doubled\s+Doubled\s+tf2onnx \(no native ONNX emitter for this layer class\)$", out, re.M)
    assert _parity(out) <= 1e-5
    assert (tmp_path / "own.onnx").is_file()


def test_python_api_takes_a_sequential_model_and_pads_its_masked_inputs():
    model = keras.Sequential([keras.Input((None, 5)), L.Masking(-1.0, name="masking"), L.SimpleRNN(4, name="rnn"),
                              L.Dense(2, name="out")])
    feeds, lengths = parity_batches(model)[1]
    (x,) = feeds.values()
    (lens,) = lengths.values()
    assert x.shape[0] == 5 and lens.min() == 1 and lens.max() == x.shape[1]
    assert (x[-1, 1:] == -1.0).all()  # padding at the end, with the Masking layer's value
    result = export_keras_model(model)
    assert result.parity <= 1e-5 and result.out is None
    assert [row[0] for row in result.layers][-2:] == ["rnn", "out"]


def test_a_subclassed_model_is_refused_with_what_to_do():
    import export

    class Own(keras.Model):
        def call(self, x):
            return x * 2.0

    model = Own()
    model(np.ones((1, 3), np.float32))
    with pytest.raises(export.ExportError, match="subclassed model.*Wrap it"):
        export_keras_model(model)


def test_a_directory_is_still_a_run_dir(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "is not a run dir" in capsys.readouterr().err
