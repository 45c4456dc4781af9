"""Text auto-encoder: ``python -m pipelines.text_autoencoder [--data-dir DIR] [--quick]``.

Sentence → vector → the same sentence: the encoder reads the words into its final state (the vector), and the
decoder, initialised from that vector alone (no attention), writes the sentence back. Unlike a bag of words the
vector keeps word order: "white blood cells destroyed the infection" and "the infection destroyed white blood
cells" have the same bag of words (cosine 1.0) but different vectors. Reported: exact reconstruction rate and
token accuracy on held-out sentences, nearest neighbours, and the hierarchical variant (word → sentence vectors →
document vector → sentence vectors → words) on multi-sentence documents.

Data: built-in sentences from a small grammar by default, or the English side of Tatoeba (``cmn.txt``) with
``--data-dir`` (train split for training, test split held out, per ../shared/data/SPLITS.md).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import random
import sys
import time

import numpy as np

import pipelines  # noqa: F401  (quiet TensorFlow, Keras backend)
from pipelines.config import run_command_line
from pipelines.readers import DataError
from pipelines.seq2seq import CHOICES, Seq2SeqConfig

TASK = "text_autoencoder"
PAIR = ("white blood cells destroyed the infection", "the infection destroyed white blood cells")


@dataclasses.dataclass(frozen=True)
class TextAutoencoderConfig(Seq2SeqConfig):
    out: str = dataclasses.field(default="runs/text_autoencoder", metadata={"help": "run dir to write"})
    attention: str = dataclasses.field(default="none", metadata={"help": "must stay none: the vector is the only "
                                                                         "path from encoder to decoder"})
    hidden: int = dataclasses.field(default=128, metadata={"help": "encoder units per direction"})
    max_source_len: int = 20
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


def load_sentences(config: TextAutoencoderConfig) -> tuple[dict[str, list[str]], str]:
    if config.data_dir is None:
        return synthetic_sentences(config.synthetic_size, config.held_out, config.seed), "synthetic"
    from pipelines.tatoeba import read_tatoeba

    splits = read_tatoeba(config.data_dir)

    def english(pairs):  # Tatoeba repeats an English sentence for each of its translations
        return list(dict.fromkeys(en for en, _ in pairs))

    train = english(splits["train"])
    if config.max_train:
        train = train[: config.max_train]
    return {"train": train, "valid": english(splits["valid"]), "test": english(splits["test"])}, "tatoeba"


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


def _doc_arrays(docs: list[list[str]], predictor, most: int) -> np.ndarray:
    vectors = predictor.encode_batch([s for d in docs for s in d])
    out = np.zeros((len(docs), most, predictor.dim), np.float32)
    row = 0
    for i, d in enumerate(docs):
        out[i, : len(d)] = vectors[row: row + len(d)]
        row += len(d)
    return out


def hierarchical(config: TextAutoencoderConfig, predictor, train_docs, test_docs) -> dict:
    """Trains the document level on the sentence vectors of the training documents (the sentence level stays
    frozen) and measures documents reconstructed through their document vector: sentence count right, sentences
    exactly right, whole documents exactly right; and how a document vector changes when its sentences swap."""
    import keras

    from models.seq2seq import build_document_autoencoder, masked_vector_loss
    from pipelines import training

    doc = build_document_autoencoder(predictor.dim, config.doc_hidden, config.doc_sentences)
    x = _doc_arrays(train_docs, predictor, config.doc_sentences)
    present = (np.abs(x).sum(-1, keepdims=True) > 0).astype(np.float32)
    doc.trainer.compile(optimizer=training.optimizer(config.learning_rate, config.clipnorm),
                        loss={"vectors": masked_vector_loss, "present": keras.losses.BinaryCrossentropy()})
    doc.trainer.fit(x, {"vectors": x, "present": present}, epochs=config.doc_epochs, batch_size=config.batch_size,
                    verbose=0, shuffle=True)
    test_x = _doc_arrays(test_docs, predictor, config.doc_sentences)
    out = doc.decoder(doc.encoder(test_x, training=False), training=False)
    flags = np.asarray(out["present"])[..., 0] > 0.5
    vectors = np.asarray(out["vectors"])
    counts = flags.sum(1)
    decoded = predictor.decode_batch(vectors.reshape(-1, predictor.dim), beam_size=1)
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


def run(config: TextAutoencoderConfig) -> dict:
    """Trains, exports, evaluates; returns the metrics. The run dir appears only when all succeeded."""
    from pipelines import training
    from pipelines.seq2seq import tokenize, train_and_export

    config.check()
    config = config.resolved()
    sentences, source = load_sentences(config)
    with training.task_run(config, TASK) as run_dir:
        started = time.time()
        train_tokens = tokenize(sentences["train"], "word")
        rng = random.Random(config.seed)
        valid = sentences.get("valid") or rng.sample(sentences["train"], min(200, len(sentences["train"])))
        valid_tokens = tokenize(valid, "word")
        pairs = {"train": [(t, t) for t in train_tokens], "valid": [(t, t) for t in valid_tokens]}
        trained = train_and_export(config, run_dir, pairs, task=TASK, source_kind="word", target_kind="word",
                                   shared_vocab=True, extra_meta={"data": source, "vector": "state_h ‖ state_c"})
        predictor = trained.predictor()

        test = [s for s, t in zip(sentences["test"], tokenize(sentences["test"], "word"))
                if 0 < len(t) <= config.max_source_len][: config.held_out]
        refs = [predictor.tokens(s) for s in test]
        vectors = np.concatenate([predictor.encode_batch(test[i: i + 128]) for i in range(0, len(test), 128)])
        outputs = []
        for i in range(0, len(test), 128):
            outputs += [predictor.output_tokens(h) for h in predictor.decode_tokens(refs[i: i + 128], beam_size=1)]
        metrics = reconstruction(refs, outputs)
        metrics["held_out_sentences"] = len(test)

        pair_vectors = predictor.encode_batch(list(PAIR))
        metrics["pair_cosine"] = round(cosine(*pair_vectors), 4)
        metrics["pair_bag_of_words_cosine"] = round(bag_of_words_cosine(*[predictor.tokens(s) for s in PAIR]), 4)
        metrics["pair_reconstructed"] = int(all(
            predictor.decode(v) == " ".join(predictor.tokens(s)) for s, v in zip(PAIR, pair_vectors)))

        pool = test + [s for s, t in zip(sentences["train"], train_tokens) if 0 < len(t) <= config.max_source_len][:2000]
        pool_vectors = np.concatenate([vectors, *(predictor.encode_batch(pool[len(test):][i: i + 128])
                                                  for i in range(0, len(pool) - len(test), 128))])
        queries = list(PAIR) + test[:3]
        neighbours = nearest_neighbours(queries, predictor.encode_batch(queries), pool, pool_vectors)

        doc_example = None
        if config.doc_epochs:
            fits = [s for s, t in zip(sentences["train"], train_tokens) if 0 < len(t) <= config.max_source_len]
            doc_metrics, doc_example = hierarchical(config, predictor, documents(fits, config.doc_sentences,
                                                                                   config.seed),
                                                    documents(test, config.doc_sentences, config.seed + 1))
            metrics.update(doc_metrics)
        parity = trained.meta["parity"]["onnx_max_abs_diff"]
        metrics.update({
            "vector_size": predictor.dim,
            "parameters": trained.models.trainer.count_params(),
            "train_seconds": round(trained.train_seconds, 1),
            "total_seconds": round(time.time() - started, 1),
            "onnx_max_abs_diff": max(v for graph in parity.values() for v in graph.values()),
        })
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        report = {"neighbours": neighbours, "document_example": doc_example,
                  "examples": [{"input": s, "output": " ".join(o)} for s, o in zip(test[:10], outputs[:10])]}
        (run_dir / "examples.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                                               encoding="utf-8")
        print(f"\nthe lecture's pair: cosine {metrics['pair_cosine']:.3f} (bag of words: "
              f"{metrics['pair_bag_of_words_cosine']:.1f})")
        print("nearest neighbours (cosine of the sentence vectors):")
        for q, near in neighbours.items():
            print(f"  {q}\n" + "".join(f"    {s}  ({c:.3f})\n" for s, c in near), end="")
        if doc_example:
            print(f"a held-out document through its document vector:\n  in:  {doc_example['document']}\n"
                  f"  out: {doc_example['reconstructed']}")
    return metrics


def main(argv: list[str] | None = None) -> int:
    config, metrics = run_command_line(
        TextAutoencoderConfig, run, argv, module_doc=__doc__, prog="python -m pipelines.text_autoencoder",
        choices=CHOICES)
    if metrics is None:
        return 2

    import serving

    predictor = serving.load(config.out)
    vector = predictor.encode(PAIR[1])
    print(f"\nonnxruntime, {config.out}: encode({PAIR[1]!r}) → {predictor.dim} values; decode → "
          f"{predictor.decode(vector)!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
