"""Lesson 1: the 1-neuron linear RNN, y^1000 = w^999, and why its gradient is so rough.

Input weight 1, output weight 1, recurrent weight w, no bias; input 1 then 999 zeros, so h^1 = 1 and
y^1000 = h^1000 = w^999. The model is a real Keras ``SimpleRNN`` run for 1000 steps, and dy/dw is taken by
autodiff through all 1000 steps (backpropagation through time), next to the closed forms w^999 and 999 w^998.

Numbers are computed in float64: around w = 1 ± 0.1 they span 1e-46 .. 1e+44, beyond float32's range
(about 1e-45 .. 3e+38). At w = 0.01 the exact values (1e-1998) are beyond float64 too: autodiff gives 0 there,
and the closed form is given as a power of ten.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from pipelines.lessons import plots, report

NAME = "linear_rnn"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Args: steps: sequence length; table_ws: the w of the table; sweep_low / sweep_high / sweep_points:
    the w grid of the plot."""

    steps: int = 1000
    table_ws: tuple = (1.0, 1.01, 0.99, 0.01)
    sweep_low: float = 0.9
    sweep_high: float = 1.1
    sweep_points: int = 81

    @classmethod
    def quick(cls) -> "Settings":
        """The same 1000 steps, a coarser sweep."""
        return cls(sweep_points=21)


def closed_form(w: float, steps: int) -> dict:
    """y = w^(steps-1) and dy/dw = (steps-1) w^(steps-2), exactly, as floats and as powers of ten.

    Args:
      w: the recurrent weight (> 0).
      steps: sequence length.

    Returns:
      ``y``, ``dy_dw`` (floats; 0.0 or inf where float64 cannot hold them), ``y_log10``, ``dy_dw_log10``.
    """
    n = steps - 1
    y_log10 = n * math.log10(w)
    dy_dw_log10 = math.log10(n) + (n - 1) * math.log10(w)
    return {"y": _power_of_ten(y_log10), "dy_dw": _power_of_ten(dy_dw_log10),
            "y_log10": y_log10, "dy_dw_log10": dy_dw_log10}


def _power_of_ten(log10: float) -> float:
    try:
        return 10.0 ** log10
    except OverflowError:
        return math.inf


def scientific(log10: float) -> str:
    """A positive number given by its log10, written as ``m.mme±X`` (works far beyond float64's range)."""
    exponent = math.floor(log10)
    mantissa = 10 ** (log10 - exponent)
    if round(mantissa, 2) >= 10:
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"{mantissa:.2f}e{exponent:+d}"


class LinearRNNProbe:
    """The Keras model and a compiled function giving (y^steps, dy/dw) by BPTT for any w."""

    def __init__(self, steps: int, dtype: str):
        import tensorflow as tf

        from models.lessons import linear_rnn

        self.model = linear_rnn(steps, 1.0, dtype=dtype)
        self.w = self.model.get_layer("rnn").cell.recurrent_kernel
        x = np.zeros((1, steps, 1), dtype=dtype)
        x[0, 0, 0] = 1.0  # input 1 then zeros
        self.x = tf.constant(x)

        @tf.function(jit_compile=True)
        def value_and_grad():
            with tf.GradientTape() as tape:
                y = self.model(self.x)[0, 0]
            return y, tape.gradient(y, self.w)[0, 0]

        self._value_and_grad = value_and_grad

    def __call__(self, w: float) -> tuple[float, float]:
        """Returns (y^steps, dy/dw) at recurrent weight ``w``."""
        self.w.assign([[w]])
        y, grad = self._value_and_grad()
        return float(y), float(grad)


def run(settings: Settings = Settings(), seed: int = 0) -> dict:
    """Runs the linear RNN at the table's and the sweep's w, in float64 (and float32 for comparison).

    Args:
      settings: see :class:`Settings`.
      seed: unused (nothing is random); kept for a uniform interface.

    Returns:
      ``table`` (one row per w: BPTT y and dy/dw in float64 and float32, closed forms), ``sweep`` (w, y,
      dy/dw, closed forms, float32 values), ``float32_range`` (the w interval where float32 still holds both
      numbers within 1e-3), and ``summary``.
    """
    del seed
    probe64 = LinearRNNProbe(settings.steps, "float64")
    probe32 = LinearRNNProbe(settings.steps, "float32")
    rows = []
    for w in settings.table_ws:
        y, grad = probe64(w)
        y32, grad32 = probe32(w)
        exact = closed_form(w, settings.steps)
        rows.append({"w": w, "y": y, "dy_dw": grad, "y_float32": y32, "dy_dw_float32": grad32,
                     "closed_y": exact["y"], "closed_dy_dw": exact["dy_dw"],
                     "closed_y_log10": exact["y_log10"], "closed_dy_dw_log10": exact["dy_dw_log10"],
                     "closed_y_text": scientific(exact["y_log10"]),
                     "closed_dy_dw_text": scientific(exact["dy_dw_log10"])})

    ws = np.linspace(settings.sweep_low, settings.sweep_high, settings.sweep_points)
    ws = np.unique(np.concatenate([ws, [1.0]]))
    sweep = {key: [] for key in ("w", "y", "dy_dw", "closed_y", "closed_dy_dw", "y_float32", "dy_dw_float32")}
    for w in ws:
        y, grad = probe64(w)
        y32, grad32 = probe32(w)
        exact = closed_form(w, settings.steps)
        for key, value in zip(sweep, (w, y, grad, exact["y"], exact["dy_dw"], y32, grad32)):
            sweep[key].append(float(value))

    def holds(got, want):
        return math.isfinite(got) and got != 0 and abs(got - want) <= 1e-3 * abs(want)

    fine32 = [w for w, y, g, cy, cg in zip(ws, sweep["y_float32"], sweep["dy_dw_float32"], sweep["closed_y"],
                                           sweep["closed_dy_dw"]) if holds(y, cy) and holds(g, cg)]
    by_w = {row["w"]: row for row in rows}
    summary = {f"dy_dw_at_{w:g}": row["dy_dw"] for w, row in by_w.items()}
    summary.update({f"y_at_{w:g}": row["y"] for w, row in by_w.items()})
    if 1.01 in by_w and 0.99 in by_w and by_w[0.99]["dy_dw"] > 0:
        summary["grad_ratio_1.01_over_0.99"] = by_w[1.01]["dy_dw"] / by_w[0.99]["dy_dw"]
    summary["max_rel_error_vs_closed_form"] = max(
        abs(row[k] - row[c]) / abs(row[c]) for row in rows for k, c in (("y", "closed_y"), ("dy_dw", "closed_dy_dw"))
        if row[c] != 0 and math.isfinite(row[c])
    )
    return {"steps": settings.steps, "dtype": "float64", "table": rows, "sweep": sweep,
            "float32_range": [min(fine32), max(fine32)] if fine32 else None, "summary": summary}


def table(result: dict) -> str:
    """The lesson's table: BPTT values (float64) next to the closed forms."""
    n = result["steps"] - 1
    rows = [[f"{row['w']:g}", report.number(row["y"]), row["closed_y_text"], report.number(row["dy_dw"]),
             row["closed_dy_dw_text"]] for row in result["table"]]
    return report.table(["w", f"y^{n + 1} (BPTT)", f"w^{n}", "dy/dw (BPTT)", f"{n} w^{n - 1}"], rows)


def plot(result: dict, path: Path) -> None:
    """y^1000 and |dy/dw| against w (log scale), BPTT points on the closed-form curves; float32's range shaded."""
    sweep = result["sweep"]
    n = result["steps"] - 1
    fig, axes = plots.figure(10, 4, ncols=2)
    for ax, key, closed, label in ((axes[0], "y", "closed_y", f"$y^{{{n + 1}}}$"),
                                   (axes[1], "dy_dw", "closed_dy_dw", r"$|\partial y / \partial w|$")):
        ax.semilogy(sweep["w"], np.abs(sweep[closed]), "-", color="0.6", lw=3, label="closed form")
        ax.semilogy(sweep["w"], np.abs(sweep[key]), ".", color="C0", ms=5, label="Keras SimpleRNN, BPTT (float64)")
        shown = [row for row in result["table"] if sweep["w"][0] <= row["w"] <= sweep["w"][-1]]
        ax.semilogy([row["w"] for row in shown], [abs(row[key]) for row in shown], "o", color="C3", ms=6,
                    label="the table's w")
        ax.text(0.98, 0.04, "\n".join(f"w = {row['w']:g}: {report.number(row[key], 3)}" for row in shown),
                transform=ax.transAxes, ha="right", va="bottom", fontsize=9, color="C3",
                bbox={"facecolor": "white", "edgecolor": "0.8"})
        if result["float32_range"]:
            low, high = result["float32_range"]
            ax.axvspan(low, high, color="C2", alpha=0.08, label="float32 still exact enough")
        ax.axvline(1.0, color="0.3", lw=0.8, ls=":")
        ax.set_xlabel("recurrent weight w")
        ax.set_title(f"{label} after {n + 1} steps (input 1, then zeros)")
        ax.legend(fontsize=8, loc="upper left")
    plots.save(fig, path)
