"""Built-in key-term data: abstract-like documents with planted multi-word key phrases (seeded, no files).

Each document draws 2-4 key phrases (a technical modifier, sometimes a noun modifier, then a head noun:
``adaptive filter bank``, ``sparse image classifier``). They appear in the title and again in the abstract, in
the contexts abstracts use for their subject (``we propose a ...``, ``the ... is evaluated``), sometimes in the
plural. Distractors look alike but are not key: generic phrases (``the experimental results``) and technical
phrases mentioned once in passing (``unlike earlier work on ...``). Half the documents also carry a gold phrase
that does not occur in the text (a subject heading), as real data does, so the absent-phrase count is exercised.
"""

from __future__ import annotations

import random

from pipelines.keyphrases import KeyDocument

MODIFIERS = (
    "adaptive", "neural", "distributed", "optical", "wireless", "genetic", "fuzzy", "stochastic", "parallel",
    "nonlinear", "digital", "semantic", "robust", "sparse", "quantum", "recursive", "hierarchical", "bayesian",
    "embedded", "mobile", "spectral", "dynamic", "linear", "probabilistic",
)
NOUN_MODIFIERS = (
    "signal", "image", "traffic", "power", "memory", "speech", "control", "query", "error", "packet", "sensor",
    "video", "network", "data", "fault", "channel",
)
HEADS = (
    "network", "controller", "algorithm", "filter", "protocol", "scheduler", "classifier", "database", "estimator",
    "compiler", "architecture", "decoder", "detector", "simulator", "bank", "model", "router", "cache", "solver",
    "interface",
)
GENERIC = (
    "the experimental results", "this paper", "the authors", "previous studies", "the proposed method",
    "a number of cases", "real data", "several experiments", "the main idea", "practical applications",
    "the first part", "recent years", "the performance", "some examples", "the new approach",
)
SUBJECTS = ("computer science", "information systems", "signal processing", "telecommunication",
            "software engineering", "control theory")

TITLES = ("{a} for {b}", "{A}: {b} in practice", "On {a} and {b}", "{A} with {b}", "A {a} using {b}")
KEY_SENTENCES = (
    "We propose a {k} that improves {g}.",
    "The {k} is evaluated on {g}.",
    "In this paper a new {k} is described.",
    "Our {k} reduces the cost of {g}.",
    "Results show that the {k} outperforms {g}.",
    "A {k} is designed and its complexity is analysed.",
    "We also present {k}s for {g}.",
    "The design of the {k} relies on {g}.",
)
OTHER_SENTENCES = (
    "Unlike earlier work on {d}, {g} is considered.",
    "{G} are discussed briefly.",
    "This is compared with a {d} from {g}.",
    "{G} confirm the analysis.",
    "Further work will address {g}.",
)


def _phrase(rng: random.Random) -> str:
    words = [rng.choice(MODIFIERS)]
    if rng.random() < 0.5:
        words.append(rng.choice(NOUN_MODIFIERS))
    words.append(rng.choice(HEADS))
    return " ".join(words)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def synthetic_document(rng: random.Random, doc_id: str) -> KeyDocument:
    """One abstract-like document with its gold phrases."""
    keys: list[str] = []
    wanted = rng.randint(2, 4)
    while len(keys) < wanted:
        phrase = _phrase(rng)
        if all(phrase not in k and k not in phrase for k in keys):
            keys.append(phrase)
    distractors = [d for d in (_phrase(rng) for _ in range(2)) if all(d not in k and k not in d for k in keys)]
    title = _cap(rng.choice(TITLES).format(a=keys[0], A=_cap(keys[0]), b=keys[1 % len(keys)]))
    sentences = []
    for key in keys:
        for _ in range(rng.randint(1, 3)):
            sentences.append(rng.choice(KEY_SENTENCES).format(k=key, g=rng.choice(GENERIC)))
    for d in distractors:
        g = rng.choice(GENERIC)
        sentences.append(rng.choice(OTHER_SENTENCES).format(d=d, g=g, G=_cap(g)))
    rng.shuffle(sentences)
    body = " ".join(_cap(s) for s in sentences)
    gold = list(keys)
    if rng.random() < 0.5:
        gold.append(rng.choice(SUBJECTS))
    return KeyDocument(doc_id, f"{title}\n{body}", tuple(gold))


def synthetic_documents(n: int, seed: int = 0, start_id: int = 0) -> list[KeyDocument]:
    """``n`` documents, ids ``start_id``..., reproducible from ``seed``."""
    rng = random.Random(seed)
    return [synthetic_document(rng, str(start_id + i)) for i in range(n)]


def synthetic_splits(n_train: int, seed: int = 0) -> dict[str, list[KeyDocument]]:
    """Train (``n_train`` documents), valid and test (each ``max(n_train // 8, 40)``), from different seeds."""
    n_eval = max(n_train // 8, 40)
    return {
        "train": synthetic_documents(n_train, seed, 0),
        "valid": synthetic_documents(n_eval, seed + 1, n_train),
        "test": synthetic_documents(n_eval, seed + 2, n_train + n_eval),
    }
