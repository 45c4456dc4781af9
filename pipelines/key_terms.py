"""Key-term extraction as sequence labelling: ``python -m pipelines.key_terms [--data-dir DIR] [--quick]``.

The document is fed in one token per time step; a bidirectional recurrent tagger outputs, at every token, a
distribution over ``O`` / ``B-KP`` / ``I-KP`` (outside / first / inside word of a key phrase), trained with the
summed per-token cross-entropy and gradient clipping. Tagged spans become a ranked, de-duplicated list of key
terms; the evaluation is the keyphrase literature's (Porter-stemmed exact match, F1@5, F1@10, F1@M), beside an
unsupervised TF-IDF n-gram baseline.

Data: built-in synthetic abstracts by default, or Inspec (``--data-dir`` = the folder holding Inspec.zip, the
zip, or an extracted Inspec/ folder), split as ../shared/data/SPLITS.md fixes (1000 / 500 / 500 by id).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import sys
import time
from pathlib import Path

import pipelines  # noqa: F401  (quiet TensorFlow, Keras backend)
from pipelines.config import build_parser, from_args
from pipelines.keyphrases import KeyDocument
from pipelines.readers import DataError

TASK = "key_terms"
VOCAB_FILE, TAGS_FILE = "vocab.txt", "tags.txt"
LONG_INPUT = ("sliding windows of max_len tokens, stride apart, the last flush with the end; each token takes its "
              "tags from the window where it is most central (training reads the same windows)")


@dataclasses.dataclass(frozen=True)
class KeyTermsConfig:
    data_dir: str | None = dataclasses.field(default=None, metadata={"help": "Inspec zip or folder; none: built-in"})
    out: str = dataclasses.field(default="runs/key_terms", metadata={"help": "run dir to write"})
    epochs: int = dataclasses.field(default=30, metadata={"help": "most epochs (early stopping may end sooner)"})
    cell: str = dataclasses.field(default="lstm", metadata={"help": "recurrent cell"})
    bidirectional: bool = True
    layers: int = 2
    embed_dim: int = 128
    units: int = 128
    dropout: float = 0.5
    word_dropout: float = dataclasses.field(default=0.2, metadata={"help": "rate of tokens replaced by <unk>"})
    min_count: int = dataclasses.field(default=2, metadata={"help": "tokens seen fewer times in train become <unk>"})
    batch_size: int = 16
    learning_rate: float = 2e-3
    clipnorm: float = dataclasses.field(default=1.0, metadata={"help": "gradient norm clip; 0 disables"})
    patience: int = dataclasses.field(default=5, metadata={"help": "epochs without a better dev F1@10"})
    max_len: int = dataclasses.field(default=512, metadata={"help": "longest window the model reads, in tokens"})
    stride: int = dataclasses.field(default=384, metadata={"help": "distance between sliding windows, in tokens"})
    threshold: float = dataclasses.field(default=0.5, metadata={"help": "least P(in a key phrase) of a tagged token"})
    merge: str = dataclasses.field(default="max", metadata={"help": "score of a repeated term: its best or noisy-or"})
    tune_decoding: bool = dataclasses.field(default=True, metadata={
        "help": "after training, choose --threshold (0.1-0.5) and --merge on dev by the mean of F1@5, F1@10, F1@M"})
    synthetic_size: int = dataclasses.field(default=800, metadata={"help": "built-in training documents"})
    seed: int = 0
    quick: bool = dataclasses.field(default=False, metadata={"help": "seconds-long smoke run"})

    def check(self) -> None:
        """Raises DataError naming the first setting out of range."""
        from serving.key_terms import MERGES

        for name in ("epochs", "layers", "embed_dim", "units", "batch_size", "max_len", "stride", "min_count",
                     "synthetic_size"):
            if getattr(self, name) < 1:
                raise DataError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("dropout", "word_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise DataError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(self, name)}")
        if self.stride > self.max_len:
            raise DataError(f"--stride ({self.stride}) must not exceed --max-len ({self.max_len})")
        if not 0 < self.threshold < 1:
            raise DataError(f"--threshold must be in (0, 1), got {self.threshold}")
        if self.merge not in MERGES:
            raise DataError(f"--merge must be one of {', '.join(MERGES)}, got {self.merge!r}")
        if self.learning_rate <= 0 or self.clipnorm < 0:
            raise DataError("--learning-rate must be positive and --clipnorm must not be negative")

    def resolved(self) -> "KeyTermsConfig":
        """The config actually run: ``--quick`` shrinks the model, the data and the epochs."""
        if not self.quick:
            return self
        return dataclasses.replace(
            self, epochs=min(self.epochs, 4), embed_dim=32, units=32, layers=1, learning_rate=5e-3,
            synthetic_size=min(self.synthetic_size, 300), patience=2,
        )


def load_data(config: KeyTermsConfig) -> dict[str, list[KeyDocument]]:
    """The splits: Inspec's (by id) or built-in synthetic ones."""
    from pipelines.inspec import read_inspec
    from pipelines.synthetic_documents import synthetic_splits

    if config.data_dir is None:
        return synthetic_splits(config.synthetic_size, seed=config.seed)
    return read_inspec(config.data_dir)


# --- tokens, labels, gold -------------------------------------------------------------------------------------------

def tokenize_texts(texts: list[str], batch: int = 512) -> list[list]:
    """Tokens of each text (``DocToken``: folded text, character offsets) by the tensorflow-text tokenizer."""
    import tensorflow as tf

    from pipelines import text as tf_textops
    from serving.doc_tokenizer import DocToken

    out = []
    for at in range(0, len(texts), batch):
        chunk = texts[at : at + batch]
        tokens, starts, ends = tf_textops.tokenize_with_offsets(tf.constant(chunk, dtype=tf.string))
        for text, toks, ss, es in zip(chunk, tokens.to_list(), starts.to_list(), ends.to_list()):
            if text.isascii():
                chars = None
            else:  # byte offset → character offset
                chars, at_byte = {0: 0}, 0
                for i, ch in enumerate(text):
                    at_byte += len(ch.encode("utf-8"))
                    chars[at_byte] = i + 1
            out.append([DocToken(t.decode("utf-8"), s if chars is None else chars[s], e if chars is None else chars[e])
                        for t, s, e in zip(toks, ss, es)])
    return out


@dataclasses.dataclass
class Prepared:
    """One split, tokenized and labelled."""

    docs: list[KeyDocument]
    tokens: list[list]            # DocToken per token
    labels: list[list[int]]       # IOB tag id per token
    gold_all: list[set[str]]      # stem keys of every gold phrase
    gold_present: list[set[str]]  # stem keys of the gold phrases found in the text
    phrases: int                  # gold phrases (as the reader de-duplicated them)
    absent: int                   # of which never occur in the text

    def words(self, i: int) -> list[str]:
        return [t.text for t in self.tokens[i]]


def prepare(docs: list[KeyDocument]) -> Prepared:
    """Tokenizes documents and their gold phrases, labels every occurrence, and counts absent phrases."""
    from pipelines.keyphrases import gold_keys, label_document

    tokens = tokenize_texts([d.text for d in docs])
    flat = [p for d in docs for p in d.keyphrases]
    phrase_tokens = iter(tokenize_texts(flat))
    prepared = Prepared(docs, tokens, [], [], [], 0, 0)
    for doc, toks in zip(docs, tokens):
        phrases = [[t.text for t in next(phrase_tokens)] for _ in doc.keyphrases]
        words = [t.text for t in toks]
        labels, present = label_document(words, phrases)
        keys_all, keys_present = gold_keys(words, phrases)
        prepared.labels.append(labels)
        prepared.gold_all.append(keys_all)
        prepared.gold_present.append(keys_present)
        prepared.phrases += len(phrases)
        prepared.absent += present.count(False)
    return prepared


def build_vocabulary(train: Prepared, min_count: int) -> list[str]:
    """``<pad>``, ``<unk>``, then the training tokens seen ``min_count`` times or more, by frequency."""
    from serving.vocab import PAD, UNK

    counts = collections.Counter(t.text for doc in train.tokens for t in doc)
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    usable = lambda t: t not in (PAD, UNK) and not any(ch.isspace() for ch in t)  # NFKC can make "¨" " ̈"
    return [PAD, UNK] + [t for t, n in ordered if n >= min_count and usable(t)]


# --- tf.data --------------------------------------------------------------------------------------------------------

class KeyTermPreprocessor:
    """Maps (tokens, tag ids) to (token ids, {"tag_probs": tag ids}) inside tf.data, with the run dir's vocabulary
    (``tf.lookup``; unknown tokens → ``<unk>``)."""

    def __init__(self, run_dir: Path):
        from pipelines import text as tf_textops
        from serving.vocab import UNK_ID

        self.table = tf_textops.lookup_table(run_dir / VOCAB_FILE, default=UNK_ID)

    def ids(self, tokens):
        import tensorflow as tf

        return tf.cast(self.table.lookup(tokens), tf.int32)

    def __call__(self, tokens, labels):
        from models.tagger import OUTPUT

        return self.ids(tokens), {OUTPUT: labels}


def windows(prepared: Prepared, max_len: int, stride: int):
    """(tokens, labels) of every training window (documents longer than ``max_len`` give several)."""
    from serving.key_terms import window_starts

    for i, labels in enumerate(prepared.labels):
        words = prepared.words(i)
        for start in window_starts(len(words), max_len, stride):
            yield words[start : start + max_len], labels[start : start + max_len]


def training_dataset(prepared: Prepared, preprocessor: KeyTermPreprocessor, config: KeyTermsConfig):
    """Shuffled, length-bucketed, padded (token ids, tag ids) batches with token dropout, for ``fit``."""
    import tensorflow as tf

    from models.tagger import OUTPUT
    from pipelines.batching import bucketed_batches
    from pipelines.slot_data import PAD_LABEL, word_dropout

    tokens, labels = zip(*windows(prepared, config.max_len, config.stride))
    dataset = tf.data.Dataset.from_tensor_slices(
        (tf.ragged.constant(list(tokens), dtype=tf.string), tf.ragged.constant(list(labels), dtype=tf.int32))
    )
    dataset = dataset.map(preprocessor, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return bucketed_batches(
        dataset, config.batch_size, config.max_len, seed=config.seed, padding_values=(0, {OUTPUT: PAD_LABEL}),
        augment=word_dropout(config.word_dropout, config.seed) if config.word_dropout else None,
    )


def id_batches(preprocessor: KeyTermPreprocessor, windows_tokens: list[list[str]], batch_size: int):
    """Padded int32 id matrices of ``windows_tokens``, in order, ``batch_size`` per batch."""
    import numpy as np
    import tensorflow as tf

    for at in range(0, len(windows_tokens), batch_size):
        chunk = windows_tokens[at : at + batch_size]
        ids = preprocessor.ids(tf.ragged.constant(chunk, dtype=tf.string)).to_tensor(0)
        yield ids.numpy().astype(np.int32)


# --- prediction and evaluation ----------------------------------------------------------------------------------------

def _inference_function(model):
    """The model's inference call as one traced tf.function for any [batch, time] (eager recurrent layers step
    slowly); traced once per model."""
    import tensorflow as tf

    from models.tagger import OUTPUT

    if id(model) not in _TRACED or _TRACED[id(model)][0] is not model:
        _TRACED[id(model)] = (model, tf.function(
            lambda ids: model(ids, training=False)[OUTPUT], input_signature=[tf.TensorSpec([None, None], tf.int32)],
        ))
    return _TRACED[id(model)][1]


_TRACED: dict = {}


def predict_probs(model, preprocessor, token_lists: list[list[str]], config: KeyTermsConfig, batch_size: int = 32):
    """Per-token tag probabilities [n, tags] of each document with the Keras model, read in the same windows
    as serving reads them (and stitched the same way)."""
    from serving.key_terms import stitch, window_starts

    run = _inference_function(model)
    spans = [(d, s) for d, words in enumerate(token_lists) for s in window_starts(len(words), config.max_len, config.stride)]
    window_len = lambda w: min(config.max_len, len(token_lists[spans[w][0]]) - spans[w][1])
    order = sorted(range(len(spans)), key=window_len)  # similar lengths share a batch: little padding
    chunks = [token_lists[spans[w][0]][spans[w][1] : spans[w][1] + config.max_len] for w in order]
    probs: list = [None] * len(spans)
    at = 0
    for ids in id_batches(preprocessor, chunks, batch_size):
        out = run(ids).numpy()
        for row in range(len(ids)):
            probs[order[at]] = out[row, : len(chunks[at])]
            at += 1
    per_doc: list[list] = [[] for _ in token_lists]
    for (d, s), p in zip(spans, probs):
        per_doc[d].append((s, p))
    return [stitch([p for _, p in parts], [s for s, _ in parts], len(words)) for parts, words in zip(per_doc, token_lists)]


def split_probs(model, preprocessor, prepared: Prepared, config: KeyTermsConfig) -> list:
    """Per document of a split, the Keras model's per-token tag probabilities."""
    return predict_probs(model, preprocessor, [prepared.words(i) for i in range(len(prepared.docs))], config)


def rankings_from_probs(prepared: Prepared, probs: list, threshold: float, merge: str) -> list[list[str]]:
    """Per document, the ranked stem keys of the key terms decoded (as serving decodes) from ``probs``."""
    from pipelines.keyphrases import TAGS, phrase_key
    from serving.key_terms import key_terms

    rankings = []
    for doc, tokens, p in zip(prepared.docs, prepared.tokens, probs):
        terms, _ = key_terms(doc.text, tokens, p, TAGS, threshold, merge)
        rankings.append([phrase_key(term.term) for term in terms])
    return rankings


def rnn_rankings(model, preprocessor, prepared: Prepared, config: KeyTermsConfig) -> list[list[str]]:
    """Per document, the ranked stem keys of the model's key terms, with the config's decoding settings."""
    return rankings_from_probs(prepared, split_probs(model, preprocessor, prepared, config), config.threshold,
                               config.merge)


THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)


def choose_decoding(dev: Prepared, probs: list) -> tuple[float, str, dict]:
    """The (threshold, merge rule) with the best mean of dev F1@5, F1@10 and F1@M (all gold); and every
    candidate's mean, for the log."""
    from pipelines.keyphrases import score_rankings
    from serving.key_terms import MERGES

    means = {}
    for threshold in THRESHOLDS:
        for merge in MERGES:
            scores = score_rankings(rankings_from_probs(dev, probs, threshold, merge), dev.gold_all, dev.gold_present)
            means[(threshold, merge)] = (scores["f1_at_5"] + scores["f1_at_10"] + scores["f1_at_m"]) / 3
    threshold, merge = max(means, key=lambda key: (means[key], key == (0.5, "max")))
    return threshold, merge, means


def tfidf_rankings(baseline, prepared: Prepared) -> list[list[str]]:
    """Per document, the TF-IDF baseline's ranked stem keys."""
    from pipelines.keyphrases import line_breaks

    return [[key for key, _ in baseline.rank(prepared.words(i), line_breaks(doc.text, prepared.tokens[i]))]
            for i, doc in enumerate(prepared.docs)]


def fit_tfidf(train: Prepared):
    from pipelines.keyphrases import TfidfBaseline, line_breaks

    return TfidfBaseline().fit(
        (train.words(i), line_breaks(doc.text, train.tokens[i])) for i, doc in enumerate(train.docs)
    )


def _validation_callback(dev: Prepared, preprocessor, config: KeyTermsConfig):
    import keras

    from pipelines.keyphrases import score_rankings

    class KeyTermValidation(keras.callbacks.Callback):
        """Adds ``val_f1_at_5``, ``val_f1_at_10`` and ``val_f1_at_m`` (dev, all gold) to the epoch logs."""

        def on_epoch_end(self, epoch, logs=None):
            scores = score_rankings(rnn_rankings(self.model, preprocessor, dev, config), dev.gold_all, dev.gold_present)
            for k in ("5", "10", "m"):
                if logs is not None:
                    logs[f"val_f1_at_{k}"] = scores[f"f1_at_{k}"]
            print(f" - val F1@5 {scores['f1_at_5']:.4f}, F1@10 {scores['f1_at_10']:.4f}, "
                  f"F1@M {scores['f1_at_m']:.4f} ({scores['predicted_per_document']} terms per document)")

    return KeyTermValidation()


def parity_batches(prepared: Prepared, preprocessor, config: KeyTermsConfig, n: int = 4, size: int = 8) -> list[dict]:
    """Real windows of mixed lengths, in document order (so each batch pads), for the export parity check."""
    chunks = [words for words, _ in windows(prepared, config.max_len, config.stride)][: n * size]
    return [{"token_ids": ids, "lengths": (ids != 0).sum(axis=1)} for ids in id_batches(preprocessor, chunks, size)]


def task_metadata(config: KeyTermsConfig, vocab: list[str], model) -> dict:
    from models.tagger import INPUT, OUTPUT
    from pipelines.keyphrases import TAGS
    from serving import doc_tokenizer
    from serving.vocab import PAD_ID, UNK_ID

    return {
        "task": TASK,
        "inputs": {INPUT: {"name": INPUT, "dtype": "int32", "shape": ["batch", "time"], "pad_id": PAD_ID}},
        "outputs": {OUTPUT: {"name": OUTPUT, "dtype": "float32", "shape": ["batch", "time", len(TAGS)]}},
        "tokenizer": doc_tokenizer.SPEC,
        "vocab": vocab,
        "pad_id": PAD_ID,
        "unk_id": UNK_ID,
        "tags": TAGS,
        "max_len": config.max_len,
        "window": {"max_len": config.max_len, "stride": config.stride, "long_input": LONG_INPUT},
        "decoding": {
            "threshold": config.threshold, "merge": config.merge,
            "span": "tokens with 1 - P(O) > threshold; a new span where P(B-KP) >= P(I-KP) or after O; "
                    "edge tokens without a letter or digit trimmed",
            "span_score": "mean over the span's tokens of max(P(B-KP), P(I-KP))",
            "dedupe": "case-folded tokens, last word's English plural folded (serving.key_terms.fold_plural)",
        },
        "model": {"cell": config.cell, "bidirectional": config.bidirectional, "layers": config.layers,
                  "units": config.units, "embed_dim": config.embed_dim, "parameters": model.count_params()},
    }


SHOWN = ("f1_at_5", "f1_at_10", "f1_at_m", "present_f1_at_5", "present_f1_at_10", "present_f1_at_m")


def table(metrics: dict) -> str:
    """The test figures, RNN beside TF-IDF, as a text table."""
    head = f"{'test (' + str(metrics.get('test_documents', '')) + ' documents)':<28}" + "".join(
        f"{name.replace('present_', 'present ').replace('f1_at_', 'F1@').replace('@m', '@M'):>18}" for name in SHOWN)
    rows = [head]
    for system, label in (("rnn", "RNN tagger"), ("tfidf", "TF-IDF n-grams")):
        rows.append(f"{label:<28}" + "".join(f"{metrics[f'{system}_{name}']:>18.4f}" for name in SHOWN))
    rows.append(f"gold phrases absent from the text: {metrics['test_absent_gold']} of {metrics['test_gold']} "
                f"({metrics['test_absent_gold_pct']}%); recall counts them (all-gold) or not (present)")
    return "\n".join(rows)


def run(config: KeyTermsConfig) -> dict:
    """Trains, evaluates and exports; returns the metrics. The run dir appears only when all succeeded."""
    from export import export_model
    from models.losses import SummedSequenceCrossEntropy
    from models.tagger import OUTPUT, build_tagger
    from pipelines import training
    from pipelines.keyphrases import TAGS, score_rankings
    from serving.vocab import write_vocab

    config.check()
    config = config.resolved()
    splits = load_data(config)
    started = time.time()
    with training.task_run(config, TASK) as run_dir:
        prepared = {name: prepare(docs) for name, docs in splits.items()}
        vocab = build_vocabulary(prepared["train"], config.min_count)
        write_vocab(run_dir / VOCAB_FILE, vocab, "vocabulary")
        write_vocab(run_dir / TAGS_FILE, TAGS, "tags")
        for name, p in prepared.items():
            longest = max(len(t) for t in p.tokens)
            print(f"{name}: {len(p.docs)} documents, {sum(map(len, p.tokens))} tokens (longest {longest}), "
                  f"{p.phrases} gold phrases, {p.absent} ({100 * p.absent / max(p.phrases, 1):.1f}%) absent from the text")
        print(f"vocabulary: {len(vocab)} tokens (seen {config.min_count}+ times in train)")

        preprocessor = KeyTermPreprocessor(run_dir)
        train_ds = training_dataset(prepared["train"], preprocessor, config)
        model = build_tagger(len(vocab), len(TAGS), cell=config.cell, embed_dim=config.embed_dim, units=config.units,
                             layers=config.layers, bidirectional=config.bidirectional, dropout=config.dropout)
        model.compile(optimizer=training.optimizer(config.learning_rate, config.clipnorm),
                      loss={OUTPUT: SummedSequenceCrossEntropy()})
        model.fit(
            train_ds, epochs=config.epochs, verbose=1 if sys.stdout.isatty() and not config.quick else 2, shuffle=False,
            callbacks=training.callbacks(run_dir, "val_f1_at_10", config.patience,
                                         first=[_validation_callback(prepared["valid"], preprocessor, config)]),
        )
        model.load_weights(run_dir / "checkpoints" / "best.weights.h5")
        train_seconds = time.time() - started

        probs = {split: split_probs(model, preprocessor, prepared[split], config) for split in ("valid", "test")}
        if config.tune_decoding:
            threshold, merge, means = choose_decoding(prepared["valid"], probs["valid"])
            print("decoding on dev (mean of F1@5, F1@10, F1@M): "
                  + ", ".join(f"{t} {m} {v:.4f}" for (t, m), v in means.items()) + f"; chosen: {threshold} {merge}")
            config = dataclasses.replace(config, threshold=threshold, merge=merge)
        baseline = fit_tfidf(prepared["train"])
        metrics: dict = {"decoding_threshold": config.threshold, "decoding_noisy_or": int(config.merge == "noisy_or")}
        for split, prefix in (("valid", "dev_"), ("test", "")):
            p = prepared[split]
            for system, ranked in (("rnn", rankings_from_probs(p, probs[split], config.threshold, config.merge)),
                                   ("tfidf", tfidf_rankings(baseline, p))):
                scores = score_rankings(ranked, p.gold_all, p.gold_present)
                keep = scores if not prefix else {k: scores[k] for k in SHOWN}
                metrics.update({f"{prefix}{system}_{k}": v for k, v in keep.items()
                                if k not in ("documents", "present_documents")})
        for split, p in prepared.items():
            name = {"valid": "dev"}.get(split, split)
            metrics[f"{name}_gold"] = p.phrases
            metrics[f"{name}_absent_gold"] = p.absent
            metrics[f"{name}_absent_gold_pct"] = round(100 * p.absent / max(p.phrases, 1), 1)
        test = prepared["test"]
        metrics["test_documents"] = len(test.docs)
        metrics["test_documents_with_present_gold"] = sum(1 for g in test.gold_present if g)
        metrics["test_documents_over_max_len"] = sum(len(t) > config.max_len for t in test.tokens)
        metrics["train_seconds"] = round(train_seconds, 1)
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        model.save(run_dir / "model.keras")

        meta = export_model(model, run_dir, task_metadata(config, vocab, model),
                            parity_batches(prepared["valid"], preprocessor, config))
        metrics["onnx_max_abs_diff"] = max(meta["parity"]["onnx_max_abs_diff"].values())
        metrics["saved_model_max_abs_diff"] = max(meta["parity"]["saved_model_max_abs_diff"].values())
        print(table(metrics))
    return metrics


def main(argv: list[str] | None = None) -> int:
    from models.recurrent import CELL_CHOICES
    from serving.key_terms import MERGES

    parser = build_parser(
        KeyTermsConfig, __doc__.split("\n\n")[1], choices={"cell": CELL_CHOICES, "merge": MERGES},
        prog="python -m pipelines.key_terms",
    )
    config = from_args(KeyTermsConfig, parser.parse_args(argv))
    try:
        metrics = run(config)
        demo = load_data(config.resolved())["test"][0]
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(metrics, indent=2))

    import serving

    result = serving.load(config.out).predict(demo.text)
    print(f"\nonnxruntime, {config.out}/model.onnx, test document {demo.doc_id} ({len(result.tokens)} tokens, "
          f"{result.windows} window{'s' if result.windows > 1 else ''}):\n  {demo.text[:200]!r}...")
    for term in result.terms[:10]:
        print(f"  {term.score:.3f}  {term.term!r} at {term.offsets}")
    print(f"  gold: {'; '.join(demo.keyphrases)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
