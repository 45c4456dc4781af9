"""TF Serving REST predict, beside the ``/v1`` API: ``POST /v1/models/{name}[/versions/{v}]:predict``.

Row format ``{"instances": [x, ...]}`` → ``{"predictions": [result, ...]}``, columnar format ``{"inputs": [x, ...]}``
→ ``{"outputs": [result, ...]}``. ``x`` is a string for text models, ``{"b64": "..."}`` (TF Serving's binary
form) or a base64 string of WAV bytes for audio models, an object for record models. Each result is the
predictor's JSON, as ``/v1`` answers it. Errors are ``{"error": "message"}``, as TF Serving writes them.
"""

from __future__ import annotations

from starlette.requests import Request

from serving.errors import InputError
from serving.http_common import (ApiError, add_fast_route, decode_base64_audio, json_response, parse_json, predict,
                                 read_body)


def parse_predict(body: bytes, kind: str) -> tuple[list, str]:
    """The inputs of a predict body and the key to answer under (``predictions`` or ``outputs``)."""
    payload = parse_json(body)
    if not isinstance(payload, dict) or len({"instances", "inputs"} & set(payload)) != 1:
        raise ApiError(400, "invalid_request", 'the body must be {"instances": [...]} or {"inputs": [...]}')
    key = "instances" if "instances" in payload else "inputs"
    inputs = payload[key]
    if not isinstance(inputs, list) or not inputs:
        raise ApiError(400, "invalid_request", f'"{key}" must be a non-empty list')
    if kind == "audio":
        try:
            inputs = [decode_base64_audio({"base64": x["b64"]} if isinstance(x, dict) and set(x) == {"b64"} else x,
                                          f"{key}[{i}]") for i, x in enumerate(inputs)]
        except InputError as err:
            raise ApiError(422, "invalid_input", str(err)) from None
    return inputs, "predictions" if key == "instances" else "outputs"


def add_routes(app, registry, limits, metrics) -> None:
    """Adds the TF Serving predict route to ``app``."""

    async def tf_predict(name: str, request: Request, version: str | None = None):
        entry = registry.get(name)
        with metrics.track(name if entry else "") as tracked:
            if entry is None or (version is not None and version != str(entry.version)):
                raise ApiError(404, "unknown_model", f"no model {name!r}" + (f" version {version}" if version else "")
                               + f"; served: {', '.join(registry.names())}")
            inputs, key = parse_predict(await read_body(request, limits.max_body_bytes), entry.kind)
            tracked.inputs = len(inputs)
            results = await predict(entry, inputs, limits, [f"instances[{i}]" for i in range(len(inputs))])
            return json_response({key: [r.to_dict() for r in results]})

    add_fast_route(app, "/v1/models/{name}:predict", tf_predict, ["POST"], summary="TF Serving REST predict")
    add_fast_route(app, "/v1/models/{name}/versions/{version}:predict", tf_predict, ["POST"], include_in_schema=False)
