"""The model card of a run dir: its ``README.md`` (what the model is, how it was made, how to call it) and the same
facts as JSON for ``GET /v2/models/{name}``.

Every fact comes from the run dir's own files (``metadata.json``, ``metrics.json``, ``config.json``) or, for a lone
``.onnx`` file, from the metadata inside it. ``write`` is called where a run dir is finalised
(``pipelines.runner.run``), after the export.
"""

from __future__ import annotations

import json
from pathlib import Path

from serving import conformance

LIMIT_KEYS = ("max_len", "long_input", "max_source_len", "max_target_len", "window")
NODE_TASKS = ("slot_filling", "sentiment")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def facts(path: str | Path, metadata: dict | None = None) -> dict:
    """The card's facts: task, data and split, metrics, config, training time, versions, converter route, limits."""
    path = Path(path)
    run_dir = path if path.is_dir() else path.parent
    meta = metadata or _read_json(run_dir / "metadata.json")
    config = _read_json(run_dir / "config.json") if path.is_dir() else {}
    metrics = _read_json(run_dir / "metrics.json") if path.is_dir() else {}
    return {
        "task": meta.get("task"),
        "data": {"data_dir": config.get("data_dir") or "built-in synthetic data",
                 "split_sizes": {k: v for k, v in metrics.items() if k.endswith("examples")},
                 "synthetic_size": config.get("synthetic_size")} if config else {},
        "metrics": {k: v for k, v in metrics.items() if not k.endswith("examples") and k != "train_seconds"},
        "config": config,
        "training_seconds": metrics.get("train_seconds"),
        "versions": meta.get("versions", {}),
        "exported_at": meta.get("exported_at"),
        "converter": {"route": meta.get("onnx_converter"), "parity": meta.get("parity")},
        "model": meta.get("model", {}),
        "limits": limits(meta),
    }


def limits(meta: dict) -> dict:
    out = {key: meta[key] for key in LIMIT_KEYS if key in meta}
    spec = meta.get("tokenizer") or meta.get("source_tokenizer")
    if isinstance(spec, dict):
        out["tokenizer"] = spec.get("name")
        out["unicode_version"] = spec.get("unicode_version", "not stated (exported before the spec named it)")
    if "feature_spec" in meta:
        out["max_seconds"] = meta["feature_spec"].get("max_seconds")
        out["sample_rate"] = meta["feature_spec"].get("sample_rate")
    for key in ("vocab", "source_vocab"):
        if key in meta:
            out[f"{key}_size"] = len(meta[key])
    return out


def _table(rows: dict) -> str:
    return "\n".join(["| | |", "|---|---|"] + [f"| {k} | {json.dumps(v) if not isinstance(v, str) else v} |"
                                                 for k, v in rows.items()])


def _bodies(kind: str, example) -> tuple[str, str, str]:
    """(Python argument, /v1 curl arguments, one KServe v2 / TF Serving data element) for the model's input kind."""
    if kind == "audio":
        return '"clip.wav"', "-H 'Content-Type: audio/wav' --data-binary @clip.wav", '"<base64 of clip.wav>"'
    sample = example if example is not None else {"text": "...", "record": {"story": ["..."], "question": "..."}}[kind]
    shown = json.dumps(sample, ensure_ascii=False)
    v1 = f"-H 'Content-Type: application/json' -d '{{\"input\": {shown}}}'"
    return shown, v1, json.dumps(shown, ensure_ascii=False) if kind == "record" else shown


def usage(name: str, task: str, kind: str, example) -> str:
    """How to call the model: Python, HTTP /v1, KServe v2, TF Serving REST, Node."""
    python_arg, v1, data = _bodies(kind, example)
    instance = python_arg if kind != "audio" else data
    v2 = f'{{"inputs": [{{"name": "{kind}", "datatype": "BYTES", "shape": [1], "data": [{data}]}}]}}'
    lines = ["```python", "import serving", f'p = serving.load("{name}")   # the run dir',
             f"print(p.predict({python_arg}))", "```", "", "```bash", f"python -m serving serve {name} --port 8000",
             f"curl -s localhost:8000/v1/models/{name}/predict {v1}",
             f"curl -s localhost:8000/v2/models/{name}/infer -d '{v2}'   # KServe v2",
             f"curl -s localhost:8000/v1/models/{name}:predict -d '{{\"instances\": [{instance}]}}'   # TF Serving",
             "```", ""]
    if task not in NODE_TASKS:
        return "\n".join(lines + ["Node.js: `serving/examples/node` covers slot filling and sentiment only; other "
                                   "languages read the metadata inside the `.onnx` (docs/serving.md)."])
    return "\n".join(lines + ["```bash", "cd serving/examples/node && npm install --ignore-scripts",
                               f"node predict.js RUN_DIR {python_arg}",
                               "node conformance.js RUN_DIR   # the tokenizer conformance file", "```"])


def render(name: str, card: dict, kind: str, example=None) -> str:
    """The README.md text of a model card."""
    parts = [f"# {name}: {card['task']}", "",
             "Exported by rnn-toolkit; served by `python -m serving` (numpy + onnxruntime, no TensorFlow).", "",
             "## Data and split", "", _table(card["data"] or {"data": "unknown (no config.json)"}), "",
             "## Metrics (test split unless prefixed dev_)", "", _table(card["metrics"] or {"metrics": "none"}), "",
             "## Training", "", _table({"training time (s)": card["training_seconds"], **card["model"]}), "",
             "## Versions and converter route", "",
             _table({**card["versions"], "exported_at": card["exported_at"], "converter": card["converter"]["route"],
                     "parity": card["converter"]["parity"]}), "",
             "## Limits", "", _table(card["limits"]), "",
             *([f"Tokenizer conformance cases (inputs → tokens → ids), for clients in other languages: "
                f"`{conformance.FILE}`.", ""] if card.get("conformance_file") else []),
             "Inputs over the limits above are refused (or truncated where `long_input` says so); tokens outside the "
             "vocabulary are read as `<unk>`; the model knows only what its training data held.", "",
             "## How to call it", "", usage(name, card["task"], kind, example), "",
             "## Config", "", "```json", json.dumps(card["config"], indent=2), "```", ""]
    return "\n".join(parts)


def write(run_dir: str | Path, name: str | None = None, example=None) -> Path:
    """Writes ``README.md`` (and ``tokenizer_conformance.json`` for a word, character or document tokenizer) into
    ``run_dir`` (a staging folder may be given with the final ``name``); returns the README's path."""
    run_dir = Path(run_dir)
    meta = _read_json(run_dir / "metadata.json")
    card = facts(run_dir, meta)
    card["conformance_file"] = conformance.write(run_dir, meta) is not None
    example = example if isinstance(example, (str, dict)) else None
    readme = run_dir / "README.md"
    readme.write_text(render(name or run_dir.name, card, _input_kind(meta.get("task")), example), encoding="utf-8")
    return readme


def _input_kind(task) -> str:
    from serving.base import PREDICTORS, import_predictor_modules

    import_predictor_modules()
    return getattr(PREDICTORS.get(task), "input_kind", "text")
