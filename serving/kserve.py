"""KServe v2 / Open Inference Protocol (the protocol of Triton and KServe), beside the ``/v1`` API.

- ``GET /v2`` (server metadata), ``GET /v2/health/live``, ``GET /v2/health/ready``
- ``GET /v2/models/{name}[/versions/{v}]``: inputs, outputs, and the model card's facts (``parameters``)
- ``GET /v2/models/{name}[/versions/{v}]/ready``
- ``POST /v2/models/{name}[/versions/{v}]/infer``

One input tensor of datatype ``BYTES`` and shape ``[N]`` (or ``[N, 1]``) holds N inputs: UTF-8 text for text
models, WAV file bytes for audio models (base64 strings in JSON ``data``), a JSON object's text for record models.
The binary tensor extension (``Inference-Header-Content-Length``, ``binary_data_size``, ``binary_data``,
``binary_data_output``), which ``tritonclient`` uses by default, is read and written.

Outputs, each of shape ``[N]``: ``result`` (BYTES: each result's JSON, as ``/v1`` answers it) and one typed tensor
per scalar field of the task's result (e.g. slot filling's ``intent`` BYTES and ``intent_confidence`` FP64;
sentiment's ``label`` and ``confidence``). Errors are ``{"error": "message"}`` with the status of ``/v1``.
"""

from __future__ import annotations

import dataclasses
import json
import struct
import typing

from starlette.requests import Request
from starlette.responses import Response

from serving.errors import InputError
from serving.http_common import (ApiError, add_fast_route, decode_base64_audio, json_response, parse_json, predict,
                                 read_body)
from serving.registry import ModelEntry

HEADER = "Inference-Header-Content-Length"
SCALAR_TYPES = {str: "BYTES", bool: "BOOL", int: "INT64", float: "FP64"}
PACK = {"BOOL": "?", "INT64": "q", "FP64": "d"}
INPUT_NAMES = {"text": "text", "audio": "audio", "record": "record"}


def typed_fields(predictor) -> list[tuple[str, str]]:
    """(field, datatype) of the scalar fields of the predictor's result class (from ``predict``'s annotation)."""
    try:
        result_cls = typing.get_type_hints(type(predictor).predict).get("return")
        hints = typing.get_type_hints(result_cls)
        names = [f.name for f in dataclasses.fields(result_cls)]
    except Exception:  # no annotation, or not a dataclass: the JSON result alone
        return []
    return [(n, SCALAR_TYPES[hints[n]]) for n in names if hints.get(n) in SCALAR_TYPES]


def output_specs(entry: ModelEntry) -> list[dict]:
    return [{"name": "result", "datatype": "BYTES", "shape": [-1]}] + [
        {"name": name, "datatype": dtype, "shape": [-1]} for name, dtype in typed_fields(entry.predictor)]


def model_metadata(entry: ModelEntry) -> dict:
    from serving.model_card import facts

    return {"name": entry.name, "versions": [str(entry.version)], "platform": "onnxruntime_onnx",
            "inputs": [{"name": INPUT_NAMES[entry.kind], "datatype": "BYTES", "shape": [-1]}],
            "outputs": output_specs(entry), "parameters": {"task": entry.task, "input_kind": entry.kind},
            "model_card": facts(entry.path, entry.metadata)}


# --- reading the request ---------------------------------------------------------------------------------------------

def split_body(request: Request, body: bytes) -> tuple[dict, bytes]:
    """The JSON header and the binary tail of an infer body."""
    size = request.headers.get(HEADER.lower())
    if size is None:
        return parse_json(body), b""
    try:
        size = int(size)
    except ValueError:
        raise ApiError(400, "bad_request", f"{HEADER} is not a number: {size!r}") from None
    if not 0 < size <= len(body):
        raise ApiError(400, "bad_request", f"{HEADER} is {size}; the body has {len(body)} bytes")
    return parse_json(body[:size]), body[size:]


def unpack_bytes(raw: bytes) -> list[bytes]:
    """The elements of a binary BYTES tensor: each a 4-byte little-endian length, then its bytes."""
    items, at = [], 0
    while at < len(raw):
        if at + 4 > len(raw):
            raise ApiError(400, "bad_request", "binary BYTES tensor: truncated element length")
        (n,) = struct.unpack_from("<I", raw, at)
        if at + 4 + n > len(raw):
            raise ApiError(400, "bad_request", "binary BYTES tensor: an element runs past the data")
        items.append(raw[at + 4 : at + 4 + n])
        at += 4 + n
    return items


def flatten(data) -> list:
    return [x for row in data for x in flatten(row)] if isinstance(data, list) else [data]


def tensor_elements(tensor: dict, tail: bytes) -> list:
    """The elements of the request's input tensor, from JSON ``data`` or the binary tail."""
    if not isinstance(tensor, dict) or tensor.get("datatype") != "BYTES":
        raise ApiError(400, "invalid_request", 'the input tensor must have "datatype": "BYTES"')
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or size > len(tail):
            raise ApiError(400, "bad_request", f"binary_data_size {size!r} does not fit the {len(tail)} bytes sent")
        items = unpack_bytes(tail[:size])
    elif isinstance(tensor.get("data"), list):
        items = flatten(tensor["data"])
    else:
        raise ApiError(400, "invalid_request", 'the input tensor has no "data" (nor binary_data_size)')
    shape = tensor.get("shape")
    if not (isinstance(shape, list) and shape and all(isinstance(d, int) for d in shape)
            and _product(shape) == len(items) and all(d == 1 for d in shape[1:])):
        raise ApiError(400, "invalid_request", f"shape {shape!r} does not hold the {len(items)} elements sent "
                                               f"(expected [N] or [N, 1])")
    if not items:
        raise ApiError(400, "invalid_request", "the input tensor is empty")
    return items


def _product(shape: list[int]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def decode_input(kind: str, x, where: str):
    """One element as the model's input kind (text: str; audio: WAV bytes; record: a dict)."""
    if kind == "audio":
        try:
            return x if isinstance(x, bytes) else decode_base64_audio(x, where)
        except InputError as err:
            raise ApiError(422, "invalid_input", str(err)) from None
    if isinstance(x, bytes):
        try:
            x = x.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ApiError(400, "invalid_input", f"{where} is not UTF-8 (byte offset {err.start})") from None
    if kind == "record" and isinstance(x, str):
        try:
            return json.loads(x)
        except (json.JSONDecodeError, RecursionError):
            raise ApiError(400, "invalid_input", f"{where} is not a JSON object's text") from None
    return x


def parse_infer(request: Request, body: bytes, entry: ModelEntry) -> tuple[dict, list]:
    header, tail = split_body(request, body)
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list) or len(header["inputs"]) != 1:
        raise ApiError(400, "invalid_request", 'the request must hold "inputs": [one BYTES tensor]')
    tensor = header["inputs"][0]
    items = tensor_elements(tensor, tail)
    name = tensor.get("name", "input")
    return header, [decode_input(entry.kind, x, f"{name}[{i}]") for i, x in enumerate(items)]


# --- writing the response --------------------------------------------------------------------------------------------

def output_values(name: str, results: list) -> list:
    if name == "result":
        return [json.dumps(r.to_dict(), ensure_ascii=False, separators=(",", ":")) for r in results]
    return [getattr(r, name) for r in results]


def pack(dtype: str, values: list) -> bytes:
    if dtype == "BYTES":
        encoded = [v.encode() for v in values]
        return b"".join(struct.pack("<I", len(v)) + v for v in encoded)
    return struct.pack(f"<{len(values)}{PACK[dtype]}", *values)


def requested_outputs(header: dict, specs: list[dict]) -> list[tuple[dict, bool]]:
    """(spec, binary?) of each output to send: those asked for by name, or all."""
    default = bool((header.get("parameters") or {}).get("binary_data_output", False))
    by_name = {s["name"]: s for s in specs}
    asked = header.get("outputs")
    if asked is None:
        return [(s, default) for s in specs]
    chosen = []
    for out in asked if isinstance(asked, list) else [None]:
        if not isinstance(out, dict) or out.get("name") not in by_name:
            raise ApiError(400, "invalid_request", f"unknown output {out!r}; outputs: {', '.join(by_name)}")
        chosen.append((by_name[out["name"]], bool((out.get("parameters") or {}).get("binary_data", default))))
    return chosen


def infer_response(entry: ModelEntry, header: dict, results: list) -> Response:
    outputs, tail = [], []
    for spec, binary in requested_outputs(header, output_specs(entry)):
        values = output_values(spec["name"], results)
        out = {"name": spec["name"], "datatype": spec["datatype"], "shape": [len(values)]}
        if binary:
            tail.append(pack(spec["datatype"], values))
            out["parameters"] = {"binary_data_size": len(tail[-1])}
        else:
            out["data"] = values
        outputs.append(out)
    head = {"model_name": entry.name, "model_version": str(entry.version), "outputs": outputs}
    if "id" in header:
        head["id"] = header["id"]
    if not tail:
        return json_response(head)
    text = json.dumps(head, separators=(",", ":")).encode()
    return Response(text + b"".join(tail), media_type="application/octet-stream",
                    headers={HEADER: str(len(text))})


# --- the routes ------------------------------------------------------------------------------------------------------

def add_routes(app, registry, limits, metrics) -> None:
    """Adds the KServe v2 routes to ``app``."""

    def entry_for(name: str, version: str | None = None) -> ModelEntry:
        entry = registry.get(name)
        if entry is None or (version is not None and version != str(entry.version)):
            what = f"model {name!r}" + (f" version {version}" if version is not None else "")
            raise ApiError(404, "unknown_model", f"no {what}; served: {', '.join(registry.names())}")
        return entry

    def ready() -> bool:
        return app.state.ready and not app.state.draining

    @app.get("/v2", summary="KServe v2: server metadata")
    async def server_metadata():
        return {"name": "rnn-toolkit", "version": "1", "extensions": ["binary_tensor_data"]}

    @app.get("/v2/health/live", summary="KServe v2: liveness")
    async def live():
        return {"live": True}

    @app.get("/v2/health/ready", summary="KServe v2: readiness")
    async def server_ready():
        return json_response({"ready": ready()}, 200 if ready() else 503)

    @app.get("/v2/models/{name}", summary="KServe v2: model metadata and card")
    @app.get("/v2/models/{name}/versions/{version}", include_in_schema=False)
    async def metadata(name: str, version: str | None = None):
        return model_metadata(entry_for(name, version))

    @app.get("/v2/models/{name}/ready", summary="KServe v2: model readiness")
    @app.get("/v2/models/{name}/versions/{version}/ready", include_in_schema=False)
    async def model_ready(name: str, version: str | None = None):
        entry_for(name, version)
        return json_response({"name": name, "ready": ready()}, 200 if ready() else 503)

    async def infer(name: str, request: Request, version: str | None = None):
        with metrics.track(name if registry.get(name) else "") as tracked:
            entry = entry_for(name, version)
            body = await read_body(request, limits.max_body_bytes)
            header, inputs = parse_infer(request, body, entry)
            tracked.inputs = len(inputs)
            results = await predict(entry, inputs, limits, [f"input[{i}]" for i in range(len(inputs))])
            return infer_response(entry, header, results)

    add_fast_route(app, "/v2/models/{name}/infer", infer, ["POST"], summary="KServe v2: inference")
    add_fast_route(app, "/v2/models/{name}/versions/{version}/infer", infer, ["POST"], include_in_schema=False)
