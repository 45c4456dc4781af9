"""Lesson 3: exploding gradients, and gradient clipping.

A vanilla RNN (Keras ``SimpleRNN``, tanh) reads a sequence whose first value it must report at the end
(:func:`pipelines.lessons.tasks.recall_value`). It is trained with plain SGD at a learning rate that diverges
without clipping, four times from the same initial weights on the same batches: no clipping, ``clipnorm``
(Keras: each weight tensor's gradient norm capped on its own), ``global_clipnorm`` (the norm of all gradients
together capped: the textbook rule) and ``clipvalue`` (each gradient element capped). Loss and gradient norm
(before clipping) are recorded at every step; a run that reaches an inf or NaN loss or gradient is stopped there.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from pipelines.lessons import plots, report
from pipelines.lessons.tasks import recall_value

NAME = "clipping"
RUNS = ("none", "clipnorm", "global_clipnorm", "clipvalue")
COLORS = {"none": "C2", "clipnorm": "C0", "global_clipnorm": "C4", "clipvalue": "C1"}  # the lecture's green / blue


@dataclasses.dataclass(frozen=True)
class Settings:
    """Args: length: sequence length; units: hidden units; batch / steps: SGD batches; learning_rate: SGD's;
    clip: the threshold of every clipped run; noise: the distractors' half-width; eval_size: held-out examples."""

    length: int = 50
    units: int = 32
    batch: int = 32
    steps: int = 600
    learning_rate: float = 0.1
    clip: float = 1.0
    noise: float = 0.5
    eval_size: int = 1024

    @classmethod
    def quick(cls) -> "Settings":
        """Shorter sequences and fewer steps."""
        return cls(length=30, steps=100, eval_size=256)


def train(settings: Settings, clipping: str, seed: int) -> dict:
    """Trains the RNN once.

    Args:
      settings: see :class:`Settings`.
      clipping: one of :data:`RUNS`.
      seed: initial weights and batches (the same for every ``clipping``).

    Returns:
      ``loss``, ``grad_norm`` (global, before clipping) and ``recurrent_grad_norm`` per step, ``diverged_at``
      (the 1-based step whose loss or gradient was inf / NaN; None), ``final_loss`` (mean of the last 20 steps)
      and ``eval_loss`` (held-out mean squared error; None after a divergence).
    """
    import keras
    import tensorflow as tf

    from models.lessons import sequence_classifier
    from pipelines.training import set_seed

    if clipping not in RUNS:
        raise ValueError(f"unknown clipping {clipping!r}; choose from {', '.join(RUNS)}")
    set_seed(seed)
    model = sequence_classifier("rnn", settings.units, settings.length, 2, 1, name="vanilla_rnn")
    options = {} if clipping == "none" else {clipping: settings.clip}
    optimizer = keras.optimizers.SGD(settings.learning_rate, **options)
    recurrent = model.get_layer("recurrent").cell.recurrent_kernel
    index = [v.path for v in model.trainable_variables].index(recurrent.path)

    @tf.function(jit_compile=True)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x) - y))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss, tf.linalg.global_norm(grads), tf.norm(grads[index])

    rng = np.random.default_rng(seed)
    out = {"loss": [], "grad_norm": [], "recurrent_grad_norm": [], "diverged_at": None}
    for i in range(settings.steps):
        x, y = recall_value(settings.batch, settings.length, rng, settings.noise)
        loss, norm, recurrent_norm = (float(v) for v in step(x, y))
        out["loss"].append(loss)
        out["grad_norm"].append(norm)
        out["recurrent_grad_norm"].append(recurrent_norm)
        if not (math.isfinite(loss) and math.isfinite(norm)):
            out["diverged_at"] = i + 1
            break
    out["final_loss"] = None if out["diverged_at"] else float(np.mean(out["loss"][-20:]))
    out["eval_loss"] = None
    if out["diverged_at"] is None:
        x, y = recall_value(settings.eval_size, settings.length, np.random.default_rng(seed + 1), settings.noise)
        out["eval_loss"] = float(np.mean(np.square(model.predict(x, verbose=0, batch_size=256) - y)))
    return out


def run(settings: Settings = Settings(), seed: int = 0) -> dict:
    """The four training runs (see :func:`train`).

    Returns:
      ``runs`` (name → :func:`train` output), ``baseline_loss`` (predicting 0: 1/3), ``settings``, ``summary``.
    """
    runs = {name: train(settings, name, seed) for name in RUNS}
    summary = {"baseline_loss": 1 / 3}
    for name, out in runs.items():
        finite = [n for n in out["grad_norm"] if math.isfinite(n)]
        summary.update({
            f"{name}_diverged_at": out["diverged_at"], f"{name}_final_loss": out["final_loss"],
            f"{name}_eval_loss": out["eval_loss"], f"{name}_max_grad_norm": max(finite) if finite else None,
            f"{name}_initial_grad_norm": out["grad_norm"][0],
        })
    return {"settings": dataclasses.asdict(settings), "baseline_loss": 1 / 3, "runs": runs, "summary": summary}


def table(result: dict) -> str:
    """One row per run: where it diverged, or its final and held-out loss."""
    s = result["settings"]
    rows = []
    for name, out in result["runs"].items():
        finite = [n for n in out["grad_norm"] if math.isfinite(n)]
        rows.append([name, f"step {out['diverged_at']}" if out["diverged_at"] else "no",
                     max(finite) if finite else None, out["final_loss"], out["eval_loss"]])
    return (f"SimpleRNN {s['units']} units, length {s['length']}, SGD learning rate {s['learning_rate']}, "
            f"{s['steps']} steps of {s['batch']}; clip threshold {s['clip']}; predicting 0 scores "
            f"{result['baseline_loss']:.3f}\n"
            + report.table(["clipping", "inf/NaN", "max |grad|", "final loss", "held-out loss"], rows))


def plot(result: dict, path: Path) -> None:
    """Loss and gradient norm per step for every run (log scale); a divergence is marked with an x."""
    fig, axes = plots.figure(11, 4, ncols=2)
    for ax, key in zip(axes, ("loss", "grad_norm")):
        kept = [v for out in result["runs"].values() if not out["diverged_at"] for v in out[key]]
        top = max(kept) * 30 if kept else None  # a diverging run leaves the plot through the top
        for name, out in sorted(result["runs"].items(), key=lambda item: item[0] == "none"):  # no clipping on top
            values = np.asarray(out[key], dtype=float)
            steps = np.arange(1, len(values) + 1)
            finite = np.isfinite(values)
            ax.semilogy(steps[finite], values[finite], color=COLORS[name], lw=0.8, alpha=0.9,
                        label=name if name != "none" else "no clipping")
            if out["diverged_at"]:
                where = steps[-1] if top is None else steps[np.argmax(~finite | (values > top))]
                ax.annotate(f"off the scale; inf/NaN at step {out['diverged_at']}", xy=(where, top or values[finite][-1]),
                            xytext=(where + 0.06 * len(out["loss"]) + 10, (top or values[finite][-1]) / 30),
                            color=COLORS[name], fontsize=9, arrowprops={"arrowstyle": "->", "color": COLORS[name]})
        if top is not None:
            ax.set_ylim(top=top)
    axes[0].axhline(result["baseline_loss"], color="0.5", ls="--", lw=1, label="predicting 0")
    axes[0].set_title("training loss (mean squared error)")
    axes[1].set_title("gradient norm, before clipping")
    for ax in axes:
        ax.set_xlabel("SGD step")
        ax.legend(fontsize=8)
    fig.suptitle(f"vanilla RNN, length {result['settings']['length']}, SGD learning rate "
                 f"{result['settings']['learning_rate']}", fontsize=11)
    plots.save(fig, path)
