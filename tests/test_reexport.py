"""``python -m export RUN_DIR`` on a seq2seq run: the encoder and decoder step are rebuilt from metadata.json and
model.weights.h5, exported natively, parity-checked, and swapped in atomically; what is missing is named."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import export
from export import parity
from serving import metadata

ROOT = Path(__file__).resolve().parents[1]
MAX_LEN = 8
KEPT = ("model.weights.h5", "config.json", "source_vocab.txt", "target_vocab.txt", "metrics.json", "examples.json")


@pytest.fixture(scope="module")
def trained_dir(translation_run):
    """conftest.py's seconds-long translation run (LSTM, additive attention of 8 units, SavedModels too): its run dir,
    copied by each test before it changes anything."""
    run_dir = translation_run[0]
    assert json.loads((run_dir / "config.json").read_text())["max_target_len"] == MAX_LEN
    return run_dir


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    return copy


def _files(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def _sources() -> list[list[str]]:
    from pipelines.translation import number_words

    return [number_words(n).split() for n in (1, 21, 342, 4012, 90000, 7, 615, 38, 100100, 56)]


def _decode(run_dir: Path, beam_size: int):
    import serving

    return serving.load(run_dir).decode_tokens(_sources(), beam_size=beam_size, max_len=MAX_LEN)


def test_cli_reexports_a_translation_run_and_decodes_the_same(trained_dir, tmp_path):
    from export.seq2seq_export import load_seq2seq
    from pipelines.seq2seq import keras_decode

    run_dir = _copy(trained_dir, tmp_path)
    before = {beam: _decode(run_dir, beam) for beam in (1, 2)}
    kept = {name: (run_dir / name).read_bytes() for name in KEPT}
    old_meta = json.loads((run_dir / "metadata.json").read_text(encoding="utf-8"))

    # a fresh process: the seq2seq emitters must be registered whatever python -m export imports first
    done = subprocess.run([sys.executable, "-m", "export", str(run_dir), "--opset", "15"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "exported" in done.stdout and "encoder.onnx + decoder_step.onnx + saved_model/" in done.stdout
    assert "decoder_step/log_probs" in done.stdout and "cannot be converted" not in done.stderr

    meta = json.loads((run_dir / "metadata.json").read_text(encoding="utf-8"))
    assert meta["onnx_converter"] == {"encoder": "native", "decoder_step": "native"}
    assert meta["versions"]["opset"] == 15
    diffs = meta["parity"]["onnx_max_abs_diff"]
    assert set(diffs) == {"encoder", "decoder_step"} and max(max(d.values()) for d in diffs.values()) <= 1e-5
    assert max(max(d.values()) for d in meta["parity"]["saved_model_max_abs_diff"].values()) <= 1e-5
    assert meta["parity"]["batches"] == old_meta["parity"]["batches"]
    for key, value in old_meta.items():  # the task's metadata is kept; what the export derives is the same
        if key not in ("exported_at", "versions", "parity", "files"):
            assert meta[key] == value, key
    assert meta["model"]["attention_units"] == 8
    for name in ("encoder.onnx", "decoder_step.onnx"):
        proto = onnx.load(str(run_dir / name))
        assert proto.opset_import[0].version == 15
        assert not {node.op_type for node in proto.graph.node} & {"Loop", "Scan"}
        embedded = json.loads({p.key: p.value for p in proto.metadata_props}["metadata.json"])
        assert embedded == {k: v for k, v in meta.items() if k != "files"}
        assert meta["files"][name]["sha256"] == metadata.sha256(run_dir / name)
    assert (run_dir / "saved_model" / "encoder" / "saved_model.pb").is_file()
    assert (run_dir / "saved_model" / "decoder_step" / "saved_model.pb").is_file()
    assert {name: (run_dir / name).read_bytes() for name in KEPT} == kept
    assert not list(tmp_path.glob(".copy.*"))

    # the re-exported graphs decode exactly as the trained ones did, and as Keras does
    for beam, hyps in before.items():
        after = _decode(run_dir, beam)
        assert [h.ids for h in after] == [h.ids for h in hyps], beam
        assert [h.score for h in after] == pytest.approx([h.score for h in hyps], abs=1e-4)
    import serving

    predictor = serving.load(run_dir)
    keras_hyps = keras_decode(load_seq2seq(run_dir), predictor.source_ids(_sources()), max_len=MAX_LEN)
    assert [h.ids for h in keras_hyps] == [h.ids for h in before[1]]


def test_missing_weights_are_named_and_the_run_dir_is_left_alone(trained_dir, tmp_path, capsys):
    from export.__main__ import main

    run_dir = _copy(trained_dir, tmp_path)
    (run_dir / "model.weights.h5").unlink()
    files = _files(run_dir)
    assert main([str(run_dir)]) == 2
    assert "model.weights.h5 is missing (the seq2seq trainer's weights" in capsys.readouterr().err
    assert _files(run_dir) == files and not list(tmp_path.glob(".copy.*"))


def test_missing_parity_sources_and_quantization_are_refused(trained_dir, tmp_path):
    run_dir = _copy(trained_dir, tmp_path)
    with pytest.raises(export.ExportError, match="seq2seq run .* has no int8 export"):
        export.reexport(run_dir, quantize="int8")
    (run_dir / "parity_encoder.npz").unlink()
    with pytest.raises(export.ExportError, match="parity_encoder.npz is missing"):
        export.reexport(run_dir)


def test_older_metadata_takes_the_attention_width_from_config_json(trained_dir, tmp_path):
    """Exports from before metadata.json recorded model.attention_units: config.json supplies it; without
    config.json the export names what is missing."""
    from export.seq2seq_export import load_seq2seq

    run_dir = _copy(trained_dir, tmp_path)
    meta = json.loads((run_dir / "metadata.json").read_text(encoding="utf-8"))
    for key in ("attention_units", "dropout"):
        del meta["model"][key]
    (run_dir / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    models = load_seq2seq(run_dir)
    assert models.spec.attention_units == 8 and models.spec.cell == "lstm"
    (run_dir / "config.json").unlink()
    files = _files(run_dir)
    with pytest.raises(export.ExportError, match="config.json is missing .* model.attention_units"):
        export.reexport(run_dir)
    assert _files(run_dir) == files


def test_weights_that_do_not_fit_the_metadata_are_refused(trained_dir, tmp_path):
    run_dir = _copy(trained_dir, tmp_path)
    meta = json.loads((run_dir / "metadata.json").read_text(encoding="utf-8"))
    meta["target_vocab"].append("extra")
    (run_dir / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(export.ExportError, match="model.weights.h5 does not fit the network metadata.json describes"):
        export.reexport(run_dir)


def test_failed_parity_leaves_the_seq2seq_run_dir_untouched(trained_dir, tmp_path, monkeypatch):
    run_dir = _copy(trained_dir, tmp_path)
    files = _files(run_dir)
    monkeypatch.setattr(parity, "compare", lambda *a, **k: {"memory": np.float64(1e-3)})
    with pytest.raises(export.ParityError, match=r"encoder SavedModel output 'memory' differs from Keras by 0.001"):
        export.reexport(run_dir)
    assert _files(run_dir) == files and not list(tmp_path.glob(".copy.*"))
