"""The shared seq2seq pipeline: vocabularies, tokenisation, tf.data batches, training, Keras greedy decoding, export.

Tasks (translation, parsing, text auto-encoder) read their data into (source tokens, target tokens) pairs and call:

    vocab = build_vocab(token_lists, min_count)              # ["<pad>", "<unk>", "<s>", "</s>", ...]
    trained = train_and_export(config, run_dir, splits, source_kind="word", target_kind="char", task="translation")
    hyps = keras_decode(trained.models, source_ids, max_len=50)   # Keras greedy, step by step
    trained.predictor()                                          # the exported run over onnxruntime

See docs/seq2seq.md for the whole API.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import pipelines  # noqa: F401  (quiet TensorFlow, Keras backend)
from pipelines.readers import DataError

PAD, UNK, START, END = "<pad>", "<unk>", "<s>", "</s>"
PAD_ID, UNK_ID, START_ID, END_ID = 0, 1, 2, 3
RESERVED = (PAD, UNK, START, END)
SPECIAL_IDS = {"pad": PAD_ID, "unk": UNK_ID, "start": START_ID, "end": END_ID}
SOURCE_VOCAB_FILE, TARGET_VOCAB_FILE = "source_vocab.txt", "target_vocab.txt"
WEIGHTS_FILE = "model.weights.h5"
KINDS = ("word", "char", "whitespace")

Pair = tuple[list[str], list[str]]


@dataclasses.dataclass(frozen=True)
class Seq2SeqConfig:
    """Settings shared by the seq2seq tasks; each task subclasses it (frozen) to add its own fields."""

    data_dir: str | None = dataclasses.field(default=None, metadata={"help": "real data; none: built-in data"})
    out: str = dataclasses.field(default="runs/seq2seq", metadata={"help": "run dir to write"})
    epochs: int = dataclasses.field(default=30, metadata={"help": "most epochs (early stopping may end sooner)"})
    cell: str = dataclasses.field(default="gru", metadata={"help": "recurrent cell (gru or lstm)"})
    bidirectional: bool = dataclasses.field(default=True, metadata={"help": "bidirectional encoder"})
    layers: int = dataclasses.field(default=1, metadata={"help": "stacked encoder layers"})
    embed_dim: int = 64
    hidden: int = dataclasses.field(default=64, metadata={"help": "encoder units per direction"})
    attention: str = dataclasses.field(default="additive", metadata={"help": "none, additive (Bahdanau), dot (Luong)"})
    attention_units: int = 64
    dropout: float = 0.1
    batch_size: int = 64
    learning_rate: float = 3e-3
    clipnorm: float = dataclasses.field(default=1.0, metadata={"help": "gradient norm clip; 0 disables"})
    label_smoothing: float = dataclasses.field(default=0.0, metadata={"help": "label smoothing epsilon"})
    patience: int = dataclasses.field(default=4, metadata={"help": "epochs without a better dev token accuracy"})
    min_count: int = dataclasses.field(default=1, metadata={"help": "rarer training tokens become <unk>"})
    max_source_len: int = dataclasses.field(default=40, metadata={"help": "longest source in tokens (longer: dropped "
                                                                          "from training, refused in serving)"})
    max_target_len: int = dataclasses.field(default=60, metadata={"help": "longest output in tokens (decoding guard)"})
    beam_size: int = dataclasses.field(default=4, metadata={"help": "serving's default beam size"})
    length_penalty: float = dataclasses.field(default=1.0, metadata={"help": "beam ranking: score / length^this"})
    saved_model: bool = dataclasses.field(default=True, metadata={"help": "also export SavedModels"})
    seed: int = 0
    quick: bool = dataclasses.field(default=False, metadata={"help": "seconds-long smoke run"})

    def check(self) -> None:
        """Raises DataError naming the first setting out of range."""
        for name in ("epochs", "layers", "embed_dim", "hidden", "attention_units", "batch_size", "min_count",
                     "max_source_len", "max_target_len", "beam_size"):
            if getattr(self, name) < 1:
                raise DataError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1 or not 0 <= self.label_smoothing < 1:
            raise DataError("--dropout and --label-smoothing must be in [0, 1)")
        if self.learning_rate <= 0 or self.clipnorm < 0 or self.length_penalty < 0:
            raise DataError("--learning-rate must be positive; --clipnorm and --length-penalty must not be negative")
        if self.cell not in ("gru", "lstm"):
            raise DataError(f"--cell must be gru or lstm, got {self.cell!r}")
        if self.attention not in ("none", "additive", "dot"):
            raise DataError(f"--attention must be none, additive or dot, got {self.attention!r}")


CHOICES = {"cell": ("gru", "lstm"), "attention": ("none", "additive", "dot")}


# --------------------------------------------------------------------------------------------------------------------
# Tokens and vocabularies


def tokenize(texts: Sequence[str], kind: str) -> list[list[str]]:
    """Tokens of each text: ``word`` (tensorflow-text, spec casefold_punct_v1), ``char`` (one token per character,
    spaces as ``▁``, spec casefold_chars_v1) or ``whitespace`` (pre-tokenized text split on white space).
    ``serving`` replays the same rules in pure Python."""
    if kind not in KINDS:
        raise DataError(f"unknown tokenisation {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "whitespace":
        return [text.split() for text in texts]
    from pipelines.text_data import tokenize as tf_tokenize

    return tf_tokenize(list(texts), kind) if texts else []


def tokenizer_spec(kind: str) -> dict:
    """The serving tokenizer spec (metadata ``source_tokenizer``) of a tokenisation kind."""
    from serving.seq2seq import WHITESPACE_SPEC
    from serving.tokenizer import CHARS_SPEC, SPEC

    return dict({"word": SPEC, "char": CHARS_SPEC, "whitespace": WHITESPACE_SPEC}[kind])


def detokenizer(kind: str) -> str:
    """How serving joins output tokens of a kind: ``chars`` (concatenate) or ``space``."""
    return "chars" if kind == "char" else "space"


def build_vocab(token_lists: Sequence[Sequence[str]], min_count: int = 1, max_size: int | None = None) -> list[str]:
    """``<pad>``, ``<unk>``, ``<s>``, ``</s>``, then the tokens seen ``min_count`` times or more, most frequent first
    (ties alphabetical), at most ``max_size`` entries in all."""
    counts = collections.Counter(t for tokens in token_lists for t in tokens if t not in RESERVED)
    ordered = [t for t, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_count]
    vocab = list(RESERVED) + ordered
    return vocab[:max_size] if max_size else vocab


def write_vocabularies(run_dir: Path, source_vocab: list[str], target_vocab: list[str]) -> None:
    from serving.vocab import write_vocab

    write_vocab(Path(run_dir) / SOURCE_VOCAB_FILE, source_vocab, "source vocabulary")
    write_vocab(Path(run_dir) / TARGET_VOCAB_FILE, target_vocab, "target vocabulary")


def to_ids(token_lists: Sequence[Sequence[str]], vocab: list[str]) -> list[list[int]]:
    """Token lists → id lists (unknown tokens → ``<unk>``)."""
    index = {t: i for i, t in enumerate(vocab)}
    return [[index.get(t, UNK_ID) for t in tokens] for tokens in token_lists]


def pad(id_lists: Sequence[Sequence[int]]) -> np.ndarray:
    """Right-padded int32 [batch, longest]."""
    out = np.zeros((len(id_lists), max(1, max(len(ids) for ids in id_lists))), np.int32)
    for row, ids in enumerate(id_lists):
        out[row, : len(ids)] = ids
    return out


# --------------------------------------------------------------------------------------------------------------------
# tf.data


def make_dataset(source_ids: Sequence[Sequence[int]], target_ids: Sequence[Sequence[int]], batch_size: int, *,
                 shuffle: bool = True, seed: int = 0):
    """Batches for the trainer: ({"source_ids", "target_ids": <s> + target}, labels: target + </s>), bucketed by
    length (similar lengths share a batch), padded with 0, cached, reshuffled each epoch, prefetched."""
    import tensorflow as tf

    from pipelines.batching import length_boundaries

    if not source_ids:
        raise DataError("no examples to batch")
    rows = [(list(s), [START_ID, *t], [*t, END_ID]) for s, t in zip(source_ids, target_ids)]
    vector = tf.TensorSpec([None], tf.int32)
    dataset = tf.data.Dataset.from_generator(lambda: iter(rows), output_signature=(vector, vector, vector)).cache()
    if shuffle:
        dataset = dataset.shuffle(len(source_ids), seed=seed, reshuffle_each_iteration=True)
    longest = max(max(len(s) for s in source_ids), max(len(t) for t in target_ids) + 1)
    boundaries = length_boundaries(longest + 1) + [longest + 2]
    dataset = dataset.bucket_by_sequence_length(
        element_length_func=lambda s, t, y: tf.maximum(tf.shape(s)[0], tf.shape(t)[0]),
        bucket_boundaries=boundaries, bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        pad_to_bucket_boundary=True,  # a few fixed shapes: fewer graph retraces
    )
    return dataset.map(lambda s, t, y: ({"source_ids": s, "target_ids": t}, y)).prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------------------------------------------------
# Model, training


def model_spec(config: Seq2SeqConfig, source_vocab: int, target_vocab: int):
    from models.seq2seq import Seq2SeqSpec

    return Seq2SeqSpec(source_vocab, target_vocab, cell=config.cell, embed_dim=config.embed_dim,
                       hidden=config.hidden, layers=config.layers, bidirectional=config.bidirectional,
                       attention=config.attention, attention_units=config.attention_units, dropout=config.dropout)


def teacher_forced_accuracy(models, dataset) -> float:
    """Token accuracy of the teacher-forced decoder over a dataset (real labels only)."""
    hits = total = 0
    for inputs, labels in dataset:
        predicted = np.asarray(models.trainer(inputs, training=False)).argmax(-1)
        labels = np.asarray(labels)
        mask = labels != 0
        hits += int(((predicted == labels) & mask).sum())
        total += int(mask.sum())
    return hits / max(total, 1)


def fit(models, config: Seq2SeqConfig, run_dir: Path, train_ds, dev_ds) -> None:
    """Trains with Adam + clipnorm (+ label smoothing), keeps the weights of the best dev token accuracy."""
    from models.seq2seq import compile_trainer
    from pipelines import training
    from pipelines.evaluation import ValidationScore

    compile_trainer(models, training.optimizer(config.learning_rate, config.clipnorm), config.label_smoothing)
    validation = ValidationScore("token_accuracy", lambda: teacher_forced_accuracy(models, dev_ds))
    models.trainer.fit(train_ds, epochs=config.epochs, shuffle=False,
                       verbose=1 if sys.stdout.isatty() and not config.quick else 2,
                       callbacks=training.callbacks(run_dir, "val_token_accuracy", config.patience, first=[validation]))
    models.trainer.load_weights(run_dir / "checkpoints" / "best.weights.h5")


# --------------------------------------------------------------------------------------------------------------------
# Keras decoding, step by step


def keras_step(models):
    """The one-step decoder in Keras, as the callable ``serving.beam`` drives (numpy in, numpy out)."""
    spec = models.spec

    def step(tokens, states):
        feeds = {"token_ids": np.asarray(tokens, np.int32)[:, None], **{n: states[n] for n in spec.state_names}}
        if spec.attention != "none":
            feeds.update(memory=states["memory"], memory_mask=states["memory_mask"])
        out = {k: np.asarray(v) for k, v in models.decoder_step(feeds, training=False).items()}
        new = {n: out[f"new_{n}"] for n in spec.state_names}
        return out["log_probs"][:, -1], new, out["attention"][:, -1] if "attention" in out else None

    return step


def keras_encode(models, source_ids: np.ndarray) -> dict:
    return {k: np.asarray(v) for k, v in models.encoder(np.asarray(source_ids, np.int32), training=False).items()}


def keras_decode(models, source_ids: np.ndarray, *, max_len: int, beam_size: int = 1, length_penalty: float = 1.0):
    """Decodes padded source ids [batch, time] with the Keras graphs, one decoder call per output position
    (greedy for ``beam_size`` 1). Returns ``serving.beam.Hypothesis`` objects."""
    from serving.beam import beam_search, greedy

    states = keras_encode(models, source_ids)
    common = dict(start_id=START_ID, end_id=END_ID, max_len=max_len, length_penalty=length_penalty)
    if beam_size == 1:
        return greedy(keras_step(models), states, len(source_ids), **common)
    return beam_search(keras_step(models), states, len(source_ids), beam_size=beam_size, **common)


# --------------------------------------------------------------------------------------------------------------------
# One task's training run


@dataclasses.dataclass
class Trained:
    """What :func:`train_and_export` leaves: the graphs, the vocabularies and the (staged) run dir."""

    models: object
    source_vocab: list[str]
    target_vocab: list[str]
    run_dir: Path
    meta: dict
    train_seconds: float

    def predictor(self):
        """The exported run over onnxruntime (``serving.load`` of the staged run dir)."""
        import serving

        return serving.load(self.run_dir)


def task_metadata(config: Seq2SeqConfig, task: str, source_vocab, target_vocab, source_kind: str,
                  target_kind: str) -> dict:
    return {
        "task": task,
        "source_vocab": list(source_vocab),
        "target_vocab": list(target_vocab),
        "special_ids": dict(SPECIAL_IDS),
        "special_tokens": {"pad": PAD, "unk": UNK, "start": START, "end": END},
        "source_tokenizer": tokenizer_spec(source_kind),
        "target_tokenizer": tokenizer_spec(target_kind),
        "target_detokenizer": detokenizer(target_kind),
        "max_source_len": config.max_source_len,
        "max_target_len": config.max_target_len,
        "long_input": "error",
        "decoding": {"beam_size": config.beam_size, "length_penalty": config.length_penalty},
    }


def keep_fitting(pairs: list[Pair], config: Seq2SeqConfig) -> list[Pair]:
    """The pairs within the length limits (training drops the others)."""
    return [(s, t) for s, t in pairs if 0 < len(s) <= config.max_source_len and len(t) < config.max_target_len]


def train_and_export(config: Seq2SeqConfig, run_dir: Path, splits: dict[str, list[Pair]], *, task: str,
                     source_kind: str, target_kind: str, shared_vocab: bool = False,
                     extra_meta: dict | None = None, max_vocab: int | None = None) -> Trained:
    """Builds vocabularies from the training pairs, trains, exports encoder.onnx + decoder_step.onnx (parity
    checked) and writes the vocabularies and model.weights.h5 into ``run_dir`` (a staged dir from
    ``pipelines.training.task_run``).

    Args:
      splits: ``train`` and ``valid`` (and usually ``test``) lists of (source tokens, target tokens).
      task: the metadata's task name (picks the serving predictor).
      source_kind, target_kind: ``word``, ``char`` or ``whitespace``: the tokenisation the tokens came from
        (stored in the metadata so serving tokenizes raw text the same way).
      shared_vocab: one vocabulary for both sides (the auto-encoder).
      extra_meta: more metadata for the task.

    Raises:
      DataError: no training pair within the length limits.
    """
    import time

    from export.seq2seq_export import export_seq2seq
    from models.seq2seq import build_seq2seq

    train = keep_fitting(splits["train"], config)
    valid = keep_fitting(splits["valid"], config) or train[:200]
    if not train:
        raise DataError(f"no training pair has 1-{config.max_source_len} source and fewer than "
                        f"{config.max_target_len} target tokens")
    if shared_vocab:
        source_vocab = target_vocab = build_vocab([s for s, _ in train] + [t for _, t in train], config.min_count,
                                                  max_vocab)
    else:
        source_vocab = build_vocab([s for s, _ in train], config.min_count, max_vocab)
        target_vocab = build_vocab([t for _, t in train], config.min_count, max_vocab)
    write_vocabularies(run_dir, source_vocab, target_vocab)
    print(f"data: {', '.join(f'{k} {len(v)}' for k, v in splits.items())} ({len(train)} train pairs within the "
          f"limits); vocabularies: source {len(source_vocab)}, target {len(target_vocab)}")

    def dataset(pairs, shuffle):
        return make_dataset(to_ids([s for s, _ in pairs], source_vocab), to_ids([t for _, t in pairs], target_vocab),
                            config.batch_size, shuffle=shuffle, seed=config.seed)

    models = build_seq2seq(model_spec(config, len(source_vocab), len(target_vocab)))
    started = time.time()
    fit(models, config, run_dir, dataset(train, True), dataset(valid, False))
    train_seconds = time.time() - started
    models.trainer.save_weights(run_dir / WEIGHTS_FILE)

    parity_sources = [pad(to_ids([s for s, _ in valid[i: i + 16]], source_vocab)) for i in range(0, 64, 16)
                      if valid[i: i + 16]]
    meta = task_metadata(config, task, source_vocab, target_vocab, source_kind, target_kind)
    meta = export_seq2seq(models, run_dir, {**meta, **(extra_meta or {})}, parity_sources, start_id=START_ID,
                          saved_model=config.saved_model)
    worst = max(v for graph in meta["parity"]["onnx_max_abs_diff"].values() for v in graph.values())
    print(f"exported encoder.onnx + decoder_step.onnx ({meta['onnx_converter']}), parity max abs diff {worst:.2e}")
    return Trained(models, source_vocab, target_vocab, run_dir, meta, train_seconds)


def load_models(run_dir: str | Path):
    """Rebuilds the Keras graphs of a finished run from its metadata and ``model.weights.h5`` (benchmarks, tests).
    Returns (models, metadata)."""
    from models.seq2seq import Seq2SeqSpec, build_seq2seq

    run_dir = Path(run_dir)
    meta = json.loads((run_dir / "metadata.json").read_text(encoding="utf-8"))
    m = meta["model"]
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    spec = Seq2SeqSpec(len(meta["source_vocab"]), len(meta["target_vocab"]), cell=m["cell"], embed_dim=m["embed_dim"],
                       hidden=m["hidden"], layers=m["layers"], bidirectional=m["bidirectional"],
                       attention=m["attention"], attention_units=config.get("attention_units", 64),
                       dropout=config.get("dropout", 0.0))
    models = build_seq2seq(spec)
    models.trainer.load_weights(run_dir / WEIGHTS_FILE)
    return models, meta
