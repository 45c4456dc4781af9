"""Sentiment analysis, many-to-one: ``python -m pipelines.sentiment [--data-dir DIR] [--units word|char] [--quick]``.

The text is fed in one symbol (word or character) per time step and the sentiment is read from the recurrent
states: at the last step (``--readout last``, as the lecture does), pooled over all steps (``mean``), or by an
attention over the steps (``attention``). Trained with cross-entropy and gradient clipping.

Data: built-in synthetic review sentences by default, or Pang & Lee's rt-polarity folder (``rt-polarity.pos``,
``rt-polarity.neg``, cp1252) given with ``--data-dir``, split as ../shared/data/SPLITS.md fixes.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time

import pipelines  # noqa: F401  (quiet TensorFlow, Keras backend)
from pipelines.config import run_command_line
from pipelines.polarity import TextExample, read_polarity
from pipelines.readers import DataError
from pipelines.synthetic_reviews import synthetic_splits

TASK = "sentiment"
DEMO = "a gripping, funny and humane film"


@dataclasses.dataclass(frozen=True)
class SentimentConfig:
    data_dir: str | None = dataclasses.field(default=None, metadata={"help": "rt-polarity folder; none: built-in data"})
    out: str = dataclasses.field(default="runs/sentiment", metadata={"help": "run dir to write"})
    units: str = dataclasses.field(default="word", metadata={"help": "one time step per word or per character"})
    readout: str = dataclasses.field(default="attention", metadata={"help": "how the class is read from the states"})
    epochs: int = dataclasses.field(default=20, metadata={"help": "most epochs (early stopping may end sooner)"})
    cell: str = dataclasses.field(default="lstm", metadata={"help": "recurrent cell"})
    bidirectional: bool = True
    layers: int = 1
    embed_dim: int = 128
    hidden: int = dataclasses.field(default=128, metadata={"help": "recurrent units per direction"})
    pool_embeddings: bool = dataclasses.field(
        default=False, metadata={"help": "also classify from the max-pooled word embeddings (bag of words)"})
    members: int = dataclasses.field(default=1, metadata={"help": "ensemble size: independent models averaged"})
    naive_bayes: int = dataclasses.field(
        default=3, metadata={"help": "mix in a naive-Bayes path over 1..N-grams after training (weights fitted on "
                                     "dev); 0: none, the recurrent model alone"})
    pretrain_epochs: int = dataclasses.field(
        default=0, metadata={"help": "epochs of language-model pre-training on the training texts; 0: none"})
    lm_vocab: int = dataclasses.field(default=10000, metadata={"help": "most frequent tokens the language model predicts"})
    dropout: float = 0.5
    token_dropout: float = dataclasses.field(default=0.1, metadata={"help": "rate of tokens replaced by <unk>"})
    min_count: int = dataclasses.field(default=1, metadata={"help": "tokens seen fewer times in train become <unk>"})
    batch_size: int = 32
    learning_rate: float = 1e-3
    clipnorm: float = dataclasses.field(default=1.0, metadata={"help": "gradient norm clip; 0 disables"})
    ema: float = dataclasses.field(default=0.99, metadata={"help": "weight averaging momentum; 0 disables"})
    patience: int = dataclasses.field(default=4, metadata={"help": "epochs without a better dev accuracy"})
    max_len: int = dataclasses.field(default=0, metadata={"help": "longest input in tokens; 0: 128 words or 512 chars"})
    encoding: str = dataclasses.field(default="cp1252", metadata={"help": "encoding of the --data-dir files"})
    synthetic_size: int = dataclasses.field(default=4000, metadata={"help": "built-in training examples"})
    seed: int = 0
    quick: bool = dataclasses.field(default=False, metadata={"help": "seconds-long smoke run"})

    def check(self) -> None:
        """Raises DataError naming the first setting out of range."""
        for name in ("epochs", "layers", "embed_dim", "hidden", "members", "batch_size", "synthetic_size", "min_count"):
            if getattr(self, name) < 1:
                raise DataError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("dropout", "token_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise DataError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(self, name)}")
        if self.naive_bayes < 0:
            raise DataError(f"--naive-bayes must not be negative, got {self.naive_bayes}")
        if self.pretrain_epochs < 0 or self.lm_vocab < 2:
            raise DataError("--pretrain-epochs must not be negative and --lm-vocab must be at least 2")
        if self.max_len < 0 or self.learning_rate <= 0 or self.clipnorm < 0:
            raise DataError("--max-len must not be negative, --learning-rate must be positive, --clipnorm >= 0")
        if not 0 <= self.ema < 1:
            raise DataError(f"--ema must be in [0, 1), got {self.ema}")

    def resolved(self) -> "SentimentConfig":
        """The config actually run: max_len filled in; ``--quick`` shrinks the model, the data and the epochs."""
        config = self
        if not config.max_len:
            config = dataclasses.replace(config, max_len=128 if config.units == "word" else 512)
        if not config.quick:
            return config
        return dataclasses.replace(
            config, epochs=min(config.epochs, 4), embed_dim=24, hidden=24, layers=1, learning_rate=5e-3,
            synthetic_size=min(config.synthetic_size, 1200), patience=2, ema=0.0,
        )


def load_data(config: SentimentConfig) -> dict[str, list[TextExample]]:
    if config.data_dir is None:
        return synthetic_splits(config.synthetic_size, seed=config.seed)
    return read_polarity(config.data_dir, config.encoding)


def predict_probs(model, texts: list[str], preprocessor):
    """Class probabilities [n, classes] for ``texts``, in order."""
    import numpy as np

    from models.sentiment import OUTPUT
    from pipelines.text_data import inference_dataset

    return np.concatenate([np.asarray(model(ids, training=False)[OUTPUT]) for ids in inference_dataset(texts, preprocessor)])


def accuracy(model, examples: list[TextExample], preprocessor, labels: list[str]) -> float:
    import numpy as np

    predicted = predict_probs(model, [ex.text for ex in examples], preprocessor).argmax(-1)
    return float(np.mean([labels[p] == ex.label for p, ex in zip(predicted, examples)]))


def pretrain(model, config: SentimentConfig, train: list[TextExample], preprocessor, vocab_size: int) -> None:
    """Pre-trains each member's embedding and first recurrent layer as a language model on the training texts
    (no labels, no other data), then copies them into ``model``."""
    import keras

    from models.sentiment import build_language_model, copy_pretrained
    from pipelines import text_data, training

    prefixes = [""] if config.members == 1 else [f"m{i}_" for i in range(config.members)]
    out_vocab = min(config.lm_vocab, vocab_size)
    dataset = text_data.language_model_dataset(train, preprocessor, batch_size=config.batch_size, seed=config.seed,
                                               out_vocab=out_vocab, bidirectional=config.bidirectional)
    for prefix in prefixes:
        lm = build_language_model(vocab_size, out_vocab, cell=config.cell, embed_dim=config.embed_dim,
                                  units=config.hidden, bidirectional=config.bidirectional, prefix=prefix)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
        lm.compile(optimizer=training.optimizer(config.learning_rate, config.clipnorm),
                   loss={name: loss for name in lm.output})
        print(f"language-model pre-training{f' of member {prefix[:-1]}' if prefix else ''}: "
              f"{config.pretrain_epochs} epochs, predicting {out_vocab} tokens")
        lm.fit(dataset, epochs=config.pretrain_epochs, verbose=2, shuffle=False)
        copy_pretrained(lm, model, prefix)


def add_naive_bayes(model, config: SentimentConfig, splits: dict, preprocessor, vocab_size: int, labels: list[str]):
    """The trained ``model`` with a naive-Bayes n-gram path: tables counted on train, mixing weights fitted on dev.

    Returns:
      (the mixed model, figures: each part's dev and test accuracy alone and the fitted weights).
    """
    import numpy as np

    from models.ngrams import with_naive_bayes
    from models.sentiment import OUTPUT
    from pipelines import ngrams
    from pipelines.text_data import inference_dataset

    def texts(split):
        return [ex.text for ex in splits[split]]

    targets = {split: np.array([labels.index(ex.label) for ex in splits[split]])
               for split in ("train", "valid", "test")}
    sizes, tables = ngrams.count_tables(inference_dataset(texts("train"), preprocessor), targets["train"], len(labels),
                                        vocab_size, config.naive_bayes)
    mixed = with_naive_bayes(model, vocab_size, output=OUTPUT, sizes=sizes)
    path = mixed.get_layer("naive_bayes")
    path.set_weights(tables)

    def scores(split):
        return np.concatenate([np.asarray(path(ids)) for ids in inference_dataset(texts(split), preprocessor)])

    dev_probs = predict_probs(model, texts("valid"), preprocessor)
    a, b, c = ngrams.fit_mix(dev_probs, scores("valid"), targets["valid"])
    mixed.get_layer("mix").set_weights([np.float32(a), np.float32(b), c])

    def cross_entropy(probs):
        return float(-np.mean(np.log(np.maximum(probs[np.arange(len(probs)), targets["valid"]], 1e-12))))

    figures = {"mix_weight_recurrent": round(a, 4), "mix_weight_naive_bayes": round(b, 4),
               "recurrent_dev_cross_entropy": cross_entropy(dev_probs),
               "dev_cross_entropy": cross_entropy(predict_probs(mixed, texts("valid"), preprocessor))}
    for split, key in (("valid", "dev_accuracy"), ("test", "accuracy")):
        figures[f"recurrent_{key}"] = float(np.mean(predict_probs(model, texts(split), preprocessor).argmax(-1)
                                                    == targets[split]))
        figures[f"naive_bayes_{key}"] = float(np.mean(scores(split).argmax(-1) == targets[split]))
    print(f"naive-Bayes path (1..{config.naive_bayes}-grams): mixed as softmax({a:.3f} log p + {b:.3f} s + c); "
          f"alone: dev {figures['naive_bayes_dev_accuracy']:.3f}; the recurrent model alone: dev "
          f"{figures['recurrent_dev_accuracy']:.3f}")
    return mixed, figures


def parity_batches(texts: list[str], preprocessor, n: int = 4, size: int = 16) -> list[dict]:
    """Real batches of mixed lengths for the export parity check."""
    from pipelines import batching
    from pipelines.text_data import inference_dataset

    return batching.parity_batches(inference_dataset(texts[: n * size], preprocessor, batch_size=size), n)


def task_metadata(config: SentimentConfig, vocab: list[str], labels: list[str], model) -> dict:
    from models.sentiment import ATTENTION, INPUT, OUTPUT
    from pipelines.text_data import tokenizer_spec
    from serving.vocab import PAD_ID, UNK_ID

    outputs = {OUTPUT: {"name": OUTPUT, "dtype": "float32", "shape": ["batch", len(labels)]}}
    if ATTENTION in model.output_names or (isinstance(model.output, dict) and ATTENTION in model.output):
        outputs[ATTENTION] = {"name": ATTENTION, "dtype": "float32", "shape": ["batch", "time"]}
    return {
        "task": TASK,
        "inputs": {INPUT: {"name": INPUT, "dtype": "int32", "shape": ["batch", "time"], "pad_id": PAD_ID}},
        "outputs": outputs,
        "tokenizer": tokenizer_spec(config.units),
        "units": config.units,
        "vocab": vocab,
        "pad_id": PAD_ID,
        "unk_id": UNK_ID,
        "labels": labels,
        "max_len": config.max_len,
        "long_input": "truncate",
        "model": {"readout": config.readout, "cell": config.cell, "bidirectional": config.bidirectional,
                  "layers": config.layers, "hidden": config.hidden, "embed_dim": config.embed_dim,
                  "members": config.members, "pool_embeddings": config.pool_embeddings,
                  "pretrain_epochs": config.pretrain_epochs, "naive_bayes": config.naive_bayes},
    }


def run(config: SentimentConfig) -> dict:
    """Trains, evaluates and exports; returns the metrics. The run dir appears only when all succeeded."""
    import keras

    from export import export_model
    from models.sentiment import build_text_classifier, member_outputs
    from pipelines import text_data, training
    from pipelines.evaluation import ValidationScore

    config.check()
    config = config.resolved()
    splits = load_data(config)
    started = time.time()
    with training.task_run(config, TASK) as run_dir:
        vocab, labels = text_data.build_vocabularies(splits["train"], config.units, config.min_count)
        text_data.write_vocabularies(run_dir, vocab, labels)
        print(f"data: {', '.join(f'{k} {len(v)}' for k, v in splits.items())}; "
              f"{len(vocab)} {config.units} tokens, labels {labels}")

        preprocessor = text_data.TextPreprocessor(run_dir, config.units, config.max_len)
        train_ds = text_data.training_dataset(splits["train"], preprocessor, batch_size=config.batch_size,
                                              seed=config.seed, token_dropout=config.token_dropout)
        model = build_text_classifier(
            len(vocab), len(labels), readout=config.readout, cell=config.cell, embed_dim=config.embed_dim,
            units=config.hidden, layers=config.layers, bidirectional=config.bidirectional, dropout=config.dropout,
            members=config.members, pool_embeddings=config.pool_embeddings,
        )
        if config.pretrain_epochs:
            pretrain(model, config, splits["train"], preprocessor, len(vocab))
        # The same layers, trained on each member's own loss (an ensemble of independent models, side by side).
        members = member_outputs(model)
        trainer = keras.Model(model.input, members, name="trainer")
        trainer.compile(optimizer=training.optimizer(config.learning_rate, config.clipnorm, config.ema),
                        loss={name: keras.losses.SparseCategoricalCrossentropy() for name in members})
        validation = ValidationScore("accuracy", lambda: accuracy(model, splits["valid"], preprocessor, labels))
        trainer.fit(
            train_ds.map(lambda ids, label: (ids, {name: label for name in members})), epochs=config.epochs,
            shuffle=False, verbose=1 if sys.stdout.isatty() and not config.quick else 2,
            callbacks=training.callbacks(run_dir, "val_accuracy", config.patience, first=[validation],
                                         ema=bool(config.ema)),
        )
        model.load_weights(run_dir / "checkpoints" / "best.weights.h5")
        parts = {}
        if config.naive_bayes:
            model, parts = add_naive_bayes(model, config, splits, preprocessor, len(vocab), labels)
        train_seconds = time.time() - started

        metrics = {
            "dev_accuracy": accuracy(model, splits["valid"], preprocessor, labels),
            "accuracy": accuracy(model, splits["test"], preprocessor, labels),
            "test_examples": len(splits["test"]),
            "parameters": model.count_params(),
            "train_seconds": round(train_seconds, 1),
            **parts,
        }
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        model.save(run_dir / "model.keras")
        meta = export_model(model, run_dir, task_metadata(config, vocab, labels, model),
                            parity_batches([ex.text for ex in splits["valid"]], preprocessor))
        metrics["onnx_max_abs_diff"] = max(meta["parity"]["onnx_max_abs_diff"].values())
    return metrics


def main(argv: list[str] | None = None) -> int:
    from models.recurrent import CELL_CHOICES
    from models.sentiment import READOUTS

    config, metrics = run_command_line(
        SentimentConfig, run, argv, module_doc=__doc__, prog="python -m pipelines.sentiment",
        choices={"cell": CELL_CHOICES, "units": ("word", "char"), "readout": READOUTS})
    if metrics is None:
        return 2

    import serving

    result = serving.load(config.out).predict(DEMO)
    print(f"\nonnxruntime, {config.out}/model.onnx:\n  {DEMO!r} → {result.label} ({result.confidence:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
