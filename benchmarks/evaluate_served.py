"""Scores an exported slot-filling model as it is served (onnxruntime through ``serving``) on a data split.

    python benchmarks/evaluate_served.py runs/atis/model.onnx --data-dir ../shared/data/atis [--split test]
    python benchmarks/evaluate_served.py runs/atis/model.int8.onnx --data-dir ../shared/data/atis

Prints slot F1 (seqeval), intent accuracy and the time predict_batch took: the accuracy cost of int8 quantization
is the difference between the two lines above.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seqeval.metrics import f1_score  # noqa: E402

import serving  # noqa: E402
from pipelines.readers import DataError, find_split, read_split  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a run dir or a .onnx file")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--split", default="test", choices=("train", "valid", "test"))
    args = parser.parse_args()
    folder = find_split(args.data_dir, args.split)
    if folder is None:
        print(f"error: {args.data_dir} has no {args.split} split", file=sys.stderr)
        return 2
    try:
        examples = read_split(folder)
        predictor = serving.load(args.model)
        started = time.perf_counter()
        results = predictor.predict_batch([ex.text for ex in examples])
        seconds = time.perf_counter() - started
    except (DataError, serving.ServingError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    f1 = f1_score([list(ex.tags) for ex in examples], [r.tags for r in results])
    intent = sum(ex.intent == r.intent for ex, r in zip(examples, results)) / len(examples)
    print(f"{args.model}: {args.split} slot F1 {f1:.4f}, intent accuracy {intent:.4f}, "
          f"{len(examples)} utterances in {seconds:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
