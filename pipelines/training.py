"""Training settings shared by every task: seeding, Adam with gradient clipping, and the callbacks."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sys
import time
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


# --------------------------------------------------------------------------------------------------------------------
# Distributed, resumable, mixed-precision runs (``--strategy``, ``--workers``, ``--resume``, ``--mixed-precision``)


@dataclasses.dataclass(frozen=True)
class TrainingOptions:
    """Settings every scalable task shares; a task's config dataclass inherits them (their flags are listed last)."""

    strategy: str = dataclasses.field(
        default="auto", metadata={"help": "auto, one_device, mirrored (this machine's GPUs) or multi_worker"})
    workers: str | None = dataclasses.field(
        default=None, metadata={"help": "multi_worker cluster, host:port,host:port,... (else TF_CONFIG)"})
    task_index: int | None = dataclasses.field(default=None, metadata={"help": "this worker's index in --workers"})
    resume: bool = dataclasses.field(
        default=True, metadata={"help": "carry on from the state a killed run saved in OUT.resume/"})
    mixed_precision: bool = dataclasses.field(
        default=False, metadata={"help": "mixed_float16 compute (GPU); outputs and loss stay float32"})


TRAINING_OPTION_FIELDS = tuple(f.name for f in dataclasses.fields(TrainingOptions))


@dataclasses.dataclass
class Run:
    """An open training run: its staged dir, strategy, place in the cluster and resume folder."""

    dir: Path
    strategy: object
    worker: object
    resume_dir: Path

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync


@contextlib.contextmanager
def distributed_run(config, task: str):
    """Like :func:`task_run`, for a config with :class:`TrainingOptions`: also creates the strategy and sets the
    precision policy, and yields a :class:`Run`.

    Only the chief (worker 0) writes the run dir; the other workers train in a temporary dir that is discarded.
    The resume state (``OUT.resume/``, per worker in a cluster) is removed once the run has completed.
    """
    import tempfile

    from export.rundir import staged
    from pipelines import distribute

    strategy, worker = distribute.make_strategy(config.strategy, config.workers, config.task_index)
    set_seed(config.seed)
    quiet_warnings()
    keras.mixed_precision.set_global_policy("mixed_float16" if config.mixed_precision else "float32")
    resume_dir = Path(f"{Path(config.out).absolute()}.resume")
    if worker.count > 1:
        resume_dir = resume_dir / f"worker-{worker.index}"
    try:
        with contextlib.ExitStack() as stack:
            if worker.is_chief:
                run_dir = stack.enter_context(staged(config.out))
            else:
                run_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"{task}-worker-")))
            stack.enter_context(training_log(run_dir / "train.log"))
            config_json = json.dumps({"task": task, **dataclasses.asdict(config)}, indent=2)
            (run_dir / "config.json").write_text(config_json)
            yield Run(run_dir, strategy, worker, resume_dir)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    shutil.rmtree(resume_dir, ignore_errors=True)
    if worker.count > 1 and resume_dir.parent.is_dir() and not any(resume_dir.parent.iterdir()):
        resume_dir.parent.rmdir()


@contextlib.contextmanager
def _ema_weights(model, ema: bool):
    """Swaps the optimizer's averaged weights into the model for the duration (no-op without EMA)."""
    if not ema:
        yield
        return
    swap = keras.callbacks.SwapEMAWeights()
    swap.set_model(model)
    swap._swap_variables()
    try:
        yield
    finally:
        swap._swap_variables()


def _save_weights_atomic(model, path: Path) -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    model.save_weights(tmp)
    os.replace(tmp, path)


def fit_epochs(model, make_dataset, run: Run, config, *, monitor: str, patience: int, validation=(),
               ema: bool = False) -> dict:
    """Trains epoch by epoch, saving the whole training state after each one (see ``pipelines.resume``).

    The data of epoch ``e`` is ``make_dataset(e)``, which must depend only on the seed and ``e`` (use
    :func:`epoch_dataset`): so a resumed run sees exactly the batches, word dropout and dropout masks the
    uninterrupted run would have, and ends with the same weights.

    Args:
      model: compiled (inside ``run.strategy.scope()``).
      make_dataset: epoch → the epoch's training dataset (batched at ``config.batch_size`` × replicas).
      run: from :func:`distributed_run`.
      config: the task config (``epochs``, ``resume``, and the settings a saved state must match).
      monitor: the validation score to maximise (written into the logs by ``validation`` callbacks).
      patience: epochs without a better ``monitor`` before stopping.
      validation: callbacks whose ``on_epoch_end`` adds ``monitor`` to the logs.
      ema: validate and keep the optimizer's averaged weights (Adam ``use_ema``).

    Returns:
      The loop's record: epochs run, best score and epoch, per-epoch history. The best weights are in
      ``run.dir/checkpoints/best.weights.h5`` and ``history.csv`` holds every epoch, resumed ones included.
    """
    from pipelines.resume import ResumeState

    state = ResumeState(run.resume_dir, config)
    if not config.resume:
        state.clear()
    best_path = run.resume_dir / "best.weights.h5"
    loop = state.load(model)
    if loop is None:
        loop = {"epoch": 0, "best": None, "best_epoch": None, "wait": 0, "history": []}
    elif loop["epoch"]:
        print(f"resuming from {run.resume_dir}: {loop['epoch']} epoch(s) done, best {monitor} {loop['best']}")
    logs_dir = str(run.dir / "logs")
    for epoch in range(loop["epoch"], config.epochs):
        if loop["wait"] >= patience:
            break
        started = time.time()
        history = model.fit(make_dataset(epoch), initial_epoch=epoch, epochs=epoch + 1, verbose=0, shuffle=False,
                            callbacks=[keras.callbacks.TensorBoard(logs_dir, write_graph=False)])
        logs = {name: float(values[-1]) for name, values in history.history.items()}
        print(f"epoch {epoch + 1}/{config.epochs} - {time.time() - started:.0f}s - "
              + " - ".join(f"{name}: {value:.4f}" for name, value in logs.items()))
        with _ema_weights(model, ema):
            for callback in validation:
                callback.set_model(model)
                callback.on_epoch_end(epoch, logs)
            if loop["best"] is None or logs[monitor] > loop["best"]:
                loop.update(best=logs[monitor], best_epoch=epoch, wait=0)
                run.resume_dir.mkdir(parents=True, exist_ok=True)
                _save_weights_atomic(model, best_path)
            else:
                loop["wait"] += 1
        loop["epoch"] = epoch + 1
        loop["history"].append({"epoch": epoch, **logs})
        state.save(model, loop)
    if loop["wait"] >= patience:
        print(f"early stop: no better {monitor} for {patience} epochs (best {loop['best']:.4f} "
              f"after epoch {loop['best_epoch'] + 1})")
    print(f"weights checksum (worker {run.worker.index}): {weights_checksum(model)}")
    (run.dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(best_path, run.dir / "checkpoints" / "best.weights.h5")
    _write_history(run.dir / "history.csv", loop["history"])
    return loop


def weights_checksum(model) -> str:
    """SHA-256 over the model's weights: equal on every worker of a cluster, and between repeated seeded runs."""
    import hashlib

    import numpy as np

    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return digest.hexdigest()[:16]


def _write_history(path: Path, history: list[dict]) -> None:
    import csv

    names = ["epoch"] + sorted({k for row in history for k in row} - {"epoch"})
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        writer.writerows(history)


def epoch_dataset(make, seed: int, epoch: int, distributed: bool = False):
    """The training data of one epoch: a function of the run's seed and the epoch only.

    Args:
      make: seed → a dataset shuffled with ``reshuffle_each_iteration`` (and seeded augmentation).
      distributed: several replicas or workers.

    On one replica it is ``make(seed)`` with its reshuffling advanced by ``epoch`` iterations (creating an iterator
    draws the next order), which are exactly the batches one ``fit`` over all the epochs would see. A strategy
    rebuilds the dataset it is given (and its reshuffling state), so a distributed run seeds each epoch with
    :func:`epoch_seed` instead.
    """
    if distributed:
        return make(epoch_seed(seed, epoch))
    dataset = make(seed)
    for _ in range(epoch):
        iter(dataset)
    return dataset


def epoch_seed(seed: int, epoch: int) -> int:
    """The data seed of one epoch (shuffle order, word dropout): a function of the run's seed and the epoch only."""
    return (seed * 1_000_003 + epoch * 7_919 + 1) % (2**31 - 1)


def float32_model(build, model):
    """A float32 copy of a mixed-precision ``model`` (``build()`` makes the same architecture), for export: the
    variables are float32 already, only the compute dtype changes. Returns ``model`` itself when it is float32."""
    if keras.mixed_precision.global_policy().name == "float32":
        return model
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        copy = build()
        copy.set_weights(model.get_weights())
    finally:
        keras.mixed_precision.set_global_policy(policy)
    return copy
