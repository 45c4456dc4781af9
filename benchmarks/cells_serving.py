"""What the custom cells cost at serving time: onnxruntime latency of Clockwork RNN and SCRN models vs a GRU.

    python benchmarks/cells_serving.py [--units 128] [--lengths 16,64] [--batches 1,8,64] [--runs 30] [--threads 1]
        [--out FILE]
    python benchmarks/cells_serving.py --ntm [--lengths 10,40] [--runs 200]

Builds the slot-filling model (embedding 64 → bidirectional recurrent ×2 → slot and intent heads, random weights)
with each cell at the same units. The GRU converts to the native ONNX ``GRU`` op; the Clockwork RNN and SCRN have
no ONNX op, so each of their layers becomes one ONNX ``Scan`` (both directions stacked in it) whose body is one step
of the cell (``export/emit_cells.py``). Every export is parity-checked against Keras first (≤ 1e-5 at the real steps), then timed in one warm
onnxruntime session (``--threads`` intra-op threads; 0: onnxruntime's default), inputs padded with mixed lengths.
Prints the best and the median latency per batch (on a shared machine the best of N is the steadier figure), the
ratio to the GRU and each graph's node counts; ``--out`` also writes the numbers as JSON.

``--ntm`` instead times, at batch 1, the lessons' Neural Turing Machine (controller 64 units, memory 48 x 16, one
``Scan``) against a GRU of the controller's width and against the NTM's tf2onnx ``Loop`` graph.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

VOCAB = 1000
CELLS = ("gru", "cwrnn", "scrn")


def latency_ms(fn, runs: int) -> tuple[float, float]:
    """Best and median wall time of ``fn()`` in milliseconds over ``runs`` calls, after two warm-up calls."""
    fn()
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3, statistics.median(times) * 1e3


def padded_ids(batch: int, length: int, rng) -> np.ndarray:
    """int32 ``[batch, length]`` ids, the first row full, the others of random lengths in ``length/2..length``."""
    ids = np.zeros((batch, length), np.int32)
    for row in range(batch):
        n = length if row == 0 else int(rng.integers(max(1, length // 2), length + 1))
        ids[row, :n] = rng.integers(2, VOCAB, n)
    return ids


def export(cell: str, units: int):
    """The slot-filling model with ``cell``, its ONNX proto, the route taken and the conversion seconds."""
    from export.onnx_export import to_onnx
    from models.slot_filling import build_slot_filler

    model = build_slot_filler(VOCAB, 20, 8, cell=cell, embed_dim=64, units=units, layers=2, dropout=0.0)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a tf2onnx fallback would warn; the table's route column shows it
        proto, route = to_onnx(model)
    return model, proto, route, time.perf_counter() - started


def parity(model, session, rng) -> float:
    """Max abs difference, ONNX vs Keras, over real steps of two mixed-length batches."""
    worst = 0.0
    names = [o.name for o in session.get_outputs()]
    for batch, length in ((4, 12), (3, 30)):
        ids = padded_ids(batch, length, rng)
        lengths = (ids != 0).sum(1)
        want = {k: np.asarray(v) for k, v in model(ids, training=False).items()}
        got = dict(zip(names, session.run(None, {"token_ids": ids})))
        for name, value in want.items():
            other = got[name]
            if value.ndim == 3:
                diffs = [np.abs(value[i, :n] - other[i, :n]).max() for i, n in enumerate(lengths)]
            else:
                diffs = [np.abs(value - other).max()]
            worst = max(worst, float(max(diffs)))
    return worst


def ntm_table(lengths: list[int], runs: int, threads: int) -> None:
    """Batch-1 latency: GRU(64) vs the NTM (native Scan) vs the NTM through tf2onnx, each as x → RNN → Dense."""
    import keras
    import onnxruntime as ort

    from export.keras_onnx import convert
    from export.onnx_export import tf2onnx_convert
    from models.ntm import NTMCell

    def model(layer):
        x = keras.Input((None, 9), name="x")
        return keras.Model(x, keras.layers.Dense(8)(layer(x)))

    gru, ntm = model(keras.layers.GRU(64, return_sequences=True)), model(
        keras.layers.RNN(NTMCell(64, 48, 16), return_sequences=True))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    graphs = {"GRU 64": convert(gru), "NTM, native Scan": convert(ntm), "NTM, tf2onnx Loop": tf2onnx_convert(ntm)}
    print(f"batch 1, best of {runs} onnxruntime runs in ms (x GRU), {threads} thread(s)")
    print("graph              " + "".join(f"{f'length {n}':>16}" for n in lengths))
    base = {}
    for label, proto in graphs.items():
        session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        row = []
        for n in lengths:
            x = np.random.default_rng(0).normal(size=(1, n, 9)).astype(np.float32)
            best = latency_ms(lambda: session.run(None, {"x": x}), runs)[0]
            base.setdefault(n, best)
            row.append(f"{best:.3f} ({best / base[n]:.1f}x)")
        print(f"{label:19}" + "".join(f"{c:>16}" for c in row), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--lengths", default="16,64")
    parser.add_argument("--batches", default="1,8,64")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (0: its default)")
    parser.add_argument("--out", help="also write the numbers here (JSON)")
    parser.add_argument("--ntm", action="store_true", help="time the NTM against a GRU instead (batch 1)")
    args = parser.parse_args(argv)
    import onnxruntime as ort

    import pipelines  # noqa: F401  (quiet TensorFlow)

    if args.ntm:
        ntm_table([int(v) for v in args.lengths.split(",")], args.runs, args.threads)
        return 0

    lengths = [int(v) for v in args.lengths.split(",")]
    batches = [int(v) for v in args.batches.split(",")]
    rng = np.random.default_rng(0)
    results = {}
    for cell in CELLS:
        model, proto, route, seconds = export(cell, args.units)
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        diff = parity(model, session, rng)
        if not diff <= 1e-5:
            raise SystemExit(f"{cell}: ONNX differs from Keras by {diff:.3g}")
        ops = collections.Counter(node.op_type for node in proto.graph.node)
        timings, medians = {}, {}
        for length in lengths:
            for batch in batches:
                ids = padded_ids(batch, length, rng)
                key = f"{batch}x{length}"
                timings[key], medians[key] = latency_ms(lambda: session.run(None, {"token_ids": ids}), args.runs)
        results[cell] = {"route": route, "convert_seconds": round(seconds, 1), "parity": diff,
                         "nodes": sum(ops.values()), "loops": ops.get("Loop", 0) + ops.get("Scan", 0),
                         "params": model.count_params(), "ms": timings, "median_ms": medians}
        print(f"{cell}: {route}, {sum(ops.values())} nodes ({ops.get('Loop', 0)} Loop, {ops.get('Scan', 0)} Scan), "
              f"parity {diff:.2g}, "
              f"converted in {seconds:.1f} s", flush=True)

    keys = list(results["gru"]["ms"])
    for label, field in (("best", "ms"), ("median", "median_ms")):
        print(f"\n{label} onnxruntime latency of {args.runs}, ms (batch x length; x GRU), bidirectional x2, "
              f"{args.units} units per direction, {args.threads or 'default'} thread(s)")
        print("cell    " + "".join(f"{k:>17}" for k in keys))
        for cell, found in results.items():
            ratio = {k: found[field][k] / results["gru"][field][k] for k in keys}
            cells = [f"{found[field][k]:.2f}" + ("" if cell == "gru" else f" ({ratio[k]:.1f}x)") for k in keys]
            print(f"{cell:8}" + "".join(f"{c:>17}" for c in cells))
    if args.out:
        Path(args.out).write_text(json.dumps({"units": args.units, "threads": args.threads, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
