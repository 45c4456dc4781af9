"""Slot filling + intent detection, end to end: ``python -m pipelines.slot_filling [--data-dir DIR] [--quick]``.

"arrive taipei on november 2nd": each word is fed in order; the model outputs a slot distribution per word
(and an intent for the utterance); the loss is the cross-entropy between each output and its reference label,
summed over the sentence, trained by backpropagation through time with gradient clipping.

Data: the built-in synthetic flight queries by default, or an ATIS/SNIPS-style folder (``train/``, ``valid/``,
``test/``, each with ``seq.in``, ``seq.out``, ``label``) given with ``--data-dir``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time

import pipelines  # noqa: F401  (quiet TensorFlow, Keras backend)
from pipelines.config import run_command_line
from pipelines.readers import DataError, SlotExample, read_dataset
from pipelines.synthetic import synthetic_dataset
from pipelines.distribute import STRATEGIES
from pipelines.training import TrainingOptions

TASK = "slot_filling"
DEMO = "show me flights from boston to denver on monday morning"


@dataclasses.dataclass(frozen=True)
class SlotFillingConfig(TrainingOptions):
    data_dir: str | None = dataclasses.field(default=None, metadata={"help": "ATIS-style folder; none: built-in data"})
    out: str = dataclasses.field(default="runs/slot_filling", metadata={"help": "run dir to write"})
    epochs: int = dataclasses.field(default=40, metadata={"help": "most epochs (early stopping may end sooner)"})
    cell: str = dataclasses.field(default="lstm", metadata={"help": "recurrent cell"})
    bidirectional: bool = True
    layers: int = 2
    embed_dim: int = 128
    units: int = 128
    dropout: float = 0.3
    word_dropout: float = dataclasses.field(default=0.05, metadata={"help": "rate of words replaced by <unk>"})
    batch_size: int = dataclasses.field(default=32, metadata={"help": "examples per batch and replica"})
    learning_rate: float = 2e-3
    intent_weight: float = dataclasses.field(default=1.0, metadata={"help": "weight of the intent loss"})
    clipnorm: float = dataclasses.field(default=1.0, metadata={"help": "gradient norm clip; 0 disables"})
    patience: int = dataclasses.field(default=8, metadata={"help": "epochs without a better dev slot F1"})
    max_len: int = dataclasses.field(default=128, metadata={"help": "longest input in words"})
    synthetic_size: int = dataclasses.field(default=3000, metadata={"help": "built-in training examples"})
    seed: int = 0
    quick: bool = dataclasses.field(default=False, metadata={"help": "seconds-long smoke run"})

    def check(self) -> None:
        """Raises DataError naming the first setting out of range."""
        positive = ("epochs", "layers", "embed_dim", "units", "batch_size", "max_len", "synthetic_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise DataError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("dropout", "word_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise DataError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(self, name)}")
        if self.learning_rate <= 0 or self.clipnorm < 0 or self.intent_weight < 0:
            raise DataError("--learning-rate must be positive; --clipnorm and --intent-weight must not be negative")

    def resolved(self) -> "SlotFillingConfig":
        """The config actually run: ``--quick`` shrinks the model, the data and the epochs."""
        if not self.quick:
            return self
        return dataclasses.replace(
            self, epochs=min(self.epochs, 6), embed_dim=32, units=32, layers=1, learning_rate=5e-3,
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


def task_metadata(config, vocab, tags, intents) -> dict:
    from models.slot_filling import INPUT, INTENT_OUTPUT, SLOT_OUTPUT
    from serving.tokenizer import SPEC
    from serving.vocab import PAD_ID, UNK_ID

    return {
        "task": TASK,
        "inputs": {INPUT: {"name": INPUT, "dtype": "int32", "shape": ["batch", "time"], "pad_id": PAD_ID}},
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
        "max_len": config.max_len,
        "model": {"cell": config.cell, "bidirectional": config.bidirectional, "layers": config.layers,
                  "units": config.units, "embed_dim": config.embed_dim},
    }


def run(config: SlotFillingConfig) -> dict:
    """Trains, evaluates and exports; returns the test metrics. The run dir appears only when all succeeded."""
    import keras

    from export import export_model
    from models.losses import SummedSequenceCrossEntropy
    from models.slot_filling import INTENT_OUTPUT, SLOT_OUTPUT, build_slot_filler
    from pipelines import distribute, slot_data, training
    from pipelines.cudnn import warn_cudnn
    from pipelines.evaluation import ValidationMetrics, evaluate

    config.check()
    config = config.resolved()
    splits = load_data(config)
    for name, examples in splits.items():
        slot_data.check_lengths(examples, config.max_len, name)
    started = time.time()
    with training.distributed_run(config, TASK) as run:
        run_dir = run.dir
        vocab, tags, intents = slot_data.build_vocabularies(splits["train"])
        slot_data.write_vocabularies(run_dir, vocab, tags, intents)
        print(f"data: {', '.join(f'{k} {len(v)}' for k, v in splits.items())}; "
              f"{len(vocab)} words, {len(tags)} slot tags, {len(intents)} intents; "
              f"{run.replicas} replica(s), worker {run.worker.index + 1} of {run.worker.count}")

        preprocessor = slot_data.SlotPreprocessor(run_dir)

        def shuffled(seed: int):
            dataset = slot_data.training_dataset(
                splits["train"], preprocessor, batch_size=config.batch_size * run.replicas,
                max_len=config.max_len, seed=seed, word_dropout_rate=config.word_dropout,
                drop_remainder=run.replicas > 1,
            )
            return distribute.distributed_options(dataset) if run.worker.count > 1 else dataset

        def epoch_data(epoch: int):
            return training.epoch_dataset(shuffled, config.seed, epoch, distributed=run.replicas > 1)

        def build():
            return build_slot_filler(
                len(vocab), len(tags), len(intents), cell=config.cell, embed_dim=config.embed_dim,
                units=config.units, layers=config.layers, bidirectional=config.bidirectional, dropout=config.dropout,
            )

        with run.strategy.scope():
            model = build()
            model.compile(
                optimizer=training.optimizer(config.learning_rate, config.clipnorm),
                loss={SLOT_OUTPUT: SummedSequenceCrossEntropy(),
                      INTENT_OUTPUT: keras.losses.SparseCategoricalCrossentropy()},
                loss_weights={SLOT_OUTPUT: 1.0, INTENT_OUTPUT: config.intent_weight},
                metrics={INTENT_OUTPUT: ["accuracy"]},
            )
        warn_cudnn(model)
        validation = ValidationMetrics(splits["valid"], preprocessor, tags, intents)
        training.fit_epochs(model, epoch_data, run, config, monitor="val_slot_f1", patience=config.patience,
                            validation=[validation])
        model.load_weights(run_dir / "checkpoints" / "best.weights.h5")
        train_seconds = time.time() - started

        metrics = {f"dev_{k}": v for k, v in evaluate(model, splits["valid"], preprocessor, tags, intents).items()}
        metrics.update(evaluate(model, splits["test"], preprocessor, tags, intents))
        metrics["train_seconds"] = round(train_seconds, 1)
        metrics["unseen_test_intents"] = sum(ex.intent not in set(intents) for ex in splits["test"])
        if not run.worker.is_chief:
            return metrics  # the chief writes the run dir and the export
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        model = training.float32_model(build, model)
        model.save(run_dir / "model.keras")

        meta = export_model(
            model, run_dir, task_metadata(config, vocab, tags, intents), parity_batches(splits["valid"], preprocessor)
        )
        metrics["onnx_max_abs_diff"] = max(meta["parity"]["onnx_max_abs_diff"].values())
    return metrics


def main(argv: list[str] | None = None) -> int:
    from models.recurrent import CELL_CHOICES

    config, metrics = run_command_line(
        SlotFillingConfig, run, argv, module_doc=__doc__, prog="python -m pipelines.slot_filling",
        choices={"cell": CELL_CHOICES, "strategy": STRATEGIES})
    if metrics is None:
        return 2
    if "onnx_max_abs_diff" not in metrics:
        return 0  # a worker other than the chief: it exports nothing

    import serving

    predictor = serving.load(config.out)
    result = predictor.predict(DEMO)
    print(f"\nonnxruntime, {config.out}/model.onnx:\n  {DEMO!r}\n  intent: {result.intent} "
          f"({result.intent_confidence:.3f})\n  slots: {result.slots}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
