"""Training settings shared by every task: seeding, Adam with gradient clipping, and the callbacks."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import warnings
from pathlib import Path

import keras
import tensorflow as tf


def set_seed(seed: int) -> None:
    """Seeds Python, numpy and TensorFlow, and asks TensorFlow for deterministic ops, so a run repeats."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def quiet_warnings() -> None:
    """Silences Keras' warning that a length-bucketed dataset (of unknown size) ran out of data: that is how
    every epoch of such a dataset ends."""
    warnings.filterwarnings("ignore", message="Your input ran out of data")


class _Tee:
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self):
        for stream in self.streams:
            stream.flush()

    def isatty(self):
        return self.streams[0].isatty()


@contextlib.contextmanager
def training_log(path: Path):
    """Copies everything printed to stdout (progress, metrics) into ``path`` as well."""
    with open(path, "a", encoding="utf-8") as log:
        stdout = sys.stdout
        sys.stdout = _Tee(stdout, log)
        try:
            yield
        finally:
            sys.stdout = stdout


def optimizer(learning_rate: float, clipnorm: float | None, ema: float = 0.0) -> keras.optimizers.Optimizer:
    """Adam; ``clipnorm`` rescales each gradient whose norm exceeds it (None or 0: no clipping). With ``ema`` (a
    momentum such as 0.99) it also keeps an exponential moving average of the weights (Polyak averaging), which
    :func:`callbacks` swaps in for validation and checkpoints."""
    return keras.optimizers.Adam(learning_rate=learning_rate, clipnorm=clipnorm or None, use_ema=bool(ema),
                                 ema_momentum=ema or 0.99)


def callbacks(run_dir: Path, monitor: str, patience: int, first: list | None = None, ema: bool = False) -> list:
    """Validation metrics (``first``), best checkpoint and early stopping on ``monitor`` (higher is better),
    a CSV history and TensorBoard logs, all under ``run_dir``. With ``ema``, the averaged weights are the ones
    validated and checkpointed."""
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    return [
        *([keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if ema else []),
        *(first or []),
        keras.callbacks.ModelCheckpoint(
            str(run_dir / "checkpoints" / "best.weights.h5"), monitor=monitor, mode="max",
            save_best_only=True, save_weights_only=True,
        ),
        keras.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=patience),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv")),
        keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False),
    ]


@contextlib.contextmanager
def task_run(config, task: str):
    """Opens a task's run: seeds everything, quiets the expected warnings, and yields the staged run dir (see
    ``export.rundir.staged``) with ``config.json`` written and stdout copied into ``train.log``."""
    from export.rundir import staged

    set_seed(config.seed)
    quiet_warnings()
    with staged(config.out) as run_dir, training_log(run_dir / "train.log"):
        config_json = json.dumps({"task": task, **dataclasses.asdict(config)}, indent=2)
        (run_dir / "config.json").write_text(config_json)
        yield run_dir
