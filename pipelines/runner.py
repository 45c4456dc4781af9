"""The one runner: every task's run goes through :func:`run` and every training phase through :func:`train`.

:func:`open_run` seeds everything, creates the tf.distribute strategy and precision policy, and stages the run dir
(nothing appears at ``--out`` until the whole run has succeeded). :func:`train` is the one epoch loop:

- it saves the whole training state after every epoch (``OUT.resume/<phase>/``, see ``pipelines.resume``), so the
  same command after a ``kill -9`` carries on from the last saved epoch and ends with the same weights;
- it stops early (``patience``) or on the time budget (``--max-minutes``);
- it validates with the task's dev scores (with the EMA weights when ``--ema``), keeps the best (or the last)
  weights, and writes ``history.csv`` and TensorBoard scalars (the dev scores included);
- it draws Keras' progress bar on a terminal and prints one line per epoch.

:func:`run` drives a :class:`pipelines.task.Task` from data to export: data, preprocessor, model, training,
evaluation, export with parity, ``metrics.json``. :func:`main` is every task's command line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import keras

from pipelines.common import build_parser, from_args, is_terminal
from pipelines.readers import DataError
from pipelines.training import epoch_dataset, quiet_warnings, set_seed, training_log, weights_checksum

# Tests set this to an epoch count to simulate ``kill -9`` right after that epoch's state is saved.
KILL_AFTER_EPOCHS: int | None = None


class SimulatedKill(BaseException):
    """Raised by :func:`train` when :data:`KILL_AFTER_EPOCHS` is reached (never in a normal run)."""


@dataclasses.dataclass
class Run:
    """An open run: its staged dir, strategy, place in the cluster, resume folder, and start time."""

    dir: Path
    strategy: object
    worker: object
    resume_dir: Path
    config: object
    started: float = dataclasses.field(default_factory=time.time)

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync

    @property
    def is_chief(self) -> bool:
        return self.worker.is_chief

    @property
    def distributed(self) -> bool:
        return self.replicas > 1

    def epoch_data(self, make: Callable, epoch: int):
        """The training data of ``epoch`` from ``make(seed) -> dataset`` (see ``training.epoch_dataset``)."""
        from pipelines import distribute

        def made(seed):
            dataset = make(seed)
            return distribute.distributed_options(dataset) if self.worker.count > 1 else dataset

        return epoch_dataset(made, self.config.seed, epoch, distributed=self.distributed)


@contextlib.contextmanager
def open_run(config, task: str):
    """Opens a run for a config that extends ``CommonOptions``; yields a :class:`Run`.

    Only the chief (worker 0) writes the run dir; the other workers train in a temporary dir that is discarded.
    The resume state (``OUT.resume/``, per worker in a cluster) is removed once the run has completed.
    """
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
            yield Run(run_dir, strategy, worker, resume_dir, config)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    shutil.rmtree(resume_dir, ignore_errors=True)
    if worker.count > 1 and resume_dir.parent.is_dir() and not any(resume_dir.parent.iterdir()):
        resume_dir.parent.rmdir()


# --------------------------------------------------------------------------------------------------------------------
# The epoch loop


@contextlib.contextmanager
def ema_weights(model, ema: bool):
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


class _Scalars:
    """TensorBoard scalars under ``logs/<phase>/train`` and ``logs/<phase>/validation`` (tf.summary)."""

    def __init__(self, folder: Path):
        import tensorflow as tf

        self.writers = {kind: tf.summary.create_file_writer(str(folder / kind)) for kind in ("train", "validation")}

    def write(self, epoch: int, train: dict, dev: dict) -> None:
        import tensorflow as tf

        for kind, values in (("train", train), ("validation", dev)):
            with self.writers[kind].as_default():
                for name, value in values.items():
                    tf.summary.scalar(name, value, step=epoch)
            self.writers[kind].flush()


def train(model, make_dataset: Callable, run: Run, *, validate: Callable[[], dict] | None = None,
          monitor: str | None = None, patience: int | None = None, epochs: int | None = None,
          phase: str = "train", ema: bool | None = None, keep: str = "best", max_minutes: float | None = None,
          on_epoch_begin: Callable[[int], None] | None = None, fingerprint: dict | None = None) -> dict:
    """Trains ``model`` epoch by epoch, resumably. The one training loop of every task.

    Args:
      model: compiled (inside ``run.strategy.scope()``); the variables trained and saved.
      make_dataset: epoch → that epoch's training data; it must depend only on the seed and the epoch (use
        ``run.epoch_data``), so that a resumed run sees exactly the batches the uninterrupted one would.
      run: from :func:`open_run`.
      validate: () → the dev scores (a dict of floats, ``monitor`` among them), computed on ``model`` after each
        epoch; None: no validation (the last weights are kept).
      monitor: the dev score to maximise (``validate()``'s key); early stopping and the best weights follow it.
      patience: epochs without a better ``monitor`` before stopping (default ``config.patience``).
      epochs: most epochs (default ``config.epochs``).
      phase: the name of this training phase; a task with several (a pre-training, a baseline, restarts) calls
        :func:`train` once per phase, and each resumes on its own. ``train`` writes ``history.csv``; another phase
        writes ``history_<phase>.csv``; the weights it ends with are saved as ``checkpoints/<phase>.weights.h5``.
      ema: validate and keep the optimizer's averaged weights (default: ``config.ema > 0``).
      keep: ``best`` (the best dev epoch's weights end in ``model``) or ``last``.
      max_minutes: the time budget of this phase (default ``config.max_minutes``; 0: none), counted over
        resumes too; checked after each epoch.
      on_epoch_begin: epoch → None, called before each epoch (an epoch-driven schedule: a function of the epoch
        only, so a resumed run follows it too).
      fingerprint: extra settings that a saved state must match.

    Returns:
      The loop's record: ``epoch`` (epochs run), ``best``/``best_epoch`` (of ``monitor``), ``stopped`` (why it
      ended: ``epochs``, ``patience`` or ``budget``), ``seconds``, ``history`` (one dict per epoch) and ``checksum`` (SHA-256 of the final weights, also in
      ``checkpoints/checksums.json`` by phase: equal between an uninterrupted run and a killed-and-resumed one).
    """
    from pipelines.resume import ResumeState

    config = run.config
    epochs = config.epochs if epochs is None else epochs
    patience = config.patience if patience is None else patience
    ema = bool(config.ema) if ema is None else ema
    budget = 60 * (config.max_minutes if max_minutes is None else max_minutes)
    if validate is not None and monitor is None:
        raise ValueError("train(validate=...) needs the monitor to maximise")
    if keep not in ("best", "last"):
        raise ValueError(f"keep must be best or last, got {keep!r}")
    resume_dir = run.resume_dir / phase
    state = ResumeState(resume_dir, config, extra=dict(fingerprint or {}, phase=phase))
    if not config.resume:
        state.clear()
    best_path = resume_dir / "best.weights.h5"
    loop = state.load(model)
    if loop is None:
        loop = {"epoch": 0, "best": None, "best_epoch": None, "wait": 0, "seconds": 0.0, "stopped": None,
                "history": []}
    else:
        if (loop["stopped"] == "epochs" and loop["epoch"] < epochs) or \
                (loop["stopped"] == "budget" and (not budget or loop["seconds"] < budget)):
            loop["stopped"] = None  # resumed with more --epochs or a larger --max-minutes: carry on
    if loop["epoch"]:
        print(f"resuming from {resume_dir}: {loop['epoch']} epoch(s) done"
              + (f", best {monitor} {loop['best']:.4f}" if loop["best"] is not None else ""))
    scalars = _Scalars(run.dir / "logs" / phase) if run.is_chief else None
    verbose = 1 if is_terminal() and not config.quick else 0
    while loop["stopped"] is None:
        epoch = loop["epoch"]
        if on_epoch_begin is not None:
            on_epoch_begin(epoch)
        started = time.time()
        history = model.fit(make_dataset(epoch), initial_epoch=epoch, epochs=epoch + 1, verbose=verbose,
                            shuffle=False)
        logs = {name: float(values[-1]) for name, values in history.history.items()}
        dev = {}
        with ema_weights(model, ema):
            if validate is not None:
                dev = {name: float(value) for name, value in validate().items()}
                if loop["best"] is None or dev[monitor] > loop["best"]:
                    loop.update(best=dev[monitor], best_epoch=epoch, wait=0)
                    resume_dir.mkdir(parents=True, exist_ok=True)
                    _save_weights_atomic(model, best_path)
                else:
                    loop["wait"] += 1
        loop["seconds"] += time.time() - started
        loop["epoch"] = epoch + 1
        loop["history"].append({"epoch": epoch, **logs, **{f"val_{k}": v for k, v in dev.items()}})
        print(f"{phase} epoch {epoch + 1}/{epochs} - {time.time() - started:.0f}s - "
              + " - ".join(f"{name}: {value:.4f}" for name, value in logs.items())
              + "".join(f" - val_{name}: {value:.4f}" for name, value in dev.items()))
        if scalars is not None:
            scalars.write(epoch, logs, dev)
        if loop["epoch"] >= epochs:
            loop["stopped"] = "epochs"
        elif validate is not None and loop["wait"] >= patience:
            loop["stopped"] = "patience"
            print(f"early stop: no better {monitor} for {patience} epochs (best {loop['best']:.4f} after epoch "
                  f"{loop['best_epoch'] + 1})")
        elif budget and loop["seconds"] >= budget:
            loop["stopped"] = "budget"
            print(f"time budget: {loop['seconds'] / 60:.1f} of {budget / 60:g} minutes used after {loop['epoch']} "
                  f"epoch(s); stopping")
        state.save(model, loop)
        if KILL_AFTER_EPOCHS is not None and loop["epoch"] == KILL_AFTER_EPOCHS and loop["stopped"] is None:
            raise SimulatedKill(f"killed after epoch {loop['epoch']}")
    if validate is not None and keep == "best" and best_path.is_file():
        model.load_weights(best_path)  # saved while the averaged weights were swapped in, with --ema
    elif ema:
        _set_trainable_from_ema(model)
    loop["checksum"] = weights_checksum(model)
    print(f"{phase}: weights checksum (worker {run.worker.index}): {loop['checksum']}")
    if run.is_chief:
        checkpoints = run.dir / "checkpoints"
        checkpoints.mkdir(exist_ok=True)
        _save_weights_atomic(model, checkpoints / f"{phase}.weights.h5")
        sums = json.loads((checkpoints / "checksums.json").read_text()) if (checkpoints / "checksums.json").is_file() else {}
        (checkpoints / "checksums.json").write_text(json.dumps({**sums, phase: loop["checksum"]}, indent=2) + "\n")
        _write_history(run.dir / ("history.csv" if phase == "train" else f"history_{phase}.csv"), loop["history"])
    return loop


def _set_trainable_from_ema(model) -> None:
    """Copies the optimizer's averaged weights into the model's trainable weights (what is evaluated and exported)."""
    optimizer = model.optimizer
    for variable, average in zip(model.trainable_variables, optimizer._model_variables_moving_average):
        variable.assign(average)


def _write_history(path: Path, history: list[dict]) -> None:
    import csv

    names = ["epoch"] + sorted({k for row in history for k in row} - {"epoch"})
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        writer.writerows(history)


# --------------------------------------------------------------------------------------------------------------------
# A task from data to export


def write_metrics(run_dir: Path, metrics: dict) -> None:
    """``metrics.json``: numbers only (and a few short strings), indented, written once at the end of a run."""
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")


def run(task, config) -> dict:
    """Runs ``task`` with ``config``: checks the settings, reads or generates the data, opens the run, prepares,
    trains, evaluates, exports with parity and writes ``metrics.json``. Returns the metrics; the run dir appears
    only when everything succeeded.

    Raises:
      DataError: a setting out of range, or data that cannot be used (the message names the problem).
    """
    from pipelines.task import Context

    config.check()
    config = config.resolved()
    splits = task.data(config)
    with open_run(config, task.name) as opened:
        ctx = Context(task=task, config=config, splits=splits, run=opened)
        ctx.prep = task.preprocess(ctx)
        model = task.fit(ctx)
        train_seconds = round(time.time() - opened.started, 1)
        metrics = dict(task.evaluate(ctx, model))
        metrics["train_seconds"] = train_seconds
        if not opened.is_chief:
            return metrics  # the chief writes the run dir and the export
        if config.export:
            metrics.update(task.export(ctx, model))
        write_metrics(opened.dir, metrics)
        if config.export:  # the model card (README.md) and tokenizer conformance file
            from serving import model_card

            model_card.write(opened.dir, Path(config.out).name, task.demo_input)
    return metrics


def main(task, argv: list[str] | None = None) -> int:
    """A task's command line: parses ``argv`` into the task's config, runs it, prints the metrics as JSON and,
    after an export, the task's demo input through onnxruntime. Returns the exit status (2: refused input)."""
    parser = build_parser(task.config_class, task.description(), choices=task.choices(),
                          prog=f"python -m pipelines.{task.name}")
    config = from_args(task.config_class, parser.parse_args(argv))
    try:
        metrics = run(task, config)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(metrics, indent=2))
    if config.export and "onnx_max_abs_diff" in metrics and task.demo_input is not None:
        import serving

        predictor = serving.load(config.out)
        print(f"\nonnxruntime, {config.out}:\n  {task.demo_input!r}\n  {predictor.predict(task.demo_input)}")
    return 0
