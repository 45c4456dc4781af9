"""Model metadata: what a program needs to use an exported model, stored inside the ONNX file and as metadata.json.

The ONNX file's ``metadata_props`` entry ``metadata.json`` holds the metadata as JSON (task, input/output names,
vocabulary, labels, tokenizer spec, limits, versions). A run dir's ``metadata.json`` file holds the same object
plus ``files``: the SHA-256 of each exported file, so a model and a metadata file that do not belong together are
caught at load time.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from serving.errors import ModelError

FORMAT = "rnn-toolkit/metadata"
FORMAT_VERSION = 1
ONNX_KEY = "metadata.json"
REQUIRED = ("format", "format_version", "task", "inputs", "outputs")


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check(meta: dict, source: str) -> dict:
    """Checks the metadata's format and required keys.

    Raises:
      ModelError: a key is missing or the format is unknown or newer than this serving.
    """
    if not isinstance(meta, dict):
        raise ModelError(f"{source}: metadata is not a JSON object")
    missing = [key for key in REQUIRED if key not in meta]
    if missing:
        raise ModelError(f"{source}: metadata lacks {', '.join(missing)}")
    if meta["format"] != FORMAT:
        raise ModelError(f"{source}: metadata format is {meta['format']!r}, expected {FORMAT!r}")
    if meta["format_version"] > FORMAT_VERSION:
        raise ModelError(
            f"{source}: metadata version {meta['format_version']} is newer than this serving reads ({FORMAT_VERSION})"
        )
    return meta


def from_onnx_props(props: dict[str, str], source: str) -> dict:
    """Reads the metadata embedded in an ONNX file's ``metadata_props``.

    Raises:
      ModelError: the file carries no metadata (not exported by this toolkit) or it is not valid JSON.
    """
    if ONNX_KEY not in props:
        raise ModelError(f"{source} has no '{ONNX_KEY}' metadata: it was not exported by this toolkit")
    try:
        meta = json.loads(props[ONNX_KEY])
    except json.JSONDecodeError as err:
        raise ModelError(f"{source}: embedded metadata is not valid JSON ({err})") from None
    return check(meta, source)


def read_file(path: str | Path) -> dict:
    """Reads a run dir's metadata.json.

    Raises:
      ModelError: the file is missing, unreadable or not valid metadata.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"missing metadata file: {path}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{path} is not valid JSON ({err})") from None
    return check(meta, str(path))


def check_run_files(run_meta: dict, embedded: dict, run_dir: Path) -> None:
    """Checks that a run dir's metadata.json belongs with the model files beside it.

    Raises:
      ModelError: the checksums or the metadata differ.
    """
    files = run_meta.get("files") or {}
    for name, info in files.items():
        path = run_dir / name
        if path.is_file() and sha256(path) != info.get("sha256"):
            raise ModelError(
                f"{path} does not match {run_dir / 'metadata.json'} (SHA-256 differs): the metadata file belongs "
                f"to another export; re-export with `python -m export {run_dir}`"
            )
    stripped = {key: value for key, value in run_meta.items() if key != "files"}
    if stripped != embedded:
        differing = sorted(k for k in set(stripped) | set(embedded) if stripped.get(k) != embedded.get(k))
        raise ModelError(
            f"{run_dir / 'metadata.json'} disagrees with the metadata inside the model on: {', '.join(differing)}"
        )
