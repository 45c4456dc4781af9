"""Bad input gets a clear error naming the problem, and never leaves a half-written run dir."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import serving
from export.rundir import staged
from serving import InputError, ModelError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def predictor(slot_run):
    return serving.load(slot_run[0])


@pytest.mark.parametrize("text", ["", "   \t\n"])
def test_empty_text(predictor, text):
    with pytest.raises(InputError, match="text is empty"):
        predictor.predict(text)


def test_empty_text_in_a_batch_is_named_by_index(predictor):
    with pytest.raises(InputError, match=r"texts\[1\] is empty"):
        predictor.predict_batch(["flights to boston", " "])


def test_text_longer_than_the_model_limit(predictor):
    limit = predictor.max_len
    with pytest.raises(InputError, match=f"text has {limit + 1} words; this model takes at most {limit}"):
        predictor.predict("boston " * (limit + 1))


def test_wrong_types(predictor):
    with pytest.raises(InputError, match="text must be a string, got int"):
        predictor.predict(42)
    with pytest.raises(InputError, match="predict_batch takes a list of strings"):
        predictor.predict_batch("flights to boston")


def test_unknown_words_fall_back_to_unk_and_are_reported(predictor):
    result = predictor.predict("flights to zzyzx")
    assert result.unknown_words == ["zzyzx"]
    assert len(result.tags) == 3


def test_missing_metadata_file(slot_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(slot_run[0], run_dir)
    (run_dir / "metadata.json").unlink()
    with pytest.raises(ModelError, match="missing metadata file: .*metadata.json"):
        serving.load(run_dir)


def test_metadata_file_from_another_export(slot_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(slot_run[0], run_dir)
    meta = json.loads((run_dir / "metadata.json").read_text())
    meta["intents"] = list(reversed(meta["intents"]))
    (run_dir / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="disagrees with the metadata inside the model on: intents"):
        serving.load(run_dir)


def test_model_file_replaced_after_export(slot_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(slot_run[0], run_dir)
    import onnx

    proto = onnx.load(str(run_dir / "model.onnx"))
    proto.producer_version = "tampered"
    onnx.save(proto, str(run_dir / "model.onnx"))
    with pytest.raises(ModelError, match="does not match .*metadata.json \\(SHA-256 differs\\)"):
        serving.load(run_dir)


def test_non_onnx_file(tmp_path):
    fake = tmp_path / "model.onnx"
    fake.write_text("this is not a model")
    with pytest.raises(ModelError, match="is not a valid ONNX model"):
        serving.load(fake)


def test_onnx_file_without_our_metadata(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ModelError, match="has no 'metadata.json' metadata: it was not exported by this toolkit"):
        serving.load(path)


def test_missing_path_and_empty_run_dir(tmp_path):
    with pytest.raises(ModelError, match="no such run dir or model file"):
        serving.load(tmp_path / "nothing")
    with pytest.raises(ModelError, match="has no model.onnx"):
        serving.load(tmp_path)


def test_interrupted_run_leaves_previous_run_dir_as_it_was(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text("{}")
    with pytest.raises(KeyboardInterrupt):
        with staged(run_dir) as tmp:
            (tmp / "model.onnx").write_text("half")
            raise KeyboardInterrupt
    assert [p.name for p in run_dir.iterdir()] == ["metrics.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    with staged(run_dir) as tmp:
        (tmp / "model.onnx").write_text("whole")
    assert [p.name for p in run_dir.iterdir()] == ["model.onnx"]


def test_a_killed_runs_staging_folder_is_removed_by_the_next_run(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from export.rundir import _staging_prefix

    run_dir = tmp_path / "run"
    script = (f"from export.rundir import staged\nimport os, time\nwith staged({str(run_dir)!r}) as tmp:\n"
              "    (tmp / 'model.onnx').write_text('half')\n    print('ready', flush=True)\n    time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[1])
    assert child.stdout.readline().strip() == "ready"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    dead = list(tmp_path.glob(".run.partial-*"))
    assert len(dead) == 1 and dead[0].name.startswith(_staging_prefix("run", child.pid))
    live = tmp_path / (_staging_prefix("run") + "x")  # this process's: alive, kept
    other_host = tmp_path / ".run.partial-elsewhere-1-x"
    live.mkdir(), other_host.mkdir()
    with staged(run_dir) as tmp:
        (tmp / "model.onnx").write_text("whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other_host.name, "run"])


def test_pipeline_rejects_misaligned_data_without_writing_a_run_dir(tmp_path):
    data = tmp_path / "data" / "train"
    data.mkdir(parents=True)
    (data / "seq.in").write_text("flights to boston\nfares to denver\n")
    (data / "seq.out").write_text("O O B-toloc.city_name\nO B-toloc.city_name\n")
    (data / "label").write_text("atis_flight\natis_airfare\n")
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.slot_filling", "--data-dir", str(tmp_path / "data"), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 2
    assert "error: " in done.stderr and "line 2 has 3 words in seq.in but 2 tags in seq.out" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()


def test_serving_cli_errors_are_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "serving", "predict", str(tmp_path / "none"), "hello"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: no such run dir or model file")
