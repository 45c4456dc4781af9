"""Lesson 2: the RNN error surface is rough (flat plateaus and a cliff), and clipping keeps descent on it.

The RNN is one sigmoid unit run on zero inputs from h^0 = 0.5: h^t = sigmoid(w1 h^(t-1) + w2), so its two free
parameters are the recurrent weight w1 and the bias w2; the loss is (h^T - 0.7)^2. For w1 > 4 the map has two
stable states, and which one h^T reaches depends on which side of the unstable one h^0 starts: crossing the line
w2 = -w1/2 flips h^T from near 0 to near 1 within a sliver of parameter space. That sliver is the cliff; on
either side the loss is nearly flat.

Gradient descent (Keras SGD, a fixed learning rate) starts on the flat side and walks towards the cliff; on its
wall the gradient is hundreds of times larger and one step throws the parameters far away. The same descent
with the gradient's norm clipped (``global_clipnorm``) takes a bounded step there and settles in the valley.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from pipelines.lessons import plots, report

NAME = "error_surface"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Args: steps: RNN length T; h0, target: start state and target of h^T; w1_range / w2_range / grid:
    the plotted grid; start: (w1, w2) where descent starts; learning_rate, clipnorm, descent_steps: the
    descent (SGD; clipped run: ``global_clipnorm=clipnorm``)."""

    steps: int = 30
    h0: float = 0.5
    target: float = 0.7
    w1_range: tuple = (0.0, 10.0)
    w2_range: tuple = (-6.0, 2.0)
    grid: int = 161
    start: tuple = (5.0, -1.5)
    learning_rate: float = 3.0
    clipnorm: float = 0.05
    descent_steps: int = 80

    @classmethod
    def quick(cls) -> "Settings":
        """A coarser grid, shorter descents."""
        return cls(grid=41, descent_steps=40)


def descend(settings: Settings, clipnorm: float | None) -> dict:
    """Gradient descent on (w1, w2) of the Keras :func:`models.lessons.two_parameter_rnn`.

    Args:
      settings: see :class:`Settings`.
      clipnorm: clip the gradient's global norm to this (None: no clipping).

    Returns:
      ``w1``, ``w2``, ``loss`` (at each visited point, the start included), ``grad_norm`` (before clipping)
      and ``step_length`` (distance moved by each step).
    """
    import keras
    import tensorflow as tf

    from models.lessons import two_parameter_rnn

    model = two_parameter_rnn(settings.steps, *settings.start)
    cell = model.get_layer("rnn").cell
    params = [cell.recurrent_kernel, cell.bias]  # the input kernel multiplies zeros: not a free parameter
    x = tf.zeros((1, settings.steps, 1), tf.float64)
    h0 = tf.fill((1, 1), tf.constant(settings.h0, tf.float64))
    optimizer = keras.optimizers.SGD(settings.learning_rate, global_clipnorm=clipnorm)

    @tf.function
    def loss_and_grads():
        with tf.GradientTape() as tape:
            loss = tf.square(model([x, h0])[0, 0] - settings.target)
        return loss, tape.gradient(loss, params)

    path = {"w1": [], "w2": [], "loss": [], "grad_norm": []}
    for i in range(settings.descent_steps + 1):
        loss, grads = loss_and_grads()
        path["w1"].append(float(params[0][0, 0]))
        path["w2"].append(float(params[1][0]))
        path["loss"].append(float(loss))
        path["grad_norm"].append(float(tf.linalg.global_norm(grads)))
        if i < settings.descent_steps:
            optimizer.apply(grads, params)
    points = np.stack([path["w1"], path["w2"]], axis=1)
    path["step_length"] = np.linalg.norm(np.diff(points, axis=0), axis=1).tolist()
    return path


def loss_grid(settings: Settings) -> dict:
    """The loss over the (w1, w2) grid (``w1``, ``w2``: axes; ``loss[i][j]`` at w2[i], w1[j])."""
    from keras import ops

    from models.lessons import two_parameter_loss_grid

    w1 = np.linspace(*settings.w1_range, settings.grid)
    w2 = np.linspace(*settings.w2_range, settings.grid)
    mesh1, mesh2 = np.meshgrid(w1, w2)
    loss = ops.convert_to_numpy(two_parameter_loss_grid(mesh1, mesh2, settings.steps, settings.h0, settings.target))
    return {"w1": w1.tolist(), "w2": w2.tolist(), "loss": loss.tolist()}


def run(settings: Settings = Settings(), seed: int = 0) -> dict:
    """The loss surface and the two descents.

    Args:
      settings: see :class:`Settings`.
      seed: unused (nothing is random).

    Returns:
      ``grid``, ``plain`` and ``clipped`` descents (see :func:`descend`), the ``settings`` and ``summary``.
    """
    del seed
    grid = loss_grid(settings)
    plain_path = descend(settings, None)
    clipped_path = descend(settings, settings.clipnorm)
    loss = np.asarray(grid["loss"])
    # the steepness of the surface: largest loss change between grid neighbours, per unit of w
    spacing = (settings.w1_range[1] - settings.w1_range[0]) / (settings.grid - 1)
    steepest = max(np.abs(np.diff(loss, axis=0)).max(), np.abs(np.diff(loss, axis=1)).max()) / spacing
    summary = {
        "plain_longest_step": max(plain_path["step_length"]),
        "plain_jump_at_step": int(np.argmax(plain_path["step_length"])) + 1,
        "plain_final_loss": plain_path["loss"][-1],
        "plain_final_w1": plain_path["w1"][-1],
        "plain_final_w2": plain_path["w2"][-1],
        "plain_max_grad_norm": max(plain_path["grad_norm"]),
        "clipped_longest_step": max(clipped_path["step_length"]),
        "clipped_final_loss": clipped_path["loss"][-1],
        "clipped_final_w1": clipped_path["w1"][-1],
        "clipped_final_w2": clipped_path["w2"][-1],
        "start_grad_norm": plain_path["grad_norm"][0],
        "grid_loss_min": float(loss.min()),
        "grid_loss_max": float(loss.max()),
        "grid_steepest_slope": float(steepest),
    }
    return {"settings": dataclasses.asdict(settings), "grid": grid, "plain": plain_path, "clipped": clipped_path,
            "summary": summary}


def table(result: dict) -> str:
    """Both descents: longest step, largest gradient norm, where they end."""
    rows = []
    for name in ("plain", "clipped"):
        path = result[name]
        rows.append([name, max(path["step_length"]), max(path["grad_norm"]), path["loss"][0], path["loss"][-1],
                     f"({path['w1'][-1]:.2f}, {path['w2'][-1]:.2f})"])
    settings = result["settings"]
    return (f"SGD, learning rate {settings['learning_rate']}, {settings['descent_steps']} steps from "
            f"(w1, w2) = {tuple(settings['start'])}; clipped: global norm {settings['clipnorm']}\n"
            + report.table(["descent", "longest step", "max |grad|", "start loss", "final loss", "ends at (w1, w2)"],
                           rows))


def plot(result: dict, path: Path) -> None:
    """Left: the surface in 3-D. Right: its contour with both descent paths (a jump off the plot is an arrow)."""
    import matplotlib.pyplot as plt

    grid = result["grid"]
    w1, w2, loss = np.asarray(grid["w1"]), np.asarray(grid["w2"]), np.asarray(grid["loss"])
    mesh1, mesh2 = np.meshgrid(w1, w2)
    fig = plt.figure(figsize=(11, 4.6))
    ax3d = fig.add_subplot(1, 2, 1, projection="3d")
    ax3d.plot_surface(mesh1, mesh2, loss, cmap="viridis", linewidth=0, antialiased=False, rcount=100, ccount=100)
    ax3d.set_xlabel("w1 (recurrent weight)")
    ax3d.set_ylabel("w2 (bias)")
    ax3d.set_zlabel("loss")
    ax3d.view_init(elev=30, azim=-125)
    ax3d.set_title("loss $(h^T - 0.7)^2$: plateaus and a cliff")

    ax = fig.add_subplot(1, 2, 2)
    contour = ax.contourf(mesh1, mesh2, loss, levels=30, cmap="viridis")
    fig.colorbar(contour, ax=ax, label="loss")
    lows, highs = (w1[0], w2[0]), (w1[-1], w2[-1])
    for name, color, label in (("plain", "C3", "SGD"), ("clipped", "white", "SGD, gradient norm clipped")):
        p = result[name]
        xs, ys = np.asarray(p["w1"]), np.asarray(p["w2"])
        inside = (xs >= lows[0]) & (xs <= highs[0]) & (ys >= lows[1]) & (ys <= highs[1])
        last = int(np.argmin(inside)) if not inside.all() else len(xs)
        ax.plot(xs[:last], ys[:last], "o-", color=color, ms=3, lw=1.2, label=label, zorder=3 if name == "plain" else 2)
        if last < len(xs):  # thrown off the plotted window: an arrow towards where it landed
            direction = np.array([xs[last] - xs[last - 1], ys[last] - ys[last - 1]])
            span = np.array([highs[0] - lows[0], highs[1] - lows[1]])
            end = np.array([xs[last - 1], ys[last - 1]]) + direction / np.linalg.norm(direction / span) * 0.3
            ax.annotate("", xy=end, xytext=(xs[last - 1], ys[last - 1]),
                        arrowprops={"arrowstyle": "->", "color": color, "lw": 1.5})
            ax.text(end[0] - 0.02 * span[0], end[1] + 0.03 * span[1],
                    f"thrown to ({xs[last]:.0f}, {ys[last]:.0f})\nby |grad| = {p['grad_norm'][last - 1]:.0f}",
                    color=color, fontsize=9, ha="right", va="bottom",
                    bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none"})
    ax.plot(*result["settings"]["start"], "s", color="orange", ms=6, label="start", zorder=1)
    ax.set_xlim(lows[0], highs[0])
    ax.set_ylim(lows[1], highs[1])
    ax.set_xlabel("w1 (recurrent weight)")
    ax.set_ylabel("w2 (bias)")
    ax.set_title(f"gradient descent, learning rate {result['settings']['learning_rate']}")
    ax.legend(fontsize=8, loc="lower left")
    plots.save(fig, path)
