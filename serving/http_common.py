"""What every HTTP protocol of the server shares (our ``/v1`` API, KServe v2, TF Serving REST): the JSON error,
the bounded body read, and :func:`predict` (limits, the thread hand-off or the dynamic batcher, error mapping).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
from concurrent.futures import ThreadPoolExecutor

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from serving.batcher import BatcherClosed
from serving.errors import InputError, ServingError
from serving.registry import LimitError, Limits, ModelEntry, check_input

# One pool for every model's predict_batch: onnxruntime releases the GIL, so a thread per core (up to 4) keeps the
# cores busy; more threads only fight over the GIL. A plain executor hands off faster than anyio's to_thread.
_POOL = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="predict")


class ApiError(Exception):
    """An error answered with ``status`` and ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def json_response(content, status: int = 200, headers: dict | None = None) -> Response:
    """A compact UTF-8 JSON response (the encoding JSONResponse uses, without its per-call setup)."""
    body = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    return Response(body, status, headers, media_type="application/json")


def add_fast_route(app, path: str, endpoint, methods: list[str], **doc) -> None:
    """Serves ``path`` with a plain Starlette route, which skips FastAPI's per-request dependency solving (a good
    part of a small model's request), and declares it to FastAPI after it, for the OpenAPI description only (the
    first route that matches answers). ``endpoint(request, **path_params)`` is an async function."""
    async def handler(request: Request):
        return await endpoint(request=request, **request.path_params)

    app.router.routes.append(Route(path, handler, methods=methods))
    app.add_api_route(path, endpoint, methods=methods, **doc)


def parse_json(body: bytes):
    """The JSON value of ``body``.

    Raises:
      ApiError: 400 ``malformed_json``.
    """
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {err}") from None
    except RecursionError:
        raise ApiError(400, "malformed_json", "the body's JSON is nested too deeply") from None


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


def decode_base64_audio(x, where: str):
    """WAV bytes from a base64 string (or ``{"base64": "..."}``); other values are returned for check_input to
    name their type.

    Raises:
      InputError: not valid base64.
    """
    if isinstance(x, dict) and set(x) == {"base64"}:
        x = x["base64"]
    if not isinstance(x, str):
        return x
    try:
        return base64.b64decode(x, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{where} is not valid base64 (audio in JSON is base64 of the WAV file's bytes)") from None


async def run_predict(entry: ModelEntry, inputs: list) -> list:
    """Runs one input through the entry's batcher, or the inputs as one ``predict_batch`` in a worker thread (a
    request of several inputs is a batch already)."""
    loop = asyncio.get_running_loop()
    if entry.batcher is not None and len(inputs) == 1:
        try:
            return [await asyncio.wrap_future(entry.batcher.submit(inputs[0]))]
        except BatcherClosed:  # the model was swapped after this request took it: finish on the model it took
            pass
    return await loop.run_in_executor(_POOL, entry.predictor.predict_batch, inputs)


async def predict(entry: ModelEntry, inputs: list, limits: Limits, where: list[str] | None = None) -> list:
    """The results of ``inputs`` (already decoded to the entry's input kind), after the limits.

    Args:
      where: how the error messages name each input (default ``inputs[i]``).

    Raises:
      ApiError: 413 ``batch_too_large``, 422 (a limit's code or ``invalid_input``), 503 ``unavailable``,
        500 ``model_error``.
    """
    if len(inputs) > limits.max_batch:
        raise ApiError(413, "batch_too_large", f"the request holds {len(inputs)} inputs; the limit is "
                                               f"{limits.max_batch}")
    where = where or [f"inputs[{i}]" for i in range(len(inputs))]
    try:
        inputs = [check_input(entry.kind, x, limits, w) for x, w in zip(inputs, where)]
        return await run_predict(entry, inputs)
    except LimitError as err:
        raise ApiError(422, err.code, str(err)) from None
    except BatcherClosed as err:
        raise ApiError(503, "unavailable", str(err)) from None
    except InputError as err:
        raise ApiError(422, "invalid_input", str(err)) from None
    except ServingError as err:
        raise ApiError(500, "model_error", str(err)) from None
