"""Document tokenizer with character offsets: the pure-Python replica of ``pipelines.text.tokenize_with_offsets``.

Spec ``casefold_words_v1`` (key-term extraction, where every token must map back to the original text):
  1. split the original text on Unicode white space,
  2. every ASCII punctuation mark except ``-`` and ``'`` becomes a token of its own (so ``systems.`` is two tokens,
     ``non-linear`` and ``user's`` stay one); other characters, non-ASCII punctuation included, stay in their word,
  3. case-fold each token with NFKC_Casefold (as ``tensorflow_text.case_fold_utf8``); a token that folds to
     nothing (it held only default-ignorable characters, e.g. a lone soft hyphen) is dropped.
Offsets are ``[start, end)`` character (code point) offsets of the token in the original, unfolded text, so
``text[start:end]`` is what the user wrote. The tensorflow-text side reports byte offsets into the UTF-8 text;
a test proves both give the same tokens at the same places.

``SPEC`` states the same Unicode facts as the word and character specs (``serving.tokenizer.unicode_rules``: the
tables' version, White_Space, the Default_Ignorable set removed after folding, the unassigned code points).
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

from serving.errors import InputError, ModelError
from serving.tokenizer import _WHITE_SPACE, case_fold, unicode_rules, white_space_pattern

NAME = "casefold_words_v1"
PUNCTUATION = "!\"#$%&()*+,./:;<=>?@[\\]^_`{|}~"  # string.punctuation without - and '


@functools.cache
def doc_spec() -> dict:
    """The full ``casefold_words_v1`` spec (what ``SPEC`` holds)."""
    return {"name": NAME, "lowercase": True, "normalization": "NFKC_Casefold", **unicode_rules(),
            "split": "white space", "own_tokens": PUNCTUATION, "empty_tokens": "dropped (folded to nothing)",
            "offsets": "code points of the original text"}


def __getattr__(name: str):  # built on first use, as serving.tokenizer.SPEC
    if name == "SPEC":
        return doc_spec()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The same patterns run in RE2 (tensorflow_text.regex_split_with_offsets) and in Python's re.
PUNCT_PATTERN = "[" + re.escape(PUNCTUATION) + "]"
DELIM_PATTERN = white_space_pattern() + "|" + PUNCT_PATTERN

_PIECES = re.compile(PUNCT_PATTERN + "|[^" + re.escape("".join(sorted(_WHITE_SPACE))) + PUNCT_PATTERN[1:-1] + "]+")


class DocToken(NamedTuple):
    """One token: its case-folded text and its ``[start, end)`` character offsets in the original text."""

    text: str
    start: int
    end: int


class DocTokenizer:
    """Splits raw text into case-folded tokens with character offsets (spec ``casefold_words_v1``).

    Args:
      spec: the tokenizer spec stored in the model's metadata (default: this one).

    Raises:
      ModelError: the spec names another tokenizer.
    """

    def __init__(self, spec: dict | None = None):
        spec = dict(doc_spec() if spec is None else spec)
        if not isinstance(spec, dict) or spec.get("name") != NAME:
            raise ModelError(f"the model needs tokenizer {spec.get('name')!r}; this serving's document tokenizer "
                             f"is {NAME!r}")
        self.spec = spec

    def __call__(self, text: str) -> list[DocToken]:
        """Returns the tokens of ``text`` in order.

        Raises:
          InputError: ``text`` is not a string.
        """
        if not isinstance(text, str):
            raise InputError(f"text must be a string, got {type(text).__name__}")
        tokens = []
        for match in _PIECES.finditer(text):
            folded = case_fold(match.group())
            if folded:
                tokens.append(DocToken(folded, match.start(), match.end()))
        return tokens


def tokenize(text: str) -> list[DocToken]:
    """``DocTokenizer()(text)``."""
    return DocTokenizer()(text)
