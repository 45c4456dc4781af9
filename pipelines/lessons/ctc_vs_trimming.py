"""Lesson 5: trimming repeated frames versus CTC's blank.

A speech model outputs one symbol per frame, e.g. 好好好棒棒棒棒棒 for 8 frames. Trimming (collapsing
repeats) turns that into 好棒, and no labelling of the frames can ever give 好棒棒: collapsing never leaves two
equal symbols side by side. CTC adds a blank φ: merge repeats, then drop blanks, so 好φ棒φ棒 gives 好棒棒.

The CTC loss of a target is -log of the summed probability of all frame paths (alignments) that reduce to it.
Here it is computed with Keras (``keras.ops.ctc_loss``) and by brute force, enumerating all 3^T paths over
{φ, 好, 棒}, for the 8-frame sequence and for a short one whose alignments are listed.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

import numpy as np

from pipelines.lessons import plots, report

NAME = "ctc_vs_trimming"
BLANK = "φ"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Args: frames: one symbol per frame (what a frame classifier would say); short_frames: the short case;
    symbols: the output symbols (the blank φ is added as id 0); targets: the label sequences to score;
    peak / blank: the toy posterior of each frame: ``peak`` on the frame's symbol, ``blank`` on φ, the rest
    shared by the other symbols."""

    frames: str = "好好好棒棒棒棒棒"
    short_frames: str = "好好棒棒棒"
    symbols: str = "好棒"
    targets: tuple = ("好棒", "好棒棒")
    peak: float = 0.7
    blank: float = 0.2

    @classmethod
    def quick(cls) -> "Settings":
        """The same (it takes well under a second)."""
        return cls()


def trim(labels: str) -> str:
    """Collapses runs of equal symbols: ``好好好棒棒棒棒棒`` → ``好棒``."""
    return "".join(symbol for i, symbol in enumerate(labels) if i == 0 or symbol != labels[i - 1])


def ctc_collapse(path: str, blank: str = BLANK) -> str:
    """CTC's reduction: merge repeats, then drop blanks (``好φ棒φ棒`` → ``好棒棒``, ``好棒棒`` → ``好棒``)."""
    return trim(path).replace(blank, "")


def posteriors(frames: str, settings: Settings) -> np.ndarray:
    """The toy frame posteriors ``[T, 1 + len(symbols)]`` (column 0: blank)."""
    vocab = BLANK + settings.symbols
    probs = np.zeros((len(frames), len(vocab)))
    others = (1 - settings.peak - settings.blank) / (len(settings.symbols) - 1)
    for t, symbol in enumerate(frames):
        probs[t] = others
        probs[t, 0] = settings.blank
        probs[t, vocab.index(symbol)] = settings.peak
    return probs


def brute_force(probs: np.ndarray, vocab: str, target: str) -> dict:
    """Enumerates every path over ``vocab`` (``len(vocab) ** T`` of them) and keeps those reducing to ``target``.

    Returns:
      ``probability`` (their summed probability), ``loss`` (its -log), ``alignments`` (how many),
      ``best`` (the most probable one, as text) and ``best_probability``; ``paths`` (how many were enumerated).
    """
    steps = len(probs)
    total, count, best, best_p = 0.0, 0, None, -1.0
    for path in itertools.product(range(len(vocab)), repeat=steps):
        text = "".join(vocab[i] for i in path)
        if ctc_collapse(text) != target:
            continue
        p = float(np.prod(probs[np.arange(steps), path]))
        total += p
        count += 1
        if p > best_p:
            best, best_p = text, p
    return {"probability": total, "loss": -math.log(total) if total > 0 else math.inf, "alignments": count,
            "best": best, "best_probability": best_p, "paths": len(vocab) ** steps}


def keras_ctc_loss(probs: np.ndarray, target_ids: list[int]) -> float:
    """``keras.ops.ctc_loss`` of one target (blank id 0) given per-frame probabilities (passed as log-probs)."""
    from keras import ops

    loss = ops.ctc_loss(
        np.asarray([target_ids], "int32"), np.log(probs)[None].astype("float32"),
        np.asarray([len(target_ids)], "int32"), np.asarray([len(probs)], "int32"), mask_index=0,
    )
    return float(ops.convert_to_numpy(loss)[0])


def alignments(steps: int, vocab: str, target: str) -> list[str]:
    """Every path of ``steps`` frames over ``vocab`` that CTC reduces to ``target``."""
    return ["".join(p) for p in itertools.product(vocab, repeat=steps) if ctc_collapse("".join(p)) == target]


def run(settings: Settings = Settings(), seed: int = 0) -> dict:
    """Trimming versus CTC on the toy frames, with Keras' CTC loss checked against brute force.

    Args:
      settings: see :class:`Settings`.
      seed: unused (nothing is random).

    Returns:
      ``trimming`` (what collapsing gives, and which outputs all 2^T blank-free labellings can give),
      ``ctc`` (per case and target: Keras loss, brute-force loss, alignment counts, best alignment),
      ``short_alignments`` (the short case's alignments of each target, listed), ``summary``.
    """
    del seed
    vocab = BLANK + settings.symbols
    reachable = {}
    for labels in itertools.product(settings.symbols, repeat=len(settings.frames)):
        out = trim("".join(labels))
        reachable[out] = reachable.get(out, 0) + 1
    trimming = {
        "frames": settings.frames, "trimmed": trim(settings.frames), "labellings": len(settings.symbols) ** len(settings.frames),
        "labellings_per_target": {t: reachable.get(t, 0) for t in settings.targets},
        "any_output_with_a_repeat": any(a == b for out in reachable for a, b in zip(out, out[1:])),
        "blank_path_example": f"{settings.targets[0][0]}{BLANK}{BLANK.join(settings.targets[-1][1:])}",
    }
    trimming["blank_path_example_gives"] = ctc_collapse(trimming["blank_path_example"])
    ctc = {}
    for case, frames in (("long", settings.frames), ("short", settings.short_frames)):
        probs = posteriors(frames, settings)
        ctc[case] = {"frames": frames, "posteriors": probs.tolist(), "targets": {}}
        for target in settings.targets:
            found = brute_force(probs, vocab, target)
            found["keras_loss"] = keras_ctc_loss(probs, [vocab.index(c) for c in target])
            found["abs_diff"] = abs(found["keras_loss"] - found["loss"])
            ctc[case]["targets"][target] = found
    short = {t: alignments(len(settings.short_frames), vocab, t) for t in settings.targets}
    summary = {"trimming_labellings": trimming["labellings"]}
    for target in settings.targets:
        summary[f"trimming_labellings_giving_{target}"] = trimming["labellings_per_target"][target]
        for case in ctc:
            found = ctc[case]["targets"][target]
            summary[f"{case}_{target}_keras_loss"] = found["keras_loss"]
            summary[f"{case}_{target}_brute_force_loss"] = found["loss"]
            summary[f"{case}_{target}_alignments"] = found["alignments"]
    summary["max_abs_diff_keras_vs_brute_force"] = max(
        found["abs_diff"] for case in ctc.values() for found in case["targets"].values())
    return {"settings": dataclasses.asdict(settings), "vocab": vocab, "trimming": trimming, "ctc": ctc,
            "short_alignments": short, "summary": summary}


def table(result: dict) -> str:
    """Trimming's outcome, then each target's CTC loss (Keras and brute force) and alignment count."""
    trimming = result["trimming"]
    lines = [f"trimming {trimming['frames']} -> {trimming['trimmed']}; of all {trimming['labellings']} labellings "
             f"without a blank: " + ", ".join(f"{n} give {t}" for t, n in trimming["labellings_per_target"].items()),
             f"CTC with a blank: {trimming['blank_path_example']} -> {trimming['blank_path_example_gives']}"]
    rows = []
    for case in result["ctc"].values():
        for target, found in case["targets"].items():
            rows.append([case["frames"], target, found["alignments"], found["paths"], found["keras_loss"],
                         found["loss"], found["abs_diff"], found["best"]])
    lines.append(report.table(["frames", "target", "alignments", "paths", "Keras CTC loss", "brute force",
                               "|diff|", "best alignment"], rows))
    for target, paths in result["short_alignments"].items():
        lines.append(f"{len(paths)} alignments of {target} in {len(result['ctc']['short']['frames'])} frames: "
                     + " ".join(paths[:12]) + (" ..." if len(paths) > 12 else ""))
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    """Left: the frame posteriors with each target's best alignment. Right: CTC loss, Keras vs brute force."""
    case = result["ctc"]["long"]
    probs = np.asarray(case["posteriors"])
    vocab = result["vocab"]
    fig, axes = plots.figure(12, 4.2, ncols=2, gridspec_kw={"width_ratios": [1.3, 1]})
    ax = axes[0]
    ax.imshow(probs.T, cmap="Greys", vmin=0, vmax=1, aspect="auto")
    ax.set_yticks(range(len(vocab)), [plots.cjk(v) for v in vocab])
    ax.set_xticks(range(len(case["frames"])), [f"{t + 1}\n{plots.cjk(c)}" for t, c in enumerate(case["frames"])])
    ax.set_xlabel("frame (and the symbol it sounds like)")
    colors = ("C0", "C3", "C2", "C1")
    for i, (target, found) in enumerate(case["targets"].items()):
        rows = [vocab.index(s) for s in found["best"]]
        offset = (i - 0.5) * 0.15
        ax.plot(np.arange(len(rows)) + offset, np.asarray(rows) + offset, "o-", color=colors[i], lw=2,
                label=f"best path to {plots.cjk(target)}: {plots.cjk(found['best'])}")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=1)
    trimming = result["trimming"]
    ax.set_title(f"frame posteriors; trimming gives {plots.cjk(trimming['trimmed'])}, never "
                 f"{plots.cjk(result['settings']['targets'][-1])}", fontsize=10)

    ax = axes[1]
    targets = list(case["targets"])
    x = np.arange(len(targets))
    keras_losses = [case["targets"][t]["keras_loss"] for t in targets]
    brute = [case["targets"][t]["loss"] for t in targets]
    ax.bar(x - 0.2, keras_losses, 0.4, label="keras.ops.ctc_loss", color="C0")
    ax.bar(x + 0.2, brute, 0.4, label=f"brute force over all {case['targets'][targets[0]]['paths']} paths",
           color="C1")
    for i, t in enumerate(targets):
        found = case["targets"][t]
        n = trimming["labellings_per_target"][t]
        ax.text(i, max(keras_losses[i], brute[i]) + 0.05, f"{found['alignments']} alignments\n"
                f"trimming: {n} of {trimming['labellings']} labellings", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [plots.cjk(t) for t in targets])
    ax.set_ylabel("CTC loss  -log P(target | frames)")
    ax.set_ylim(0, max(keras_losses + brute) * 1.45)
    ax.set_title("CTC loss: Keras equals the sum over alignments", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    plots.save(fig, path)
