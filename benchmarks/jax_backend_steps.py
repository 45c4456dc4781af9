"""Training steps of the models/ builders under Keras' JAX backend, on every JAX device kind at hand (GPU, CPU).

    KERAS_BACKEND=jax python benchmarks/jax_backend_steps.py [--steps 20] [--batch 32]

It needs only keras, jax and numpy. No TensorFlow is used, so it also runs on a GPU machine that has JAX and no
TensorFlow. It proves that ``models/`` is backend-agnostic Keras 3: the slot-filling tagger and the CTC speech
model are built, compiled with clipnorm, and trained for a few steps on random data. For each model and device it
prints the median step time, after two warm-up steps that include compilation.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402


def tagger_case(batch: int, rng):
    from models.losses import SummedSequenceCrossEntropy
    from models.slot_filling import build_slot_filler

    model = build_slot_filler(1000, 40, 20, embed_dim=128, units=128, layers=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-3, clipnorm=1.0),
                  loss={"slot_probs": SummedSequenceCrossEntropy(),
                        "intent_probs": keras.losses.SparseCategoricalCrossentropy()})
    ids = rng.integers(1, 1000, (batch, 24)).astype("int32")
    ids[:, 18:] = 0  # right padding, masked
    y = {"slot_probs": rng.integers(0, 40, (batch, 24)).astype("int32"),
         "intent_probs": rng.integers(0, 20, batch).astype("int32")}
    return model, ids, y


def ctc_case(batch: int, rng):
    from models.speech import PackedCTCLoss, build_speech_model, output_frames

    frames = 200
    model = build_speech_model(40, 11, head="ctc", cell="gru", units=96, layers_=2, subsample=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-3, clipnorm=1.0), loss={"log_probs": PackedCTCLoss()})
    x = {"features": rng.normal(size=(batch, frames, 40)).astype("float32"),
         "frames": np.full(batch, frames, dtype="int32")}
    labels = rng.integers(1, 11, (batch, 7)).astype("int32")
    y = {"log_probs": np.concatenate([np.full((batch, 1), output_frames(frames, 2)), labels], 1).astype("int32")}
    return model, x, y


def time_steps(case, device, steps: int, batch: int) -> float:
    rng = np.random.default_rng(0)
    with jax.default_device(device):
        model, x, y = case(batch, rng)
        times = []
        for i in range(steps + 2):
            started = time.perf_counter()
            logs = model.train_on_batch(x, y, return_dict=True)
            jax.block_until_ready(logs["loss"])
            if i >= 2:
                times.append(time.perf_counter() - started)
        if not np.isfinite(float(logs["loss"])):
            raise RuntimeError(f"{case.__name__} on {device}: loss is {logs['loss']}")
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args(argv)
    if keras.backend.backend() != "jax":
        print(f"error: KERAS_BACKEND is {keras.backend.backend()!r}; run with KERAS_BACKEND=jax", file=sys.stderr)
        return 2
    kinds = [kind for kind in ("gpu", "cpu") if _devices(kind)]
    print(f"keras {keras.__version__}, jax {jax.__version__}, devices: "
          + ", ".join(f"{kind} {_devices(kind)[0].device_kind}" for kind in kinds))
    for case in (tagger_case, ctc_case):
        for kind in kinds:
            seconds = time_steps(case, _devices(kind)[0], args.steps, args.batch)
            print(f"{case.__name__[:-5]:7s} {kind}: {seconds * 1000:8.1f} ms/step (batch {args.batch}, "
                  f"median of {args.steps})")
    return 0


def _devices(kind: str):
    try:
        return jax.devices(kind)
    except RuntimeError:
        return []


if __name__ == "__main__":
    sys.exit(main())
