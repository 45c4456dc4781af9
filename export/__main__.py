"""``python -m export RUN_DIR [--opset N] [--quantize int8]``: re-export a run (SavedModel + ONNX), verify
parity, and optionally add an int8 model (model.int8.onnx)."""

from __future__ import annotations

import argparse
import sys

import export
from export.onnx_export import DEFAULT_OPSET


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    parser.add_argument("run_dir", help="a run dir written by python -m pipelines.<task>")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default %(default)s)")
    parser.add_argument("--quantize", choices=("int8",), help="also write model.int8.onnx (dynamic quantization)")
    args = parser.parse_args(argv)
    try:
        meta = export.reexport(args.run_dir, opset=args.opset, quantize=args.quantize)
    except (export.ExportError, export.ParityError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    diffs = meta["parity"]["onnx_max_abs_diff"]
    print(f"exported {args.run_dir}: model.onnx + saved_model/, parity max abs diff "
          + ", ".join(f"{name} {value:.2e}" for name, value in sorted(diffs.items())))
    if "int8" in meta:
        print(f"model.int8.onnx: max abs diff vs float {meta['int8']['max_abs_diff']:.2e}, "
              f"argmax agreement {meta['int8']['argmax_agreement']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
