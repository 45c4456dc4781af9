"""The standard protocols beside /v1, spoken to by their real clients against a real server: KServe v2 / Open
Inference Protocol through ``tritonclient[http]``, TF Serving REST through plain requests; and /metrics through
prometheus_client (a model name with a double quote, process metrics)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

import serving
from tests.test_server import Server, echo_model, wav_bytes

TEXTS = ["show me flights from boston to denver", "what is the cheapest fare to atlanta"]
QUOTED = 'we"ird'


@pytest.fixture(scope="module")
def server(slot_run, tmp_path_factory):
    base = tmp_path_factory.mktemp("protocols")
    srv = Server(f"slot_filling={slot_run[0]}", f"{QUOTED}={slot_run[0]}",
                 f"echo_audio={echo_model(base / 'echo_audio.onnx', 'echo_audio')}",
                 f"echo_record={echo_model(base / 'echo_record.onnx', 'echo_record')}", "--reload-interval", "0")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def triton(server):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}")
    yield client
    client.close()


def bytes_input(name: str, values: list[bytes], binary: bool = True):
    import tritonclient.http as httpclient

    tensor = httpclient.InferInput(name, [len(values)], "BYTES")
    tensor.set_data_from_numpy(np.array(values, dtype=object), binary_data=binary)
    return tensor


# --- KServe v2 with tritonclient --------------------------------------------------------------------------------------

def test_kserve_health_and_model_metadata(triton, slot_run):
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready("slot_filling") and not triton.is_model_ready("nope")
    meta = triton.get_model_metadata("slot_filling")
    assert meta["name"] == "slot_filling" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    outputs = {o["name"]: o["datatype"] for o in meta["outputs"]}
    assert outputs["result"] == "BYTES" and outputs["intent"] == "BYTES" and outputs["intent_confidence"] == "FP64"
    card = meta["model_card"]  # the facts of the run dir's README.md
    metrics = json.loads((slot_run[0] / "metrics.json").read_text())
    assert card["task"] == "slot_filling" and card["metrics"]["slot_f1"] == metrics["slot_f1"]
    assert card["training_seconds"] == metrics["train_seconds"] and card["converter"]["route"]
    assert card["versions"]["onnx"] and card["limits"]["unicode_version"]


@pytest.mark.parametrize("binary", [True, False])
def test_kserve_infer_text_equals_the_python_predictor(triton, slot_run, binary):
    import tritonclient.http as httpclient

    expected = serving.load(slot_run[0]).predict_batch(TEXTS)
    outputs = [httpclient.InferRequestedOutput(name, binary_data=binary)
               for name in ("result", "intent", "intent_confidence")]
    answer = triton.infer("slot_filling", [bytes_input("text", [t.encode() for t in TEXTS], binary)],
                          outputs=outputs, request_id="42")
    assert answer.get_response()["id"] == "42"
    results = [json.loads(x) for x in answer.as_numpy("result")]
    assert results == json.loads(json.dumps([r.to_dict() for r in expected]))
    intents = [x.decode() if isinstance(x, bytes) else x for x in answer.as_numpy("intent")]
    assert intents == [r.intent for r in expected]
    assert answer.as_numpy("intent_confidence") == pytest.approx([r.intent_confidence for r in expected], abs=1e-6)


def test_kserve_infer_wav_audio_and_json_records(triton):
    clips = [wav_bytes(0.5), wav_bytes(0.25, amplitude=0.25)]
    answer = triton.infer("echo_audio", [bytes_input("audio", clips)])  # every output, binary
    results = [json.loads(x) for x in answer.as_numpy("result")]
    assert [r["samples"] for r in results] == [4000, 2000] and results[1]["peak"] == pytest.approx(0.25, abs=1e-3)
    records = [{"story": ["mary went to the kitchen."], "question": "where is mary?"}, {"story": [], "question": "?"}]
    answer = triton.infer("echo_record", [bytes_input("record", [json.dumps(r).encode() for r in records])])
    assert [json.loads(x) for x in answer.as_numpy("result")] == [
        {"sentences": 1, "question": "where is mary?"}, {"sentences": 0, "question": "?"}]


def test_kserve_errors_reach_the_client(triton, server):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match="no model 'nope'"):
        triton.infer("nope", [bytes_input("text", [b"flights"])])
    with pytest.raises(InferenceServerException, match="empty"):
        triton.infer("slot_filling", [bytes_input("text", [b"flights", b"   "])])
    status, body = server.request("POST", "/v2/models/slot_filling/infer",
                                  {"inputs": [{"name": "text", "datatype": "FP32", "shape": [1], "data": [1.0]}]})
    assert status == 400 and "BYTES" in body["error"]
    status, body = server.request("POST", "/v2/models/slot_filling/infer",
                                  {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [3], "data": ["a"]}]})
    assert status == 400 and "shape" in body["error"]


# --- TF Serving REST --------------------------------------------------------------------------------------------------

def test_tf_serving_predict_rows_and_columns(server, slot_run):
    expected = json.loads(json.dumps([r.to_dict() for r in serving.load(slot_run[0]).predict_batch(TEXTS)]))
    status, body = server.request("POST", "/v1/models/slot_filling:predict", {"instances": TEXTS})
    assert status == 200 and body == {"predictions": expected}
    status, body = server.request("POST", "/v1/models/slot_filling/versions/1:predict", {"inputs": TEXTS})
    assert status == 200 and body == {"outputs": expected}
    clip = base64.b64encode(wav_bytes(0.5)).decode()
    status, body = server.request("POST", "/v1/models/echo_audio:predict", {"instances": [{"b64": clip}]})
    assert status == 200 and body["predictions"][0]["samples"] == 4000


@pytest.mark.parametrize("path,body,status,says", [
    ("/v1/models/nope:predict", {"instances": ["x"]}, 404, "no model 'nope'"),
    ("/v1/models/slot_filling/versions/7:predict", {"instances": ["x"]}, 404, "version 7"),
    ("/v1/models/slot_filling:predict", {"instance": ["x"]}, 400, '"instances"'),
    ("/v1/models/slot_filling:predict", {"instances": [" "]}, 422, "empty"),
    ("/v1/models/echo_audio:predict", {"instances": [{"b64": "%%%"}]}, 422, "base64"),
])
def test_tf_serving_errors_are_a_message(server, path, body, status, says):
    got, answer = server.request("POST", path, body)
    assert got == status and isinstance(answer["error"], str) and says in answer["error"]


# --- /metrics ---------------------------------------------------------------------------------------------------------

def test_metrics_escape_label_values_and_include_process_metrics(server):
    from prometheus_client.parser import text_string_to_metric_families

    assert server.predict(QUOTED, {"input": "flights to denver"})[0] == 200
    status, text = server.request("GET", "/metrics")
    assert status == 200 and 'model="we\\"ird"' in text
    families = {f.name: f for f in text_string_to_metric_families(text)}  # the official parser reads it back
    requests = {s.labels["model"]: s.value for s in families["rnn_requests"].samples if s.name.endswith("_total")}
    assert requests[QUOTED] >= 1
    assert {"process_cpu_seconds", "process_resident_memory_bytes", "rnn_request_latency_seconds"} <= set(families)
    assert any(s.labels.get("model") == QUOTED for s in families["rnn_model_version"].samples)
