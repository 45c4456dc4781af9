"""Lesson 6: a memory the network reads and writes "like a Turing machine" (Neural Turing Machine, Graves 2014).

Two of the paper's tasks, on random bit vectors:

- copy: ``L`` vectors of ``width`` bits, then a delimiter step; the network must then output the ``L`` vectors
  again, with nothing more on its input (:func:`copy_task`). Trained on ``L = 1..train_max`` (lengths mixed in
  a batch, padded to one shape), tested on lengths up to several times longer: generalising to longer sequences
  is the NTM's headline result, where an LSTM (here with 2.5 times the NTM's parameters) breaks down past the
  lengths it was trained on.
- associative recall: 2 to ``max_items`` items of ``item_steps`` vectors, each after a delimiter; then a query
  delimiter, one of the items (not the last), the delimiter again; the answer is the item that followed the
  queried one (:func:`recall_task`).

Both models (:func:`models.ntm.ntm_model` and an LSTM, :func:`models.recurrent.recurrent_classifier`) are
trained with Adam and ``clipnorm`` (NTMs are notorious for exploding gradients), sigmoid cross-entropy on the
answer steps only; errors are counted as wrong bits per sequence. The figure shows the training losses, copy
errors against length, and the NTM's write and read weightings over time on a copy longer than any it was
trained on.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from pipelines.lessons import plots, report

NAME = "ntm"
MODELS = ("ntm", "lstm")
LABELS = {"ntm": "NTM", "lstm": "LSTM"}
COLORS = {"ntm": "C1", "lstm": "C0"}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Args: width: bits per vector; train_max: longest copy trained on; test_lengths: copy lengths evaluated;
    max_items / item_steps: associative recall's items; controller_units / memory_size / memory_width: the NTM;
    lstm_units: the LSTM baseline; batch / steps / learning_rate / clipnorm: Adam, per task and model;
    eval_size: held-out sequences per length; jit: XLA-compile the training step (fast steps, slow start)."""

    width: int = 8
    train_max: int = 10
    test_lengths: tuple = (5, 10, 20, 30, 40)
    max_items: int = 6
    item_steps: int = 3
    controller_units: int = 64
    memory_size: int = 48
    memory_width: int = 16
    lstm_units: int = 128
    batch: int = 32
    steps: int = 3000
    learning_rate: float = 3e-3
    clipnorm: float = 10.0
    eval_size: int = 64
    jit: bool = True
    seed_offset: int = 0

    @classmethod
    def quick(cls) -> "Settings":
        """Short sequences, a small memory, a few dozen steps (a smoke run: it does not learn the tasks)."""
        return cls(width=4, train_max=3, test_lengths=(3, 6), max_items=3, item_steps=2, controller_units=16,
                   memory_size=8, memory_width=6, lstm_units=16, batch=8, steps=30, eval_size=16, jit=False)


# --------------------------------------------------------------------------------------------------------------------
# The tasks


def copy_task(lengths, width: int, rng: np.random.Generator, steps: int | None = None):
    """Copy sequences: per example ``L`` random bit vectors, a delimiter, then ``L`` answer steps.

    Args:
      lengths: one copy length per example.
      width: bits per vector.
      rng: the random generator.
      steps: total steps (padding at the end); default ``2 * max(lengths) + 1``.

    Returns:
      ``x`` float32 ``[batch, steps, width + 1]`` (the last channel marks the delimiter), ``y`` float32
      ``[batch, steps, width]`` (the vectors again at the answer steps) and ``weights`` float32
      ``[batch, steps]`` (1 at the answer steps).
    """
    lengths = np.asarray(lengths)
    steps = steps or 2 * int(lengths.max()) + 1
    if 2 * lengths.max() + 1 > steps:
        raise ValueError(f"{steps} steps cannot hold a copy of length {lengths.max()}")
    x = np.zeros((len(lengths), steps, width + 1), "float32")
    y = np.zeros((len(lengths), steps, width), "float32")
    weights = np.zeros((len(lengths), steps), "float32")
    for i, n in enumerate(lengths):
        bits = rng.integers(0, 2, (n, width)).astype("float32")
        x[i, :n, :width] = bits
        x[i, n, width] = 1
        y[i, n + 1: 2 * n + 1] = bits
        weights[i, n + 1: 2 * n + 1] = 1
    return x, y, weights


def recall_steps(items: int, item_steps: int) -> int:
    """Steps of an associative-recall sequence of ``items`` items."""
    return items * (item_steps + 1) + item_steps + 2 + item_steps


def recall_task(items, width: int, item_steps: int, rng: np.random.Generator, steps: int | None = None):
    """Associative recall: items after delimiters (channel ``width``), the query between query delimiters
    (channel ``width + 1``), then ``item_steps`` answer steps whose target is the item after the queried one.

    Args:
      items: number of items per example (>= 2).
      width: bits per vector.
      item_steps: vectors per item.
      rng: the random generator.
      steps: total steps (padding at the end); default the longest example's.

    Returns:
      ``x`` float32 ``[batch, steps, width + 2]``, ``y`` float32 ``[batch, steps, width]``, ``weights`` float32
      ``[batch, steps]`` (1 at the answer steps).
    """
    items = np.asarray(items)
    if items.min() < 2:
        raise ValueError("associative recall needs at least 2 items")
    steps = steps or recall_steps(int(items.max()), item_steps)
    x = np.zeros((len(items), steps, width + 2), "float32")
    y = np.zeros((len(items), steps, width), "float32")
    weights = np.zeros((len(items), steps), "float32")
    for i, k in enumerate(items):
        bits = rng.integers(0, 2, (k, item_steps, width)).astype("float32")
        t = 0
        for item in bits:
            x[i, t, width] = 1
            x[i, t + 1: t + 1 + item_steps, :width] = item
            t += item_steps + 1
        query = rng.integers(0, k - 1)
        x[i, t, width + 1] = 1
        x[i, t + 1: t + 1 + item_steps, :width] = bits[query]
        x[i, t + 1 + item_steps, width + 1] = 1
        t += item_steps + 2
        y[i, t: t + item_steps] = bits[query + 1]
        weights[i, t: t + item_steps] = 1
    return x, y, weights


# --------------------------------------------------------------------------------------------------------------------
# Training


def build(model_name: str, settings: Settings, features: int):
    """The NTM or the LSTM baseline, both to per-step logits of ``settings.width`` bits."""
    from models.ntm import ntm_model
    from models.recurrent import recurrent_classifier

    if model_name == "ntm":
        return ntm_model(features, settings.width, controller_units=settings.controller_units,
                         memory_size=settings.memory_size, memory_width=settings.memory_width)
    return recurrent_classifier("lstm", settings.lstm_units, None, features, settings.width, return_sequences=True)


def logits_of(model, x, **kwargs):
    """The per-step logits of either model (the NTM returns a dict with its weightings too)."""
    out = model(x, **kwargs)
    return out["logits"] if isinstance(out, dict) else out


class Trainer:
    """A model with its Adam (``clipnorm``) and compiled train / evaluation functions, trained afresh for each task
    from the same initial weights (both tasks feed ``width + 2`` channels, so each function is traced once)."""

    def __init__(self, model_name: str, settings: Settings):
        import keras
        import tensorflow as tf

        features = settings.width + 2
        self.model = model = build(model_name, settings, features)
        self.optimizer = optimizer = keras.optimizers.Adam(settings.learning_rate, clipnorm=settings.clipnorm)
        optimizer.build(model.trainable_variables)  # variables made before tracing: the step is traced once
        self.initial = ([v.numpy() for v in model.variables], [v.numpy() for v in optimizer.variables])
        spec = [tf.TensorSpec([None, None, features]), tf.TensorSpec([None, None, settings.width]),
                tf.TensorSpec([None, None])]

        def masked_loss(y, logits, weights):
            bits = tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logits)
            return tf.reduce_sum(tf.reduce_mean(bits, -1) * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)

        @tf.function(input_signature=spec, jit_compile=settings.jit)
        def step(x, y, weights):
            with tf.GradientTape() as tape:
                loss = masked_loss(y, logits_of(model, x, training=True), weights)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)
            return loss, tf.linalg.global_norm(grads)

        @tf.function(input_signature=spec)
        def evaluate(x, y, weights):
            logits = logits_of(model, x, training=False)
            wrong = tf.reduce_sum(tf.cast((logits > 0) != (y > 0.5), tf.float32), -1) * weights
            return masked_loss(y, logits, weights), tf.reduce_mean(tf.reduce_sum(wrong, -1))

        self.step, self.evaluate = step, evaluate

    def fit(self, batches, steps: int) -> dict:
        """Trains from the initial weights (and a fresh optimizer state) on ``steps`` batches from the
        ``batches()`` callable; returns every 10th step's loss and gradient norm (before clipping)."""
        for variable, value in zip(self.model.variables, self.initial[0]):
            variable.assign(value)
        for variable, value in zip(self.optimizer.variables, self.initial[1]):
            variable.assign(value)
        loss, grad_norm = [], []
        for i in range(steps):
            value, norm = self.step(*batches())
            if i % 10 == 0 or i == steps - 1:
                loss.append(float(value))
                grad_norm.append(float(norm))
        return {"loss": loss, "grad_norm": grad_norm, "params": self.model.count_params()}

    def score(self, x, y, weights) -> dict:
        """Held-out loss and wrong bits per sequence."""
        loss, errors = self.evaluate(x, y, weights)
        return {"eval_loss": float(loss), "bit_errors": float(errors)}


def _channels(x, width: int):
    """Copy inputs (``width + 1`` channels) padded with the recall task's query channel, always 0."""
    return np.concatenate([x, np.zeros(x.shape[:-1] + (width + 2 - x.shape[-1],), x.dtype)], axis=-1)


def run(settings: Settings = Settings(), seed: int = 0) -> dict:
    """Both models on both tasks.

    Returns:
      ``copy[model]`` (training curve, ``by_length``: held-out loss and bit errors per test length),
      ``recall[model]`` (training curve, held-out loss and bit errors), ``weights`` (the NTM's read and write
      weightings on one copy of the longest test length), ``settings`` and ``summary``.
    """
    import tensorflow as tf

    from pipelines.training import set_seed

    s = settings
    if max(s.test_lengths) + 1 > s.memory_size:
        raise ValueError(f"memory_size {s.memory_size} cannot hold a copy of length {max(s.test_lengths)}")
    copy_steps = 2 * s.train_max + 1
    recall_len = recall_steps(s.max_items, s.item_steps)
    result = {"settings": dataclasses.asdict(s), "copy": {}, "recall": {}}
    level = tf.get_logger().level
    tf.get_logger().setLevel("ERROR")  # evaluation at several lengths retraces nothing, but say so once
    try:
        for name in MODELS:
            set_seed(seed)
            trainer = Trainer(name, s)
            rng = np.random.default_rng(seed)

            def copy_batch(lengths, rng, steps=None):
                x, y, weights = copy_task(lengths, s.width, rng, steps)
                return _channels(x, s.width), y, weights

            curve = trainer.fit(lambda: copy_batch(rng.integers(1, s.train_max + 1, s.batch), rng, copy_steps),
                                s.steps)
            eval_rng = np.random.default_rng(seed + 1)
            curve["by_length"] = {n: trainer.score(*copy_batch(np.full(s.eval_size, n), eval_rng))
                                  for n in s.test_lengths}
            result["copy"][name] = curve
            if name == "ntm":
                x, _, _ = copy_batch([max(s.test_lengths)], np.random.default_rng(seed + 2))
                out = trainer.model(x, training=False)
                result["weights"] = {"length": max(s.test_lengths),
                                     "read": np.asarray(out["read_weights"])[0].tolist(),
                                     "write": np.asarray(out["write_weights"])[0].tolist()}

            rng = np.random.default_rng(seed + 10)
            curve = trainer.fit(lambda: recall_task(rng.integers(2, s.max_items + 1, s.batch), s.width,
                                                    s.item_steps, rng, recall_len), s.steps)
            curve.update(trainer.score(*recall_task(np.full(s.eval_size, s.max_items), s.width, s.item_steps,
                                                    np.random.default_rng(seed + 11))))
            result["recall"][name] = curve
    finally:
        tf.get_logger().setLevel(level)
    summary = {}
    for name in MODELS:
        summary[f"{name}_params"] = result["copy"][name]["params"]
        for n, scores in result["copy"][name]["by_length"].items():
            summary[f"{name}_copy_bit_errors_at_{n}"] = scores["bit_errors"]
        summary[f"{name}_recall_bit_errors"] = result["recall"][name]["bit_errors"]
        summary[f"{name}_max_grad_norm"] = max(result["copy"][name]["grad_norm"] + result["recall"][name]["grad_norm"])
    result["summary"] = summary
    result["copy"] = {name: {**curve, "by_length": {str(n): v for n, v in curve["by_length"].items()}}
                      for name, curve in result["copy"].items()}
    return result


def table(result: dict) -> str:
    """Wrong bits per sequence: copy at each test length, associative recall; parameters."""
    s = result["settings"]
    lengths = [str(n) for n in s["test_lengths"]]
    rows = []
    for name in MODELS:
        copy = result["copy"][name]
        rows.append([LABELS[name], str(copy["params"]),
                     *[report.number(copy["by_length"][n]["bit_errors"], 3) for n in lengths],
                     report.number(result["recall"][name]["bit_errors"], 3)])
    headers = ["model", "parameters", *[f"copy {n}{'*' if int(n) <= s['train_max'] else ''}" for n in lengths],
               f"recall ({s['max_items']} items)"]
    return (f"wrong bits per sequence ({s['width']}-bit vectors; copy trained on lengths 1-{s['train_max']}, * = "
            f"seen in training); Adam {s['learning_rate']}, clipnorm {s['clipnorm']}, {s['steps']} steps of "
            f"{s['batch']}\n" + report.table(headers, rows))


def plot(result: dict, path: Path) -> None:
    """Training losses; copy errors against length; the NTM's write and read weightings on a long copy."""
    s = result["settings"]
    fig, axes = plots.figure(16, 4, ncols=4)
    for name in MODELS:
        steps = np.arange(len(result["copy"][name]["loss"])) * 10
        axes[0].semilogy(steps, result["copy"][name]["loss"], color=COLORS[name], label=f"{LABELS[name]} copy")
        axes[0].semilogy(steps, result["recall"][name]["loss"], color=COLORS[name], ls="--",
                         label=f"{LABELS[name]} recall")
        lengths = s["test_lengths"]
        axes[1].plot(lengths, [result["copy"][name]["by_length"][str(n)]["bit_errors"] for n in lengths], "o-",
                     color=COLORS[name], label=f"{LABELS[name]} ({result['copy'][name]['params']} parameters)")
    axes[0].set_xlabel("training step")
    axes[0].set_ylabel("loss per bit (answer steps)")
    axes[0].set_title(f"Adam, clipnorm {s['clipnorm']}")
    axes[0].legend(fontsize=8)
    axes[1].axvspan(0.5, s["train_max"] + 0.5, color="0.9", label="trained lengths")
    axes[1].set_xlabel("copy length")
    axes[1].set_ylabel("wrong bits per sequence")
    axes[1].set_title("copying longer sequences than trained on")
    axes[1].legend(fontsize=8)
    weights = result["weights"]
    n = weights["length"]
    for ax, key in zip(axes[2:], ("write", "read")):
        ax.imshow(np.asarray(weights[key]).T, aspect="auto", cmap="gray_r", origin="lower", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.axvline(n + 0.5, color="C3", lw=0.8)
        ax.set_xlabel(f"step (input 0-{n - 1}, delimiter {n}, output {n + 1}-{2 * n})")
        ax.set_ylabel("memory row")
        ax.set_title(f"NTM {key} weighting, copy of length {n}")
    plots.save(fig, path)
