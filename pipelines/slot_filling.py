"""Slot filling + intent detection, end to end: ``python -m pipelines.slot_filling [--data-dir DIR] [--quick]``.

"arrive taipei on november 2nd": each word is fed in order; the model outputs a slot distribution per word
(and an intent for the utterance); the loss is the cross-entropy between each output and its reference label,
summed over the sentence, trained by backpropagation through time with gradient clipping.

Data: the built-in synthetic flight queries by default, or an ATIS/SNIPS-style folder (``train/``, ``valid/``,
``test/``, each with ``seq.in``, ``seq.out``, ``label``) given with ``--data-dir``.
"""

from __future__ import annotations

import dataclasses
import sys

import pipelines  # noqa: F401  (quiet TensorFlow, Keras backend)
from pipelines.common import CommonOptions, check_positive, check_rate
from pipelines.readers import DataError, SlotExample, read_dataset
from pipelines.synthetic import synthetic_dataset
from pipelines.task import Context, Task

TASK = "slot_filling"
DEMO = "show me flights from boston to denver on monday morning"


@dataclasses.dataclass(frozen=True)
class SlotFillingConfig(CommonOptions):
    data_dir: str | None = dataclasses.field(default=None, metadata={"help": "ATIS-style folder; none: built-in data"})
    out: str = dataclasses.field(default="runs/slot_filling", metadata={"help": "run dir to write"})
    epochs: int = dataclasses.field(default=40, metadata={"help": "most epochs (early stopping may end sooner)"})
    cell: str = dataclasses.field(default="lstm", metadata={"help": "recurrent cell"})
    bidirectional: bool = True
    layers: int = 2
    embed_dim: int = 128
    hidden: int = dataclasses.field(default=128, metadata={"help": "recurrent units per direction"})
    dropout: float = 0.3
    token_dropout: float = dataclasses.field(default=0.05, metadata={"help": "rate of words replaced by <unk>"})
    char_dim: int = dataclasses.field(default=32, metadata={"help": "character embedding width; 0: no character "
                                                                    "features"})
    char_filters: int = dataclasses.field(default=64, metadata={"help": "character CNN filters per word"})
    word_chars: int = dataclasses.field(default=16, metadata={"help": "characters read per word"})
    batch_size: int = dataclasses.field(default=32, metadata={"help": "examples per batch and replica"})
    learning_rate: float = 2e-3
    intent_weight: float = dataclasses.field(
        default=3.0, metadata={"help": "weight of the intent loss (the slot loss is summed over the words)"})
    clipnorm: float = dataclasses.field(default=1.0, metadata={"help": "gradient norm clip; 0 disables"})
    patience: int = dataclasses.field(default=8, metadata={"help": "epochs without a better dev slot F1"})
    max_len: int = dataclasses.field(default=128, metadata={"help": "longest input in words"})
    synthetic_size: int = dataclasses.field(default=3000, metadata={"help": "built-in training examples"})

    DEPRECATED_FLAGS = {"units": "hidden", "word_dropout": "token_dropout"}

    def check(self) -> None:
        """Raises DataError naming the first setting out of range."""
        super().check()
        check_positive(self, "layers", "embed_dim", "hidden", "max_len", "synthetic_size", "char_filters",
                       "word_chars")
        if self.char_dim < 0:
            raise DataError("--char-dim must not be negative (0 turns character features off)")
        check_rate(self, "dropout", "token_dropout")
        if self.learning_rate <= 0 or self.intent_weight < 0:
            raise DataError("--learning-rate must be positive; --intent-weight must not be negative")

    def resolved(self) -> "SlotFillingConfig":
        """The config actually run: ``--quick`` shrinks the model, the data and the epochs."""
        if not self.quick:
            return self
        return dataclasses.replace(
            self, epochs=min(self.epochs, 6), embed_dim=32, hidden=32, layers=1, learning_rate=5e-3,
            synthetic_size=min(self.synthetic_size, 800), patience=3,
        )


def load_data(config: SlotFillingConfig) -> dict[str, list[SlotExample]]:
    """The splits to use: the folder's, or built-in ones. A missing valid split is cut from train (last 10%)."""
    if config.data_dir is None:
        n = config.synthetic_size
        return synthetic_dataset(n, max(n // 8, 50), max(n // 8, 50), seed=config.seed)
    splits = read_dataset(config.data_dir)
    if "valid" not in splits:
        cut = max(1, len(splits["train"]) // 10)
        splits["train"], splits["valid"] = splits["train"][:-cut], splits["train"][-cut:]
    splits.setdefault("test", splits["valid"])
    return splits


def parity_batches(examples: list[SlotExample], preprocessor, n: int = 4, size: int = 16) -> list[dict]:
    """Real batches of mixed lengths (in data order, so each batch pads short sentences) for export parity."""
    from pipelines import batching
    from pipelines.slot_data import inference_dataset

    return batching.parity_batches(inference_dataset(examples[: n * size], preprocessor, batch_size=size), n)


def task_metadata(config, vocab, tags, intents, chars=None) -> dict:
    from models.chars import CHAR_INPUT
    from models.slot_filling import INPUT, INTENT_OUTPUT, SLOT_OUTPUT
    from serving.tokenizer import SPEC
    from serving.vocab import PAD_ID, UNK_ID

    inputs = {INPUT: {"name": INPUT, "dtype": "int32", "shape": ["batch", "time"], "pad_id": PAD_ID}}
    char_meta = {}
    if chars:
        inputs[CHAR_INPUT] = {"name": CHAR_INPUT, "dtype": "int32", "shape": ["batch", "time", config.word_chars],
                              "pad_id": PAD_ID}
        char_meta = {"chars": chars, "word_chars": config.word_chars,
                     "char_rule": "the first word_chars code points of each normalized word, each mapped to its id "
                                  "in chars (unk_id if absent), 0-padded to word_chars; padded steps are all 0"}
    return {
        "task": TASK,
        "inputs": inputs,
        "outputs": {
            SLOT_OUTPUT: {"name": SLOT_OUTPUT, "dtype": "float32", "shape": ["batch", "time", len(tags)]},
            INTENT_OUTPUT: {"name": INTENT_OUTPUT, "dtype": "float32", "shape": ["batch", len(intents)]},
        },
        "tokenizer": SPEC,
        "vocab": vocab,
        "pad_id": PAD_ID,
        "unk_id": UNK_ID,
        "slot_tags": tags,
        "intents": intents,
        **char_meta,
        "slot_decoding": "iob_viterbi",
        "max_len": config.max_len,
        "model": {"cell": config.cell, "bidirectional": config.bidirectional, "layers": config.layers,
                  "hidden": config.hidden, "embed_dim": config.embed_dim, "char_dim": config.char_dim},
    }


class SlotFilling(Task):
    """Many-to-many tagging plus an utterance intent; the dev slot F1 picks the epoch."""

    name = TASK
    config_class = SlotFillingConfig
    monitor = "slot_f1"
    demo_input = DEMO

    def choices(self):
        from models.recurrent import CELL_CHOICES
        from pipelines.distribute import STRATEGIES

        return {"cell": CELL_CHOICES, "strategy": STRATEGIES}

    def data(self, config):
        splits = load_data(config)
        from pipelines import slot_data

        for name, examples in splits.items():
            slot_data.check_lengths(examples, config.max_len, name)
        return splits

    def preprocess(self, ctx: Context):
        from pipelines import slot_data

        vocab, tags, intents = slot_data.build_vocabularies(ctx.splits["train"])
        chars = slot_data.build_char_vocabulary(vocab) if ctx.config.char_dim else None
        slot_data.write_vocabularies(ctx.run_dir, vocab, tags, intents, chars)
        ctx.extras.update(vocab=vocab, tags=tags, intents=intents, chars=chars)
        print(f"data: {', '.join(f'{k} {len(v)}' for k, v in ctx.splits.items())}; "
              f"{len(vocab)} words, {len(tags)} slot tags, {len(intents)} intents; "
              f"{ctx.run.replicas} replica(s), worker {ctx.run.worker.index + 1} of {ctx.run.worker.count}")
        return slot_data.SlotPreprocessor(ctx.run_dir, ctx.config.word_chars if chars else 0)

    def build_model(self, ctx: Context):
        from models.slot_filling import build_slot_filler

        c, e = ctx.config, ctx.extras
        return build_slot_filler(len(e["vocab"]), len(e["tags"]), len(e["intents"]), cell=c.cell,
                                 embed_dim=c.embed_dim, units=c.hidden, layers=c.layers,
                                 bidirectional=c.bidirectional, dropout=c.dropout,
                                 n_chars=len(e["chars"] or ()), char_dim=c.char_dim, char_filters=c.char_filters,
                                 word_chars=c.word_chars)

    def compile(self, ctx: Context, model):
        import keras

        from models.losses import SummedSequenceCrossEntropy
        from models.slot_filling import INTENT_OUTPUT, SLOT_OUTPUT
        from pipelines import training
        from pipelines.cudnn import warn_cudnn

        model.compile(
            optimizer=training.optimizer(ctx.config.learning_rate, ctx.config.clipnorm, ctx.config.ema),
            loss={SLOT_OUTPUT: SummedSequenceCrossEntropy(), INTENT_OUTPUT: keras.losses.SparseCategoricalCrossentropy()},
            loss_weights={SLOT_OUTPUT: 1.0, INTENT_OUTPUT: ctx.config.intent_weight},
            metrics={INTENT_OUTPUT: ["accuracy"]},
        )
        warn_cudnn(model)
        return model

    def train_data(self, ctx: Context, seed: int):
        from pipelines import slot_data

        c = ctx.config
        return slot_data.training_dataset(
            ctx.splits["train"], ctx.prep, batch_size=c.batch_size * ctx.run.replicas, max_len=c.max_len, seed=seed,
            word_dropout_rate=c.token_dropout, drop_remainder=ctx.run.distributed)

    def validate(self, ctx: Context, model) -> dict:
        from pipelines.evaluation import evaluate

        scores = evaluate(model, ctx.splits["valid"], ctx.prep, ctx.extras["tags"], ctx.extras["intents"])
        return {"slot_f1": scores["slot_f1"], "intent_accuracy": scores["intent_accuracy"]}

    def evaluate(self, ctx: Context, model) -> dict:
        from pipelines.evaluation import evaluate

        tags, intents = ctx.extras["tags"], ctx.extras["intents"]
        metrics = {f"dev_{k}": v for k, v in evaluate(model, ctx.splits["valid"], ctx.prep, tags, intents).items()}
        metrics.update(evaluate(model, ctx.splits["test"], ctx.prep, tags, intents))
        metrics["unseen_test_intents"] = sum(ex.intent not in set(intents) for ex in ctx.splits["test"])
        return metrics

    def export_spec(self, ctx: Context, model) -> dict:
        e = ctx.extras
        return task_metadata(ctx.config, e["vocab"], e["tags"], e["intents"], e["chars"])

    def parity_batches(self, ctx: Context) -> list[dict]:
        return parity_batches(ctx.splits["valid"], ctx.prep)


SLOT_FILLING = SlotFilling()


def run(config: SlotFillingConfig) -> dict:
    """Trains, evaluates and exports; returns the test metrics. The run dir appears only when all succeeded."""
    return SLOT_FILLING.run(config)


def main(argv: list[str] | None = None) -> int:
    return SLOT_FILLING.main(argv)


if __name__ == "__main__":
    sys.exit(main())
