"""The HTTP model server: FastAPI over the predictors of a :class:`serving.registry.Registry`.

Endpoints (JSON unless said otherwise; the OpenAPI description is at ``/openapi.json``, browsable at ``/docs``):

- ``GET /v1/models``: the models served (name, task, input kind, version).
- ``GET /v1/models/{name}``: one model's summary and its full metadata.
- ``POST /v1/models/{name}/predict``: ``{"input": x}`` → ``{"output": ...}`` or ``{"inputs": [x, ...]}`` →
  ``{"outputs": [...]}``. ``x`` is a string for text models, base64 WAV file bytes for audio models, a JSON object
  for record models. Audio models also take a raw ``audio/wav`` body or a ``multipart/form-data`` upload (every
  file part is one input, in order); text models also take a ``text/plain`` body (one input).
- ``GET /healthz`` (alive), ``GET /readyz`` (models loaded and not shutting down; 503 otherwise).
- ``GET /metrics``: Prometheus text format (:mod:`serving.metrics`); requests, errors (by code) and a latency
  histogram per model, batch sizes of the dynamic batcher, reloads, process metrics.
- KServe v2 under ``/v2`` (:mod:`serving.kserve`) and TF Serving REST ``POST /v1/models/{name}:predict``
  (:mod:`serving.tfserving`), sharing the limits, batching and metrics (:mod:`serving.http_common`).

Every error is a 4xx (or 503 while stopping) with ``{"error": {"code": ..., "message": ...}}`` (the standard
protocols: ``{"error": "message"}``).
This module imports FastAPI; ``import serving`` does not import it.
"""

from __future__ import annotations

import dataclasses
import logging
import sys

import anyio
from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from serving import kserve, tfserving
from serving.errors import InputError
from serving.http_common import (ApiError, add_fast_route, decode_base64_audio, error_response, json_response,
                                 parse_json, predict, read_body)
from serving.metrics import CONTENT_TYPE, Metrics
from serving.registry import Limits, ModelEntry, Registry

log = logging.getLogger("serving.server")

WAV_TYPES = ("audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave")


def parse_json_inputs(body: bytes, kind: str) -> tuple[list, bool]:
    """The inputs of a JSON predict body and whether it held one ``input`` (vs an ``inputs`` list).

    Raises:
      ApiError: malformed JSON (400) or a body of the wrong shape (422).
    """
    payload = parse_json(body)
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
        inputs = [decode_base64_audio(x, "input" if single else f"inputs[{i}]") for i, x in enumerate(inputs)]
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
            raise ApiError(422, "invalid_input",
                           f"the text/plain body is not UTF-8 (byte offset {err.start})") from None
    accepted = {"text": "application/json or text/plain",
                "audio": "application/json (base64), audio/wav or multipart/form-data",
                "record": "application/json"}[kind]
    raise ApiError(415, "unsupported_media_type",
                   f"content type {content_type or '(none)'!r} is not accepted by model {entry.name!r} "
                   f"({kind} input); send {accepted}")


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
    """The FastAPI application serving ``registry`` under ``limits``: our ``/v1`` API, KServe v2
    (:mod:`serving.kserve`), TF Serving REST predict (:mod:`serving.tfserving`), health and metrics."""
    metrics = metrics or Metrics()
    metrics.watch(registry)

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
    add_error_handlers(app)
    add_v1_routes(app, registry, limits, metrics)
    kserve.add_routes(app, registry, limits, metrics)
    tfserving.add_routes(app, registry, limits, metrics)
    add_operations_routes(app, registry, metrics)
    return app


def is_standard_protocol(path: str) -> bool:
    """KServe v2 and TF Serving paths, whose errors are ``{"error": "message"}`` as their clients expect."""
    return path.startswith("/v2/") or path.endswith(":predict")


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request, err: ApiError):
        if is_standard_protocol(request.url.path):
            return json_response({"error": err.message}, err.status)
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


def add_v1_routes(app: FastAPI, registry: Registry, limits: Limits, metrics: Metrics) -> None:
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
        return json_response({**entry.describe(), "limits": dataclasses.asdict(limits), "metadata": entry.metadata})

    async def v1_predict(name: str, request: Request):
        with metrics.track(name if registry.get(name) else "") as tracked:
            entry = entry_or_404(name)
            body = await read_body(request, limits.max_body_bytes)
            inputs, single = await parse_inputs(request, entry, body)
            tracked.inputs = len(inputs)
            results = await predict(entry, inputs, limits, ["input"] if single else None)
            outputs = [r.to_dict() for r in results]  # the protocol: every result has to_dict()
            head = {"model": entry.name, "task": entry.task, "version": entry.version}
            return json_response(head | ({"output": outputs[0]} if single else {"outputs": outputs}))

    add_fast_route(app, "/v1/models/{name}/predict", v1_predict, ["POST"], summary="Predict one input or a batch",
                   openapi_extra=PREDICT_OPENAPI)


def add_operations_routes(app: FastAPI, registry: Registry, metrics: Metrics) -> None:
    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: models loaded and not shutting down")
    async def readyz():
        if not app.state.ready or app.state.draining:
            return error_response(503, "not_ready", "the server is starting or shutting down")
        return {"status": "ready", "models": registry.names()}

    @app.get("/metrics", summary="Prometheus metrics (prometheus_client; process metrics included)")
    async def prometheus():
        return Response(metrics.render(), media_type=CONTENT_TYPE)
