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
import sys
from pathlib import Path

import pipelines  # noqa: F401  (quiet TensorFlow, Keras backend)
from pipelines.common import CommonOptions, check_positive, check_rate
from pipelines.keyphrases import KeyDocument
from pipelines.readers import DataError
from pipelines.task import Context, Task

TASK = "key_terms"
DEMO = ("Adaptive filter banks for robust speech recognition\nWe propose a new adaptive filter bank that improves "
        "robust speech recognition on noisy data. The adaptive filter bank is evaluated on a large speech corpus.")
VOCAB_FILE, TAGS_FILE = "vocab.txt", "tags.txt"
LONG_INPUT = ("sliding windows of max_len tokens, stride apart, the last flush with the end; each token takes its "
              "tags from the window where it is most central (training reads the same windows)")


def _opt(default, text: str):
    return dataclasses.field(default=default, metadata={"help": text})


@dataclasses.dataclass(frozen=True)
class KeyTermsConfig(CommonOptions):
    data_dir: str | None = _opt(None, "Inspec zip or folder; none: built-in")
    out: str = _opt("runs/key_terms", "run dir to write")
    epochs: int = _opt(30, "most epochs (early stopping may end sooner)")
    cell: str = _opt("lstm", "recurrent cell")
    bidirectional: bool = True
    layers: int = 2
    embed_dim: int = 128
    hidden: int = _opt(128, "recurrent units per direction")
    dropout: float = 0.5
    token_dropout: float = _opt(0.2, "rate of tokens replaced by <unk>")
    min_count: int = _opt(2, "tokens seen fewer times in train become <unk>")
    batch_size: int = _opt(16, "windows per batch (and replica)")
    learning_rate: float = 2e-3
    patience: int = _opt(5, "epochs without a better dev F1@10")
    max_len: int = _opt(512, "longest window the model reads, in tokens")
    stride: int = _opt(384, "distance between sliding windows, in tokens")
    threshold: float = _opt(0.5, "least P(in a key phrase) of a tagged token")
    merge: str = _opt("max", "score of a repeated term: its best or noisy-or")
    tune_decoding: bool = _opt(True, "after training, choose --threshold (0.1-0.5) and --merge on dev by the mean "
                                     "of F1@5, F1@10, F1@M")
    synthetic_size: int = _opt(800, "built-in training documents")

    DEPRECATED_FLAGS = {"units": "hidden", "word_dropout": "token_dropout"}

    def check(self) -> None:
        """Raises DataError naming the first setting out of range."""
        from serving.key_terms import MERGES

        super().check()
        check_positive(self, "layers", "embed_dim", "hidden", "max_len", "stride", "min_count", "synthetic_size")
        check_rate(self, "dropout", "token_dropout")
        if self.stride > self.max_len:
            raise DataError(f"--stride ({self.stride}) must not exceed --max-len ({self.max_len})")
        if not 0 < self.threshold < 1:
            raise DataError(f"--threshold must be in (0, 1), got {self.threshold}")
        if self.merge not in MERGES:
            raise DataError(f"--merge must be one of {', '.join(MERGES)}, got {self.merge!r}")
        if self.learning_rate <= 0:
            raise DataError("--learning-rate must be positive")

    def resolved(self) -> "KeyTermsConfig":
        """The config actually run: ``--quick`` shrinks the model, the data and the epochs."""
        if not self.quick:
            return self
        return dataclasses.replace(
            self, epochs=min(self.epochs, 4), embed_dim=32, hidden=32, layers=1, learning_rate=5e-3,
            synthetic_size=min(self.synthetic_size, 300), patience=2,
        )


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


def training_dataset(prepared: Prepared, preprocessor: KeyTermPreprocessor, *, max_len: int, stride: int,
                     batch_size: int, seed: int, token_dropout: float = 0.0, drop_remainder: bool = False):
    """Shuffled, length-bucketed, padded (token ids, tag ids) batches of the training windows, with token dropout,
    for ``fit`` (``drop_remainder``: only full batches, for distributed training)."""
    import tensorflow as tf

    from models.tagger import OUTPUT
    from pipelines.batching import bucketed_batches
    from pipelines.slot_data import PAD_LABEL, word_dropout

    tokens, labels = zip(*windows(prepared, max_len, stride))
    dataset = tf.data.Dataset.from_tensor_slices(
        (tf.ragged.constant(list(tokens), dtype=tf.string), tf.ragged.constant(list(labels), dtype=tf.int32))
    )
    dataset = dataset.map(preprocessor, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return bucketed_batches(
        dataset, batch_size, max_len, seed=seed, padding_values=(0, {OUTPUT: PAD_LABEL}),
        augment=word_dropout(token_dropout, seed) if token_dropout else None, drop_remainder=drop_remainder,
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


class KeyTerms(Task):
    """Per-token IOB tagging of documents; the dev F1@10 picks the epoch, then the decoding is tuned on dev."""

    name = TASK
    config_class = KeyTermsConfig
    monitor = "f1_at_10"
    demo_input = DEMO

    def choices(self):
        from models.recurrent import CELL_CHOICES
        from pipelines.distribute import STRATEGIES
        from serving.key_terms import MERGES

        return {"cell": CELL_CHOICES, "merge": MERGES, "strategy": STRATEGIES}

    def data(self, config):
        """The splits: Inspec's (by id) or built-in synthetic ones."""
        from pipelines.inspec import read_inspec
        from pipelines.synthetic_documents import synthetic_splits

        if config.data_dir is None:
            return synthetic_splits(config.synthetic_size, seed=config.seed)
        return read_inspec(config.data_dir)

    def preprocess(self, ctx: Context):
        from pipelines.keyphrases import TAGS
        from serving.vocab import write_vocab

        prepared = {name: prepare(docs) for name, docs in ctx.splits.items()}
        vocab = build_vocabulary(prepared["train"], ctx.config.min_count)
        write_vocab(ctx.run_dir / VOCAB_FILE, vocab, "vocabulary")
        write_vocab(ctx.run_dir / TAGS_FILE, TAGS, "tags")
        for name, p in prepared.items():
            longest = max(len(t) for t in p.tokens)
            print(f"{name}: {len(p.docs)} documents, {sum(map(len, p.tokens))} tokens (longest {longest}), "
                  f"{p.phrases} gold phrases, {p.absent} ({100 * p.absent / max(p.phrases, 1):.1f}%) absent from the text")
        print(f"vocabulary: {len(vocab)} tokens (seen {ctx.config.min_count}+ times in train)")
        ctx.extras.update(prepared=prepared, vocab=vocab)
        return KeyTermPreprocessor(ctx.run_dir)

    def build_model(self, ctx: Context):
        from models.tagger import build_tagger
        from pipelines.keyphrases import TAGS

        c = ctx.config
        return build_tagger(len(ctx.extras["vocab"]), len(TAGS), cell=c.cell, embed_dim=c.embed_dim, units=c.hidden,
                            layers=c.layers, bidirectional=c.bidirectional, dropout=c.dropout)

    def compile(self, ctx: Context, model):
        from models.losses import SummedSequenceCrossEntropy
        from models.tagger import OUTPUT
        from pipelines import training

        c = ctx.config
        model.compile(optimizer=training.optimizer(c.learning_rate, c.clipnorm, c.ema),
                      loss={OUTPUT: SummedSequenceCrossEntropy()})
        return model

    def train_data(self, ctx: Context, seed: int):
        c = ctx.config
        return training_dataset(ctx.extras["prepared"]["train"], ctx.prep, max_len=c.max_len, stride=c.stride,
                                batch_size=c.batch_size * ctx.run.replicas, seed=seed, token_dropout=c.token_dropout,
                                drop_remainder=ctx.run.distributed)

    def validate(self, ctx: Context, model) -> dict:
        """Dev F1@5, F1@10, F1@M (all gold) with the config's decoding, and the terms per document."""
        from pipelines.keyphrases import score_rankings

        dev = ctx.extras["prepared"]["valid"]
        scores = score_rankings(rnn_rankings(model, ctx.prep, dev, ctx.config), dev.gold_all, dev.gold_present)
        return {k: scores[k] for k in ("f1_at_5", "f1_at_10", "f1_at_m", "predicted_per_document")}

    def fit(self, ctx: Context):
        """Trains in one phase, then (``--tune-decoding``) chooses the threshold and merge rule on dev."""
        model = super().fit(ctx)
        if ctx.config.tune_decoding:
            dev = ctx.extras["prepared"]["valid"]
            ctx.extras["valid_probs"] = split_probs(model, ctx.prep, dev, ctx.config)
            threshold, merge, means = choose_decoding(dev, ctx.extras["valid_probs"])
            print("decoding on dev (mean of F1@5, F1@10, F1@M): "
                  + ", ".join(f"{t} {m} {v:.4f}" for (t, m), v in means.items()) + f"; chosen: {threshold} {merge}")
            ctx.config = dataclasses.replace(ctx.config, threshold=threshold, merge=merge)
        return model

    def evaluate(self, ctx: Context, model) -> dict:
        """The RNN's and the TF-IDF baseline's scores on dev (F1 only) and test (all), and the gold counts."""
        from pipelines.keyphrases import score_rankings

        c, prepared = ctx.config, ctx.extras["prepared"]
        probs = {split: ctx.extras[f"{split}_probs"] if f"{split}_probs" in ctx.extras
                 else split_probs(model, ctx.prep, prepared[split], c) for split in ("valid", "test")}
        baseline = fit_tfidf(prepared["train"])
        metrics: dict = {"decoding_threshold": c.threshold, "decoding_noisy_or": int(c.merge == "noisy_or")}
        for split, prefix in (("valid", "dev_"), ("test", "")):
            p = prepared[split]
            for system, ranked in (("rnn", rankings_from_probs(p, probs[split], c.threshold, c.merge)),
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
        metrics["test_documents_over_max_len"] = sum(len(t) > c.max_len for t in test.tokens)
        print(table(metrics))
        return metrics

    def export_spec(self, ctx: Context, model) -> dict:
        from models.tagger import INPUT, OUTPUT
        from pipelines.keyphrases import TAGS
        from serving import doc_tokenizer
        from serving.vocab import PAD_ID, UNK_ID

        c = ctx.config
        return {
            "task": TASK,
            "inputs": {INPUT: {"name": INPUT, "dtype": "int32", "shape": ["batch", "time"], "pad_id": PAD_ID}},
            "outputs": {OUTPUT: {"name": OUTPUT, "dtype": "float32", "shape": ["batch", "time", len(TAGS)]}},
            "tokenizer": doc_tokenizer.SPEC, "vocab": ctx.extras["vocab"], "pad_id": PAD_ID, "unk_id": UNK_ID,
            "tags": TAGS, "max_len": c.max_len,
            "window": {"max_len": c.max_len, "stride": c.stride, "long_input": LONG_INPUT},
            "decoding": {
                "threshold": c.threshold, "merge": c.merge,
                "span": "tokens with 1 - P(O) > threshold; a new span where P(B-KP) >= P(I-KP) or after O; "
                        "edge tokens without a letter or digit trimmed",
                "span_score": "mean over the span's tokens of max(P(B-KP), P(I-KP))",
                "dedupe": "case-folded tokens, last word's English plural folded (serving.key_terms.fold_plural)",
            },
            "model": {"cell": c.cell, "bidirectional": c.bidirectional, "layers": c.layers, "hidden": c.hidden,
                      "embed_dim": c.embed_dim, "parameters": model.count_params()},
        }

    def parity_batches(self, ctx: Context) -> list[dict]:
        """Real windows of mixed lengths, in document order (so each batch pads), for the export parity check."""
        chunks = [words for words, _ in windows(ctx.extras["prepared"]["valid"], ctx.config.max_len,
                                                ctx.config.stride)][:32]
        return [{"token_ids": ids, "lengths": (ids != 0).sum(axis=1)} for ids in id_batches(ctx.prep, chunks, 8)]

    def export(self, ctx: Context, model) -> dict:
        """As the default export, also reporting the SavedModel's parity."""
        from export import export_model
        from pipelines.training import float32_model

        model = float32_model(lambda: self.build_model(ctx), model)
        model.save(ctx.run_dir / "model.keras")
        parity = export_model(model, ctx.run_dir, self.export_spec(ctx, model), self.parity_batches(ctx))["parity"]
        return {f"{kind}_max_abs_diff": max(parity[f"{kind}_max_abs_diff"].values())
                for kind in ("onnx", "saved_model")}


KEY_TERMS = KeyTerms()


def run(config: KeyTermsConfig) -> dict:
    """Trains, evaluates and exports; returns the metrics. The run dir appears only when all succeeded."""
    return KEY_TERMS.run(config)


def main(argv: list[str] | None = None) -> int:
    return KEY_TERMS.main(argv)


if __name__ == "__main__":
    sys.exit(main())
