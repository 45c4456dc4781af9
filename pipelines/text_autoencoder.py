"""Text auto-encoder: ``python -m pipelines.text_autoencoder [--data-dir DIR] [--quick]``.

Sentence → vector → the same sentence: the encoder reads the words into its final state (the vector), and the
decoder, initialised from that vector alone (no attention), writes the sentence back. Unlike a bag of words the
vector keeps word order: "white blood cells destroyed the infection" and "the infection destroyed white blood
cells" have the same bag of words (cosine 1.0) but different vectors. Reported: exact reconstruction rate and
token accuracy on held-out sentences, nearest neighbours, and the hierarchical variant (word → sentence vectors →
document vector → sentence vectors → words) on multi-sentence documents.

Data: built-in sentences from a small grammar by default, or the English side of Tatoeba (``cmn.txt``) with
``--data-dir`` (train split for training, test split held out, per ../shared/data/SPLITS.md).

Training phases (each resumable on its own): ``train``, the sentence auto-encoder, the dev token accuracy picking
the epoch; then ``document`` (``--doc-epochs``), the document level on the frozen sentence vectors.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import random
import sys

import numpy as np

import pipelines  # noqa: F401  (quiet TensorFlow, Keras backend)
from pipelines.readers import DataError
from pipelines.seq2seq import Seq2SeqConfig, Seq2SeqTask
from pipelines.task import Context

TASK = "text_autoencoder"
PAIR = ("white blood cells destroyed the infection", "the infection destroyed white blood cells")


@dataclasses.dataclass(frozen=True)
class TextAutoencoderConfig(Seq2SeqConfig):
    out: str = dataclasses.field(default="runs/text_autoencoder", metadata={"help": "run dir to write"})
    attention: str = dataclasses.field(default="none", metadata={"help": "must stay none: the vector is the only "
                                                                         "path from encoder to decoder"})
    hidden: int = dataclasses.field(default=128, metadata={"help": "encoder units per direction"})
    max_len: int = dataclasses.field(default=20, metadata={"help": "longest sentence in words (longer: dropped "
                                                                     "from training, refused in serving)"})
    max_target_len: int = 22
    beam_size: int = 1
    synthetic_size: int = dataclasses.field(default=4000, metadata={"help": "built-in training sentences"})
    held_out: int = dataclasses.field(default=500, metadata={"help": "most held-out sentences evaluated"})
    max_train: int = dataclasses.field(default=0, metadata={"help": "most training sentences; 0: all"})
    doc_sentences: int = dataclasses.field(default=4, metadata={"help": "most sentences per document"})
    doc_hidden: int = dataclasses.field(default=256, metadata={"help": "document vector size"})
    doc_epochs: int = dataclasses.field(default=30, metadata={"help": "document-level epochs; 0 skips it"})

    def check(self) -> None:
        super().check()
        if self.attention != "none":
            raise DataError("--attention must be none for an auto-encoder: attention would bypass the vector")
        if self.doc_sentences < 2 or self.doc_epochs < 0:
            raise DataError("--doc-sentences must be at least 2 and --doc-epochs not negative")

    def resolved(self) -> "TextAutoencoderConfig":
        if not self.quick:
            return self
        return dataclasses.replace(self, epochs=min(self.epochs, 5), hidden=48, embed_dim=32, learning_rate=1e-2,
                                   synthetic_size=min(self.synthetic_size, 1500), saved_model=False,
                                   held_out=min(self.held_out, 200), doc_epochs=min(self.doc_epochs, 10),
                                   doc_hidden=96)


# --------------------------------------------------------------------------------------------------------------------
# The built-in sentences

NOUN_PHRASES = ["white blood cells", "the infection", "the doctor", "the old nurse", "a young patient", "the virus",
                "the new drug", "the bacteria", "the small child", "the fever", "the surgeon", "red blood cells",
                "the antibiotics", "a strange disease"]
VERBS = ["destroyed", "cured", "attacked", "found", "helped", "fought", "caused", "stopped", "examined", "treated",
         "followed", "ignored"]
TAILS = ["", "in the hospital", "last night", "again", "very quickly", "at the clinic"]


def synthetic_sentences(size: int, held_out: int, seed: int = 0) -> dict[str, list[str]]:
    """Distinct subject–verb–object sentences (with an optional tail): ``size`` to train on, ``held_out`` others.
    The lecture's pair is in neither, so its vectors come from sentences the model never saw."""
    rng = random.Random(seed)
    seen, sentences = set(PAIR), []
    limit = len(NOUN_PHRASES) ** 2 * len(VERBS) * len(TAILS)
    while len(sentences) < min(size + held_out, limit - 2):
        subject, obj = rng.sample(NOUN_PHRASES, 2)
        sentence = " ".join(filter(None, [subject, rng.choice(VERBS), obj, rng.choice(TAILS)]))
        if sentence not in seen:
            seen.add(sentence)
            sentences.append(sentence)
    return {"train": sentences[:size], "test": sentences[size:]}


def load_sentences(config: TextAutoencoderConfig) -> dict[str, list[str]]:
    """``train``, ``valid`` and ``test`` sentences; without a dev split (the built-in data), ``valid`` is a sample of
    200 training sentences."""
    if config.data_dir is None:
        splits = synthetic_sentences(config.synthetic_size, config.held_out, config.seed)
    else:
        from pipelines.tatoeba import read_tatoeba

        pairs = read_tatoeba(config.data_dir)

        def english(split):  # Tatoeba repeats an English sentence for each of its translations
            return list(dict.fromkeys(en for en, _ in split))

        train = english(pairs["train"])
        splits = {"train": train[: config.max_train or None], "valid": english(pairs["valid"]),
                  "test": english(pairs["test"])}
    if not splits.get("valid"):
        train = splits["train"]
        splits["valid"] = random.Random(config.seed).sample(train, min(200, len(train)))
    return splits


# --------------------------------------------------------------------------------------------------------------------
# Measures


def cosine(u, v) -> float:
    return float(np.dot(u, v) / max(np.linalg.norm(u) * np.linalg.norm(v), 1e-12))


def bag_of_words_cosine(a: list[str], b: list[str]) -> float:
    """Cosine of two token-count vectors: 1.0 for any two orderings of the same words."""
    ca, cb = collections.Counter(a), collections.Counter(b)
    dot = sum(ca[t] * cb[t] for t in ca)
    return dot / (sum(n * n for n in ca.values()) ** 0.5 * sum(n * n for n in cb.values()) ** 0.5)


def reconstruction(references: list[list[str]], outputs: list[list[str]]) -> dict:
    """Exact reconstruction rate, and token accuracy: reference tokens reproduced at their own position."""
    exact = float(np.mean([r == o for r, o in zip(references, outputs)]))
    hits = sum(sum(1 for t, tok in enumerate(r) if t < len(o) and o[t] == tok) for r, o in zip(references, outputs))
    return {"exact_reconstruction": exact, "token_accuracy": hits / max(sum(len(r) for r in references), 1)}


def nearest_neighbours(queries: list[str], query_vectors, pool: list[str], pool_vectors, k: int = 3) -> dict:
    """The ``k`` pool sentences with the most similar vectors (cosine) for each query (itself excluded)."""
    def unit(m):
        return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)

    sims = unit(np.asarray(query_vectors)) @ unit(np.asarray(pool_vectors)).T
    out = {}
    for q, row in zip(queries, sims):
        order = [j for j in np.argsort(-row) if pool[j] != q][:k]
        out[q] = [(pool[j], round(float(row[j]), 3)) for j in order]
    return out


# --------------------------------------------------------------------------------------------------------------------
# The hierarchical variant


def documents(sentences: list[str], most: int, seed: int) -> list[list[str]]:
    """Consecutive runs of 2..``most`` sentences."""
    rng, docs, i = random.Random(seed), [], 0
    while i + 2 <= len(sentences):
        n = rng.randint(2, most)
        docs.append(sentences[i: i + n])
        i += n
    return [d for d in docs if len(d) >= 2]


def embed(predictor, sentences: list[str], batch: int = 128) -> np.ndarray:
    """Sentence vectors [n, dim], ``batch`` sentences per encoder call."""
    return np.concatenate([predictor.embed_batch(sentences[i: i + batch]) for i in range(0, len(sentences), batch)]
                          or [np.zeros((0, predictor.dim), np.float32)])


def _doc_arrays(docs: list[list[str]], predictor, most: int) -> np.ndarray:
    vectors = embed(predictor, [s for d in docs for s in d])
    out = np.zeros((len(docs), most, predictor.dim), np.float32)
    row = 0
    for i, d in enumerate(docs):
        out[i, : len(d)] = vectors[row: row + len(d)]
        row += len(d)
    return out


def document_scores(config: TextAutoencoderConfig, predictor, doc, test_docs) -> tuple[dict, dict]:
    """Documents reconstructed through their document vector: sentence count right, sentences exactly right, whole
    documents exactly right; and how a document vector changes when its sentences swap. Returns (metrics, an
    example)."""
    test_x = _doc_arrays(test_docs, predictor, config.doc_sentences)
    out = doc.decoder(doc.encoder(test_x, training=False), training=False)
    flags = np.asarray(out["present"])[..., 0] > 0.5
    vectors = np.asarray(out["vectors"])
    counts = flags.sum(1)
    decoded = predictor.decode_vector_batch(vectors.reshape(-1, predictor.dim), beam_size=1)
    decoded = [decoded[i * config.doc_sentences: (i + 1) * config.doc_sentences] for i in range(len(test_docs))]
    sentence_hits = total = doc_hits = 0
    for d, flag, outs in zip(test_docs, flags, decoded):
        kept = [o for o, f in zip(outs, flag) if f]
        refs = [" ".join(predictor.tokens(s)) for s in d]
        sentence_hits += sum(1 for t, r in enumerate(refs) if t < len(kept) and kept[t] == r)
        total += len(refs)
        doc_hits += kept == refs
    swapped = test_x.copy()
    swapped[:, [0, 1]] = swapped[:, [1, 0]]
    a = np.asarray(doc.encoder(test_x, training=False))
    b = np.asarray(doc.encoder(swapped, training=False))
    example = {"document": test_docs[0], "reconstructed": [o for o, f in zip(decoded[0], flags[0]) if f]}
    return {
        "doc_sentence_count_accuracy": float(np.mean(counts == [len(d) for d in test_docs])),
        "doc_sentence_exact": sentence_hits / max(total, 1),
        "doc_exact": doc_hits / max(len(test_docs), 1),
        "doc_swap_cosine_mean": float(np.mean([cosine(u, v) for u, v in zip(a, b)])),
        "doc_test_documents": len(test_docs),
    }, example


# --------------------------------------------------------------------------------------------------------------------


class TextAutoencoder(Seq2SeqTask):
    """Sentence → vector → sentence, then documents through their sentence vectors."""

    name = TASK
    config_class = TextAutoencoderConfig
    demo_input = PAIR[1]
    source_kind = target_kind = "word"
    shared_vocab = True

    def data(self, config):
        return load_sentences(config)

    def pairs(self, ctx: Context):
        from pipelines.seq2seq import tokenize

        train_tokens = tokenize(ctx.splits["train"], "word")
        # the training sentences within the limit: the document level's data and the neighbours' pool
        ctx.extras["fits"] = [s for s, t in zip(ctx.splits["train"], train_tokens) if 0 < len(t) <= ctx.config.max_len]
        return {"train": [(t, t) for t in train_tokens],
                "valid": [(t, t) for t in tokenize(ctx.splits["valid"], "word")]}

    def extra_meta(self, ctx: Context) -> dict:
        return {"data": "synthetic" if ctx.config.data_dir is None else "tatoeba", "vector": "state_h ‖ state_c"}

    def predictor_class(self):
        from serving.text_autoencoder import TextAutoencoderPredictor

        return TextAutoencoderPredictor

    def decode_batch(self, ctx: Context) -> int:
        return 128

    def fit(self, ctx: Context):
        """Phase ``train``: the sentence auto-encoder; phase ``document``: the document level."""
        models = super().fit(ctx)
        if ctx.config.doc_epochs:
            ctx.extras["document_model"] = self.fit_documents(ctx, models)
        return models

    def fit_documents(self, ctx: Context, models):
        """Trains the document level on the sentence vectors of the training documents (the sentence level stays
        frozen): one resumable ``runner.train`` phase, ``document``, the last epoch's weights kept."""
        import keras
        import tensorflow as tf

        from models.seq2seq import build_document_autoencoder, masked_vector_loss
        from pipelines import runner, training

        c = ctx.config
        predictor = self.keras_predictor(ctx, models)
        x = _doc_arrays(documents(ctx.extras["fits"], c.doc_sentences, c.seed), predictor, c.doc_sentences)
        if not len(x):
            print("no training documents: the document level is skipped")
            return None
        present = (np.abs(x).sum(-1, keepdims=True) > 0).astype(np.float32)
        with ctx.run.strategy.scope():
            doc = build_document_autoencoder(predictor.dim, c.doc_hidden, c.doc_sentences)
            doc.trainer.compile(optimizer=training.optimizer(c.learning_rate, c.clipnorm, c.ema),
                                loss={"vectors": masked_vector_loss, "present": keras.losses.BinaryCrossentropy()})

        def dataset(seed):
            return (tf.data.Dataset.from_tensor_slices((x, {"vectors": x, "present": present}))
                    .shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(c.batch_size * ctx.run.replicas))

        runner.train(doc.trainer, lambda epoch: ctx.run.epoch_data(dataset, epoch), ctx.run, phase="document",
                     epochs=c.doc_epochs)
        return doc

    def evaluate(self, ctx: Context, models) -> dict:
        """Reconstruction of held-out sentences, the lecture's pair, nearest neighbours, documents (Keras graphs
        through the serving predictor); examples and neighbours in ``examples.json``."""
        from pipelines.seq2seq import tokenize

        c, sentences = ctx.config, ctx.splits
        predictor = self.keras_predictor(ctx, models)
        test = [s for s, t in zip(sentences["test"], tokenize(sentences["test"], "word"))
                if 0 < len(t) <= c.max_len][: c.held_out]
        refs = [predictor.tokens(s) for s in test]
        outputs = [predictor.output_tokens(h) for h in self.decode(ctx, predictor, refs, 1)]
        metrics = reconstruction(refs, outputs)
        metrics["held_out_sentences"] = len(test)

        pair_vectors = predictor.embed_batch(list(PAIR))
        metrics["pair_cosine"] = round(cosine(*pair_vectors), 4)
        metrics["pair_bag_of_words_cosine"] = round(bag_of_words_cosine(*[predictor.tokens(s) for s in PAIR]), 4)
        metrics["pair_reconstructed"] = int(all(
            predictor.decode_vector(v) == " ".join(predictor.tokens(s)) for s, v in zip(PAIR, pair_vectors)))

        pool = test + ctx.extras["fits"][:2000]
        queries = list(PAIR) + test[:3]
        neighbours = nearest_neighbours(queries, predictor.embed_batch(queries), pool, embed(predictor, pool))

        doc_example = None
        if ctx.extras.get("document_model") is not None:
            doc_metrics, doc_example = document_scores(c, predictor, ctx.extras["document_model"],
                                                       documents(test, c.doc_sentences, c.seed + 1))
            metrics.update(doc_metrics)
        metrics.update({"vector_size": predictor.dim, "parameters": models.trainer.count_params()})
        report = {"neighbours": neighbours, "document_example": doc_example,
                  "examples": [{"input": s, "output": " ".join(o)} for s, o in zip(test[:10], outputs[:10])]}
        (ctx.run_dir / "examples.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                                                   encoding="utf-8")
        print(f"\nthe lecture's pair: cosine {metrics['pair_cosine']:.3f} (bag of words: "
              f"{metrics['pair_bag_of_words_cosine']:.1f})")
        print("nearest neighbours (cosine of the sentence vectors):")
        for q, near in neighbours.items():
            print(f"  {q}\n" + "".join(f"    {s}  ({cos:.3f})\n" for s, cos in near), end="")
        if doc_example:
            print(f"a held-out document through its document vector:\n  in:  {doc_example['document']}\n"
                  f"  out: {doc_example['reconstructed']}")
        return metrics


TEXT_AUTOENCODER = TextAutoencoder()


def run(config: TextAutoencoderConfig) -> dict:
    """Trains, evaluates, exports; returns the metrics. The run dir appears only when all succeeded."""
    return TEXT_AUTOENCODER.run(config)


def main(argv: list[str] | None = None) -> int:
    return TEXT_AUTOENCODER.main(argv)


if __name__ == "__main__":
    sys.exit(main())
