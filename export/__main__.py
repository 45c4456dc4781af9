"""``python -m export RUN_DIR [--opset N]``: re-export a run (SavedModel + ONNX) and verify parity."""

from __future__ import annotations

import argparse
import sys

import export
from export.onnx_export import DEFAULT_OPSET


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    parser.add_argument("run_dir", help="a run dir written by python -m pipelines.<task>")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        meta = export.reexport(args.run_dir, opset=args.opset)
    except (export.ExportError, export.ParityError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    diffs = meta["parity"]["onnx_max_abs_diff"]
    print(f"exported {args.run_dir}: model.onnx + saved_model/, parity max abs diff "
          + ", ".join(f"{name} {value:.2e}" for name, value in sorted(diffs.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
