"""onnxruntime vs TensorFlow on a task's run dir: ``python benchmarks/task_speed.py RUN_DIR [--runs 500] [--threads 1]``.

Times, side by side in one process, the run's ``model.onnx`` on onnxruntime and the same Keras model
(``model.keras``) as a tf.function (``export.onnx_export.serving_function``: what the SavedModel serves), on the run's
own parity input at batch 1: the longest row of the first batch of ``parity_inputs.npz`` (a batch is padded to its
longest row, so that row is a request without padding).
Each side gets two warm-up calls then ``--runs`` timed calls, alternating in blocks so that a change in the machine's
load hits both; ``--threads`` intra-op threads on both sides. Prints the medians (and bests) in ms and the speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

from benchmarks.cells_serving import latency_ms  # noqa: E402


def batch_of_one(run_dir: Path) -> dict[str, np.ndarray]:
    """The longest row of the run's first parity batch, as a batch of one (``lengths`` left out)."""
    from export.parity import PARITY_FILE, load_batches

    batch = load_batches(run_dir / PARITY_FILE)[0]
    row = int(np.argmax(batch["lengths"]))
    return {name: value[row:row + 1] for name, value in batch.items() if name != "lengths"}


def measure(run_dir: Path, runs: int, threads: int, blocks: int = 5) -> dict:
    import keras
    import onnxruntime as ort
    import tensorflow as tf

    import models  # noqa: F401  (registers the toolkit's layers for load_model)
    from export.onnx_export import serving_function

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(run_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
    inputs = batch_of_one(run_dir)
    dtypes = {"tensor(float)": np.float32, "tensor(int32)": np.int32, "tensor(int64)": np.int64}
    feeds = {i.name: inputs[i.name].astype(dtypes.get(i.type, None)) for i in session.get_inputs()}
    function = serving_function(model)
    tensors = [tf.constant(inputs[t.name]) for t in model.inputs]
    times = {"onnxruntime": [], "tf.function": []}
    for _ in range(blocks):  # alternate, so a change in load hits both sides
        times["onnxruntime"].append(latency_ms(lambda: session.run(None, feeds), runs // blocks))
        times["tf.function"].append(latency_ms(lambda: function(*tensors), runs // blocks))
    result = {"run_dir": str(run_dir), "inputs": {k: list(v.shape) for k, v in inputs.items()}, "runs": runs,
              "threads": threads, "versions": {"onnxruntime": ort.__version__, "tensorflow": tf.__version__}}
    for side, pairs in times.items():  # best of the bests; median of the block medians
        result[side] = {"best_ms": min(b for b, _ in pairs), "median_ms": float(np.median([m for _, m in pairs]))}
    result["speedup_median"] = result["tf.function"]["median_ms"] / result["onnxruntime"]["median_ms"]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a task's run dir (model.keras, model.onnx, parity_inputs.npz)")
    parser.add_argument("--runs", type=int, default=500, help="timed calls per side")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads, both sides")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    missing = [f for f in ("model.keras", "model.onnx", "parity_inputs.npz") if not (args.run_dir / f).is_file()]
    if missing:
        parser.error(f"{args.run_dir} lacks {', '.join(missing)}")
    r = measure(args.run_dir, args.runs, args.threads)
    ort_ms, tf_ms = r["onnxruntime"], r["tf.function"]
    print(f"{r['run_dir']}: batch 1 {r['inputs']}, {r['runs']} runs per side, {r['threads']} thread(s)\n"
          f"  onnxruntime {r['versions']['onnxruntime']}: median {ort_ms['median_ms']:.3f} ms (best {ort_ms['best_ms']:.3f})\n"
          f"  tf.function (TensorFlow {r['versions']['tensorflow']}): median {tf_ms['median_ms']:.3f} ms "
          f"(best {tf_ms['best_ms']:.3f})\n  onnxruntime is {r['speedup_median']:.1f}x faster (medians)")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
