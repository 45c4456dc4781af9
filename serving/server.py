"""The HTTP model server: FastAPI over the predictors of a :class:`serving.registry.Registry`.

Endpoints (JSON unless said otherwise; the OpenAPI description is at ``/openapi.json``, browsable at ``/docs``):

- ``GET /v1/models``: the models served (name, task, input kind, version).
- ``GET /v1/models/{name}``: one model's summary and its full metadata.
- ``POST /v1/models/{name}/predict``: ``{"input": x}`` → ``{"output": ...}`` or ``{"inputs": [x, ...]}`` →
  ``{"outputs": [...]}``. ``x`` is a string for text models, base64 WAV file bytes for audio models, a JSON object
  for record models. Audio models also take a raw ``audio/wav`` body or a ``multipart/form-data`` upload (every
  file part is one input, in order); text models also take a ``text/plain`` body (one input).
- ``GET /healthz`` (alive), ``GET /readyz`` (models loaded and not shutting down; 503 otherwise).
- ``GET /metrics``: Prometheus text format; requests, errors (by code) and a latency histogram per model, batch
  sizes of the dynamic batcher, reloads.

Every error is a 4xx (or 503 while stopping) with ``{"error": {"code": ..., "message": ...}}``.
This module imports FastAPI; ``import serving`` does not import it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
import logging
import sys
import threading
import time
from collections import defaultdict

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.batcher import BatcherClosed
from serving.errors import InputError, ServingError
from serving.registry import LimitError, Limits, ModelEntry, Registry, check_input

log = logging.getLogger("serving.server")

WAV_TYPES = ("audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ApiError(Exception):
    """An error answered with ``status`` and ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class Histogram:
    """A cumulative Prometheus histogram (not thread-safe on its own: :class:`Metrics` holds the lock)."""

    def __init__(self, buckets):
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.sum += value
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                return
        self.counts[-1] += 1

    def lines(self, name: str, labels: str) -> list[str]:
        out, total = [], 0
        for bound, count in zip(self.buckets + (float("inf"),), self.counts):
            total += count
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            out.append(f'{name}_bucket{{{labels},le="{le}"}} {total}')
        out += [f"{name}_sum{{{labels}}} {self.sum:.6f}", f"{name}_count{{{labels}}} {total}"]
        return out


class Metrics:
    """Per-model counters and histograms, rendered in the Prometheus text format."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests = defaultdict(int)
        self.inputs = defaultdict(int)
        self.errors = defaultdict(int)  # (model, code) → count
        self.latency = defaultdict(lambda: Histogram(LATENCY_BUCKETS))
        self.batches = defaultdict(lambda: Histogram(BATCH_BUCKETS))
        self.in_flight = 0

    def observe(self, model: str, seconds: float, inputs: int, code: str | None) -> None:
        with self._lock:
            self.requests[model] += 1
            self.inputs[model] += inputs
            self.latency[model].observe(seconds)
            if code is not None:
                self.errors[(model, code)] += 1

    def batch(self, model: str, size: int) -> None:
        with self._lock:
            self.batches[model].observe(size)

    def render(self, registry: Registry) -> str:
        lines = []
        with self._lock:
            lines += ["# HELP rnn_requests_total Predict requests answered, by model.",
                      "# TYPE rnn_requests_total counter"]
            lines += [f'rnn_requests_total{{model="{m}"}} {n}' for m, n in sorted(self.requests.items())]
            lines += ["# HELP rnn_inputs_total Inputs predicted (a request may hold several), by model.",
                      "# TYPE rnn_inputs_total counter"]
            lines += [f'rnn_inputs_total{{model="{m}"}} {n}' for m, n in sorted(self.inputs.items())]
            lines += ["# HELP rnn_errors_total Predict requests answered with an error, by model and error code.",
                      "# TYPE rnn_errors_total counter"]
            lines += [f'rnn_errors_total{{model="{m}",code="{c}"}} {n}' for (m, c), n in sorted(self.errors.items())]
            lines += ["# HELP rnn_request_latency_seconds Predict request latency, by model.",
                      "# TYPE rnn_request_latency_seconds histogram"]
            for m, hist in sorted(self.latency.items()):
                lines += hist.lines("rnn_request_latency_seconds", f'model="{m}"')
            lines += ["# HELP rnn_batch_size Inputs per onnxruntime call made by the dynamic batcher.",
                      "# TYPE rnn_batch_size histogram"]
            for m, hist in sorted(self.batches.items()):
                lines += hist.lines("rnn_batch_size", f'model="{m}"')
            lines += ["# HELP rnn_in_flight_requests Predict requests being handled now.",
                      "# TYPE rnn_in_flight_requests gauge", f"rnn_in_flight_requests {self.in_flight}"]
        lines += ["# HELP rnn_model_reloads_total Hot reloads swapped in, by model.",
                  "# TYPE rnn_model_reloads_total counter"]
        lines += [f'rnn_model_reloads_total{{model="{m}"}} {registry.reloads.get(m, 0)}' for m in registry.names()]
        lines += ["# HELP rnn_model_version Version of the model in service (1 + reloads).",
                  "# TYPE rnn_model_version gauge"]
        lines += [f'rnn_model_version{{model="{e.name}"}} {e.version}' for e in registry.entries()]
        return "\n".join(lines) + "\n"


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "bad_request", f"Content-Length is not a number: {declared!r}") from None
        if size > limit:
            raise ApiError(413, "body_too_large", f"the body has {size} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "body_too_large", f"the body has more than {limit} bytes; the limit is {limit}")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode_audio(x, where: str):
    if isinstance(x, dict) and set(x) == {"base64"}:
        x = x["base64"]
    if not isinstance(x, str):
        return x  # check_input names the wrong type
    try:
        return base64.b64decode(x, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{where} is not valid base64 (audio in JSON is base64 of the WAV file's bytes)") from None


def parse_json_inputs(body: bytes, kind: str) -> tuple[list, bool]:
    """The inputs of a JSON predict body and whether it held one ``input`` (vs an ``inputs`` list).

    Raises:
      ApiError: malformed JSON (400) or a body of the wrong shape (422).
    """
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {err}") from None
    except RecursionError:
        raise ApiError(400, "malformed_json", "the body's JSON is nested too deeply") from None
    if not isinstance(payload, dict) or len({"input", "inputs"} & set(payload)) != 1:
        raise ApiError(422, "invalid_request",
                       'the body must be a JSON object with "input" (one input) or "inputs" (a list of inputs)')
    unknown = sorted(set(payload) - {"input", "inputs"})
    if unknown:
        raise ApiError(422, "invalid_request", f"unknown field(s) {', '.join(map(repr, unknown))}; "
                                               f'expected "input" or "inputs"')
    if "input" in payload:
        inputs, single = [payload["input"]], True
    else:
        inputs, single = payload["inputs"], False
        if not isinstance(inputs, list) or not inputs:
            raise ApiError(422, "invalid_request", '"inputs" must be a non-empty list')
    if kind == "audio":
        inputs = [_decode_audio(x, "input" if single else f"inputs[{i}]") for i, x in enumerate(inputs)]
    return inputs, single


async def parse_inputs(request: Request, entry: ModelEntry, body: bytes) -> tuple[list, bool]:
    """Inputs from a predict request of any accepted content type.

    Raises:
      ApiError: wrong content type (415), malformed body (400), or inputs of the wrong shape (422).
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    kind = entry.kind
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            return parse_json_inputs(body, kind)
        except InputError as err:
            raise ApiError(422, "invalid_input", str(err)) from None
    if kind == "audio" and content_type in WAV_TYPES:
        return [body], True
    if kind == "audio" and content_type == "multipart/form-data":
        async def replay():
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=1000, max_fields=1000)
        except Exception as err:  # python-multipart's parse errors
            raise ApiError(400, "malformed_multipart", f"the multipart body cannot be read: {err}") from None
        files = [value for _, value in form.multi_items() if hasattr(value, "read")]
        if not files:
            raise ApiError(422, "invalid_request", "the multipart body holds no file part (send the WAV as a file)")
        return [await f.read() for f in files], len(files) == 1
    if kind == "text" and content_type == "text/plain":
        try:
            return [body.decode("utf-8")], True
        except UnicodeDecodeError as err:
            raise ApiError(422, "invalid_input", f"the text/plain body is not UTF-8 (byte offset {err.start})") from None
    accepted = {"text": "application/json or text/plain",
                "audio": "application/json (base64), audio/wav or multipart/form-data",
                "record": "application/json"}[kind]
    raise ApiError(415, "unsupported_media_type",
                   f"content type {content_type or '(none)'!r} is not accepted by model {entry.name!r} "
                   f"({kind} input); send {accepted}")


async def run_predict(entry: ModelEntry, inputs: list) -> list:
    """Runs the inputs through the entry's batcher (one future each) or one ``predict_batch`` in a worker thread."""
    if entry.batcher is None:
        return await anyio.to_thread.run_sync(entry.predictor.predict_batch, inputs)
    try:
        futures = [asyncio.wrap_future(entry.batcher.submit(x)) for x in inputs]
    except BatcherClosed:  # the model was swapped after this request took it: finish on the model it took
        return await anyio.to_thread.run_sync(entry.predictor.predict_batch, inputs)
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    for i, outcome in enumerate(outcomes):
        if isinstance(outcome, BaseException):
            if isinstance(outcome, InputError) and len(inputs) > 1:
                raise InputError(f"inputs[{i}]: {outcome}") from None
            raise outcome
    return outcomes


PREDICT_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"oneOf": [
                {"type": "object", "required": ["input"], "additionalProperties": False,
                 "properties": {"input": {"description": "text: a string; audio: base64 WAV bytes; record: an "
                                                         "object such as {\"story\": [...], \"question\": \"...\"}"}}},
                {"type": "object", "required": ["inputs"], "additionalProperties": False,
                 "properties": {"inputs": {"type": "array", "minItems": 1, "items": {}}}},
            ]}, "example": {"input": "show me flights from boston to denver"}},
            "text/plain": {"schema": {"type": "string"}},
            "audio/wav": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {"schema": {"type": "object", "properties": {
                "file": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
        },
    },
    "responses": {
        "200": {"description": '{"model", "task", "version", "output"} or {..., "outputs": [...]}: each the '
                               "predictor's result as a JSON object"},
        "400": {"description": "malformed JSON or multipart body"},
        "404": {"description": "unknown model"},
        "413": {"description": "body or batch over the limit"},
        "415": {"description": "content type not accepted by the model"},
        "422": {"description": "an input is invalid or over a limit (text length, audio duration)"},
    },
}


def create_app(registry: Registry, limits: Limits = Limits(), metrics: Metrics | None = None) -> FastAPI:
    """The FastAPI application serving ``registry`` under ``limits``."""
    metrics = metrics or Metrics()

    async def lifespan(app):
        app.state.ready = True
        yield
        app.state.ready = False
        await anyio.to_thread.run_sync(registry.close)
        print(f"server stopped gracefully ({metrics.in_flight} requests in flight)", file=sys.stderr, flush=True)

    app = FastAPI(title="rnn-toolkit model server", version="1", lifespan=lifespan,
                  description="Predictions from exported rnn-toolkit models over onnxruntime.")
    app.state.ready = False
    app.state.draining = False
    app.state.registry, app.state.limits, app.state.metrics = registry, limits, metrics

    @app.exception_handler(ApiError)
    async def api_error(request, err: ApiError):
        return error_response(err.status, err.code, err.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, err: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "http_error")
        message = f"no route {request.method} {request.url.path}" if err.status_code in (404, 405) else str(err.detail)
        return error_response(err.status_code, code, message)

    @app.exception_handler(Exception)
    async def internal_error(request, err: Exception):
        log.exception("unhandled error on %s", request.url.path)
        return error_response(500, "internal_error", f"{type(err).__name__}: {err}")

    def entry_or_404(name: str) -> ModelEntry:
        entry = registry.get(name)
        if entry is None:
            raise ApiError(404, "unknown_model", f"no model named {name!r}; served: {', '.join(registry.names())}")
        return entry

    @app.get("/v1/models", summary="List the models served")
    async def list_models():
        return {"models": [entry.describe() | ({"reload_error": registry.reload_errors[entry.name]}
                                               if entry.name in registry.reload_errors else {})
                           for entry in registry.entries()]}

    @app.get("/v1/models/{name}", summary="A model's summary and metadata")
    async def model_info(name: str):
        entry = entry_or_404(name)
        return {**entry.describe(), "limits": dataclasses.asdict(limits), "metadata": entry.metadata}

    @app.post("/v1/models/{name}/predict", summary="Predict one input or a batch", openapi_extra=PREDICT_OPENAPI)
    async def predict(name: str, request: Request):
        start = time.perf_counter()
        entry = registry.get(name)
        label = name if entry is not None else ""
        code, count = None, 0
        metrics.in_flight += 1
        try:
            if entry is None:
                entry_or_404(name)
            body = await read_body(request, limits.max_body_bytes)
            inputs, single = await parse_inputs(request, entry, body)
            count = len(inputs)
            if count > limits.max_batch:
                raise ApiError(413, "batch_too_large", f"the request holds {count} inputs; the limit is "
                                                       f"{limits.max_batch}")
            try:
                inputs = [check_input(entry.kind, x, limits, "input" if single else f"inputs[{i}]")
                          for i, x in enumerate(inputs)]
                results = await run_predict(entry, inputs)
            except LimitError as err:
                raise ApiError(422, err.code, str(err)) from None
            except BatcherClosed as err:
                raise ApiError(503, "unavailable", str(err)) from None
            except InputError as err:
                raise ApiError(422, "invalid_input", str(err)) from None
            except ServingError as err:
                raise ApiError(500, "model_error", str(err)) from None
            outputs = [r.to_dict() for r in results]  # the protocol: every result has to_dict()
            head = {"model": entry.name, "task": entry.task, "version": entry.version}
            return JSONResponse(head | ({"output": outputs[0]} if single else {"outputs": outputs}))
        except ApiError as err:
            code = err.code
            raise
        except Exception:
            code = "internal_error"
            raise
        finally:
            metrics.in_flight -= 1
            metrics.observe(label, time.perf_counter() - start, count, code)

    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: models loaded and not shutting down")
    async def readyz():
        if not app.state.ready or app.state.draining:
            return error_response(503, "not_ready", "the server is starting or shutting down")
        return {"status": "ready", "models": registry.names()}

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def prometheus():
        return PlainTextResponse(metrics.render(registry), media_type="text/plain; version=0.0.4")

    return app
