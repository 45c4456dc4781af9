"""The HTTP model server, started for real on 127.0.0.1 and spoken to over HTTP.

Text tasks present (slot filling, sentiment, key terms) are served from the session's small trained runs (conftest.py); the audio and record input
kinds, whose tasks live elsewhere, are served from two small stand-in predictors over a real ONNX graph (registered
by a bootstrap before ``python -m serving serve`` runs), so the generic paths (base64 / WAV / multipart uploads,
audio duration, JSON records) are exercised too.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import serving

ROOT = Path(__file__).resolve().parents[1]

# Stand-in predictors for the audio and record input kinds (the protocol of serving/base.py: task, input_kind,
# predict, predict_batch(inputs, batch_size), results with to_dict, InputError on bad input), registered with
# serving.register like any task's predictor, so `serving.load` picks them by the metadata's task with no edit to
# it. Each runs its inputs through one ORT call of an identity graph.
BOOTSTRAP = r'''
import io, sys, time, wave
import numpy as np
import serving
from serving.errors import InputError

class Result(dict):
    def to_dict(self):
        return dict(self)

@serving.register("echo_audio")
class EchoAudio:
    input_kind = "audio"
    def __init__(self, model, metadata):
        self.model, self.metadata, self.delay = model, metadata, float(metadata.get("delay", 0))
    def _read(self, x):
        if isinstance(x, str):
            x = open(x, "rb").read()
        try:
            with wave.open(io.BytesIO(x)) as w:
                return np.frombuffer(w.readframes(w.getnframes()), "<i2") / 32768.0, w.getframerate()
        except (wave.Error, EOFError) as err:
            raise InputError(f"audio is not a 16-bit PCM WAV file: {err}") from None
    def predict(self, x):
        return self.predict_batch([x])[0]
    def predict_batch(self, xs, batch_size=64):
        time.sleep(self.delay)
        waves = [self._read(x) for x in xs]
        batch = np.zeros((len(waves), max(1, max(len(s) for s, _ in waves))), np.float32)
        for row, (s, _) in enumerate(waves):
            batch[row, : len(s)] = s
        out = self.model.run({"x": batch})["y"]
        return [Result(samples=len(s), rate=r, peak=round(float(np.abs(out[i]).max()), 4), batch=len(xs))
                for i, (s, r) in enumerate(waves)]

@serving.register("echo_record")
class EchoRecord:
    input_kind = "record"
    def __init__(self, model, metadata):
        self.model, self.metadata = model, metadata
    def predict(self, record):
        return self.predict_batch([record])[0]
    def predict_batch(self, records, batch_size=64):
        for i, r in enumerate(records):
            if not isinstance(r.get("story"), list) or not isinstance(r.get("question"), str):
                raise InputError(f"records[{i}] needs a list 'story' and a string 'question'")
        out = self.model.run({"x": np.array([[len(r["story"])] for r in records], np.float32)})["y"]
        return [Result(sentences=int(out[i, 0]), question=r["question"]) for i, r in enumerate(records)]

from serving.__main__ import main
sys.exit(main(sys.argv[1:]))
'''

LIMITS = ["--max-body-bytes", "65536", "--max-batch", "8", "--max-text-chars", "400", "--max-audio-seconds", "1"]
TEXTS = ["show me flights from boston to denver", "what is the cheapest fare to atlanta"]


# --- helpers ---------------------------------------------------------------------------------------------------------

def echo_model(path: Path, task: str, **extra) -> Path:
    """An identity ONNX graph carrying toolkit metadata for a stand-in task."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "echo",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "n"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "n"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    meta = {"format": "rnn-toolkit/metadata", "format_version": 1, "task": task,
            "inputs": {"x": {"name": "x"}}, "outputs": {"y": {"name": "y"}}, **extra}
    model.metadata_props.add(key="metadata.json", value=json.dumps(meta))
    onnx.save(model, str(path))
    return path


def wav_bytes(seconds: float, rate: int = 8000, amplitude: float = 0.5) -> bytes:
    samples = (amplitude * 32767 * np.sin(np.arange(int(seconds * rate)) / 5)).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return buf.getvalue()


class Server:
    """``python -m serving serve`` in a subprocess on an ephemeral port of 127.0.0.1."""

    def __init__(self, *args: str):
        self.log = tempfile.TemporaryFile("w+")  # not a pipe: a full pipe would block the server
        self.proc = subprocess.Popen([sys.executable, "-c", BOOTSTRAP, "serve", "--port", "0", *args], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        if "http://" not in line:
            self.proc.kill()
            self.log.seek(0)
            raise RuntimeError(f"server did not start: {line}{self.log.read()}")
        self.port = int(line.rsplit(":", 1)[1].split()[0])

    def request(self, method: str, path: str, body=None, content_type: str | None = "application/json",
                headers: dict | None = None, timeout: float = 60):
        """(status, parsed JSON or text) of one request on a fresh connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        hdrs = dict(headers or {})
        if content_type is not None and body is not None:
            hdrs["Content-Type"] = content_type
        try:
            conn.request(method, path, body=body, headers=hdrs)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        kind = response.getheader("content-type", "")
        return response.status, json.loads(data) if kind.startswith("application/json") else data.decode()

    def predict(self, model: str, body, **kw):
        return self.request("POST", f"/v1/models/{model}/predict", body, **kw)

    def stop(self, sig=signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.proc.stdout.close()


def metric(text: str, name: str) -> float:
    """The sum of the samples ``name`` (``sample{label="value",...}``: those labels, in any order, and maybe more)."""
    from prometheus_client.parser import text_string_to_metric_families

    sample, _, labels = name.partition("{")
    wanted = dict(re.findall(r'(\w+)="([^"]*)"', labels))
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == sample and wanted.items() <= s.labels.items())


# --- fixtures --------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def text_runs(slot_run, sentiment_run, key_terms_run):
    """Trained runs of the text tasks present, the session's (conftest.py; the task tests use them too): {model
    name: run dir}."""
    return {"slot_filling": slot_run[0], "sentiment": sentiment_run.out, "key_terms": key_terms_run.out}


@pytest.fixture(scope="module")
def echo_models(tmp_path_factory):
    base = tmp_path_factory.mktemp("echo")
    return {"echo_audio": echo_model(base / "echo_audio.onnx", "echo_audio"),
            "echo_record": echo_model(base / "echo_record.onnx", "echo_record")}


@pytest.fixture(scope="module")
def server(text_runs, echo_models):
    specs = [f"{name}={path}" for name, path in {**text_runs, **echo_models}.items()]
    srv = Server(*specs, *LIMITS, "--reload-interval", "0")
    yield srv
    srv.stop()


def test_serving_imports_neither_the_web_stack_nor_tensorflow():
    code = ("import sys, serving, serving.registry, serving.batcher, serving.batch_predict\n"
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'tensorflow', 'keras') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


# --- round trips -----------------------------------------------------------------------------------------------------

def test_lists_models_with_task_and_input_kind(server):
    status, body = server.request("GET", "/v1/models")
    assert status == 200
    kinds = {m["name"]: (m["task"], m["input_kind"]) for m in body["models"]}
    assert kinds == {"slot_filling": ("slot_filling", "text"), "sentiment": ("sentiment", "text"),
                     "key_terms": ("key_terms", "text"), "echo_audio": ("echo_audio", "audio"),
                     "echo_record": ("echo_record", "record")}
    status, info = server.request("GET", "/v1/models/slot_filling")
    assert status == 200 and info["metadata"]["task"] == "slot_filling" and "vocab" in info["metadata"]
    assert info["limits"]["max_batch"] == 8


@pytest.mark.parametrize("name", ["slot_filling", "sentiment", "key_terms"])
def test_text_round_trip_equals_the_python_predictor(server, text_runs, name):
    predictor = serving.load(text_runs[name])
    expected = [r.to_dict() for r in predictor.predict_batch(TEXTS)]
    status, body = server.predict(name, {"inputs": TEXTS})
    assert status == 200, body
    assert body["model"] == name and body["task"] == name and body["version"] == 1
    assert json.loads(json.dumps(expected)) == body["outputs"]
    status, one = server.predict(name, {"input": TEXTS[0]})
    assert status == 200 and one["output"] == body["outputs"][0]
    status, plain = server.predict(name, TEXTS[0].encode(), content_type="text/plain; charset=utf-8")
    assert status == 200 and plain["output"] == body["outputs"][0]


def test_slot_filling_answer_over_http(server):
    status, body = server.predict("slot_filling", {"input": "Show me flights from Boston to Denver"})
    assert status == 200
    assert body["output"]["intent"] == "atis_flight"
    assert ["fromloc.city_name", "boston"] in body["output"]["slots"]


def test_audio_as_base64_raw_wav_and_multipart(server):
    clip = wav_bytes(0.5)
    status, body = server.predict("echo_audio", {"input": base64.b64encode(clip).decode()})
    assert status == 200, body
    assert body["output"]["samples"] == 4000 and body["output"]["rate"] == 8000
    assert body["output"]["peak"] == pytest.approx(0.5, abs=1e-3)
    status, raw = server.predict("echo_audio", clip, content_type="audio/wav")
    assert status == 200 and raw["output"] == body["output"]
    boundary = "xYzBoundary"
    parts = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{n}.wav"\r\n'
        f"Content-Type: audio/wav\r\n\r\n".encode() + data + b"\r\n"
        for n, data in (("a", clip), ("b", wav_bytes(0.25, amplitude=0.25))))
    status, multi = server.predict("echo_audio", parts + f"--{boundary}--\r\n".encode(),
                                   content_type=f"multipart/form-data; boundary={boundary}")
    assert status == 200, multi
    assert [o["samples"] for o in multi["outputs"]] == [4000, 2000]
    assert multi["outputs"][1]["peak"] == pytest.approx(0.25, abs=1e-3)


def test_record_round_trip(server):
    record = {"story": ["mary went to the kitchen.", "john took the milk."], "question": "where is mary?"}
    status, body = server.predict("echo_record", {"inputs": [record, {"story": [], "question": "?"}]})
    assert status == 200, body
    assert body["outputs"] == [{"sentences": 2, "question": "where is mary?"}, {"sentences": 0, "question": "?"}]
    status, body = server.predict("echo_record", {"input": {"story": "not a list", "question": "?"}})
    assert status == 422 and "'story'" in body["error"]["message"]


# --- limits and bad requests -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("model,body,kw,status,code,says", [
    ("nope", {"input": "hi"}, {}, 404, "unknown_model", "no model named 'nope'"),
    ("slot_filling", b'{"input": "show me', {}, 400, "malformed_json", "not valid JSON"),
    ("slot_filling", b"[" * 50000 + b"]" * 50000, {}, 413, "body_too_large", "limit is 65536"),
    ("slot_filling", b"[" * 20000 + b"]" * 20000, {}, 400, "malformed_json", "nested too deeply"),
    ("slot_filling", {"input": "x " * 300}, {}, 422, "text_too_long", "600 characters; the limit is 400"),
    ("slot_filling", {"inputs": ["flights"] * 9}, {}, 413, "batch_too_large", "9 inputs; the limit is 8"),
    ("slot_filling", {"input": "flights"}, {"content_type": "application/xml"}, 415, "unsupported_media_type",
     "'application/xml'"),
    ("slot_filling", {"input": "flights"}, {"content_type": None}, 415, "unsupported_media_type", "(none)"),
    ("echo_audio", "hello", {"content_type": "text/plain"}, 415, "unsupported_media_type", "audio/wav"),
    ("slot_filling", {"text": "flights"}, {}, 422, "invalid_request", '"input"'),
    ("slot_filling", {"inputs": []}, {}, 422, "invalid_request", "non-empty list"),
    ("slot_filling", {"input": 42}, {}, 422, "invalid_input", "must be a string"),
    ("slot_filling", {"inputs": ["flights", "   "]}, {}, 422, "invalid_input", "texts[1] is empty"),
    ("slot_filling", b'{"input": "\\ud800 flights"}', {}, 422, "invalid_input", "lone surrogate"),
    ("echo_audio", {"input": "%%% not base64"}, {}, 422, "invalid_input", "not valid base64"),
    ("echo_audio", {"input": base64.b64encode(b"RIFF1234WAVEjunk").decode()}, {}, 422, "invalid_input",
     "lacks a 'fmt ' chunk"),
    ("echo_audio", {"input": base64.b64encode(wav_bytes(1.5)).decode()}, {}, 422, "audio_too_long",
     "1.50 s; the limit is 1 s"),
    ("echo_record", {"input": ["not", "an", "object"]}, {}, 422, "invalid_input", "must be a JSON object"),
    ("echo_record", {"input": {"story": ["w" * 300], "question": "q" * 200}}, {}, 422, "text_too_long",
     "the limit is 400"),
])
def test_bad_requests_get_a_4xx_with_a_clear_json_error(server, model, body, kw, status, code, says):
    got, answer = server.predict(model, body, **kw)
    assert got == status, answer
    assert answer["error"]["code"] == code
    assert says in answer["error"]["message"]


def test_unknown_routes_and_methods_answer_json(server):
    assert server.request("GET", "/v2/whatever")[1]["error"]["code"] == "not_found"
    status, body = server.request("GET", "/v1/models/slot_filling/predict")
    assert status == 405 and body["error"]["code"] == "method_not_allowed"
    assert server.request("GET", "/v1/models/nope")[0] == 404


def test_health_readiness_metrics_and_openapi(server):
    assert server.request("GET", "/healthz") == (200, {"status": "ok"})
    status, ready = server.request("GET", "/readyz")
    assert status == 200 and "slot_filling" in ready["models"]
    before = server.request("GET", "/metrics")[1]
    server.predict("sentiment", {"input": "a fine film"})
    server.predict("sentiment", {"input": ""})
    after = server.request("GET", "/metrics")[1]
    for name in ('rnn_requests_total{model="sentiment"}', 'rnn_request_latency_seconds_count{model="sentiment"}'):
        assert metric(after, name) == metric(before, name) + 2, name
    assert metric(after, 'rnn_errors_total{model="sentiment",code="invalid_input"}') == \
        metric(before, 'rnn_errors_total{model="sentiment",code="invalid_input"}') + 1
    assert "# TYPE rnn_request_latency_seconds histogram" in after
    status, spec = server.request("GET", "/openapi.json")
    assert status == 200
    predict = spec["paths"]["/v1/models/{name}/predict"]["post"]
    assert {"application/json", "audio/wav", "multipart/form-data", "text/plain"} <= set(predict["requestBody"]["content"])


def test_concurrent_clients_get_their_own_answers_and_bad_ones_hurt_nobody(server, text_runs):
    predictor = serving.load(text_runs["slot_filling"])
    texts = [f"flights from boston to denver on day {i}" for i in range(24)]
    expected = {t: predictor.predict(t).intent_confidence for t in texts}

    def call(i):
        if i % 4 == 3:  # a bad request among the good ones
            return server.predict("slot_filling", b"{oops", content_type="application/json")[0]
        status, body = server.predict("slot_filling", {"input": texts[i]})
        assert body["output"]["intent_confidence"] == pytest.approx(expected[texts[i]], abs=1e-6)
        return status

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(call, range(24)))
    assert statuses == [400 if i % 4 == 3 else 200 for i in range(24)]
    assert server.request("GET", "/healthz")[0] == 200


# --- fuzz: no input makes a 5xx --------------------------------------------------------------------------------------

def test_fuzzed_requests_never_get_a_5xx(server):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=60),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=12)
    bodies = st.one_of(
        st.binary(max_size=300),
        json_values.map(json.dumps),
        st.builds(lambda v: json.dumps({"input": v}), json_values),
        st.builds(lambda v: json.dumps({"inputs": v}), st.lists(json_values, max_size=10)),
        st.builds(lambda t: json.dumps({"input": t}), st.text(max_size=500)),
        st.builds(lambda v: json.dumps({"input": {"story": v, "question": "?"}}), json_values),
    )
    models = st.sampled_from(["slot_filling", "sentiment", "key_terms", "echo_audio", "echo_record", "x", "%2e%2e"])
    types = st.sampled_from(["application/json", "text/plain", "audio/wav", "multipart/form-data; boundary=b",
                             "multipart/form-data", "application/octet-stream", None])

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(model=models, body=bodies, content_type=types)
    def check(model, body, content_type):
        status, answer = server.predict(model, body, content_type=content_type)
        assert status < 500, (status, answer)
        if status >= 400:
            assert answer["error"]["code"] and answer["error"]["message"]

    check()
    assert server.request("GET", "/healthz")[0] == 200


# --- dynamic batching, graceful shutdown, hot reload -----------------------------------------------------------------

def test_dynamic_batching_gathers_concurrent_requests_into_one_call(text_runs, echo_models, tmp_path):
    slow = echo_model(tmp_path / "slow.onnx", "echo_audio", delay=0.3)  # each predict_batch takes 0.3 s
    srv = Server(f"slot_filling={text_runs['slot_filling']}", f"echo_audio={echo_models['echo_audio']}",
                 f"slow={slow}", "--dynamic-batching", "--max-delay-ms", "1000", "--max-batch-size", "16",
                 "--batch-workers", "1", "--reload-interval", "0")
    try:
        clip = base64.b64encode(wav_bytes(0.1)).decode()
        status, body = srv.predict("echo_audio", {"inputs": [clip] * 6})
        assert status == 200 and [o["batch"] for o in body["outputs"]] == [6] * 6  # one predict_batch for six
        start = time.perf_counter()
        assert srv.predict("echo_audio", {"input": clip})[1]["output"]["batch"] == 1
        assert time.perf_counter() - start < 0.5  # a lone request does not wait the 1000 ms for company
        with ThreadPoolExecutor(6) as pool:  # six clients at once: the others gather while the first computes
            batches = list(pool.map(lambda _: srv.predict("slow", {"input": clip})[1]["output"]["batch"], range(6)))
        assert max(batches) > 1, batches
        predictor = serving.load(text_runs["slot_filling"])
        expected = [r.to_dict() for r in predictor.predict_batch(TEXTS * 3)]
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda t: srv.predict("slot_filling", {"input": t}), TEXTS * 3))
        assert [a[0] for a in answers] == [200] * 6
        assert [a[1]["output"]["tags"] for a in answers] == [e["tags"] for e in expected]
        status, body = srv.predict("slot_filling", {"inputs": ["flights to denver", " "]})
        assert status == 422 and "texts[1]" in body["error"]["message"]  # the bad one is named, not the batch
        metrics = srv.request("GET", "/metrics")[1]
        assert metric(metrics, 'rnn_batch_size_count{model="slow"}') < 6  # 6 inputs, fewer calls
    finally:
        srv.stop()


def test_graceful_shutdown_finishes_in_flight_requests(tmp_path):
    slow = echo_model(tmp_path / "slow.onnx", "echo_audio", delay=1.5)
    srv = Server(f"slow={slow}", "--reload-interval", "0")
    answer = {}
    worker = threading.Thread(target=lambda: answer.update(
        r=srv.predict("slow", wav_bytes(0.1), content_type="audio/wav")))
    worker.start()
    time.sleep(0.5)  # the request is in flight (the model sleeps 1.5 s)
    t0 = time.monotonic()
    code = srv.stop(signal.SIGTERM)
    worker.join(10)
    assert answer["r"][0] == 200 and answer["r"][1]["output"]["samples"] == 800
    assert time.monotonic() - t0 >= 0.5  # it waited for the request
    assert code == -signal.SIGTERM  # uvicorn re-raises the signal once shut down, for process managers to see
    srv.log.seek(0)
    assert "stopped gracefully" in srv.log.read()
    with pytest.raises(OSError):
        http.client.HTTPConnection("127.0.0.1", srv.port, timeout=2).request("GET", "/healthz")


def _replace_dir(new: Path, target: Path) -> None:
    old = target.with_name(target.name + ".old")
    os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old)


def test_hot_reload_swaps_a_changed_run_dir_atomically(text_runs, tmp_path):
    live = tmp_path / "model"
    shutil.copytree(text_runs["slot_filling"], live, ignore=shutil.ignore_patterns("saved_model", "checkpoints"))
    srv = Server(f"m={live}", "--reload-interval", "0.2")
    statuses, tasks, stop = [], set(), threading.Event()

    def hammer():
        while not stop.is_set():
            status, body = srv.predict("m", {"input": "a really great film"})
            statuses.append(status)
            tasks.add(body.get("task"))

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    try:
        for t in threads:
            t.start()
        # A broken model (a half-copied file) is refused; the old one stays in service.
        (live / "model.onnx").write_bytes((live / "model.onnx").read_bytes()[:1000])
        deadline = time.monotonic() + 20
        while "reload_error" not in srv.request("GET", "/v1/models")[1]["models"][0] and time.monotonic() < deadline:
            time.sleep(0.1)
        info = srv.request("GET", "/v1/models")[1]["models"][0]
        assert info["version"] == 1 and "model.onnx" in info["reload_error"]
        # A new run dir (another task here) replaces the folder in two renames: it is swapped in whole.
        staging = tmp_path / "staging"
        shutil.copytree(text_runs["sentiment"], staging, ignore=shutil.ignore_patterns("saved_model", "checkpoints"))
        _replace_dir(staging, live)
        while srv.request("GET", "/v1/models")[1]["models"][0]["version"] < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
        info = srv.request("GET", "/v1/models")[1]["models"][0]
        srv.stop()
    assert info["version"] == 2 and info["task"] == "sentiment" and "reload_error" not in info
    assert set(statuses) == {200} and tasks == {"slot_filling", "sentiment"}


NODE_EXAMPLE = ROOT / "serving" / "examples" / "node"


@pytest.mark.skipif(shutil.which("node") is None or not (NODE_EXAMPLE / "node_modules" / "onnxruntime-node").is_dir(),
                    reason="node or the example's onnxruntime-node is not installed (.ci/run installs it)")
def test_node_example_labels_equal_the_sentiment_predictors(text_runs, tmp_path):
    """The Node program (tests/test_node_example.py covers slot filling) on the sentiment model, .onnx alone."""
    alone = tmp_path / "sentiment.onnx"
    shutil.copyfile(text_runs["sentiment"] / "model.onnx", alone)
    texts = ["A gripping, beautifully acted film.", "the plot is thin (and dull)!", "Straße café"]
    done = subprocess.run(["node", str(NODE_EXAMPLE / "predict.js"), str(alone), *texts], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    node = [json.loads(line) for line in done.stdout.splitlines()]
    python = serving.load(text_runs["sentiment"]).predict_batch(texts)
    assert [n["tokens"] for n in node] == [p.tokens for p in python]
    assert [n["label"] for n in node] == [p.label for p in python]
    assert [n["confidence"] for n in node] == pytest.approx([p.confidence for p in python], abs=1e-5)
