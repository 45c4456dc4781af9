"""Reading comprehension with attention-based memory: ``python -m pipelines.reading_qa [--data-dir DIR]
[--task 1..20|all|joint] [--model memn2n|reader] [--hops N] [--quick]``.

Each statement of a story is stored in memory; the question drives a read head (attention) over it, ``hops``
times, and the read-out answers. ``memn2n``: End-To-End Memory Network (position and temporal encoding, adjacent
weight tying, linear start, random noise); ``reader``: a GRU reads each sentence and the question, a GRU controller
attends over the sentence states. Several random restarts train side by side; the best on dev is kept.

Data: built-in bAbI-style stories (tasks 1 and 2: single and two supporting facts) by default, or the bAbI
``tasks_1-20_v1-2/en`` folder with ``--data-dir`` (splits per ../shared/data/SPLITS.md). ``--task N`` trains on
task N, ``joint`` on all tasks together, ``all`` one model per task (run dirs OUT/qaN and a summary).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import pipelines  # noqa: F401  (quiet TensorFlow, Keras backend)
from pipelines.config import build_parser, from_args
from pipelines.readers import DataError

TASK = "reading_qa"
KEEPS = ("auto", "best", "last")
OPTIMIZERS = ("auto", "sgd", "adam")
DEMO_STORY = ["Mary moved to the bathroom.", "John went to the hallway.", "Mary went back to the kitchen."]
DEMO_QUESTION = "Where is Mary?"


@dataclasses.dataclass(frozen=True)
class ReadingQAConfig:
    data_dir: str | None = dataclasses.field(default=None, metadata={"help": "bAbI en folder; none: built-in data"})
    out: str = dataclasses.field(default="runs/reading_qa", metadata={"help": "run dir to write"})
    task: str = dataclasses.field(default="joint", metadata={"help": "bAbI task 1-20, joint (all tasks, one "
                                                                     "model) or all (one model per task)"})
    model: str = dataclasses.field(default="memn2n", metadata={"help": "memn2n or reader"})
    hops: int = dataclasses.field(default=3, metadata={"help": "attention reads over the memory"})
    epochs: int = 60
    restarts: int = dataclasses.field(default=0, metadata={"help": "random restarts trained side by side, best on "
                                                                   "dev kept; 0: 6 for memn2n, 1 for reader"})
    embed_dim: int = dataclasses.field(default=0, metadata={"help": "0: 20 (memn2n per task), 50 (joint), 32 (reader)"})
    units: int = dataclasses.field(default=48, metadata={"help": "reader: GRU and memory width"})
    memory_size: int = dataclasses.field(default=50, metadata={"help": "most statements held (the most recent)"})
    linear_start: bool = dataclasses.field(default=True, metadata={"help": "memn2n: no attention softmax at first"})
    linear_start_epochs: int = dataclasses.field(default=20, metadata={"help": "longest linear start"})
    noise: float = dataclasses.field(default=0.1, metadata={"help": "rate of empty memories inserted in training"})
    position_encoding: bool = True
    position_formula: str = dataclasses.field(default="code", metadata={
        "help": "memn2n: code (the authors' Matlab code: J = the padded width, twice the paper's scale) or paper "
                "(J = the sentence's length)"})
    temporal: bool = True
    softmax_slots: int = dataclasses.field(default=-1, metadata={
        "help": "memn2n: the attention softmax spans this many slots, the empty ones scoring 0, so a read can return "
                "little (the authors' code); -1: min(memory size, longest training story); 0: empty slots masked"})
    batch_size: int = 32
    optimizer: str = dataclasses.field(default="auto", metadata={
        "help": "sgd: the authors' MemN2N recipe (gradients summed over the batch, clipped per weight; linear start "
                "for exactly --linear-start-epochs, after which the decay schedule starts over); adam; auto: sgd "
                "for memn2n, adam for reader"})
    learning_rate: float = dataclasses.field(default=0.0, metadata={"help": "0: 0.01 (memn2n, adam), 0.005 (memn2n, "
                                                                            "sgd), 0.003 (reader)"})
    keep: str = dataclasses.field(default="auto", metadata={
        "help": "which weights each restart keeps: best (its best epoch on dev) or last (the end of the schedule, as "
                "the authors' code); the restart best on dev is kept either way; auto: last with sgd, best with adam"})
    decay_every: int = dataclasses.field(default=15, metadata={"help": "halve the learning rate every N epochs"})
    clipnorm: float = dataclasses.field(default=40.0, metadata={"help": "gradient norm clip (paper: 40); 0 disables"})
    jit: bool = dataclasses.field(default=False, metadata={"help": "compile the training step with XLA (slower "
                                                                   "here: each story length recompiles)"})
    export: bool = dataclasses.field(default=True, metadata={"help": "export (SavedModel, ONNX) and plot; off: "
                                                                     "train and evaluate only (benchmarks)"})
    synthetic_size: int = dataclasses.field(default=2000, metadata={"help": "built-in training questions"})
    seed: int = 0
    quick: bool = dataclasses.field(default=False, metadata={"help": "seconds-long smoke run"})

    def check(self) -> None:
        """Raises DataError naming the first setting out of range."""
        from models.memory import MODELS, POSITION_FORMULAS

        if self.model not in MODELS:
            raise DataError(f"--model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.task not in ("joint", "all") and not (self.task.isdigit() and 1 <= int(self.task) <= 20):
            raise DataError(f"--task must be 1-20, joint or all, got {self.task!r}")
        if self.data_dir is None and self.task not in ("joint", "all", "1", "2"):
            raise DataError(f"the built-in stories have tasks 1 and 2 only, got --task {self.task}")
        for name in ("hops", "epochs", "units", "memory_size", "batch_size", "synthetic_size", "decay_every"):
            if getattr(self, name) < 1:
                raise DataError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.restarts < 0 or self.embed_dim < 0 or self.learning_rate < 0 or self.clipnorm < 0:
            raise DataError("--restarts, --embed-dim, --learning-rate and --clipnorm must not be negative")
        if self.optimizer not in OPTIMIZERS:
            raise DataError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.keep not in KEEPS:
            raise DataError(f"--keep must be one of {', '.join(KEEPS)}, got {self.keep!r}")
        if self.position_formula not in POSITION_FORMULAS:
            raise DataError(f"--position-formula must be {' or '.join(POSITION_FORMULAS)}, "
                            f"got {self.position_formula!r}")
        if self.softmax_slots < -1:
            raise DataError(f"--softmax-slots must be -1 (auto), 0 (off) or a slot count, got {self.softmax_slots}")
        if not 0 <= self.noise < 1:
            raise DataError(f"--noise must be in [0, 1), got {self.noise}")

    def resolved(self) -> "ReadingQAConfig":
        """Fills the automatic settings; ``--quick`` shrinks the data, the model and the epochs."""
        memn2n = self.model == "memn2n"
        optimizer = self.optimizer if self.optimizer != "auto" else ("sgd" if memn2n else "adam")
        config = dataclasses.replace(
            self,
            optimizer=optimizer,
            keep=self.keep if self.keep != "auto" else ("last" if optimizer == "sgd" else "best"),
            softmax_slots=self.softmax_slots if memn2n else 0,  # the reader masks empty slots
            restarts=self.restarts or (6 if memn2n else 1),
            embed_dim=self.embed_dim or ((50 if self.task == "joint" and self.data_dir else 20) if memn2n else 32),
            learning_rate=self.learning_rate or ((0.005 if optimizer == "sgd" else 0.01) if memn2n else 0.003),
        )
        if not config.quick:
            return config
        return dataclasses.replace(config, epochs=min(config.epochs, 12), restarts=min(config.restarts, 2),
                                   synthetic_size=min(config.synthetic_size, 600), units=24, decay_every=6,
                                   linear_start_epochs=3, memory_size=min(config.memory_size, 20))


def tasks_of(config: ReadingQAConfig) -> list[int]:
    if config.task in ("joint", "all"):
        return [1, 2] if config.data_dir is None else list(range(1, 21))
    return [int(config.task)]


def load_data(config: ReadingQAConfig, tasks: list[int]) -> dict:
    from pipelines import babi, synthetic_stories

    if config.data_dir is None:
        return synthetic_stories.synthetic_splits(config.synthetic_size, tuple(tasks), seed=config.seed)
    return babi.read_tasks(config.data_dir, tasks)


# --------------------------------------------------------------------------------------------------------------------
# Training


class _Restarts:
    """Keeps, for each member (random restart), the weights of its best epoch on dev: (accuracy, -loss), and the
    last epoch's dev scores."""

    def __init__(self, model, dev, labels):
        import numpy as np

        from models.memory import memory_layer

        self.model, self.dev, self.labels = model, dev, labels
        self.layer = memory_layer(model)
        self.members = self.layer.members
        self.best = [(-1.0, -np.inf)] * self.members
        self.weights = [None] * self.members
        self.best_epoch = [0] * self.members
        self.last = [(-1.0, -np.inf)] * self.members

    def scores(self):
        """Per member (dev accuracy, dev loss)."""
        import numpy as np

        probs = np.asarray(self.model.predict(self.dev, verbose=0)["answer_probs"])
        if probs.ndim == 2:
            probs = probs[:, None]
        known = self.labels >= 0
        picked = probs[np.arange(len(probs))[known], :, self.labels[known]]  # [n_known, members]
        accuracy = (probs.argmax(-1) == self.labels[:, None]).mean(0)
        loss = -np.log(np.maximum(picked, 1e-12)).mean(0) if known.any() else np.zeros(self.members)
        return accuracy, loss

    def update(self, epoch: int) -> tuple:
        accuracy, loss = self.scores()
        for m in range(self.members):
            key = (float(accuracy[m]), -float(loss[m]))
            self.last[m] = key
            if key > self.best[m]:
                self.best[m], self.best_epoch[m] = key, epoch
                self.weights[m] = self.layer.member_weights(m)
        return accuracy, loss

    def chosen(self, keep: str = "best") -> int:
        """The restart best on dev: at its best epoch (``best``) or at the last one (``last``)."""
        scores = self.best if keep == "best" else self.last
        return max(range(self.members), key=lambda m: scores[m])


def train(config: ReadingQAConfig, data: dict, vocab_size: int, answer_ids: list[int], sentence_len: int):
    """Trains ``config.restarts`` models side by side; returns (the one kept per ``config.keep``, a report of the
    restarts, the history, the one the other ``keep`` would have given)."""
    import keras
    import numpy as np

    from models.memory import build_reading_model, extract_member, memory_layer, set_linear_start
    from pipelines import reading_qa_data, training

    members = config.restarts
    sizes = dict(vocab_size=vocab_size, answer_ids=answer_ids, memory_size=config.memory_size, hops=config.hops,
                 embed_dim=config.embed_dim)
    if config.model == "memn2n":
        sizes.update(position_encoding=config.position_encoding, temporal=config.temporal,
                     position_formula=config.position_formula, softmax_slots=config.softmax_slots)
    else:
        sizes.update(units=config.units)
    model = build_reading_model(config.model, sentence_len=sentence_len, members=members, **sizes)
    train_ds = reading_qa_data.dataset(*data["train"], batch_size=config.batch_size, members=members, shuffle=True,
                                       seed=config.seed, noise=config.noise, memory_size=config.memory_size)
    dev_ds = reading_qa_data.dataset(*data["valid"], batch_size=256)
    sgd = config.optimizer == "sgd"
    if sgd:  # the authors' code sums the loss over the batch and clips each weight's gradient at clipnorm
        rate = config.learning_rate * config.batch_size
        optimizer = keras.optimizers.SGD(learning_rate=rate, clipnorm=(config.clipnorm / config.batch_size) or None)
    else:
        rate, optimizer = config.learning_rate, training.optimizer(config.learning_rate, config.clipnorm)
    # SGD: loss weight = members, so each restart's gradient is its own batch mean (not divided by the count).
    loss_weight = float(members) if sgd else 1.0
    model.compile(optimizer=optimizer, loss_weights={"answer_probs": loss_weight, "attention": 0.0},
                  loss={"answer_probs": keras.losses.SparseCategoricalCrossentropy(), "attention": None},
                  jit_compile=config.jit)
    restarts = _Restarts(model, dev_ds, data["valid"][2])
    linear = config.model == "memn2n" and config.linear_start
    set_linear_start(model, linear)
    best_ls_loss, ls_stale, history, schedule_start = np.inf, 0, [], 0
    for epoch in range(config.epochs):
        model.optimizer.learning_rate.assign(rate * 0.5 ** ((epoch - schedule_start) // config.decay_every))
        fit = model.fit(train_ds, epochs=1, verbose=0)
        accuracy, loss = restarts.update(epoch) if not linear else restarts.scores()
        history.append({"epoch": epoch + 1, "loss": round(float(fit.history["loss"][-1]) / loss_weight, 4),
                        "learning_rate": float(model.optimizer.learning_rate.numpy()),
                        "dev_accuracy": [round(float(a), 4) for a in accuracy], "linear_start": linear})
        print(f"epoch {epoch + 1}: loss {history[-1]['loss']:.4f}, dev accuracy "
              f"{' '.join(f'{a:.3f}' for a in accuracy)}{' (linear start)' if linear else ''}", flush=True)
        if linear:  # back to the softmax once the dev loss stops falling (paper), or after linear_start_epochs
            mean_loss = float(np.mean(loss))
            ls_stale = 0 if mean_loss < best_ls_loss - 1e-4 else ls_stale + 1
            best_ls_loss = min(best_ls_loss, mean_loss)
            if (ls_stale >= 2 and not sgd) or epoch + 1 >= config.linear_start_epochs:
                linear = False
                set_linear_start(model, False)
                schedule_start = epoch + 1 if sgd else 0
    last_member = restarts.chosen("last")
    last = extract_member(model, last_member)
    best_member = restarts.chosen("best")
    if restarts.weights[best_member] is not None:
        memory_layer(model).set_member_weights(best_member, restarts.weights[best_member])
    best = extract_member(model, best_member)
    chosen = best_member if config.keep == "best" else last_member
    report = {"restarts": members, "keep": config.keep, "chosen_restart": chosen,
              "restart_dev_accuracy": [round(b[0], 4) for b in (restarts.best if config.keep == "best"
                                                                 else restarts.last)],
              "chosen_epoch": restarts.best_epoch[chosen] + 1 if config.keep == "best" else len(history)}
    return (best, report, history, last) if config.keep == "best" else (last, report, history, best)


# --------------------------------------------------------------------------------------------------------------------
# Evaluation, plots, export


def predict(model, stories, questions, batch_size: int = 256):
    """(answer probabilities [n, answers], attention [n, hops, slots]) for encoded examples, in order."""
    import numpy as np

    from pipelines import reading_qa_data

    probs, attention = [], []
    for start in range(0, len(questions), batch_size):
        story = reading_qa_data.pad_stories(stories[start : start + batch_size])
        out = model({"story": story, "question": questions[start : start + batch_size]}, training=False)
        probs.append(np.asarray(out["answer_probs"]))
        attention.append(np.asarray(out["attention"]))
    slots = max(a.shape[-1] for a in attention)
    attention = [np.pad(a, ((0, 0), (0, 0), (0, slots - a.shape[-1]))) for a in attention]
    return np.concatenate(probs), np.concatenate(attention)


def evaluate(model, encoded, examples, memory_size: int) -> dict:
    """Accuracy, per-task accuracy, and how often the top attention (last hop) lands on a supporting statement."""
    import numpy as np

    stories, questions, labels = encoded
    probs, attention = predict(model, stories, questions)
    correct = probs.argmax(-1) == labels
    per_task: dict[int, list] = {}
    for ok, ex in zip(correct, examples):
        per_task.setdefault(ex.task, []).append(ok)
    hits = []
    for ex, weights in zip(examples, attention):
        if ex.supporting:
            n = min(len(ex.story), memory_size)
            top_slot = int(weights.max(0)[:n].argmax())  # the slot any hop attended to most
            hits.append(len(ex.story) - 1 - top_slot in ex.supporting)
    return {"accuracy": float(correct.mean()),
            "per_task": {str(t): float(np.mean(v)) for t, v in sorted(per_task.items())},
            "attention_on_support": float(np.mean(hits)) if hits else None}


def plot_attention(model, examples, vocab, path: Path, memory_size: int, sentence_len: int, answers) -> None:
    """A PNG per example: the attention weight on each statement (rows) at each hop (columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from pipelines import reading_qa_data

    for i, ex in enumerate(examples):
        stories, questions, _ = reading_qa_data.encode([ex], vocab, answers, memory_size, sentence_len)
        probs, attention = predict(model, stories, questions)
        n = min(len(ex.story), memory_size)
        weights = attention[0][:, :n][:, ::-1].T  # [statements oldest first, hops]
        lines = [" ".join(s) for s in ex.story[-n:]]
        fig, ax = plt.subplots(figsize=(4 + 0.6 * weights.shape[1], 0.8 + 0.28 * n))
        ax.imshow(weights, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        ax.set_yticks(range(n), [f"{'*' if len(ex.story) - n + j in ex.supporting else ' '} {t}"
                                 for j, t in enumerate(lines)], fontsize=8)
        ax.set_xticks(range(weights.shape[1]), [f"hop {k + 1}" for k in range(weights.shape[1])], fontsize=8)
        for (r, c), w in np.ndenumerate(weights):
            if w >= 0.05:
                ax.text(c, r, f"{w:.2f}", ha="center", va="center", fontsize=7, color="white" if w > 0.5 else "black")
        answer = answers[int(probs[0].argmax())]
        ax.set_title(f"{' '.join(ex.question)}? → {answer} ({probs[0].max():.2f}); truth {ex.answer}", fontsize=9)
        fig.tight_layout()
        fig.savefig(path / f"attention_{i}.png", dpi=110)
        plt.close(fig)


def task_metadata(config: ReadingQAConfig, vocab: list[str], answers: list[str], sentence_len: int, tasks) -> dict:
    from models.memory import ATTENTION, OUTPUT, QUESTION, STORY
    from serving.reading_qa import TOKENIZER
    from serving.vocab import PAD_ID, UNK_ID

    return {
        "task": TASK,
        "inputs": {STORY: {"name": STORY, "dtype": "int32", "shape": ["batch", "slots", sentence_len], "pad_id": PAD_ID},
                   QUESTION: {"name": QUESTION, "dtype": "int32", "shape": ["batch", sentence_len], "pad_id": PAD_ID}},
        "outputs": {OUTPUT: {"name": OUTPUT, "dtype": "float32", "shape": ["batch", len(answers)]},
                    ATTENTION: {"name": ATTENTION, "dtype": "float32", "shape": ["batch", config.hops, "slots"]}},
        "tokenizer": TOKENIZER,
        "vocab": vocab,
        "labels": answers,
        "pad_id": PAD_ID,
        "unk_id": UNK_ID,
        "memory_size": config.memory_size,
        "sentence_len": sentence_len,
        "memory_order": "slot 0 holds the most recent statement",
        "long_input": "a story longer than memory_size keeps its most recent memory_size statements; longer "
                      "sentences keep their first sentence_len words",
        "babi_tasks": tasks,
        "model": {"kind": config.model, "hops": config.hops, "embed_dim": config.embed_dim, "units": config.units,
                  "position_encoding": config.position_encoding, "position_formula": config.position_formula,
                  "temporal": config.temporal, "softmax_slots": config.softmax_slots, "optimizer": config.optimizer,
                  "linear_start": config.linear_start, "noise": config.noise},
    }


def parity_batches(encoded, n: int = 3, size: int = 16) -> list[dict]:
    """Real batches (stories of mixed lengths) for the export parity check."""
    from pipelines import reading_qa_data

    stories, questions, _ = encoded
    batches = []
    for start in range(0, min(len(questions), n * size), size):
        story = reading_qa_data.pad_stories(stories[start : start + size])
        batches.append({"story": story, "question": questions[start : start + size],
                        "lengths": (story != 0).any(-1).sum(-1).astype("int32")})
    return batches


def run(config: ReadingQAConfig) -> dict:
    """Trains, evaluates and exports one model (one task, or all tasks jointly); returns the metrics. The run dir
    appears only when all succeeded."""
    import keras

    from export import export_model
    from pipelines import reading_qa_data, training
    from serving.vocab import Vocabulary, write_vocab

    config.check()
    config = config.resolved()
    tasks = tasks_of(config)
    splits = load_data(config, tasks)
    if config.softmax_slots == -1:
        longest = max(len(ex.story) for ex in splits["train"])
        config = dataclasses.replace(config, softmax_slots=min(config.memory_size, longest))
    started = time.time()
    with training.task_run(config, TASK) as run_dir:
        vocab_list, answers = reading_qa_data.build_vocabularies(splits["train"])
        write_vocab(run_dir / "vocab.txt", vocab_list)
        write_vocab(run_dir / "answers.txt", answers, "answers")
        vocab = Vocabulary(vocab_list)
        sentence_len = reading_qa_data.longest_sentence(splits)
        encoded = {name: reading_qa_data.encode(ex, vocab, answers, config.memory_size, sentence_len)
                   for name, ex in splits.items()}
        print(f"data: {', '.join(f'{k} {len(v)}' for k, v in splits.items())} questions; tasks {tasks}; "
              f"{len(vocab_list)} words, {len(answers)} answers; model {config.model}, {config.hops} hops, "
              f"{config.restarts} restarts")
        model, report, history, other = train(config, encoded, len(vocab_list), vocab.ids(answers), sentence_len)
        train_seconds = time.time() - started
        (run_dir / "history.json").write_text(json.dumps(history, indent=1) + "\n")
        dev = evaluate(model, encoded["valid"], splits["valid"], config.memory_size)
        test = evaluate(model, encoded["test"], splits["test"], config.memory_size)
        metrics = {
            "accuracy": test["accuracy"],
            "error": 1.0 - test["accuracy"],
            "dev_accuracy": dev["accuracy"],
            "per_task_accuracy": test["per_task"],
            "attention_on_support": test["attention_on_support"],
            "test_examples": len(splits["test"]),
            **report,
            # What the other --keep would have scored (for comparison only; the kept model is the one above).
            "other_keep": {"keep": "last" if config.keep == "best" else "best",
                           "dev_accuracy": evaluate(other, encoded["valid"], splits["valid"], config.memory_size)["accuracy"],
                           "accuracy": evaluate(other, encoded["test"], splits["test"], config.memory_size)["accuracy"]},
            "parameters": model.count_params(),
            "train_seconds": round(train_seconds, 1),
        }
        model.save(run_dir / "model.keras")
        if config.export:
            plot_attention(model, splits["test"][:3], vocab, run_dir, config.memory_size, sentence_len, answers)
            meta = export_model(model, run_dir, task_metadata(config, vocab_list, answers, sentence_len, tasks),
                                parity_batches(encoded["valid"]))
            metrics["onnx_max_abs_diff"] = max(meta["parity"]["onnx_max_abs_diff"].values())
            metrics["saved_model_max_abs_diff"] = max(meta["parity"]["saved_model_max_abs_diff"].values())
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        keras.backend.clear_session()
    return metrics


def run_all(config: ReadingQAConfig) -> dict:
    """One model per task (``--task all``): run dirs OUT/qa1 ... OUT/qa20, and OUT/summary.json."""
    out = Path(config.out)
    summary = {}
    for task in tasks_of(config):
        print(f"\n=== task {task} ===", flush=True)
        metrics = run(dataclasses.replace(config, task=str(task), out=str(out / f"qa{task}")))
        summary[str(task)] = metrics["accuracy"]
    errors = [1 - a for a in summary.values()]
    result = {"per_task_accuracy": summary, "mean_error": sum(errors) / len(errors),
              "failed_tasks": sum(e > 0.05 for e in errors)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    from models.memory import MODELS, POSITION_FORMULAS

    choices = {"model": MODELS, "optimizer": OPTIMIZERS, "position_formula": POSITION_FORMULAS, "keep": KEEPS}
    parser = build_parser(ReadingQAConfig, __doc__.split("\n\n")[1], choices=choices, prog="python -m pipelines.reading_qa")
    config = from_args(ReadingQAConfig, parser.parse_args(argv))
    try:
        config.check()
        metrics = run_all(config) if config.task == "all" else run(config)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(metrics, indent=2))
    if config.task == "all" or not config.export:
        return 0

    import serving

    result = serving.load(config.out).answer(DEMO_STORY, DEMO_QUESTION)
    print(f"\nonnxruntime, {config.out}/model.onnx:\n  {' '.join(DEMO_STORY)} {DEMO_QUESTION} → {result.answer} "
          f"({result.confidence:.3f}); supporting: {result.supporting}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
