"""Training settings shared by every task: seeding, Adam with gradient clipping, and the callbacks."""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf


def set_seed(seed: int) -> None:
    """Seeds Python, numpy and TensorFlow, and asks TensorFlow for deterministic ops, so a run repeats."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def optimizer(learning_rate: float, clipnorm: float | None) -> keras.optimizers.Optimizer:
    """Adam; ``clipnorm`` rescales each gradient whose norm exceeds it (None or 0: no clipping)."""
    return keras.optimizers.Adam(learning_rate=learning_rate, clipnorm=clipnorm or None)


def callbacks(run_dir: Path, monitor: str, patience: int, first: list | None = None) -> list:
    """Validation metrics (``first``), best checkpoint and early stopping on ``monitor`` (higher is better),
    a CSV history and TensorBoard logs, all under ``run_dir``."""
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    return [
        *(first or []),
        keras.callbacks.ModelCheckpoint(
            str(run_dir / "checkpoints" / "best.weights.h5"), monitor=monitor, mode="max",
            save_best_only=True, save_weights_only=True,
        ),
        keras.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=patience),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv")),
        keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False),
    ]
