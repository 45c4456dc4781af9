"""Sentiment analysis, many-to-one: ``python -m pipelines.sentiment [--data-dir DIR] [--tokens word|char] [--quick]``.

The text is fed in one symbol (word or character) per time step and the sentiment is read from the recurrent
states: at the last step (``--readout last``, as the lecture does), pooled over all steps (``mean``), or by an
attention over the steps (``attention``). Trained with cross-entropy and gradient clipping.

Data: built-in synthetic review sentences by default, or Pang & Lee's rt-polarity folder (``rt-polarity.pos``,
``rt-polarity.neg``, cp1252) given with ``--data-dir``, split as ../shared/data/SPLITS.md fixes.

Phases, each resumable: ``pretrain`` (per member: ``pretrain_m0``, ...) with ``--pretrain-epochs``, then ``train``;
then the naive-Bayes path (``--naive-bayes``) is counted on train and mixed in with weights fitted on dev.
"""

from __future__ import annotations

import dataclasses
import sys

import pipelines  # noqa: F401  (quiet TensorFlow, Keras backend)
from pipelines.common import CommonOptions, check_positive, check_rate
from pipelines.polarity import TextExample, read_polarity
from pipelines.readers import DataError
from pipelines.synthetic_reviews import synthetic_splits
from pipelines.task import Context, Task

TASK = "sentiment"
DEMO = "a gripping, funny and humane film"


def _opt(default, text: str):
    return dataclasses.field(default=default, metadata={"help": text})


@dataclasses.dataclass(frozen=True)
class SentimentConfig(CommonOptions):
    data_dir: str | None = _opt(None, "rt-polarity folder; none: built-in data")
    out: str = _opt("runs/sentiment", "run dir to write")
    tokens: str = _opt("word", "one time step per word or per character")
    readout: str = _opt("attention", "how the class is read from the states")
    epochs: int = _opt(20, "most epochs (early stopping may end sooner)")
    cell: str = _opt("lstm", "recurrent cell")
    bidirectional: bool = True
    layers: int = 1
    embed_dim: int = 128
    hidden: int = _opt(128, "recurrent units per direction")
    pool_embeddings: bool = _opt(False, "also classify from the max-pooled word embeddings (bag of words)")
    members: int = _opt(1, "ensemble size: independent models averaged")
    naive_bayes: int = _opt(3, "mix in a naive-Bayes path over 1..N-grams after training (weights fitted on dev); "
                               "0: none, the recurrent model alone")
    pretrain_epochs: int = _opt(0, "epochs of language-model pre-training on the training texts; 0: none")
    lm_vocab: int = _opt(10000, "most frequent tokens the language model predicts")
    dropout: float = 0.5
    token_dropout: float = _opt(0.1, "rate of tokens replaced by <unk>")
    min_count: int = _opt(1, "tokens seen fewer times in train become <unk>")
    ema: float = _opt(0.99, "weight averaging (Polyak) momentum; 0 disables")
    patience: int = _opt(4, "epochs without a better dev accuracy")
    max_len: int = _opt(0, "longest input in tokens; 0: 128 words or 512 chars")
    encoding: str = _opt("cp1252", "encoding of the --data-dir files")
    synthetic_size: int = _opt(4000, "built-in training examples")

    DEPRECATED_FLAGS = {"units": "tokens"}

    def check(self) -> None:
        """Raises DataError naming the first setting out of range."""
        super().check()
        check_positive(self, "layers", "embed_dim", "hidden", "members", "synthetic_size", "min_count")
        check_rate(self, "dropout", "token_dropout")
        if self.tokens not in ("word", "char"):
            raise DataError(f"--tokens must be word or char, got {self.tokens!r}")
        if self.naive_bayes < 0:
            raise DataError(f"--naive-bayes must not be negative, got {self.naive_bayes}")
        if self.pretrain_epochs < 0 or self.lm_vocab < 2:
            raise DataError("--pretrain-epochs must not be negative and --lm-vocab must be at least 2")
        if self.max_len < 0 or self.learning_rate <= 0:
            raise DataError("--max-len must not be negative and --learning-rate must be positive")

    def resolved(self) -> "SentimentConfig":
        """The config actually run: max_len filled in; ``--quick`` shrinks the model, the data and the epochs."""
        config = self
        if not config.max_len:
            config = dataclasses.replace(config, max_len=128 if config.tokens == "word" else 512)
        if not config.quick:
            return config
        return dataclasses.replace(
            config, epochs=min(config.epochs, 4), embed_dim=24, hidden=24, layers=1, learning_rate=5e-3,
            synthetic_size=min(config.synthetic_size, 1200), patience=2, ema=0.0,
        )


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


def pretrain(ctx: Context, model) -> None:
    """Pre-trains each member's embedding and first recurrent layer as a language model on the training texts
    (no labels, no other data), one resumable phase per member, then copies them into ``model``."""
    import keras

    from models.sentiment import build_language_model, copy_pretrained
    from pipelines import runner, text_data, training

    c, run, vocab_size = ctx.config, ctx.run, len(ctx.extras["vocab"])
    out_vocab = min(c.lm_vocab, vocab_size)

    def dataset(seed):
        return text_data.language_model_dataset(
            ctx.splits["train"], ctx.prep, batch_size=c.batch_size * run.replicas, seed=seed, out_vocab=out_vocab,
            bidirectional=c.bidirectional, drop_remainder=run.distributed)

    for prefix in [""] if c.members == 1 else [f"m{i}_" for i in range(c.members)]:
        with run.strategy.scope():
            lm = build_language_model(vocab_size, out_vocab, cell=c.cell, embed_dim=c.embed_dim, units=c.hidden,
                                      bidirectional=c.bidirectional, prefix=prefix)
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
            lm.compile(optimizer=training.optimizer(c.learning_rate, c.clipnorm),
                       loss={name: loss for name in lm.output})
        print(f"language-model pre-training{f' of member {prefix[:-1]}' if prefix else ''}: "
              f"{c.pretrain_epochs} epochs, predicting {out_vocab} tokens")
        runner.train(lm, lambda epoch: run.epoch_data(dataset, epoch), run, epochs=c.pretrain_epochs, ema=False,
                     keep="last", phase="pretrain" + (f"_{prefix[:-1]}" if prefix else ""))
        copy_pretrained(lm, model, prefix)


def add_naive_bayes(ctx: Context, model):
    """The trained ``model`` with a naive-Bayes n-gram path: tables counted on train, mixing weights fitted on dev.

    Returns:
      (the mixed model, figures: each part's dev and test accuracy alone and the fitted weights).
    """
    import numpy as np

    from models.ngrams import with_naive_bayes
    from models.sentiment import OUTPUT
    from pipelines import ngrams
    from pipelines.text_data import inference_dataset

    splits, preprocessor, labels, vocab_size = ctx.splits, ctx.prep, ctx.extras["labels"], len(ctx.extras["vocab"])
    order = ctx.config.naive_bayes

    def texts(split):
        return [ex.text for ex in splits[split]]

    targets = {split: np.array([labels.index(ex.label) for ex in splits[split]])
               for split in ("train", "valid", "test")}
    sizes, tables = ngrams.count_tables(inference_dataset(texts("train"), preprocessor), targets["train"], len(labels),
                                        vocab_size, order)
    with ctx.run.strategy.scope():
        mixed = with_naive_bayes(model, vocab_size, output=OUTPUT, sizes=sizes)
    ctx.extras["ngram_sizes"] = sizes  # build_model now builds the mixed model (the float32 copy for export)
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
    print(f"naive-Bayes path (1..{order}-grams): mixed as softmax({a:.3f} log p + {b:.3f} s + c); "
          f"alone: dev {figures['naive_bayes_dev_accuracy']:.3f}; the recurrent model alone: dev "
          f"{figures['recurrent_dev_accuracy']:.3f}")
    return mixed, figures


class Sentiment(Task):
    """Many-to-one text classification; the dev accuracy picks the epoch."""

    name = TASK
    config_class = SentimentConfig
    monitor = "accuracy"
    demo_input = DEMO

    def choices(self):
        from models.recurrent import CELL_CHOICES
        from models.sentiment import READOUTS
        from pipelines.distribute import STRATEGIES

        return {"cell": CELL_CHOICES, "tokens": ("word", "char"), "readout": READOUTS, "strategy": STRATEGIES}

    def data(self, config):
        if config.data_dir is None:
            return synthetic_splits(config.synthetic_size, seed=config.seed)
        return read_polarity(config.data_dir, config.encoding)

    def preprocess(self, ctx: Context):
        from pipelines import text_data

        c = ctx.config
        vocab, labels = text_data.build_vocabularies(ctx.splits["train"], c.tokens, c.min_count)
        text_data.write_vocabularies(ctx.run_dir, vocab, labels)
        ctx.extras.update(vocab=vocab, labels=labels)
        print(f"data: {', '.join(f'{k} {len(v)}' for k, v in ctx.splits.items())}; "
              f"{len(vocab)} {c.tokens} tokens, labels {labels}")
        return text_data.TextPreprocessor(ctx.run_dir, c.tokens, c.max_len)

    def build_model(self, ctx: Context):
        """The served model: the classifier, with the naive-Bayes path once ``fit`` has counted its tables."""
        from models.ngrams import with_naive_bayes
        from models.sentiment import OUTPUT, build_text_classifier

        c, e = ctx.config, ctx.extras
        model = build_text_classifier(
            len(e["vocab"]), len(e["labels"]), readout=c.readout, cell=c.cell, embed_dim=c.embed_dim,
            units=c.hidden, layers=c.layers, bidirectional=c.bidirectional, dropout=c.dropout, members=c.members,
            pool_embeddings=c.pool_embeddings)
        if e.get("ngram_sizes"):
            model = with_naive_bayes(model, len(e["vocab"]), output=OUTPUT, sizes=e["ngram_sizes"])
        return model

    def compile(self, ctx: Context, model):
        """The trainer: the same layers, each member on its own loss (an ensemble of independent models)."""
        import keras

        from models.sentiment import member_outputs
        from pipelines import training

        members = member_outputs(model)
        ctx.extras["members"] = list(members)
        trainer = keras.Model(model.input, members, name="trainer")
        trainer.compile(optimizer=training.optimizer(ctx.config.learning_rate, ctx.config.clipnorm, ctx.config.ema),
                        loss={name: keras.losses.SparseCategoricalCrossentropy() for name in members})
        return trainer

    def train_data(self, ctx: Context, seed: int):
        from pipelines import text_data

        c, members = ctx.config, ctx.extras["members"]
        dataset = text_data.training_dataset(
            ctx.splits["train"], ctx.prep, batch_size=c.batch_size * ctx.run.replicas, seed=seed,
            token_dropout=c.token_dropout, drop_remainder=ctx.run.distributed)
        return dataset.map(lambda ids, label: (ids, {name: label for name in members}))

    def validate(self, ctx: Context, model) -> dict:
        return {"accuracy": accuracy(model, ctx.splits["valid"], ctx.prep, ctx.extras["labels"])}

    def fit(self, ctx: Context):
        """Language-model pre-training (``--pretrain-epochs``), the classifier's training, then the naive-Bayes
        path (``--naive-bayes``)."""
        from pipelines import runner

        with ctx.run.strategy.scope():
            model = self.build_model(ctx)
        if ctx.config.pretrain_epochs:
            pretrain(ctx, model)
        with ctx.run.strategy.scope():
            trainer = self.compile(ctx, model)
        runner.train(trainer, lambda epoch: ctx.run.epoch_data(lambda seed: self.train_data(ctx, seed), epoch),
                     ctx.run, validate=lambda: self.validate(ctx, model), monitor=self.monitor)
        ctx.extras["parts"] = {}
        if ctx.config.naive_bayes:
            model, ctx.extras["parts"] = add_naive_bayes(ctx, model)
        return model

    def evaluate(self, ctx: Context, model) -> dict:
        labels = ctx.extras["labels"]
        return {
            "dev_accuracy": accuracy(model, ctx.splits["valid"], ctx.prep, labels),
            "accuracy": accuracy(model, ctx.splits["test"], ctx.prep, labels),
            "test_examples": len(ctx.splits["test"]),
            "parameters": model.count_params(),
            **ctx.extras["parts"],
        }

    def export_spec(self, ctx: Context, model) -> dict:
        from models.sentiment import ATTENTION, INPUT, OUTPUT
        from pipelines.text_data import tokenizer_spec
        from serving.vocab import PAD_ID, UNK_ID

        c, labels = ctx.config, ctx.extras["labels"]
        outputs = {OUTPUT: {"name": OUTPUT, "dtype": "float32", "shape": ["batch", len(labels)]}}
        if ATTENTION in model.output:
            outputs[ATTENTION] = {"name": ATTENTION, "dtype": "float32", "shape": ["batch", "time"]}
        return {
            "task": TASK,
            "inputs": {INPUT: {"name": INPUT, "dtype": "int32", "shape": ["batch", "time"], "pad_id": PAD_ID}},
            "outputs": outputs, "tokenizer": tokenizer_spec(c.tokens), "tokens": c.tokens,
            "vocab": ctx.extras["vocab"], "pad_id": PAD_ID, "unk_id": UNK_ID, "labels": labels, "max_len": c.max_len,
            "long_input": "truncate",
            "model": {"readout": c.readout, "cell": c.cell, "bidirectional": c.bidirectional, "layers": c.layers,
                      "hidden": c.hidden, "embed_dim": c.embed_dim, "members": c.members,
                      "pool_embeddings": c.pool_embeddings, "pretrain_epochs": c.pretrain_epochs,
                      "naive_bayes": c.naive_bayes},
        }

    def parity_batches(self, ctx: Context) -> list[dict]:
        """Real batches of mixed lengths for the export parity check."""
        from pipelines import batching
        from pipelines.text_data import inference_dataset

        texts = [ex.text for ex in ctx.splits["valid"][:64]]
        return batching.parity_batches(inference_dataset(texts, ctx.prep, batch_size=16), 4)


SENTIMENT = Sentiment()


def run(config: SentimentConfig) -> dict:
    """Trains, evaluates and exports; returns the metrics. The run dir appears only when all succeeded."""
    return SENTIMENT.run(config)


def main(argv: list[str] | None = None) -> int:
    return SENTIMENT.main(argv)


if __name__ == "__main__":
    sys.exit(main())
