"""Export: ONNX and SavedModel agree with Keras on batches of mixed lengths; metadata travels in the model."""

import json
import shutil

import numpy as np
import onnx
import pytest

import export
from export import parity
from serving import metadata
from serving.session import OnnxModel


def mixed_batch(vocab_size, seed=3):
    rng = np.random.default_rng(seed)
    lengths = np.array([1, 5, 17, 9, 2, 30])
    ids = np.zeros((len(lengths), lengths.max()), np.int32)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(1, vocab_size, n)
    return ids, lengths


def char_batch(run_dir, lengths, seed=4):
    """Character ids [batch, time, word_chars] for :func:`mixed_batch`'s real steps (1..word_chars characters)."""
    meta = json.loads((run_dir / "metadata.json").read_text())
    rng = np.random.default_rng(seed)
    chars = np.zeros((len(lengths), lengths.max(), meta["word_chars"]), np.int32)
    for row, n in enumerate(lengths):
        for step in range(n):
            k = rng.integers(1, meta["word_chars"] + 1)
            chars[row, step, :k] = rng.integers(1, len(meta["chars"]), k)
    return chars


def test_run_dir_holds_the_contracted_files(slot_run):
    run_dir, metrics = slot_run
    for name in ("saved_model/saved_model.pb", "model.onnx", "model.keras", "metadata.json", "metrics.json",
                 "vocab.txt", "slot_tags.txt", "intents.txt", "history.csv", "train.log", "config.json"):
        assert (run_dir / name).exists(), name
    assert not list(run_dir.parent.glob(".slot_filling.partial-*"))
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert all(isinstance(v, (int, float)) for v in saved.values())
    assert saved["slot_f1"] == metrics["slot_f1"] > 0.8


def test_onnx_matches_keras_on_a_new_mixed_length_batch(slot_run, slot_model):
    run_dir, _ = slot_run
    ids, lengths = mixed_batch(len((run_dir / "vocab.txt").read_text().split()))
    feeds = {"token_ids": ids, "char_ids": char_batch(run_dir, lengths)}
    ort_out = OnnxModel(run_dir / "model.onnx").run(feeds)
    keras_out = {k: np.asarray(v) for k, v in slot_model(feeds, training=False).items()}
    diffs = parity.compare(keras_out, ort_out, lengths, per_step={"slot_probs"})
    assert diffs["slot_probs"] <= 1e-5 and diffs["intent_probs"] <= 1e-5


def test_log_probs_are_compared_relative_to_their_size_beyond_one():
    lengths = np.array([2])
    reference = {"log_probs": np.array([[[-30.0, -0.5], [-2.0, -0.1]]], np.float32)}
    moved = {"log_probs": reference["log_probs"] + np.array([[[6e-5, 0], [0, 0]]], np.float32)}
    absolute = parity.compare(reference, moved, lengths, {"log_probs"})
    relative = parity.compare(reference, moved, lengths, {"log_probs"}, log_scale={"log_probs"})
    assert absolute["log_probs"] == pytest.approx(6e-5, rel=0.05)
    assert relative["log_probs"] == pytest.approx(2e-6, rel=0.05)
    near_one = {"log_probs": reference["log_probs"] + np.array([[[0, 2e-5], [0, 0]]], np.float32)}
    with pytest.raises(parity.ParityError, match=r"'log_probs' differs from Keras by 2e-05 relative to max\(1"):
        parity.verify("ONNX", lambda f: reference, lambda f: near_one, [{"x": 0, "lengths": lengths}],
                      {"log_probs"}, log_scale={"log_probs"})
    assert parity.log_scale_outputs({"outputs": {"a": {"kind": "log_probs"}, "b": {}}}) == {"a"}


def test_saved_model_has_a_named_serving_signature(slot_run, slot_model):
    import tensorflow as tf

    run_dir, _ = slot_run
    signature = tf.saved_model.load(str(run_dir / "saved_model")).signatures["serving_default"]
    assert set(signature.structured_outputs) == {"slot_probs", "intent_probs"}
    ids, lengths = mixed_batch(20)
    feeds = {"token_ids": ids, "char_ids": char_batch(run_dir, lengths)}
    out = {k: v.numpy() for k, v in signature(**{k: tf.constant(v) for k, v in feeds.items()}).items()}
    keras_out = {k: np.asarray(v) for k, v in slot_model(feeds, training=False).items()}
    assert max(parity.compare(keras_out, out, lengths, {"slot_probs"}).values()) <= 1e-5


def test_onnx_file_is_self_describing(slot_run):
    run_dir, _ = slot_run
    proto = onnx.load(str(run_dir / "model.onnx"))
    assert sorted(i.name for i in proto.graph.input) == ["char_ids", "token_ids"]
    assert sorted(o.name for o in proto.graph.output) == ["intent_probs", "slot_probs"]
    embedded = json.loads({p.key: p.value for p in proto.metadata_props}["metadata.json"])
    on_disk = json.loads((run_dir / "metadata.json").read_text())
    assert embedded == {k: v for k, v in on_disk.items() if k != "files"}
    assert on_disk["files"]["model.onnx"]["sha256"] == metadata.sha256(run_dir / "model.onnx")
    assert embedded["vocab"] == (run_dir / "vocab.txt").read_text().split("\n")[:-1]
    assert embedded["slot_tags"][0] == "O" and embedded["tokenizer"]["name"] == "casefold_punct_v1"
    assert max(embedded["parity"]["onnx_max_abs_diff"].values()) <= 1e-5
    assert embedded["parity"]["batches"] >= 2


def test_reexport_in_a_fresh_process_rewrites_and_verifies(slot_run, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    run_dir = tmp_path / "copy"
    shutil.copytree(slot_run[0], run_dir)
    done = subprocess.run([sys.executable, "-m", "export", str(run_dir), "--opset", "15"],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "parity max abs diff" in done.stdout
    assert "cannot be converted" not in done.stderr  # a model loaded from model.keras still converts natively
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["versions"]["opset"] == 15 and meta["onnx_converter"] == "native"
    assert onnx.load(str(run_dir / "model.onnx")).opset_import[0].version == 15
    assert not list(tmp_path.glob(".copy.*"))


def test_cli_reexport_rewrites_the_model_card(slot_run, tmp_path):
    """The card (README.md) and the tokenizer conformance file are rewritten in the staging folder, from the new
    metadata, with the task's demo input, as the runner writes them."""
    from export.__main__ import main
    from pipelines.slot_filling import SLOT_FILLING
    from serving import conformance

    run_dir = tmp_path / "copy"
    shutil.copytree(slot_run[0], run_dir)
    (run_dir / "README.md").write_text("a stale card\n")
    (run_dir / conformance.FILE).unlink()
    assert main([str(run_dir), "--opset", "15"]) == 0
    meta = json.loads((run_dir / "metadata.json").read_text())
    card = (run_dir / "README.md").read_text()
    assert card.startswith("# copy: slot_filling\n")
    for fact in (f"| exported_at | {meta['exported_at']} |", "| opset | 15 |",
                 f"| converter | {meta['onnx_converter']} |", f"| parity | {json.dumps(meta['parity'])} |",
                 json.dumps(SLOT_FILLING.demo_input), "/v1/models/copy/predict", conformance.FILE):
        assert fact in card, fact
    assert json.loads((run_dir / conformance.FILE).read_text()) == conformance.build(meta)
    assert not list(tmp_path.glob(".copy.*"))


def test_failed_parity_leaves_the_run_dir_untouched(slot_run, tmp_path, monkeypatch):
    run_dir = tmp_path / "copy"
    shutil.copytree(slot_run[0], run_dir)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    monkeypatch.setattr(parity, "compare", lambda *a, **k: {"slot_probs": 1e-3})
    with pytest.raises(export.ParityError, match=r"output 'slot_probs' differs from Keras by 0.001 \(limit 1e-05\)"):
        export.reexport(run_dir)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
    assert not list(tmp_path.glob(".copy.*"))


def test_export_cli_reports_a_non_run_dir(tmp_path):
    from export.__main__ import main

    assert main([str(tmp_path)]) == 2


def test_slot_filling_exports_native_recurrent_ops(slot_run):
    run_dir, _ = slot_run
    proto = onnx.load(str(run_dir / "model.onnx"))
    ops = {node.op_type for node in proto.graph.node}
    assert "LSTM" in ops and not ops & {"Loop", "Scan"}
    assert json.loads((run_dir / "metadata.json").read_text())["onnx_converter"] == "native"


def test_unsupported_layer_falls_back_to_tf2onnx_with_a_warning():
    import keras

    from export.onnx_export import to_onnx

    inputs = keras.Input((None, 4), name="features")
    x = keras.layers.UpSampling1D(2, name="odd_upsampling")(inputs)
    x = keras.layers.GRU(5, name="gru")(x)
    model = keras.Model(inputs, {"scores": keras.layers.Dense(2, name="scores")(x)})
    with pytest.warns(UserWarning, match="'odd_upsampling' \\(UpSampling1D\\) cannot be converted to native ONNX"):
        proto, route = to_onnx(model)
    assert route == "tf2onnx"
    features = np.random.default_rng(0).normal(size=(2, 6, 4)).astype(np.float32)
    import onnxruntime as ort

    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (scores,) = session.run(["scores"], {"features": features})
    np.testing.assert_allclose(scores, np.asarray(model(features)["scores"]), atol=1e-5)


def test_int8_quantization_writes_a_servable_model_and_reports_its_change(slot_run, tmp_path):
    import serving

    run_dir = tmp_path / "copy"
    shutil.copytree(slot_run[0], run_dir)
    meta = export.reexport(run_dir, quantize="int8")
    assert meta["int8"]["argmax_agreement"] >= 0.9
    files = json.loads((run_dir / "metadata.json").read_text())["files"]
    assert files["model.int8.onnx"]["sha256"] == metadata.sha256(run_dir / "model.int8.onnx")
    assert files["model.int8.onnx"]["vs_float"] == meta["int8"]
    ops = {node.op_type for node in onnx.load(str(run_dir / "model.int8.onnx")).graph.node}
    assert "DynamicQuantizeLSTM" in ops
    text = "flights from boston to denver"
    assert serving.load(run_dir / "model.int8.onnx").predict(text).words == serving.load(run_dir).predict(text).words
    export.reexport(run_dir)  # a plain re-export drops the int8 file, which would no longer match
    assert not (run_dir / "model.int8.onnx").exists()
    with pytest.raises(export.ExportError, match="unknown quantization 'int4'"):
        export.reexport(run_dir, quantize="int4")
