"""``python -m export RUN_DIR [--opset N] [--quantize int8]``: re-export a run (SavedModel + ONNX; for a seq2seq run
encoder.onnx + decoder_step.onnx), verify parity, and optionally add an int8 model (model.int8.onnx).

``python -m export MODEL.keras [--out model.onnx] [--opset N]``: export any Keras 3 model saved by a user; prints the
route of every layer (native emitter, or tf2onnx and why), the parity against Keras on random right-padded inputs,
and writes the ONNX model (default: MODEL.onnx beside MODEL.keras). See ``export/user_model.py``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import export
from export.registry import DEFAULT_OPSET


def _flat(diffs: dict, prefix: str = "") -> dict[str, float]:
    """{output: diff}, or {graph: {output: diff}} for a seq2seq run, as {"graph/output": diff}."""
    flat = {}
    for name, value in diffs.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{name}/"))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def _user_model(args) -> int:
    from export.user_model import export_keras_model

    if not Path(args.run_dir).is_file():
        print(f"error: {args.run_dir} does not exist", file=sys.stderr)
        return 2
    try:
        result = export_keras_model(args.run_dir, args.out or Path(args.run_dir).with_suffix(".onnx"), args.opset)
    except (export.ExportError, export.ParityError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(result.report())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    parser.add_argument("run_dir", metavar="RUN_DIR | MODEL.keras",
                        help="a run dir written by python -m pipelines.<task>, or a model saved with model.save")
    parser.add_argument("--out", help="MODEL.keras only: where to write the ONNX model (default: MODEL.onnx)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default %(default)s)")
    parser.add_argument("--quantize", choices=("int8",), help="also write model.int8.onnx (dynamic quantization)")
    args = parser.parse_args(argv)
    if Path(args.run_dir).suffix == ".keras":
        return _user_model(args)
    try:
        meta = export.reexport(args.run_dir, opset=args.opset, quantize=args.quantize)
    except (export.ExportError, export.ParityError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    files = [graph["file"] for graph in meta["graphs"].values()] if "graphs" in meta else ["model.onnx"]
    if meta["parity"].get("saved_model_max_abs_diff"):
        files.append("saved_model/")
    diffs = _flat(meta["parity"]["onnx_max_abs_diff"])
    print(f"exported {args.run_dir}: {' + '.join(files)}, parity max abs diff "
          + ", ".join(f"{name} {value:.2e}" for name, value in sorted(diffs.items())))
    if "int8" in meta:
        print(f"model.int8.onnx: max abs diff vs float {meta['int8']['max_abs_diff']:.2e}, "
              f"argmax agreement {meta['int8']['argmax_agreement']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
