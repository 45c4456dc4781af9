"""Reading comprehension with attention-based memory: ``python -m pipelines.reading_qa [--data-dir DIR]
[--task 1..20|all|joint] [--model memn2n|reader] [--hops N] [--quick]``.

Each statement of a story is stored in memory; the question drives a read head (attention) over it, ``hops``
times, and the read-out answers. ``memn2n``: End-To-End Memory Network (position and temporal encoding, adjacent
weight tying, linear start, random noise); ``reader``: a GRU reads each sentence and the question, a GRU controller
attends over the sentence states. Several random restarts train side by side; the best on dev is kept.

Data: built-in bAbI-style stories (tasks 1 and 2: single and two supporting facts) by default, or the bAbI
``tasks_1-20_v1-2/en`` folder with ``--data-dir`` (splits per ../shared/data/SPLITS.md). ``--task N`` trains on
task N, ``joint`` on all tasks together, ``all`` one model per task (run dirs OUT/qaN and a summary).

Training runs in two resumable phases of ``pipelines.runner.train``: ``linear-start`` (MemN2N without the attention
softmax) and ``train`` (the rest of the schedule). The restarts are ``members`` of one model (one einsum for all),
so they share both phases; the dev score of a phase is the best restart's, and the restart kept is the one best on
dev at the epoch kept (``--keep``).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pipelines  # noqa: F401  (quiet TensorFlow, Keras backend)
from pipelines.common import CommonOptions, check_positive
from pipelines.readers import DataError
from pipelines.task import Context, Task

TASK = "reading_qa"
KEEPS = ("auto", "best", "last")
OPTIMIZERS = ("auto", "sgd", "adam")
DEMO_STORY = ["Mary moved to the bathroom.", "John went to the hallway.", "Mary went back to the kitchen."]
DEMO_QUESTION = "Where is Mary?"
# The dev loss of one question is at most -log(1e-12) < 28, so ``correct - loss / 28`` orders (accuracy, -loss).
_LOSS_SCALE = 28.0


@dataclasses.dataclass(frozen=True)
class ReadingQAConfig(CommonOptions):
    data_dir: str | None = dataclasses.field(default=None, metadata={"help": "bAbI en folder; none: built-in data"})
    out: str = dataclasses.field(default="runs/reading_qa", metadata={"help": "run dir to write"})
    task: str = dataclasses.field(default="joint", metadata={"help": "bAbI task 1-20, joint (all tasks, one "
                                                                     "model) or all (one model per task)"})
    model: str = dataclasses.field(default="memn2n", metadata={"help": "memn2n or reader"})
    hops: int = dataclasses.field(default=3, metadata={"help": "attention reads over the memory"})
    epochs: int = dataclasses.field(default=60, metadata={"help": "epochs of the schedule, linear start included"})
    restarts: int = dataclasses.field(default=0, metadata={"help": "random restarts trained side by side, best on "
                                                                   "dev kept; 0: 6 for memn2n, 1 for reader"})
    embed_dim: int = dataclasses.field(default=0, metadata={"help": "0: 20 (memn2n per task), 50 (joint), 32 (reader)"})
    hidden: int = dataclasses.field(default=48, metadata={"help": "reader: GRU and memory width"})
    memory_size: int = dataclasses.field(default=50, metadata={"help": "most statements held (the most recent)"})
    linear_start: bool = dataclasses.field(default=True, metadata={"help": "memn2n: no attention softmax at first"})
    linear_start_epochs: int = dataclasses.field(default=20, metadata={"help": "longest linear start (at most "
                                                                                "--epochs - 1)"})
    noise: float = dataclasses.field(default=0.1, metadata={"help": "rate of empty memories inserted in training"})
    position_encoding: bool = True
    position_formula: str = dataclasses.field(default="code", metadata={
        "help": "memn2n: code (the authors' Matlab code: J = the padded width, twice the paper's scale) or paper "
                "(J = the sentence's length)"})
    temporal: bool = True
    softmax_slots: int = dataclasses.field(default=-1, metadata={
        "help": "memn2n: the attention softmax spans this many slots, the empty ones scoring 0, so a read can return "
                "little (the authors' code); -1: min(memory size, longest training story); 0: empty slots masked"})
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
    patience: int = dataclasses.field(default=0, metadata={
        "help": "epochs without a better dev score (the best restart's) before stopping; 0: none, the whole "
                "schedule runs (the authors' recipe)"})
    jit: bool = dataclasses.field(default=False, metadata={"help": "compile the training step with XLA (slower "
                                                                   "here: each story length recompiles)"})
    synthetic_size: int = dataclasses.field(default=2000, metadata={"help": "built-in training questions"})

    DEPRECATED_FLAGS = {"units": "hidden"}

    def check(self) -> None:
        """Raises DataError naming the first setting out of range."""
        from models.memory import MODELS, POSITION_FORMULAS

        super().check()
        if self.model not in MODELS:
            raise DataError(f"--model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.task not in ("joint", "all") and not (self.task.isdigit() and 1 <= int(self.task) <= 20):
            raise DataError(f"--task must be 1-20, joint or all, got {self.task!r}")
        if self.data_dir is None and self.task not in ("joint", "all", "1", "2"):
            raise DataError(f"the built-in stories have tasks 1 and 2 only, got --task {self.task}")
        check_positive(self, "hops", "hidden", "memory_size", "synthetic_size", "decay_every")
        if self.restarts < 0 or self.embed_dim < 0:
            raise DataError("--restarts and --embed-dim must not be negative")
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
        """Fills the automatic settings (but ``softmax_slots`` -1, which needs the data); ``--quick`` shrinks the
        data, the model and the epochs."""
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
                                   synthetic_size=min(config.synthetic_size, 600), hidden=24, decay_every=6,
                                   linear_start_epochs=min(config.linear_start_epochs, 3),
                                   memory_size=min(config.memory_size, 20))

    def linear_epochs(self) -> int:
        """Epochs of the linear-start phase (at most; with Adam it also ends when the dev loss stops falling)."""
        if self.model != "memn2n" or not self.linear_start:
            return 0
        return max(0, min(self.linear_start_epochs, self.epochs - 1))

    def learning_rate_at(self, epoch: int, softmax_from: int | None = None) -> float:
        """The learning rate of ``epoch`` (0-based, over both phases), the softmax back from epoch ``softmax_from``
        (None: still in the linear start): halved every ``decay_every`` epochs; with SGD the rate is per example
        (times the batch: the authors sum the gradients over the batch) and the halving starts over when the softmax
        comes back."""
        sgd = self.optimizer == "sgd"
        rate = self.learning_rate * self.batch_size if sgd else self.learning_rate
        start = softmax_from if sgd and softmax_from is not None else 0
        return rate * 0.5 ** ((epoch - start) // self.decay_every)


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
# Dev scores of the restarts, and the restart kept


def restart_scores(model, dev, labels) -> dict:
    """Per restart (member m) the dev ``accuracy_m`` and ``loss_m`` (``accuracy`` and ``loss`` for one restart),
    their ``mean_loss``, and ``score``: the best restart's correct answers minus its loss / 28, which orders the
    restarts as (accuracy, -loss) does: the monitor that picks the epoch kept."""
    import numpy as np

    probs = np.asarray(model.predict(dev, verbose=0)["answer_probs"])
    if probs.ndim == 2:
        probs = probs[:, None]
    known = labels >= 0
    picked = probs[np.arange(len(probs))[known], :, labels[known]]  # [n_known, members]
    correct = (probs.argmax(-1) == labels[:, None]).sum(0)
    loss = -np.log(np.maximum(picked, 1e-12)).mean(0) if known.any() else np.zeros(probs.shape[1])
    members = probs.shape[1]
    scores = {"score": float(max(c - l / _LOSS_SCALE for c, l in zip(correct, loss))), "mean_loss": float(loss.mean())}
    for m in range(members):
        suffix = f"_{m}" if members > 1 else ""
        scores[f"accuracy{suffix}"] = float(correct[m] / len(labels))
        scores[f"loss{suffix}"] = float(loss[m])
    return scores


def restart_keys(row: dict, members: int) -> list[tuple]:
    """(dev accuracy, -dev loss) of each restart in one row of a phase's history."""
    suffixes = [f"_{m}" if members > 1 else "" for m in range(members)]
    return [(row[f"val_accuracy{s}"], -row[f"val_loss{s}"]) for s in suffixes]


def best_restart(keys: list[tuple]) -> int:
    return max(range(len(keys)), key=lambda m: keys[m])


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
        "model": {"kind": config.model, "hops": config.hops, "embed_dim": config.embed_dim, "hidden": config.hidden,
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



class ReadingQA(Task):
    """Story + question → answer, through attention over a memory of statements; random restarts side by side."""

    name = TASK
    config_class = ReadingQAConfig
    monitor = "score"
    demo_input = {"story": DEMO_STORY, "question": DEMO_QUESTION}

    def choices(self):
        from models.memory import MODELS, POSITION_FORMULAS
        from pipelines.distribute import STRATEGIES

        return {"model": MODELS, "optimizer": OPTIMIZERS, "position_formula": POSITION_FORMULAS, "keep": KEEPS,
                "strategy": STRATEGIES}

    def data(self, config):
        return load_data(config, tasks_of(config))

    def preprocess(self, ctx: Context):
        """Vocabularies (written as vocab.txt and answers.txt) and the encoded splits; resolves ``--softmax-slots
        -1`` from the longest training story (config.json then holds the value used)."""
        from pipelines import reading_qa_data
        from serving.vocab import Vocabulary, write_vocab

        c, splits = ctx.config, ctx.splits
        if c.softmax_slots == -1:
            longest = max(len(ex.story) for ex in splits["train"])
            ctx.config = c = dataclasses.replace(c, softmax_slots=min(c.memory_size, longest))
            (ctx.run_dir / "config.json").write_text(json.dumps({"task": TASK, **dataclasses.asdict(c)}, indent=2))
        words, answers = reading_qa_data.build_vocabularies(splits["train"])
        write_vocab(ctx.run_dir / "vocab.txt", words)
        write_vocab(ctx.run_dir / "answers.txt", answers, "answers")
        vocab = Vocabulary(words)
        sentence_len = reading_qa_data.longest_sentence(splits)
        encoded = {name: reading_qa_data.encode(ex, vocab, answers, c.memory_size, sentence_len)
                   for name, ex in splits.items()}
        ctx.extras.update(words=words, answers=answers, sentence_len=sentence_len, tasks=tasks_of(c), encoded=encoded)
        print(f"data: {', '.join(f'{k} {len(v)}' for k, v in splits.items())} questions; tasks {tasks_of(c)}; "
              f"{len(words)} words, {len(answers)} answers; model {c.model}, {c.hops} hops, {c.restarts} restarts")
        return vocab

    def build_model(self, ctx: Context, members: int = 1):
        from models.memory import build_reading_model

        c, e = ctx.config, ctx.extras
        sizes = dict(vocab_size=len(e["words"]), answer_ids=ctx.prep.ids(e["answers"]), memory_size=c.memory_size,
                     hops=c.hops, embed_dim=c.embed_dim)
        if c.model == "memn2n":
            sizes.update(position_encoding=c.position_encoding, temporal=c.temporal,
                         position_formula=c.position_formula, softmax_slots=c.softmax_slots)
        else:
            sizes.update(units=c.hidden)
        return build_reading_model(c.model, sentence_len=e["sentence_len"], members=members, **sizes)

    def compile(self, ctx: Context, model):
        import keras

        from pipelines import training

        c = ctx.config
        sgd = c.optimizer == "sgd"
        if sgd:  # the authors' code sums the loss over the batch and clips each weight's gradient at clipnorm
            optimizer = keras.optimizers.SGD(learning_rate=c.learning_rate_at(0), clipnorm=(c.clipnorm / c.batch_size)
                                             or None, use_ema=bool(c.ema), ema_momentum=c.ema or 0.99)
        else:
            optimizer = training.optimizer(c.learning_rate, c.clipnorm, c.ema)
        # SGD: loss weight = restarts, so each restart's gradient is its own batch mean (not divided by the count).
        model.compile(optimizer=optimizer, loss_weights={"answer_probs": float(c.restarts) if sgd else 1.0,
                                                         "attention": 0.0},
                      loss={"answer_probs": keras.losses.SparseCategoricalCrossentropy(), "attention": None},
                      jit_compile=c.jit)
        return model

    def train_data(self, ctx: Context, seed: int):
        from pipelines import reading_qa_data

        c = ctx.config
        return reading_qa_data.dataset(*ctx.extras["encoded"]["train"], batch_size=c.batch_size * ctx.run.replicas,
                                       members=c.restarts, shuffle=True, seed=seed, noise=c.noise,
                                       memory_size=c.memory_size)

    def validate(self, ctx: Context, model) -> dict:
        from pipelines import reading_qa_data

        if "dev" not in ctx.extras:
            ctx.extras["dev"] = reading_qa_data.dataset(*ctx.extras["encoded"]["valid"], batch_size=256)
        return restart_scores(model, ctx.extras["dev"], ctx.extras["encoded"]["valid"][2])

    def fit(self, ctx: Context):
        """The restarts train side by side in two phases: ``linear-start`` (MemN2N without the attention softmax;
        with Adam it also ends once the mean dev loss has not fallen for 2 epochs) and ``train`` (the softmax back;
        ``--keep`` best or last, on the best restart's dev score). The epoch count, data order and learning rate run
        on across the two. Returns the restart kept (a one-member model); the other ``--keep``'s pick goes into
        ``ctx.extras["other"]``."""
        from models.memory import extract_member, set_linear_start
        from pipelines import runner

        c = ctx.config
        with ctx.run.strategy.scope():
            model = self.compile(ctx, self.build_model(ctx, members=c.restarts))

        def epochs_from(offset: int):
            def make_dataset(epoch: int):
                # One dataset for the epochs run in a row (its cache filled once; each fit draws its next reshuffle):
                # the same batches as the dataset of epoch ``offset + epoch`` made afresh, as a resumed run does.
                epoch += offset
                dataset, next_epoch = ctx.extras.get("train_data", (None, None))
                if next_epoch != epoch or ctx.run.distributed:
                    dataset = ctx.run.epoch_data(lambda seed: self.train_data(ctx, seed), epoch)
                ctx.extras["train_data"] = dataset, epoch + 1
                return dataset
            return make_dataset

        def schedule(offset: int, linear: bool):
            def on_epoch_begin(epoch: int) -> None:
                set_linear_start(model, linear)
                model.optimizer.learning_rate.assign(c.learning_rate_at(offset + epoch, None if linear else offset))
            return on_epoch_begin

        budget, done = c.max_minutes, 0
        if c.linear_epochs():
            def linear_scores():  # the monitor: the mean dev loss over the restarts, falling
                scores = self.validate(ctx, model)
                return {"neg_mean_loss": -scores["mean_loss"], **scores}

            linear = runner.train(
                model, epochs_from(0), ctx.run, phase="linear-start", epochs=c.linear_epochs(), keep="last",
                validate=linear_scores, monitor="neg_mean_loss",
                patience=c.linear_epochs() if c.optimizer == "sgd" else 2, on_epoch_begin=schedule(0, True))
            done = linear["epoch"]
            if budget:  # one budget for both phases; the softmax phase runs at least one epoch
                budget = max(budget - linear["seconds"] / 60, 1e-9)
        last_path = ctx.run.resume_dir / "train" / "last.weights.h5"

        def validate():
            scores = self.validate(ctx, model)
            if c.keep == "best":  # the other --keep's pick: this epoch's weights, in case it is the last
                last_path.parent.mkdir(parents=True, exist_ok=True)
                model.save_weights(last_path)
            return scores

        loop = runner.train(model, epochs_from(done), ctx.run, phase="train", epochs=c.epochs - done, keep=c.keep,
                            validate=validate, monitor=self.monitor, patience=c.patience or c.epochs,
                            max_minutes=budget, on_epoch_begin=schedule(done, False))
        keys = [restart_keys(row, c.restarts) for row in loop["history"]]  # [epoch][restart]: (accuracy, -loss)
        best, last = keys[loop["best_epoch"]], keys[-1]
        chosen = best_restart(best if c.keep == "best" else last)
        kept = extract_member(model, chosen)
        # The other --keep: the last epoch's weights (saved by validate above), or the runner's best-epoch weights.
        model.load_weights(last_path if c.keep == "best" else ctx.run.resume_dir / "train" / "best.weights.h5")
        ctx.extras["other"] = extract_member(model, best_restart(last if c.keep == "best" else best))
        ctx.extras["report"] = {
            "restarts": c.restarts, "keep": c.keep, "chosen_restart": chosen,
            "restart_dev_accuracy": [round((max(k[m] for k in keys) if c.keep == "best" else last[m])[0], 4)
                                     for m in range(c.restarts)],
            "chosen_epoch": done + (loop["best_epoch"] + 1 if c.keep == "best" else len(keys))}
        return kept

    def evaluate(self, ctx: Context, model) -> dict:
        def scores(model, split: str) -> dict:
            return evaluate(model, ctx.extras["encoded"][split], ctx.splits[split], ctx.config.memory_size)

        dev, test, other = scores(model, "valid"), scores(model, "test"), ctx.extras["other"]
        return {
            "accuracy": test["accuracy"],
            "error": 1.0 - test["accuracy"],
            "dev_accuracy": dev["accuracy"],
            "per_task_accuracy": test["per_task"],
            "attention_on_support": test["attention_on_support"],
            "test_examples": len(ctx.splits["test"]),
            **ctx.extras["report"],
            # What the other --keep would have scored (for comparison only; the kept model is the one above).
            "other_keep": {"keep": "last" if ctx.config.keep == "best" else "best",
                           "dev_accuracy": scores(other, "valid")["accuracy"],
                           "accuracy": scores(other, "test")["accuracy"]},
            "parameters": model.count_params(),
        }

    def export_spec(self, ctx: Context, model) -> dict:
        e = ctx.extras
        return task_metadata(ctx.config, e["words"], e["answers"], e["sentence_len"], e["tasks"])

    def parity_batches(self, ctx: Context) -> list[dict]:
        return parity_batches(ctx.extras["encoded"]["valid"])

    def export(self, ctx: Context, model) -> dict:
        """model.keras, three attention plots, SavedModel + ONNX with parity (MemN2N: the native ONNX emitter)."""
        from export import export_model
        from pipelines.training import float32_model

        c, e = ctx.config, ctx.extras
        model = float32_model(lambda: self.build_model(ctx), model)
        model.save(ctx.run_dir / "model.keras")
        plot_attention(model, ctx.splits["test"][:3], ctx.prep, ctx.run_dir, c.memory_size, e["sentence_len"],
                       e["answers"])
        meta = export_model(model, ctx.run_dir, self.export_spec(ctx, model), self.parity_batches(ctx))
        return {"onnx_max_abs_diff": max(meta["parity"]["onnx_max_abs_diff"].values()),
                "saved_model_max_abs_diff": max(meta["parity"]["saved_model_max_abs_diff"].values())}


READING_QA = ReadingQA()


def run(config: ReadingQAConfig) -> dict:
    """Trains, evaluates and exports one model (one task, or all tasks jointly); returns the metrics. The run dir
    appears only when all succeeded."""
    import keras

    try:
        return READING_QA.run(config)
    finally:
        keras.backend.clear_session()


def run_all(config: ReadingQAConfig) -> dict:
    """One model per task (``--task all``): run dirs OUT/qa1 ... OUT/qa20, and OUT/summary.json."""
    config.check()
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
    """The command line (``pipelines.runner.main``); ``--task all`` trains one model per task instead."""
    import argparse

    from pipelines import runner
    from pipelines.common import build_parser, from_args

    task = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    task.add_argument("--task")
    if task.parse_known_args(argv)[0].task != "all":
        return runner.main(READING_QA, argv)
    parser = build_parser(ReadingQAConfig, READING_QA.description(), choices=READING_QA.choices(),
                          prog=f"python -m pipelines.{TASK}")
    try:
        summary = run_all(from_args(ReadingQAConfig, parser.parse_args(argv)))
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
