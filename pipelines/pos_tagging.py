"""Part-of-speech tagging, many-to-many: ``python -m pipelines.pos_tagging [--data-dir DIR] [--quick]``.

Each token of a sentence goes in at one time step and a bidirectional recurrent stack gives each a Penn Treebank
tag (NN, VBD, DT, ...), trained with per-step cross-entropy and gradient clipping. Words seen once in training
stand for the words the model will never have seen: they are replaced by their signature (shape and suffix:
``<unk:cap:-ing>``), and so are some known words while training (``--token-dropout``).

Data: built-in tagged sentences by default, or the Penn Treebank sample (NLTK's ``treebank.zip``, tags read from
the trees' pre-terminals, split by file as ../shared/data/SPLITS.md fixes) given with ``--data-dir``.
"""

from __future__ import annotations

import collections
import dataclasses
import sys

import numpy as np

import pipelines  # noqa: F401  (quiet TensorFlow, Keras backend)
from pipelines.common import CommonOptions, check_positive, check_rate
from pipelines.readers import DataError
from pipelines.task import Context, Task
from serving.pos_tagging import SUFFIXES, TOKENIZER_SPEC, signature, word_id

TASK = "pos_tagging"
PAD_LABEL = -1  # the label of padded steps, out of the loss


@dataclasses.dataclass(frozen=True)
class TaggedSentence:
    words: tuple[str, ...]
    tags: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class PosTaggingConfig(CommonOptions):
    out: str = dataclasses.field(default="runs/pos_tagging", metadata={"help": "run dir to write"})
    epochs: int = 30
    cell: str = dataclasses.field(default="lstm", metadata={"help": "recurrent cell"})
    bidirectional: bool = True
    layers: int = 2
    embed_dim: int = 128
    hidden: int = dataclasses.field(default=128, metadata={"help": "recurrent units per direction"})
    dropout: float = 0.3
    token_dropout: float = dataclasses.field(
        default=0.05, metadata={"help": "rate of training words replaced by their signature"})
    min_count: int = dataclasses.field(default=2, metadata={"help": "words seen fewer times stand for unknown words"})
    learning_rate: float = 2e-3
    patience: int = 5
    max_len: int = dataclasses.field(default=256, metadata={"help": "longest sentence in tokens"})
    synthetic_size: int = dataclasses.field(default=2000, metadata={"help": "built-in training sentences"})

    def check(self) -> None:
        super().check()
        check_positive(self, "layers", "embed_dim", "hidden", "min_count", "max_len", "synthetic_size")
        check_rate(self, "dropout", "token_dropout")

    def resolved(self) -> "PosTaggingConfig":
        if not self.quick:
            return self
        return dataclasses.replace(self, epochs=min(self.epochs, 4), embed_dim=24, hidden=24, layers=1,
                                   learning_rate=5e-3, synthetic_size=min(self.synthetic_size, 600), patience=2)


# --- data -------------------------------------------------------------------------------------------------------------

def read_tagged(data_dir: str) -> dict[str, list[TaggedSentence]]:
    """The treebank sample's sentences with their pre-terminal tags (empty elements removed), split by file."""
    from pipelines.treebank import read_treebank

    return {split: [TaggedSentence(ex.words, tuple(ex.tree.tags())) for ex in examples]
            for split, examples in read_treebank(data_dir).items()}


_LEXICON = {
    "DT": ["the", "a", "this", "every"], "NN": ["dog", "market", "company", "price", "report", "year", "plan"],
    "NNS": ["dogs", "markets", "shares", "prices", "investors", "years"], "NNP": ["Smith", "Boston", "Friday", "Acme"],
    "JJ": ["big", "new", "strong", "quiet", "financial", "early"], "VBD": ["rose", "fell", "said", "bought", "saw"],
    "VBZ": ["rises", "says", "buys", "sees"], "IN": ["in", "on", "of", "after", "from"], "RB": ["quickly", "also"],
    "CD": ["3", "1989", "12.5", "two"], "PRP": ["it", "they", "he"], "MD": ["will", "may"], "VB": ["rise", "buy"],
    "CC": ["and", "but"], "TO": ["to"],
}
_PATTERNS = [
    "DT JJ NN VBD IN DT NN .", "NNP VBD DT NNS IN CD .", "PRP MD VB DT JJ NNS .", "DT NNS VBD RB .",
    "NNP VBZ DT NN CC DT NN VBD .", "PRP VBD TO VB DT NN IN NNP .", "DT JJ NNS VBD CD NNS IN DT NN .",
    "NNP , DT NN IN NNP , VBD DT NN .", "PRP VBZ DT JJ NN .",
]


def synthetic_tagged(size: int, seed: int = 0) -> dict[str, list[TaggedSentence]]:
    """Built-in tagged sentences from tag patterns and a small lexicon (train ``size``, dev and test ``size``/5)."""
    rng = np.random.default_rng(seed)
    punctuation = {".": ".", ",": ","}

    def sentence():
        tags = _PATTERNS[rng.integers(len(_PATTERNS))].split()
        words = [punctuation.get(t) or _LEXICON[t][rng.integers(len(_LEXICON[t]))] for t in tags]
        words[0] = words[0][0].upper() + words[0][1:]
        return TaggedSentence(tuple(words), tuple(tags))

    n = max(size // 5, 20)
    return {"train": [sentence() for _ in range(size)], "valid": [sentence() for _ in range(n)],
            "test": [sentence() for _ in range(n)]}


# --- preprocessing ----------------------------------------------------------------------------------------------------

class Vocabularies:
    """The vocabulary (words, their lower-cased forms and the unknown-word signatures), the tags, and the ids of
    sentences by ``serving.pos_tagging.word_id`` (the rule serving applies too). Writes ``vocab.txt`` and
    ``tags.txt``.

    A word enters the vocabulary when it occurs at least ``min_count`` times in training (as written, or
    lower-cased); the signatures of all training words enter it, so the rarer words teach the model theirs.
    """

    def __init__(self, train: list[TaggedSentence], min_count: int):
        from serving.vocab import PAD, UNK

        words = collections.Counter(w for s in train for w in s.words)
        self.train_words = set(words)
        lowered = collections.Counter()
        for word, count in words.items():
            lowered[word.lower()] += count
        kept = sorted({w for w, c in words.items() if c >= min_count} | {w for w, c in lowered.items() if c >= min_count})
        signatures = sorted({signature(w) for w in words})
        self.vocab = [PAD, UNK] + signatures + [w for w in kept if w not in signatures]
        self.index = {entry: i for i, entry in enumerate(self.vocab)}
        self.tags = sorted({t for s in train for t in s.tags})
        self.tag_index = {t: i for i, t in enumerate(self.tags)}
        # word id → the id of its signature (the token dropout's replacement)
        self.signature_of = np.array([self.index.get(signature(w), i) if i > 1 else i for i, w in
                                      enumerate(self.vocab)], np.int32)

    def write(self, run_dir) -> None:
        from serving.vocab import write_vocab

        write_vocab(run_dir / "vocab.txt", self.vocab)
        write_vocab(run_dir / "tags.txt", self.tags, "tags")

    def ids(self, words) -> list[int]:
        return [word_id(w, self.index) for w in words]

    def is_known(self, word: str) -> bool:
        return word in self.index or word.lower() in self.index

    def labels(self, tags) -> list[int]:
        return [self.tag_index.get(t, PAD_LABEL) for t in tags]


def padded(id_lists: list[list[int]], value: int = 0) -> np.ndarray:
    out = np.full((len(id_lists), max(len(x) for x in id_lists)), value, dtype=np.int32)
    for row, ids in enumerate(id_lists):
        out[row, : len(ids)] = ids
    return out


def training_dataset(sentences: list[TaggedSentence], prep: Vocabularies, config, *, batch_size: int, seed: int):
    """Shuffled, length-bucketed, padded (ids, tag ids) batches; known words become their signature at rate
    ``config.token_dropout`` (seeded: a function of ``seed`` and the epoch's iteration only)."""
    import tensorflow as tf

    from pipelines.batching import bucketed_batches

    ids = tf.ragged.constant([prep.ids(s.words) for s in sentences], dtype=tf.int32)
    labels = tf.ragged.constant([prep.labels(s.tags) for s in sentences], dtype=tf.int32)
    dataset = tf.data.Dataset.from_tensor_slices((ids, labels))
    table = tf.constant(prep.signature_of)

    def signatures_for_some(x, y):
        swap = tf.random.uniform(tf.shape(x), seed=seed) < config.token_dropout
        return tf.where(swap, tf.gather(table, x), x), y

    return bucketed_batches(dataset, batch_size, config.max_len, seed=seed, padding_values=(0, PAD_LABEL),
                            augment=signatures_for_some if config.token_dropout else None)


def predict_tags(model, prep: Vocabularies, sentences: list[TaggedSentence], batch_size: int = 128) -> list[list[int]]:
    """The most probable tag id of every token, with the Keras model, sorted by length for little padding."""
    from models.tagger import OUTPUT

    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i].words))
    out: list = [None] * len(sentences)
    for at in range(0, len(order), batch_size):
        chunk = order[at : at + batch_size]
        probs = np.asarray(model(padded([prep.ids(sentences[i].words) for i in chunk]), training=False)[OUTPUT])
        for row, i in enumerate(chunk):
            out[i] = probs[row, : len(sentences[i].words)].argmax(-1).tolist()
    return out


def accuracy(model, prep: Vocabularies, sentences: list[TaggedSentence]) -> dict:
    """Token accuracy overall, on words outside the vocabulary (``oov``: tagged through their signature) and on
    words never seen in training (``unseen``, a subset of those), and whole-sentence accuracy."""
    predicted = predict_tags(model, prep, sentences)
    hits = {"all": [], "oov": [], "unseen": []}
    sentences_right = 0
    for sentence, tags in zip(sentences, predicted):
        right = [p == g for p, g in zip(tags, prep.labels(sentence.tags))]
        sentences_right += all(right)
        for word, hit in zip(sentence.words, right):
            hits["all"].append(hit)
            if not prep.is_known(word):
                hits["oov"].append(hit)
            if word not in prep.train_words:
                hits["unseen"].append(hit)

    def mean(values):
        return sum(values) / len(values) if values else 0.0

    return {"token_accuracy": mean(hits["all"]), "oov_word_accuracy": mean(hits["oov"]),
            "unseen_word_accuracy": mean(hits["unseen"]), "oov_words": len(hits["oov"]),
            "unseen_words": len(hits["unseen"]), "tokens": len(hits["all"]),
            "sentence_accuracy": sentences_right / len(sentences)}


# --- the task ---------------------------------------------------------------------------------------------------------

class PosTagging(Task):
    """Part-of-speech tagging on the contract: the dev token accuracy picks the epoch."""

    name = TASK
    config_class = PosTaggingConfig
    monitor = "token_accuracy"
    demo_input = "The company's shares rose 3.5% in early trading on Friday."

    def choices(self):
        from models.recurrent import CELL_CHOICES
        from pipelines.distribute import STRATEGIES

        return {"cell": CELL_CHOICES, "strategy": STRATEGIES}

    def data(self, config):
        splits = read_tagged(config.data_dir) if config.data_dir else synthetic_tagged(config.synthetic_size, config.seed)
        for split, sentences in splits.items():
            longest = max(len(s.words) for s in sentences)
            if longest > config.max_len:
                raise DataError(f"{split}: a sentence of {longest} tokens is over --max-len {config.max_len}")
        return splits

    def preprocess(self, ctx: Context):
        prep = Vocabularies(ctx.splits["train"], ctx.config.min_count)
        prep.write(ctx.run_dir)
        print(f"data: {', '.join(f'{k} {len(v)}' for k, v in ctx.splits.items())} sentences; "
              f"{len(prep.vocab)} vocabulary entries, {len(prep.tags)} tags")
        return prep

    def build_model(self, ctx: Context):
        from models.tagger import build_tagger

        c = ctx.config
        return build_tagger(len(ctx.prep.vocab), len(ctx.prep.tags), cell=c.cell, embed_dim=c.embed_dim,
                            units=c.hidden, layers=c.layers, bidirectional=c.bidirectional, dropout=c.dropout)

    def compile(self, ctx: Context, model):
        from models.losses import SummedSequenceCrossEntropy
        from pipelines import training

        c = ctx.config
        model.compile(optimizer=training.optimizer(c.learning_rate, c.clipnorm, c.ema),
                      loss=SummedSequenceCrossEntropy())
        return model

    def train_data(self, ctx: Context, seed: int):
        return training_dataset(ctx.splits["train"], ctx.prep, ctx.config,
                                batch_size=ctx.config.batch_size * ctx.run.replicas, seed=seed)

    def validate(self, ctx: Context, model) -> dict:
        return {"token_accuracy": accuracy(model, ctx.prep, ctx.splits["valid"])["token_accuracy"]}

    def evaluate(self, ctx: Context, model) -> dict:
        metrics = {f"dev_{k}": v for k, v in accuracy(model, ctx.prep, ctx.splits["valid"]).items()}
        metrics.update(accuracy(model, ctx.prep, ctx.splits["test"]))
        return metrics

    def export_spec(self, ctx: Context, model) -> dict:
        from models.tagger import INPUT, OUTPUT
        from serving.vocab import PAD_ID, UNK_ID

        c, prep = ctx.config, ctx.prep
        return {
            "task": TASK,
            "inputs": {INPUT: {"name": INPUT, "dtype": "int32", "shape": ["batch", "time"], "pad_id": PAD_ID}},
            "outputs": {OUTPUT: {"name": OUTPUT, "dtype": "float32", "shape": ["batch", "time", len(prep.tags)]}},
            "tokenizer": TOKENIZER_SPEC,
            "vocab": prep.vocab,
            "tags": prep.tags,
            "pad_id": PAD_ID,
            "unk_id": UNK_ID,
            "max_len": c.max_len,
            "word_classes": {
                "rule": "id of the word; else of its lower-cased form; else of its signature; else unk_id",
                "signature": "<unk:num> for numbers; else <unk:PARTS> with PARTS joined by ':': 'dig' if it has a "
                             "digit, then 'sym' (no letter), 'caps' (all upper), 'cap' (first upper) or 'lc', then "
                             "'dash' if it has '-', then '-SUFFIX' for the first suffix below that the lower-cased "
                             "word ends with leaving 2+ characters (words with letters only)",
                "suffixes": list(SUFFIXES),
            },
            "model": {"cell": c.cell, "bidirectional": c.bidirectional, "layers": c.layers, "hidden": c.hidden,
                      "embed_dim": c.embed_dim},
        }

    def parity_batches(self, ctx: Context) -> list[dict]:
        sentences = ctx.splits["valid"][:64]
        batches = []
        for at in range(0, len(sentences), 16):
            ids = padded([ctx.prep.ids(s.words) for s in sentences[at : at + 16]])
            batches.append({"token_ids": ids, "lengths": (ids != 0).sum(axis=1)})
        return batches


POS_TAGGING = PosTagging()


def run(config: PosTaggingConfig) -> dict:
    """Trains, evaluates and exports; returns the metrics (see ``pipelines.runner.run``)."""
    return POS_TAGGING.run(config)


def main(argv: list[str] | None = None) -> int:
    return POS_TAGGING.main(argv)


if __name__ == "__main__":
    sys.exit(main())
