"""Pure-Python replicas of the tensorflow-text tokenizers used in training (``pipelines/text.py``).

Word spec ``casefold_punct_v1``:
  1. NFKC case folding (ICU's NFKC_Casefold, as ``tensorflow_text.case_fold_utf8`` does),
  2. the punctuation marks ``? ! , ; " ( ) [ ] { }`` become words of their own, and so does a ``.`` that ends the
     text (``st.`` inside a sentence stays one word, as in ATIS),
  3. split on Unicode white space.
Character spec ``casefold_chars_v1`` (:class:`CharTokenizer`): NFKC case folding, each run of white space becomes
one ``▁`` symbol (vocabulary entries hold no white space), leading and trailing white space is dropped, then one
token per Unicode code point.
A test proves both implementations give the same tokens on tricky text.

The specs are complete for another language (``SPEC`` and ``CHARS_SPEC``, stored in every model's metadata): the
Unicode version of the tables (``unicodedata.unidata_version``), the White_Space set, the characters a final
``.`` may be followed by, the Default_Ignorable set removed after folding, and the code points unassigned in that
Unicode version, which pass through normalization and case folding unchanged (a client with newer tables must not
normalise them). Sets are strings of hex code points and ranges (``"0009-000D 0020"``).
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata

from serving.errors import InputError, ModelError

NAME = "casefold_punct_v1"

# Split-off punctuation, and a final period; the same patterns run in RE2 (tf.strings.regex_replace).
PUNCT_PATTERN = r'([?!,;"()\[\]{}])'
FINAL_PERIOD_PATTERN = r"\.([ \t\n\r\f]*)$"  # RE2 form; Python uses \Z for the end

# Unicode's White_Space property (the set ICU, and so tensorflow-text's WhitespaceTokenizer, splits on).
_WHITE_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
# Default_Ignorable_Code_Point ranges: NFKC_Casefold removes these characters.
_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
    (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)
CHARS_NAME = "casefold_chars_v1"
SPACE_SYMBOL = "\u2581"
FINAL_PERIOD_TRAILING = " \t\n\r\f"
PUNCTUATION = '?!,;"()[]{}'

_PUNCT = re.compile(PUNCT_PATTERN)
_FINAL_PERIOD = re.compile(FINAL_PERIOD_PATTERN[:-1] + r"\Z")


def code_point_set(ranges) -> str:
    """``"0009-000D 0020"``: (low, high) ranges as hex code points."""
    return " ".join(f"{a:04X}" if a == b else f"{a:04X}-{b:04X}" for a, b in ranges)


def _ranges(code_points) -> list[tuple[int, int]]:
    out = []
    for cp in sorted(code_points):
        if out and cp == out[-1][1] + 1:
            out[-1] = (out[-1][0], cp)
        else:
            out.append((cp, cp))
    return out


@functools.cache
def unassigned() -> str:
    """Code points of general category Cn in this Python's Unicode tables (planes 4-13 hold none assigned)."""
    scan = itertools.chain(range(0x40000), range(0xE0000, 0x110000))
    cn = [cp for cp in scan if unicodedata.category(chr(cp)) == "Cn"]
    return code_point_set(_ranges(cn + list(range(0x40000, 0xE0000))))


def unicode_rules() -> dict:
    """The Unicode facts every spec states: the tables' version, White_Space, Default_Ignorable, unassigned."""
    return {"unicode_version": unicodedata.unidata_version,
            "white_space": code_point_set(_ranges(map(ord, _WHITE_SPACE))),
            "ignorable": code_point_set(_IGNORABLE),
            "unassigned": unassigned()}


@functools.cache
def word_spec() -> dict:
    """The full ``casefold_punct_v1`` spec (what ``SPEC`` holds)."""
    return {"name": NAME, "lowercase": True, "normalization": "NFKC_Casefold", **unicode_rules(),
            "punctuation": PUNCTUATION,
            "final_period_trailing": code_point_set(_ranges(map(ord, FINAL_PERIOD_TRAILING)))}


@functools.cache
def chars_spec() -> dict:
    """The full ``casefold_chars_v1`` spec (what ``CHARS_SPEC`` holds)."""
    return {"name": CHARS_NAME, "lowercase": True, "normalization": "NFKC_Casefold", "space": SPACE_SYMBOL,
            **unicode_rules()}


def __getattr__(name: str):  # SPEC and CHARS_SPEC are built on first use (the Cn scan takes ~50 ms)
    if name == "SPEC":
        return word_spec()
    if name == "CHARS_SPEC":
        return chars_spec()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _ignorable(ch: str) -> bool:
    code = ord(ch)
    return any(low <= code <= high for low, high in _IGNORABLE)


def case_fold(text: str) -> str:
    """NFKC_Casefold: NFKC, full case folding, NFKC again, default-ignorable characters removed."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    if any(ord(ch) > 0x7F for ch in folded):
        folded = "".join(ch for ch in folded if not _ignorable(ch))
    return folded


def split_words(text: str) -> list[str]:
    """Splits on Unicode white space, dropping empty pieces."""
    words, current = [], []
    for ch in text:
        if ch in _WHITE_SPACE:
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(ch)
    if current:
        words.append("".join(current))
    return words


class Tokenizer:
    """Turns raw text into the words the model was trained on.

    Args:
      spec: the tokenizer spec stored in the model's metadata.

    Raises:
      ModelError: the spec names a tokenizer this version of serving does not know.
    """

    def __init__(self, spec: dict | None = None):
        spec = dict(word_spec() if spec is None else spec)
        if spec.get("name") != NAME:
            raise ModelError(f"the model needs tokenizer {spec.get('name')!r}; this serving knows only {NAME!r}")
        self.spec = spec

    def normalize(self, word: str) -> str:
        """Normalizes one already-split word (what training does to the words of seq.in)."""
        return case_fold(word)

    def __call__(self, text: str) -> list[str]:
        """Returns the words of ``text``.

        Raises:
          InputError: ``text`` is not a string.
        """
        if not isinstance(text, str):
            raise InputError(f"text must be a string, got {type(text).__name__}")
        text = case_fold(text)
        text = _PUNCT.sub(r" \1 ", text)
        text = _FINAL_PERIOD.sub(r" .\1", text)
        return split_words(text)


def white_space_pattern() -> str:
    """A pattern matching runs of Unicode white space, valid in Python ``re`` and in RE2 (the characters appear
    literally: none is special inside a character class)."""
    return "[" + "".join(sorted(_WHITE_SPACE)) + "]+"


_SPACES = re.compile(white_space_pattern())


class CharTokenizer:
    """Turns raw text into the characters a character-level model was trained on (spec ``casefold_chars_v1``).

    Raises:
      ModelError: the spec names another tokenizer.
    """

    def __init__(self, spec: dict | None = None):
        spec = dict(chars_spec() if spec is None else spec)
        if spec.get("name") != CHARS_NAME:
            raise ModelError(f"the model needs tokenizer {spec.get('name')!r}, not {CHARS_NAME!r}")
        self.spec = spec

    def __call__(self, text: str) -> list[str]:
        if not isinstance(text, str):
            raise InputError(f"text must be a string, got {type(text).__name__}")
        text = _SPACES.sub(SPACE_SYMBOL, case_fold(text).strip("".join(_WHITE_SPACE)))
        return list(text)


def make_tokenizer(spec: dict):
    """The tokenizer a model's metadata asks for (word or character level).

    Raises:
      ModelError: the spec is unknown to this version of serving.
    """
    kinds = {NAME: Tokenizer, CHARS_NAME: CharTokenizer}
    name = spec.get("name") if isinstance(spec, dict) else None
    if name not in kinds:
        raise ModelError(f"the model needs tokenizer {name!r}; this serving knows {sorted(kinds)}")
    return kinds[name](spec)
