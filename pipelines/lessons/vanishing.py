"""Lesson 4: vanishing gradients, and what helps: LSTM, GRU, the Clockwork RNN and SCRN.

The task (:func:`pipelines.lessons.tasks.recall_symbol`): every step shows one of 4 symbols, the first one is
marked, and the answer is the first symbol, asked at every step; what is scored is the answer at the last step,
``length - 1`` steps after the symbol was seen. SimpleRNN, LSTM, GRU, the Clockwork RNN
(:class:`models.cells.ClockworkRNNCell`, modules with periods 1, 2, 4, 8) and SCRN (:class:`models.cells.SCRNCell`,
a context state with a fixed recurrence of 0.95) are trained at each length with the same parameter budget (each
cell gets the number of units whose recurrent layer comes closest to the LSTM's parameter count at ``units``), the
same Adam settings and the same number of steps on the same batches.

The gradient of the last step's loss with respect to each hidden state, ||dL/dh_t||, is measured at
initialization and after training through :func:`models.lessons.probed_classifier` (a zero probe added to every
hidden state; the gradient with respect to the probe is the gradient with respect to h_t).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from pipelines.lessons import plots, report
from pipelines.lessons.tasks import recall_symbol

NAME = "vanishing"
LABELS = {"rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU", "cwrnn": "Clockwork RNN", "scrn": "SCRN"}
COLORS = {"rnn": "C3", "lstm": "C0", "gru": "C2", "cwrnn": "C4", "scrn": "C1"}


def recurrent_params(cell: str, units: int, features: int) -> int:
    """Parameters of a one-layer recurrent layer of ``units`` over ``features`` inputs (Keras' defaults: GRU with
    ``reset_after``; the Clockwork RNN with min(4, units) modules, its block-triangular recurrent matrix counted by
    its free blocks; SCRN with ``units // 4`` context units)."""
    from models.cells import module_sizes

    if cell == "rnn":
        return units * (features + units + 1)
    if cell == "lstm":
        return 4 * units * (features + units + 1)
    if cell == "gru":
        return 3 * units * (features + units + 2)
    if cell == "cwrnn":
        sizes = module_sizes(units, min(4, units))
        return units * (features + 1) + sum(size * (units - sum(sizes[:i])) for i, size in enumerate(sizes))
    if cell == "scrn":
        context = max(1, units // 4)
        hidden = units - context
        return features * units + context * hidden + hidden * hidden + hidden
    raise ValueError(f"unknown cell {cell!r}")


def budget_units(cell: str, budget: int, features: int) -> int:
    """The number of units whose :func:`recurrent_params` comes closest to ``budget``."""
    return min(range(2, 4 * budget), key=lambda n: (abs(recurrent_params(cell, n, features) - budget), n))


@dataclasses.dataclass(frozen=True)
class Settings:
    """Args: lengths: sequence lengths; cells: ``rnn`` / ``lstm`` / ``gru`` / ``cwrnn`` / ``scrn``; units: the
    LSTM's hidden units, whose parameter count is every cell's budget (``equal_budget``; else all get ``units``);
    batch / steps / learning_rate / clipnorm: the training budget (Adam, global norm clipping), equal for all;
    symbols: alphabet size; eval_size: held-out examples (accuracy, loss and dL/dh_t)."""

    lengths: tuple = (20, 50, 100, 200)
    cells: tuple = ("rnn", "lstm", "gru", "cwrnn", "scrn")
    units: int = 32
    equal_budget: bool = True
    batch: int = 32
    steps: int = 500
    learning_rate: float = 0.01
    clipnorm: float = 1.0
    symbols: int = 4
    eval_size: int = 256

    @classmethod
    def quick(cls) -> "Settings":
        """Two lengths, a smaller budget, 16 units for every cell (the lecture's claims at equal units)."""
        return cls(lengths=(20, 60), units=16, equal_budget=False, steps=150, eval_size=128)


def gradient_probe(model):
    """A compiled function ``(x, y) -> (last-step logits, ||dL/dh_t|| for t = 1..length)`` for ``model``.

    L is the cross-entropy of the last step; each example's gradient with respect to h_t is measured (through
    :func:`models.lessons.probed_classifier`, which shares the model's weights, so the function keeps working
    as the model trains) and the norms are averaged over examples.

    Args:
      model: a :func:`models.recurrent.recurrent_classifier` returning sequences.

    Returns:
      The function; ``x`` is float32 ``[batch, length, features]``, ``y`` int32 ``[batch, length]`` (only
      ``y[:, -1]`` is used); any length.
    """
    import keras
    import tensorflow as tf

    from models.lessons import probed_classifier

    probed = probed_classifier(model)
    units = model.get_layer("recurrent").cell.units
    features = model.input.shape[-1]

    @tf.function(input_signature=[tf.TensorSpec([None, None, features]), tf.TensorSpec([None, None], tf.int32)])
    def probe(x, y):
        zeros = tf.zeros((tf.shape(x)[0], tf.shape(x)[1], units))
        with tf.GradientTape() as tape:
            tape.watch(zeros)
            logits = probed([x, zeros])[:, -1]
            # summed over examples: each example's gradient lands in its own row of the probe
            loss = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(y[:, -1], logits, from_logits=True))
        return logits, tf.reduce_mean(tf.norm(tape.gradient(loss, zeros), axis=-1), axis=0)

    return probe


def units_of(settings: Settings, cell: str) -> int:
    """The units ``cell`` gets: ``settings.units`` for the LSTM (or for all without ``equal_budget``), else the
    count that matches the LSTM's recurrent parameters (:func:`budget_units`)."""
    if not settings.equal_budget or cell == "lstm":
        return settings.units
    features = settings.symbols + 1
    return budget_units(cell, recurrent_params("lstm", settings.units, features), features)


class CellTrainer:
    """One cell's model, optimizer and compiled functions, trained afresh at each length from the same
    initial weights (the model takes any length, so its functions are traced once, not once per length)."""

    def __init__(self, settings: Settings, cell: str, seed: int):
        import keras
        import tensorflow as tf

        from models.recurrent import recurrent_classifier
        from pipelines.training import set_seed

        set_seed(seed)
        self.settings, self.cell, self.seed = settings, cell, seed
        features = settings.symbols + 1
        self.units = units_of(settings, cell)
        self.model = recurrent_classifier(cell, self.units, None, features, settings.symbols, return_sequences=True)
        self.optimizer = keras.optimizers.Adam(settings.learning_rate, global_clipnorm=settings.clipnorm)
        self.optimizer.build(self.model.trainable_variables)
        self.initial = ([v.numpy() for v in self.model.variables], [v.numpy() for v in self.optimizer.variables])
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        model, optimizer = self.model, self.optimizer

        @tf.function(input_signature=[tf.TensorSpec([None, None, features]), tf.TensorSpec([None, None], tf.int32)])
        def step(x, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x))  # every step's answer counts in training
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)
            return loss

        self.step = step
        self.probe = gradient_probe(self.model)

    def train(self, length: int) -> dict:
        """Trains from the initial weights (and a fresh optimizer state) at ``length``.

        Returns:
          ``params`` (the model's), ``recurrent_params`` (the recurrent layer's), ``accuracy`` and ``loss``
          (held-out, the last step), ``train_loss`` (every 10th step's batch loss), ``grad_init`` and
          ``grad_trained`` (||dL/dh_t|| for t = 1..length on the held-out examples, see :func:`gradient_probe`).
        """
        import keras

        settings, seed = self.settings, self.seed
        for variable, value in zip(self.model.variables, self.initial[0]):
            variable.assign(value)
        for variable, value in zip(self.optimizer.variables, self.initial[1]):
            variable.assign(value)
        x_eval, y_eval = recall_symbol(settings.eval_size, length, np.random.default_rng(seed + 1), settings.symbols)
        _, grad_init = self.probe(x_eval, y_eval)
        rng = np.random.default_rng(seed)
        train_loss = []
        for i in range(settings.steps):
            loss = float(self.step(*recall_symbol(settings.batch, length, rng, settings.symbols)))
            if i % 10 == 0 or i == settings.steps - 1:
                train_loss.append(loss)
        logits, grad_trained = self.probe(x_eval, y_eval)
        answers = y_eval[:, -1]
        return {
            "units": self.units,
            "params": self.model.count_params(),
            "recurrent_params": self.model.get_layer("recurrent").count_params(),
            "accuracy": float(np.mean(np.argmax(logits, -1) == answers)),
            "loss": float(np.mean(keras.losses.sparse_categorical_crossentropy(answers, logits, from_logits=True))),
            "train_loss": train_loss,
            "grad_init": grad_init.numpy().tolist(),
            "grad_trained": grad_trained.numpy().tolist(),
        }


def run(settings: Settings = Settings(), seed: int = 0) -> dict:
    """Every cell at every length.

    Returns:
      ``results[length][cell]`` (see :meth:`CellTrainer.train`), ``chance_accuracy``, ``settings`` and ``summary``
      (accuracy per cell and length, units and parameter counts, the GRU/LSTM parameter ratio at equal units, and
      the vanishing ratio
      ||dL/dh_1|| / ||dL/dh_T|| per cell at the longest length, at initialization and after training).
    """
    import tensorflow as tf

    results = {length: {} for length in settings.lengths}
    level = tf.get_logger().level
    tf.get_logger().setLevel("ERROR")  # each cell's functions are traced once on purpose: no retracing warning
    try:
        for cell in settings.cells:
            trainer = CellTrainer(settings, cell, seed)
            for length in settings.lengths:
                results[length][cell] = trainer.train(length)
    finally:
        tf.get_logger().setLevel(level)
    summary = {"chance_accuracy": 1 / settings.symbols}
    for length, by_cell in results.items():
        for cell, out in by_cell.items():
            summary[f"{cell}_accuracy_at_{length}"] = out["accuracy"]
    longest = results[max(settings.lengths)]
    for cell, out in longest.items():
        summary[f"{cell}_units"] = out["units"]
        summary[f"{cell}_params"] = out["params"]
        summary[f"{cell}_recurrent_params"] = out["recurrent_params"]
        for when in ("init", "trained"):
            grads = out[f"grad_{when}"]
            summary[f"{cell}_grad_first_over_last_{when}"] = grads[0] / grads[-1]
    features = settings.symbols + 1  # at equal units, a GRU has 3 gate blocks where an LSTM has 4
    summary["gru_over_lstm_recurrent_params"] = (recurrent_params("gru", settings.units, features)
                                                 / recurrent_params("lstm", settings.units, features))
    return {"settings": dataclasses.asdict(settings), "chance_accuracy": 1 / settings.symbols,
            "results": {str(k): v for k, v in results.items()}, "summary": summary}


def table(result: dict) -> str:
    """Held-out last-step accuracy (and loss) per length and cell, parameter counts, gradient decay."""
    cells = result["settings"]["cells"]
    rows = []
    for length, by_cell in result["results"].items():
        rows.append([length, *[f"{by_cell[c]['accuracy']:.3f} ({by_cell[c]['loss']:.2f})" for c in cells]])
    longest = result["results"][str(max(result["settings"]["lengths"]))]
    s = result["settings"]
    rows.append(["units", *[str(longest[c].get("units", s["units"])) for c in cells]])
    rows.append(["parameters", *[str(longest[c]["params"]) for c in cells]])
    for when in ("init", "trained"):
        rows.append([f"|dL/dh_1| / |dL/dh_T| ({when})",
                     *[report.number(longest[c][f"grad_{when}"][0] / longest[c][f"grad_{when}"][-1], 3)
                       for c in cells]])
    budget = "the LSTM's parameter count" if s.get("equal_budget") else f"{s['units']} units"
    return (f"recall the first of {s['symbols']} symbols (chance {result['chance_accuracy']:.2f}); {budget}, "
            f"Adam {s['learning_rate']}, {s['steps']} steps of {s['batch']}; held-out accuracy (loss) at the "
            f"last step; gradient ratios at length {max(s['lengths'])}\n"
            + report.table(["length", *[LABELS[c] for c in cells]], rows))


def plot(result: dict, path: Path) -> None:
    """Accuracy against length; ||dL/dh_t|| against t at the longest length, at initialization and trained."""
    s = result["settings"]
    cells, lengths = s["cells"], s["lengths"]
    longest = result["results"][str(max(lengths))]
    fig, axes = plots.figure(15, 4.5, ncols=3)
    for cell in cells:
        label = f"{LABELS[cell]} ({longest[cell].get('units', s['units'])} units, {longest[cell]['params']} parameters)"
        axes[0].plot(lengths, [result["results"][str(n)][cell]["accuracy"] for n in lengths], "o-",
                     color=COLORS[cell], label=label)
        for ax, when in zip(axes[1:], ("init", "trained")):
            grads = np.asarray(longest[cell][f"grad_{when}"])
            ax.semilogy(np.arange(1, len(grads) + 1), grads, color=COLORS[cell], label=LABELS[cell])
    axes[0].axhline(result["chance_accuracy"], color="0.5", ls="--", lw=1, label="chance")
    axes[0].set_xscale("log")
    axes[0].set_xticks(lengths, [str(n) for n in lengths])
    axes[0].set_xticks([], minor=True)
    axes[0].set_ylim(0, 1.05)
    axes[0].set_xlabel("sequence length")
    axes[0].set_ylabel("held-out accuracy at the last step")
    size = "LSTM's parameters" if s.get("equal_budget") else f"{s['units']} units"
    axes[0].set_title(f"equal budgets: {s['steps']} Adam steps, {size}")
    axes[0].legend(fontsize=8)
    for ax, when in zip(axes[1:], ("at initialization", "after training")):
        ax.set_xlabel("step t (the loss is at the last step)")
        ax.set_ylabel(r"$\|\partial L / \partial h_t\|$")
        ax.set_title(f"length {max(lengths)}, {when}")
        ax.legend(fontsize=8)
    plots.save(fig, path)
