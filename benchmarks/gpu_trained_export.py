"""A model trained on a GPU must export with native recurrent ops too (issue: tf2onnx cannot convert the
CudnnRNNV3 kernels that Keras uses on a GPU; the layer-level converter reads configs and weights instead).

Step 1, on a GPU machine, any Keras backend (TensorFlow, JAX):
    KERAS_BACKEND=jax python benchmarks/gpu_trained_export.py train OUT_DIR
trains the slot-filling model (bidirectional LSTM and GRU variants) for a few hundred steps on random data and
saves OUT_DIR/{lstm,gru}.keras.
Step 2, here (TensorFlow backend, CPU):
    python benchmarks/gpu_trained_export.py check OUT_DIR
converts each saved model with ``export.keras_onnx`` and prints onnxruntime vs Keras differences on batches of
mixed lengths, and the graph's recurrent ops.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def train(out: Path) -> None:
    import keras
    import numpy as np

    from models.losses import SummedSequenceCrossEntropy
    from models.slot_filling import build_slot_filler

    print(f"backend {keras.backend.backend()}", end="")
    if keras.backend.backend() == "jax":
        import jax

        print(f", devices {jax.devices()}", end="")
    print()
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 200, size=(2048, 24)).astype("int32")
    lens = rng.integers(1, 25, size=2048)
    ids *= np.arange(24) < lens[:, None]
    tags = np.where(ids > 0, ids % 9, -1).astype("int32")
    intents = (ids[:, 0] % 5).astype("int32")
    out.mkdir(parents=True, exist_ok=True)
    for cell in ("lstm", "gru"):
        keras.utils.set_random_seed(0)
        model = build_slot_filler(200, 9, 5, cell=cell, embed_dim=32, units=64, layers=2)
        model.compile(optimizer=keras.optimizers.Adam(3e-3, clipnorm=1.0),
                      loss={"slot_probs": SummedSequenceCrossEntropy(),
                            "intent_probs": keras.losses.SparseCategoricalCrossentropy()})
        history = model.fit(ids, {"slot_probs": tags, "intent_probs": intents}, batch_size=64, epochs=8, verbose=0)
        print(f"{cell}: loss {history.history['loss'][0]:.3f} -> {history.history['loss'][-1]:.3f}")
        model.save(out / f"{cell}.keras")


def check(out: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np

    import models  # noqa: F401
    from export import parity
    from export.keras_onnx import convert
    from serving.session import OnnxModel

    rng = np.random.default_rng(1)
    for path in sorted(out.glob("*.keras")):
        model = keras.saving.load_model(path, compile=False)
        proto = convert(model)
        onnx_path = out / f"{path.stem}.onnx"
        onnx_path.write_bytes(proto.SerializeToString())
        session = OnnxModel(onnx_path)
        worst = 0.0
        for batch, time in ((1, 1), (7, 24), (16, 9)):
            lens = rng.integers(1, time + 1, size=batch)
            lens[-1] = time
            ids = (rng.integers(1, 200, size=(batch, time)) * (np.arange(time) < lens[:, None])).astype("int32")
            reference = {k: np.asarray(v) for k, v in model(ids, training=False).items()}
            diffs = parity.compare(reference, session.run({"token_ids": ids}), lens, {"slot_probs"})
            worst = max(worst, *diffs.values())
        ops = sorted({node.op_type for node in proto.graph.node} & {"LSTM", "GRU", "RNN", "Loop", "Scan"})
        print(f"{path.name}: recurrent ops {ops}, onnxruntime vs keras max abs diff {worst:.2e}")


if __name__ == "__main__":
    {"train": train, "check": check}[sys.argv[1]](Path(sys.argv[2]))
