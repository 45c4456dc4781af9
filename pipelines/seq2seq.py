"""The shared seq2seq machine: vocabularies, tokenisation, tf.data batches, the task skeleton, Keras decoding, export.

A seq2seq task (translation, parsing, the text auto-encoder) is a :class:`Seq2SeqTask`: it reads its data into
(source tokens, target tokens) pairs (``pairs``) and the rest is shared: vocabularies from the training pairs,
the encoder–decoder trained by ``pipelines.runner.train`` on the dev token accuracy, and the export of
encoder.onnx + decoder_step.onnx (parity checked). Evaluation decodes with the Keras graphs through the task's
serving predictor (:meth:`Seq2SeqTask.keras_predictor`), so it needs no export; the export then decodes the same
inputs with onnxruntime and reports where the two differ.

    vocab = build_vocab(token_lists, min_count)              # ["<pad>", "<unk>", "<s>", "</s>", ...]
    metrics = Seq2SeqTask(splits).run(Seq2SeqConfig(out="runs/pairs"))   # token pairs in, run dir out
    models, meta = load_models("runs/pairs")                  # the Keras graphs of a finished run
    hyps = keras_decode(models, source_ids, max_len=50)       # Keras greedy, step by step

See docs/seq2seq.md for the whole API.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

import pipelines  # noqa: F401  (quiet TensorFlow, Keras backend)
from pipelines.common import CommonOptions, check_positive, check_rate
from pipelines.readers import DataError
from pipelines.task import Context, Task

PAD, UNK, START, END = "<pad>", "<unk>", "<s>", "</s>"
PAD_ID, UNK_ID, START_ID, END_ID = 0, 1, 2, 3
RESERVED = (PAD, UNK, START, END)
SPECIAL_IDS = {"pad": PAD_ID, "unk": UNK_ID, "start": START_ID, "end": END_ID}
SOURCE_VOCAB_FILE, TARGET_VOCAB_FILE = "source_vocab.txt", "target_vocab.txt"
WEIGHTS_FILE = "model.weights.h5"
KINDS = ("word", "char", "whitespace")
ATTENTIONS = ("none", "additive", "dot")

Pair = tuple[list[str], list[str]]


def _opt(default, text: str):
    return dataclasses.field(default=default, metadata={"help": text})


@dataclasses.dataclass(frozen=True)
class Seq2SeqConfig(CommonOptions):
    """Settings shared by the seq2seq tasks; each task subclasses it (frozen) to add its own fields."""

    data_dir: str | None = _opt(None, "real data; none: built-in data")
    out: str = _opt("runs/seq2seq", "run dir to write")
    epochs: int = _opt(30, "most epochs (early stopping may end sooner)")
    cell: str = _opt("gru", "recurrent cell of the encoder and the decoder")
    bidirectional: bool = _opt(True, "bidirectional encoder")
    layers: int = _opt(1, "stacked encoder layers")
    embed_dim: int = 64
    hidden: int = _opt(64, "encoder units per direction")
    attention: str = _opt("additive", "none, additive (Bahdanau), dot (Luong)")
    attention_units: int = 64
    dropout: float = 0.1
    batch_size: int = _opt(64, "examples per batch (and replica)")
    learning_rate: float = 3e-3
    label_smoothing: float = _opt(0.0, "label smoothing epsilon")
    patience: int = _opt(4, "epochs without a better dev token accuracy")
    min_count: int = _opt(1, "rarer training tokens become <unk>")
    max_len: int = _opt(40, "longest source in tokens (longer: dropped from training, refused in serving)")
    max_target_len: int = _opt(60, "longest output in tokens (decoding guard)")
    beam_size: int = _opt(4, "serving's default beam size")
    length_penalty: float = _opt(1.0, "beam ranking: score / length^this")
    saved_model: bool = _opt(True, "also export SavedModels")

    DEPRECATED_FLAGS: ClassVar[dict[str, str]] = {"max_source_len": "max_len"}

    def check(self) -> None:
        """Raises DataError naming the first setting out of range."""
        from models.recurrent import cell_choices

        super().check()
        check_positive(self, "layers", "embed_dim", "hidden", "attention_units", "min_count", "max_len",
                       "max_target_len", "beam_size")
        check_rate(self, "dropout", "label_smoothing")
        if self.learning_rate <= 0 or self.length_penalty < 0:
            raise DataError("--learning-rate must be positive; --length-penalty must not be negative")
        if self.cell not in cell_choices(decoder=True):
            raise DataError(f"--cell must be one of {', '.join(cell_choices(decoder=True))} (a cell with a one-step "
                            f"decoder export), got {self.cell!r}")
        if self.attention not in ATTENTIONS:
            raise DataError(f"--attention must be none, additive or dot, got {self.attention!r}")


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
# Model


def model_spec(config: Seq2SeqConfig, source_vocab: int, target_vocab: int, pointer_id: int = 0):
    from models.seq2seq import Seq2SeqSpec

    return Seq2SeqSpec(source_vocab, target_vocab, cell=config.cell, embed_dim=config.embed_dim,
                       hidden=config.hidden, layers=config.layers, bidirectional=config.bidirectional,
                       attention=config.attention, attention_units=config.attention_units, dropout=config.dropout,
                       pointer_id=pointer_id)


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


# --------------------------------------------------------------------------------------------------------------------
# Keras decoding, step by step


def keras_step(models):
    """The one-step decoder in Keras, as the callable ``serving.beam`` drives (numpy in, numpy out)."""
    spec = models.spec

    def step(tokens, states):
        feeds = {"token_ids": np.asarray(tokens, np.int32)[:, None], **{n: states[n] for n in spec.state_names}}
        if spec.attention != "none":
            feeds.update(memory=states["memory"], memory_mask=states["memory_mask"])
        if spec.pointer_id:  # the word pointer: the pointer tokens fed so far, this one included
            feeds["word_position"] = (states["word_position"] + (np.asarray(tokens) == spec.pointer_id))[:, None]
        out = {k: np.asarray(v) for k, v in models.decoder_step(feeds, training=False).items()}
        new = {n: out[f"new_{n}"] for n in spec.state_names}
        if spec.pointer_id:
            new["word_position"] = feeds["word_position"][:, 0]
        return out["log_probs"][:, -1], new, out["attention"][:, -1] if "attention" in out else None

    return step


def keras_encode(models, source_ids: np.ndarray) -> dict:
    return {k: np.asarray(v) for k, v in models.encoder(np.asarray(source_ids, np.int32), training=False).items()}


def keras_decode(models, source_ids: np.ndarray, *, max_len: int, beam_size: int = 1, length_penalty: float = 1.0):
    """Decodes padded source ids [batch, time] with the Keras graphs, one decoder call per output position
    (greedy for ``beam_size`` 1). Returns ``serving.beam.Hypothesis`` objects."""
    from serving.beam import beam_search, greedy

    states = keras_encode(models, source_ids)
    if models.spec.pointer_id:
        states["word_position"] = np.zeros(len(source_ids), np.int32)
    common = dict(start_id=START_ID, end_id=END_ID, max_len=max_len, length_penalty=length_penalty)
    if beam_size == 1:
        return greedy(keras_step(models), states, len(source_ids), **common)
    return beam_search(keras_step(models), states, len(source_ids), beam_size=beam_size, **common)


# --------------------------------------------------------------------------------------------------------------------
# The task skeleton


class KerasGraph:
    """A Keras graph behind the interface serving's seq2seq predictors drive (``serving.session.OnnxModel``'s
    ``inputs``, ``outputs``, ``output_shape``, ``run``): evaluation decodes through the predictor's own code
    (tokenisation, beam search, post-processing) before, and without, any export."""

    def __init__(self, model, path: Path):
        self.model, self.path = model, path
        self.inputs = {tensor.name: tensor for tensor in model.inputs}
        self.outputs = dict(model.output)

    def output_shape(self, name: str) -> list:
        return list(self.outputs[name].shape)

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        out = self.model(feeds if len(self.inputs) > 1 else next(iter(feeds.values())), training=False)
        return {name: np.asarray(value) for name, value in out.items() if outputs is None or name in outputs}


def task_metadata(config: Seq2SeqConfig, task: str, source_vocab, target_vocab, source_kind: str,
                  target_kind: str) -> dict:
    """What serving reads besides the graphs (its keys are serving's: ``max_source_len`` is ``--max-len``)."""
    return {
        "task": task,
        "source_vocab": list(source_vocab),
        "target_vocab": list(target_vocab),
        "special_ids": dict(SPECIAL_IDS),
        "special_tokens": {"pad": PAD, "unk": UNK, "start": START, "end": END},
        "source_tokenizer": tokenizer_spec(source_kind),
        "target_tokenizer": tokenizer_spec(target_kind),
        "target_detokenizer": detokenizer(target_kind),
        "max_source_len": config.max_len,
        "max_target_len": config.max_target_len,
        "long_input": "error",
        "decoding": {"beam_size": config.beam_size, "length_penalty": config.length_penalty},
    }


def keep_fitting(pairs: list[Pair], config: Seq2SeqConfig) -> list[Pair]:
    """The pairs within the length limits (training drops the others)."""
    return [(s, t) for s, t in pairs if 0 < len(s) <= config.max_len and len(t) < config.max_target_len]


@dataclasses.dataclass
class Prepared:
    """The preprocessor of a seq2seq run: the vocabularies and the pairs within the length limits."""

    source_vocab: list[str]
    target_vocab: list[str]
    train: list[Pair]
    valid: list[Pair]

    def dataset(self, pairs: list[Pair], batch_size: int, *, shuffle: bool, seed: int = 0):
        return make_dataset(to_ids([s for s, _ in pairs], self.source_vocab),
                            to_ids([t for _, t in pairs], self.target_vocab), batch_size, shuffle=shuffle, seed=seed)

    def parity_sources(self, n: int = 4, size: int = 16) -> list[np.ndarray]:
        """Padded source-id batches of dev pairs (mixed lengths) for the export parity check."""
        return [pad(to_ids([s for s, _ in self.valid[i: i + size]], self.source_vocab))
                for i in range(0, n * size, size) if self.valid[i: i + size]]


class Seq2SeqTask(Task):
    """The contract for an encoder–decoder task. A subclass gives ``data``, ``pairs`` (its tokenisation),
    ``evaluate`` and its metadata; the vocabularies, the model, the training (one ``runner.train`` phase on the
    dev token accuracy) and the export of encoder.onnx + decoder_step.onnx are shared. Used directly,
    ``Seq2SeqTask(splits)`` trains on given (source tokens, target tokens) pairs (``train``, ``valid``, ``test``).
    """

    name = "seq2seq"
    config_class = Seq2SeqConfig
    monitor = "token_accuracy"
    source_kind: ClassVar[str] = "whitespace"
    target_kind: ClassVar[str] = "whitespace"
    shared_vocab: ClassVar[bool] = False  # one vocabulary for both sides (the auto-encoder)

    def __init__(self, splits: dict[str, list[Pair]] | None = None):
        self.splits = splits

    def choices(self):
        from models.recurrent import cell_choices
        from pipelines.distribute import STRATEGIES

        return {"cell": cell_choices(decoder=True), "attention": ATTENTIONS, "strategy": STRATEGIES}

    # -- data -----------------------------------------------------------------------------------------------------
    def data(self, config):
        if self.splits is None:
            raise DataError("Seq2SeqTask needs its (source tokens, target tokens) pairs: Seq2SeqTask(splits)")
        return self.splits

    def pairs(self, ctx: Context) -> dict[str, list[Pair]]:
        """The ``train`` and ``valid`` (source tokens, target tokens) pairs; by default the splits themselves."""
        return ctx.splits

    def extra_meta(self, ctx: Context) -> dict:
        """The task's own metadata keys (beside the vocabularies, tokenizers and limits)."""
        return {}

    def preprocess(self, ctx: Context) -> Prepared:
        """Vocabularies from the training pairs within the limits, written into the run dir.

        Raises:
          DataError: no training pair within the length limits.
        """
        c, pairs = ctx.config, self.pairs(ctx)
        train = keep_fitting(pairs["train"], c)
        valid = keep_fitting(pairs.get("valid", []), c) or train[:200]
        if not train:
            raise DataError(f"no training pair has 1-{c.max_len} source and fewer than {c.max_target_len} target "
                            "tokens")
        if self.shared_vocab:
            source_vocab = target_vocab = build_vocab([s for s, _ in train] + [t for _, t in train], c.min_count)
        else:
            source_vocab = build_vocab([s for s, _ in train], c.min_count)
            target_vocab = build_vocab([t for _, t in train], c.min_count)
        write_vocabularies(ctx.run_dir, source_vocab, target_vocab)
        print(f"data: {', '.join(f'{k} {len(v)}' for k, v in pairs.items())} ({len(train)} train pairs within the "
              f"limits); vocabularies: source {len(source_vocab)}, target {len(target_vocab)}")
        return Prepared(source_vocab, target_vocab, train, valid)

    # -- model and training ---------------------------------------------------------------------------------------
    def build_model(self, ctx: Context):
        """The trainer, encoder and decoder step over one set of layers (``models.seq2seq.Seq2SeqModels``)."""
        from models.seq2seq import build_seq2seq

        return build_seq2seq(model_spec(ctx.config, len(ctx.prep.source_vocab), len(ctx.prep.target_vocab),
                                        self.pointer_id(ctx)))

    def pointer_id(self, ctx: Context) -> int:
        """The target id whose count moves the decoder's word pointer (``models.seq2seq``); 0: no pointer."""
        return 0

    def compile(self, ctx: Context, models):
        """Adam + clipnorm (+ label smoothing); returns the trainer (what ``runner.train`` trains)."""
        from models.seq2seq import compile_trainer
        from pipelines import training

        c = ctx.config
        compile_trainer(models, training.optimizer(c.learning_rate, c.clipnorm, c.ema), c.label_smoothing)
        return models.trainer

    def train_data(self, ctx: Context, seed: int):
        return ctx.prep.dataset(ctx.prep.train, ctx.config.batch_size * ctx.run.replicas, shuffle=True, seed=seed)

    def validate(self, ctx: Context, models) -> dict:
        if "dev_data" not in ctx.extras:
            ctx.extras["dev_data"] = ctx.prep.dataset(ctx.prep.valid, ctx.config.batch_size, shuffle=False)
        return {"token_accuracy": teacher_forced_accuracy(models, ctx.extras["dev_data"])}

    # -- evaluation -----------------------------------------------------------------------------------------------
    def predictor_class(self):
        """The serving predictor of this task (evaluation runs it over the Keras graphs)."""
        from serving.seq2seq import Seq2SeqPredictor

        return Seq2SeqPredictor

    def export_spec(self, ctx: Context, models=None) -> dict:
        """The metadata serving reads besides what the export derives from the graphs."""
        p = ctx.prep
        meta = task_metadata(ctx.config, self.name, p.source_vocab, p.target_vocab, self.source_kind,
                             self.target_kind)
        return {**meta, **self.extra_meta(ctx)}

    def keras_predictor(self, ctx: Context, models):
        """The task's serving predictor over the Keras graphs (no export needed)."""
        from serving.seq2seq import Seq2SeqModel

        from serving.seq2seq import pointer_metadata

        meta = {**self.export_spec(ctx), "states": models.spec.state_names, "attention": models.spec.attention,
                **pointer_metadata(models.spec.pointer_id, ctx.prep.target_vocab)}
        graphs = Seq2SeqModel(KerasGraph(models.encoder, ctx.run_dir / "encoder (keras)"),
                              KerasGraph(models.decoder_step, ctx.run_dir / "decoder_step (keras)"))
        return self.predictor_class()(graphs, meta)

    def decode_batch(self, ctx: Context) -> int:
        """Sentences per decoding batch (Keras and onnxruntime alike)."""
        return 64

    def decode(self, ctx: Context, predictor, token_lists: list[list[str]], beam_size: int,
               record: bool = True) -> list:
        """Hypotheses for pre-tokenized inputs, ``decode_batch`` at a time. With ``record``, the Keras predictor's
        decodings are kept (one per beam size): the export decodes the same inputs with onnxruntime and compares."""
        hyps, batch = [], self.decode_batch(ctx)
        for start in range(0, len(token_lists), batch):
            hyps += predictor.decode_tokens(token_lists[start: start + batch], beam_size=beam_size)
        if record and isinstance(predictor.model.encoder, KerasGraph):
            ctx.extras.setdefault("decoded", {})[beam_size] = (list(token_lists), hyps)
        return hyps

    def evaluate(self, ctx: Context, models) -> dict:
        """Dev token accuracy; greedy exact match on the test pairs (Keras decoding)."""
        metrics = {"dev_token_accuracy": self.validate(ctx, models)["token_accuracy"]}
        test = [(s, t) for s, t in ctx.splits.get("test", []) if s]
        if test:
            predictor = self.keras_predictor(ctx, models)
            hyps = self.decode(ctx, predictor, [s for s, _ in test], 1)
            metrics["test_exact_greedy"] = float(np.mean([predictor.output_tokens(h) == t
                                                          for h, (_, t) in zip(hyps, test)]))
        return metrics

    # -- export ---------------------------------------------------------------------------------------------------
    def float32_models(self, ctx: Context, models):
        """The graphs in float32 (a copy when training ran in mixed precision) for export."""
        import keras

        policy = keras.mixed_precision.global_policy()
        if policy.name == "float32":
            return models
        keras.mixed_precision.set_global_policy("float32")
        try:
            copy = self.build_model(ctx)
            copy.trainer.set_weights(models.trainer.get_weights())
        finally:
            keras.mixed_precision.set_global_policy(policy)
        return copy

    def export(self, ctx: Context, models) -> dict:
        """Writes ``model.weights.h5`` (what ``python -m export RUN_DIR`` rebuilds the graphs from) and exports
        encoder.onnx + decoder_step.onnx (parity checked); then decodes what evaluation decoded with onnxruntime.
        Returns the export's figures (:meth:`ort_figures`)."""
        from export.seq2seq_export import export_seq2seq

        models = self.float32_models(ctx, models)
        models.trainer.save_weights(ctx.run_dir / WEIGHTS_FILE)
        meta = export_seq2seq(models, ctx.run_dir, self.export_spec(ctx), ctx.prep.parity_sources(), start_id=START_ID,
                              saved_model=ctx.config.saved_model)
        worst = max(v for graph in meta["parity"]["onnx_max_abs_diff"].values() for v in graph.values())
        print(f"exported encoder.onnx + decoder_step.onnx ({meta['onnx_converter']}), parity max abs diff {worst:.2e}")
        return {**self.ort_figures(self.ort_decodings(ctx)), "onnx_max_abs_diff": worst}

    def ort_decodings(self, ctx: Context) -> dict:
        """For each beam size evaluation decoded with: (inputs, onnxruntime decodings differing from Keras' in
        tokens or end, seconds onnxruntime took)."""
        import serving

        predictor, batch, out = serving.load(ctx.run_dir), self.decode_batch(ctx), {}
        for beam, (token_lists, keras_hyps) in ctx.extras.get("decoded", {}).items():
            started, ort = time.time(), []
            for start in range(0, len(token_lists), batch):
                ort += predictor.decode_tokens(token_lists[start: start + batch], beam_size=beam)
            differ = sum(a.ids != b.ids or a.finished != b.finished for a, b in zip(ort, keras_hyps))
            out[beam] = (len(token_lists), differ, time.time() - started)
            if differ:
                print(f"warning: onnxruntime and Keras {'greedy' if beam == 1 else f'beam {beam}'} outputs differ on "
                      f"{differ} of {len(token_lists)} inputs")
        return out

    def ort_figures(self, decodings: dict) -> dict:
        """The export's figures of :meth:`ort_decodings`: mismatches per decoding and the onnxruntime time."""
        figures = {}
        for beam, (_, differ, _) in decodings.items():
            figures["keras_ort_greedy_mismatches" if beam == 1 else "keras_ort_beam_mismatches"] = differ
        figures["ort_decode_seconds"] = round(sum(seconds for _, _, seconds in decodings.values()), 1)
        return figures


def load_models(run_dir: str | Path):
    """Rebuilds the Keras graphs of a finished run from its metadata and ``model.weights.h5`` (benchmarks, tests).
    Returns (models, metadata)."""
    from models.seq2seq import Seq2SeqSpec, build_seq2seq

    run_dir = Path(run_dir)
    meta = json.loads((run_dir / "metadata.json").read_text(encoding="utf-8"))
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    m = {**{k: config[k] for k in ("attention_units", "dropout") if k in config}, **meta["model"]}
    spec = Seq2SeqSpec(len(meta["source_vocab"]), len(meta["target_vocab"]), cell=m["cell"], embed_dim=m["embed_dim"],
                       hidden=m["hidden"], layers=m["layers"], bidirectional=m["bidirectional"],
                       attention=m["attention"], attention_units=m.get("attention_units", 64),
                       dropout=m.get("dropout", 0.0))
    models = build_seq2seq(spec)
    models.trainer.load_weights(run_dir / WEIGHTS_FILE)
    return models, meta
