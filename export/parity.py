"""Parity verification: onnxruntime and the SavedModel must give Keras' outputs on real batches of mixed lengths.

Per-step outputs (whose metadata shape has a ``time`` axis) are compared at the real steps of each sentence only:
what a model emits at padded steps is undefined.

Log-scale outputs (metadata ``"kind": "log_probs"``) are compared relative to their size beyond 1:
``|a - b| / max(1, |a|)``. A float32 log-probability of -30 has a spacing of 2e-6 between representable values, and
a few sums in a different order move it by several of those; in probability space that is a relative error of
1e-5 on a number near 1e-13, which no decoder can see.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TOLERANCE = 1e-5
PARITY_FILE = "parity_inputs.npz"


class ParityError(RuntimeError):
    """An exported model's outputs differ from Keras' by more than the tolerance."""


def save_batches(path: Path, batches: list[dict[str, np.ndarray]]) -> None:
    """Stores parity batches (each a dict of input name → array, plus ``lengths``) in one .npz file."""
    arrays = {f"{i}/{name}": value for i, batch in enumerate(batches) for name, value in batch.items()}
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def load_batches(path: Path) -> list[dict[str, np.ndarray]]:
    with np.load(path) as data:
        batches: dict[int, dict] = {}
        for key in data.files:
            index, name = key.split("/", 1)
            batches.setdefault(int(index), {})[name] = data[key]
    return [batches[i] for i in sorted(batches)]


def _valid(output: np.ndarray, lengths: np.ndarray, per_step: bool) -> np.ndarray:
    if not per_step:
        return output.reshape(len(output), -1)
    return np.concatenate([output[i, :n].reshape(-1) for i, n in enumerate(lengths)])


def compare(
    reference: dict[str, np.ndarray], other: dict[str, np.ndarray], lengths: np.ndarray, per_step: set[str],
    log_scale: frozenset[str] | set[str] = frozenset(),
) -> dict[str, float]:
    """Max abs difference per output, over real steps only for the outputs named in ``per_step``; for the outputs
    named in ``log_scale``, the difference is divided by ``max(1, |reference|)``."""
    diffs = {}
    for name, ref in reference.items():
        if name not in other:
            raise ParityError(f"the exported model has no output {name!r} (it has {sorted(other)})")
        a, b = np.asarray(ref), np.asarray(other[name])
        if a.shape != b.shape:
            raise ParityError(f"output {name!r} has shape {b.shape} in the export but {a.shape} in Keras")
        a, b = _valid(a, lengths, name in per_step), _valid(b, lengths, name in per_step)
        diff = np.abs(a - b)
        if name in log_scale:
            diff = diff / np.maximum(1.0, np.abs(a))
        diffs[name] = float(np.max(diff))
    return diffs


def log_scale_outputs(task_meta: dict) -> set[str]:
    """The outputs whose metadata says they are log-probabilities."""
    return {name for name, spec in task_meta["outputs"].items() if spec.get("kind") == "log_probs"}


def verify(
    label: str, run_reference, run_other, batches: list[dict], per_step: set[str], tolerance: float = TOLERANCE,
    log_scale: frozenset[str] | set[str] = frozenset(),
) -> dict[str, float]:
    """Runs both sides on every batch and returns the worst difference per output.

    Raises:
      ParityError: a difference exceeds ``tolerance``; the message names the output, the batch and its lengths.
    """
    worst: dict[str, float] = {}
    for index, batch in enumerate(batches):
        lengths = batch["lengths"]
        feeds = {name: value for name, value in batch.items() if name != "lengths"}
        diffs = compare(run_reference(feeds), run_other(feeds), lengths, per_step, log_scale)
        for name, diff in diffs.items():
            if not diff <= tolerance:
                how = "relative to max(1, |value|) " if name in log_scale else ""
                raise ParityError(
                    f"{label} output {name!r} differs from Keras by {diff:.3g} {how}(limit {tolerance:g}) on parity "
                    f"batch {index} ({len(lengths)} sequences, lengths {lengths.min()}-{lengths.max()})"
                )
            worst[name] = max(worst.get(name, 0.0), diff)
    return worst
