"""Inference benchmark: ``python -m export.bench [RUN_DIR] [--cell lstm|gru|rnn] [--runs N]``.

Times, warm and in one process, the same model four ways: Keras ``predict``, the tf.function (the SavedModel
signature's function), onnxruntime on tf2onnx's graph and onnxruntime on the native graph (ONNX RNN / LSTM / GRU
ops), at batch 1, 8 and 64 and two sequence lengths (inputs padded, lengths mixed, so masking is exercised).
Prints the medians, the speed-ups, each graph's op counts, and the cold start (process start → first answer) and
peak memory of an onnxruntime process vs a TensorFlow one. Without RUN_DIR it builds the slot-filling model with
random weights (embedding 64 → bidirectional 128 units ×2 → heads).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402


def _median_ms(fn, runs: int, min_seconds: float = 0.3) -> float:
    fn()
    fn()
    times = []
    deadline = time.perf_counter() + min_seconds
    while len(times) < runs or time.perf_counter() < deadline:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        if len(times) >= 20 * runs:
            break
    return statistics.median(times) * 1e3


def _batch(vocab_size: int, batch: int, length: int, rng) -> np.ndarray:
    ids = np.zeros((batch, length), np.int32)
    for row in range(batch):
        n = length if row == 0 else int(rng.integers(max(1, length // 2), length + 1))
        ids[row, :n] = rng.integers(2, vocab_size, n)
    return ids


def _op_counts(proto) -> str:
    counts = collections.Counter(node.op_type for node in proto.graph.node)
    recurrent = {k: v for k, v in counts.items() if k in ("LSTM", "GRU", "RNN", "Loop", "Scan")}
    return f"{sum(counts.values())} nodes; " + ", ".join(f"{k} {v}" for k, v in sorted(recurrent.items()))


_ORT_CHILD = """
import time; t0 = time.perf_counter()
import re, sys, numpy as np, onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
s.run(None, {s.get_inputs()[0].name: np.ones((1, 12), np.int32)})
print(time.perf_counter() - t0, re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
"""
_TF_CHILD = """
import time; t0 = time.perf_counter()
import os, re, sys; os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np, tensorflow as tf
f = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
f(token_ids=tf.constant(np.ones((1, 12), np.int32)))
print(time.perf_counter() - t0, re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
"""


def _cold_start(code: str, path: Path) -> tuple[float, float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    seconds, rss_kb = done.stdout.split()  # VmHWM: this process's peak resident memory, in kB
    return time.perf_counter() - started, float(rss_kb) / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.bench", description=__doc__.split("\n\n")[1])
    parser.add_argument("run_dir", nargs="?", help="a run dir (its model.keras); default: a built-in model")
    parser.add_argument("--cell", choices=("rnn", "lstm", "gru"), default="lstm", help="built-in model's cell")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per cell of the table (median)")
    parser.add_argument("--batches", default="1,8,64")
    parser.add_argument("--lengths", default="12,48")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)

    import keras
    import onnx
    import onnxruntime as ort
    import tensorflow as tf

    import models.heads  # noqa: F401
    from export.onnx_export import serving_function, tf2onnx_convert, to_onnx
    from export.saved_model import write_saved_model
    from models.slot_filling import build_slot_filler

    if args.run_dir:
        if not (Path(args.run_dir) / "model.keras").is_file():
            print(f"error: {args.run_dir} has no model.keras (not a run dir)", file=sys.stderr)
            return 2
        model = keras.saving.load_model(Path(args.run_dir) / "model.keras", compile=False)
        name = args.run_dir
    else:
        keras.utils.set_random_seed(0)
        model = build_slot_filler(1000, 120, 20, cell=args.cell, embed_dim=64, units=128, layers=2)
        name = f"built-in {args.cell} tagger (bidirectional, 2 x 128, masked)"
    vocab_size = model.get_layer("embedding").input_dim

    native, route = to_onnx(model, route="native")
    converted = tf2onnx_convert(model)
    sessions = {
        "ort native": ort.InferenceSession(native.SerializeToString(), providers=["CPUExecutionProvider"]),
        "ort tf2onnx": ort.InferenceSession(converted.SerializeToString(), providers=["CPUExecutionProvider"]),
    }
    function = serving_function(model)
    rng = np.random.default_rng(0)
    rows = []
    for length in [int(x) for x in args.lengths.split(",")]:
        for batch in [int(x) for x in args.batches.split(",")]:
            ids = _batch(vocab_size, batch, length, rng)
            tensor = tf.constant(ids)
            row = {"batch": batch, "length": length}
            row["keras predict"] = _median_ms(lambda: model.predict(ids, verbose=0), max(5, args.runs // 5))
            row["tf.function"] = _median_ms(lambda: function(tensor), args.runs)
            for label, session in sessions.items():
                row[label] = _median_ms(lambda s=session: s.run(None, {"token_ids": ids}), args.runs)
            rows.append(row)

    print(f"\n{name}; onnxruntime {ort.__version__}, tensorflow {tf.__version__}, {os.cpu_count()} cores; median ms")
    header = ["batch", "length", "keras predict", "tf.function", "ort tf2onnx", "ort native", "native vs tf.function",
              "native vs tf2onnx"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        cells = [str(row["batch"]), str(row["length"])]
        cells += [f"{row[k]:.3f}" for k in header[2:6]]
        cells += [f"{row['tf.function'] / row['ort native']:.1f}x", f"{row['ort tf2onnx'] / row['ort native']:.1f}x"]
        print("| " + " | ".join(cells) + " |")
    print(f"\nops, native: {_op_counts(native)}\nops, tf2onnx: {_op_counts(converted)}")

    with tempfile.TemporaryDirectory() as tmp:
        onnx.save(native, str(Path(tmp) / "model.onnx"))
        write_saved_model(model, Path(tmp) / "saved_model")
        ort_cold = _cold_start(_ORT_CHILD, Path(tmp) / "model.onnx")
        tf_cold = _cold_start(_TF_CHILD, Path(tmp) / "saved_model")
    print(f"cold start to first answer: onnxruntime {ort_cold[0]:.2f} s, {ort_cold[1]:.0f} MiB peak; "
          f"TensorFlow SavedModel {tf_cold[0]:.2f} s, {tf_cold[1]:.0f} MiB peak")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": name, "rows": rows, "cold_start": {
            "onnxruntime": {"seconds": ort_cold[0], "peak_mib": ort_cold[1]},
            "tensorflow": {"seconds": tf_cold[0], "peak_mib": tf_cold[1]}}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
