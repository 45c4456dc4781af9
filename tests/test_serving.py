"""Serving: onnxruntime predictions without TensorFlow, equal to Keras' own."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import serving

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def predictor(slot_run):
    return serving.load(slot_run[0])


def test_serving_never_imports_tensorflow(slot_run):
    code = (
        "import sys, serving\n"
        f"p = serving.load({str(slot_run[0])!r})\n"
        "r = p.predict('show me flights from boston to denver')\n"
        "banned = [m for m in ('tensorflow', 'keras', 'tf2onnx', 'tensorflow_text') if m in sys.modules]\n"
        "print(r.intent, banned)\n"
        "assert not banned, banned\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("[]")


def test_predict_returns_intent_slots_and_tags(predictor):
    result = predictor.predict("Show me flights from Boston to San Francisco on Monday?")
    assert result.words == ["show", "me", "flights", "from", "boston", "to", "san", "francisco", "on", "monday", "?"]
    assert len(result.tags) == len(result.words)
    assert result.intent == "atis_flight"
    assert ("fromloc.city_name", "boston") in result.slots
    assert ("toloc.city_name", "san francisco") in result.slots
    assert 0.0 < result.intent_confidence <= 1.0
    assert result.unknown_words == ["?"]


def test_predictions_equal_keras_with_iob_viterbi(predictor, slot_model):
    from serving.tags import IOBDecoder

    texts = ["what is the cheapest fare from denver to atlanta", "show me ground transportation in dallas",
             "which airlines fly from new york to seattle on june fourteenth"]
    results = predictor.predict_batch(texts)
    feeds, words = predictor.feeds(texts)
    assert set(feeds) == {"token_ids", "char_ids"}  # the default model reads each word's characters too
    keras_out = slot_model(feeds, training=False)
    decode = IOBDecoder(predictor.slot_tags.entries)
    for row, result in enumerate(results):
        n = len(words[row])
        expected_tags = [predictor.slot_tags.token(i) for i in decode(np.asarray(keras_out["slot_probs"][row, :n]))]
        assert result.tags == expected_tags
        assert result.intent == predictor.intents.token(int(np.argmax(keras_out["intent_probs"][row])))


def test_batch_equals_one_by_one(predictor):
    texts = ["flights from boston", "what does co mean", "i need a flight from st. louis to new york tomorrow"]
    batch = predictor.predict_batch(texts, batch_size=2)
    single = [predictor.predict(t) for t in texts]
    assert [r.tags for r in batch] == [r.tags for r in single]
    assert [r.intent for r in batch] == [r.intent for r in single]
    np.testing.assert_allclose([r.intent_confidence for r in batch], [r.intent_confidence for r in single], atol=1e-6)


def test_a_single_onnx_file_is_enough(slot_run, tmp_path):
    alone = tmp_path / "model.onnx"
    alone.write_bytes((slot_run[0] / "model.onnx").read_bytes())
    text = "flights from boston to denver"
    assert serving.load(alone).predict(text) == serving.load(slot_run[0]).predict(text)


def test_cli_predict_prints_json(slot_run):
    done = subprocess.run(
        [sys.executable, "-m", "serving", "predict", str(slot_run[0]), "flights from boston to denver", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["words"] == ["flights", "from", "boston", "to", "denver"]
    assert ["fromloc.city_name", "boston"] in result["slots"]
