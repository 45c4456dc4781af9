"""Built-in sentiment data: short movie-review sentences whose polarity needs word order, not just word counts.

Besides plain sentences ("the acting is superb ."), the generator writes the constructions that defeat a bag of
words: negation ("the plot is not clever"), contrast where the last clause decides ("the score is lovely , but the
story is a mess"), and concession ("although the cast is weak , the ending is moving"). The vocabulary and the
phrasing follow rt-polarity (lower case, punctuation split off by spaces), so the same pipeline reads both.
"""

from __future__ import annotations

import random

from pipelines.polarity import TextExample

SUBJECTS = [
    "the film", "this movie", "the plot", "the acting", "the script", "the cast", "the ending", "the story",
    "the dialogue", "the soundtrack", "the direction", "the pacing", "the lead performance", "the humor",
    "the cinematography", "this sequel", "the premise", "the final act",
]
POSITIVE = [
    "brilliant", "moving", "funny", "gripping", "superb", "charming", "clever", "beautiful", "heartfelt", "sharp",
    "engaging", "delightful", "powerful", "witty", "fresh", "humane", "touching", "thrilling", "smart", "lovely",
]
NEGATIVE = [
    "dull", "boring", "clumsy", "predictable", "tedious", "flat", "lifeless", "silly", "pointless", "bland",
    "awkward", "tiresome", "shallow", "sloppy", "forgettable", "lazy", "hollow", "messy", "stale", "weak",
]
INTENSIFIERS = ["", "", "", "really ", "truly ", "quite ", "rather ", "utterly ", "remarkably "]
OPENERS = ["", "", "", "frankly , ", "overall , ", "in the end , ", "to be honest , ", "for two hours , "]
NOUNS = ["film", "movie", "comedy", "drama", "thriller", "picture", "documentary", "romance"]
CONTRAST = [", but", ", yet", "; however ,", ", though"]


def _clause(rng: random.Random, positive: bool) -> str:
    """A clause of the given polarity: plain or negated."""
    subject = rng.choice(SUBJECTS)
    if rng.random() < 0.25:  # "not" flips the adjective
        adjective = rng.choice(NEGATIVE if positive else POSITIVE)
        return f"{subject} is not {adjective}"
    adjective = rng.choice(POSITIVE if positive else NEGATIVE)
    return f"{subject} is {rng.choice(INTENSIFIERS)}{adjective}"


def review(rng: random.Random, positive: bool) -> str:
    """One sentence whose overall polarity is ``positive``."""
    kind = rng.random()
    if kind < 0.35:
        text = _clause(rng, positive)
    elif kind < 0.6:  # contrast: the last clause decides
        text = f"{_clause(rng, not positive)} {rng.choice(CONTRAST)} {_clause(rng, positive)}"
    elif kind < 0.75:  # concession: the main clause decides
        text = f"although {_clause(rng, not positive)} , {_clause(rng, positive)}"
    else:
        words = POSITIVE if positive else NEGATIVE
        first, second = rng.sample(words, 2)
        text = f"a {first} and {second} {rng.choice(NOUNS)}"
    return f"{rng.choice(OPENERS)}{text} ."


def synthetic_reviews(n: int, seed: int = 0) -> list[TextExample]:
    """``n`` labelled sentences, half positive, in random order."""
    rng = random.Random(seed)
    examples = [TextExample(review(rng, i % 2 == 0), "positive" if i % 2 == 0 else "negative") for i in range(n)]
    rng.shuffle(examples)
    return examples


def synthetic_splits(n_train: int, seed: int = 0) -> dict[str, list[TextExample]]:
    """Train / valid / test splits (valid and test an eighth of train each, at least 100), from disjoint seeds."""
    n_eval = max(n_train // 8, 100)
    return {
        "train": synthetic_reviews(n_train, seed),
        "valid": synthetic_reviews(n_eval, seed + 1_000_003),
        "test": synthetic_reviews(n_eval, seed + 2_000_003),
    }
