"""The exported .onnx stands alone: a Node.js program (serving/examples/node) reads the metadata embedded in it,
tokenizes, runs onnxruntime-node and prints the labels the Python predictor gives. Runs when node is installed
(CI installs the example's npm dependencies first, see .ci/run)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import serving

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "serving" / "examples" / "node"
TEXTS = ["Show me flights from Boston to San Francisco on Monday?", "what is the cheapest fare from denver to atlanta.",
         "I need a flight from ST. LOUIS to New York (tomorrow), please!", "Straße nach Zürich — flights",
         "which airlines fly\u00a0from\tnew york to seattle"]

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed on this machine")


@pytest.fixture(scope="module")
def node_ready():
    if not (EXAMPLE / "node_modules" / "onnxruntime-node").is_dir():
        npm = shutil.which("npm")
        assert npm, "node is installed but npm is not: cannot install onnxruntime-node for the example"
        done = subprocess.run([npm, "install", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=EXAMPLE,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"npm install failed:\n{done.stderr[-2000:]}"
    return EXAMPLE / "predict.js"


def run_node(script: Path, model: Path, texts: list[str]) -> list[dict]:
    done = subprocess.run(["node", str(script), str(model), *texts], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_node_program_prints_the_python_predictors_labels(node_ready, slot_run, tmp_path):
    alone = tmp_path / "model.onnx"  # the .onnx file alone: no metadata.json, no vocabulary files beside it
    shutil.copyfile(slot_run[0] / "model.onnx", alone)
    node = run_node(node_ready, alone, TEXTS)
    python = serving.load(slot_run[0]).predict_batch(TEXTS)
    assert len(node) == len(python)
    for js, py in zip(node, python):
        assert js["words"] == py.words
        assert js["tags"] == py.tags
        assert [tuple(s) for s in js["slots"]] == py.slots
        assert js["intent"] == py.intent
        assert js["intent_confidence"] == pytest.approx(py.intent_confidence, abs=1e-5)
    assert node[0]["words"][-1] == "?" and "strasse" in node[3]["words"]


def test_node_program_refuses_a_model_without_metadata(node_ready, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "bare",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(tmp_path / "bare.onnx"))
    done = subprocess.run(["node", str(node_ready), str(tmp_path / "bare.onnx"), "hi"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1 and "carries no 'metadata.json' metadata" in done.stderr


def run_conformance(model: Path, conformance: Path | None = None) -> dict:
    args = ["node", str(EXAMPLE / "conformance.js"), str(model)] + ([str(conformance)] if conformance else [])
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    summary = json.loads(done.stdout)
    assert done.returncode == 0 and summary["passed"] == summary["cases"], summary["failures"]
    return summary


def test_node_tokenizer_passes_the_run_dirs_conformance_file(node_ready, slot_run):
    """The conformance file the export wrote (hard cases: a final '.' before \\v, U+0085, U+1680, U+2028, U+2029;
    code points unassigned in the spec's Unicode version...), read with the .onnx metadata's spec and vocabulary."""
    cases = json.loads((slot_run[0] / "tokenizer_conformance.json").read_text())["cases"]
    assert {f"flights to denver.{w}" for w in "\x0b\x85\u1680\u2028\u2029"} <= {c["input"] for c in cases}
    assert run_conformance(slot_run[0])["cases"] == len(cases) >= 300


def test_node_character_tokenizer_passes_a_conformance_file(node_ready, slot_run, tmp_path):
    from serving import conformance
    from serving.tokenizer import CHARS_SPEC

    meta = json.loads((slot_run[0] / "metadata.json").read_text()) | {"tokenizer": CHARS_SPEC}
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    (tmp_path / "conformance.json").write_text(json.dumps(conformance.build(meta)))
    run_conformance(tmp_path / "metadata.json", tmp_path / "conformance.json")
