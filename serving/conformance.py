"""The tokenizer conformance file of a run dir, ``tokenizer_conformance.json``: inputs → tokens → ids as this
serving computes them, so that a client in any language can check its own tokenizer against the model's.

    {"format": "rnn-toolkit/tokenizer-conformance", "format_version": 1, "tokenizer": {spec}, "vocab_key": "vocab",
     "unk_id": 1, "cases": [{"input": "...", "tokens": [...], "ids": [...]}, ...]}

For the document tokenizer (``casefold_words_v1``, key terms) each case also holds ``offsets``: each token's
``[start, end)`` code-point offsets in the input.

The cases are the hard ones (a final ``.`` before each kind of white space, every White_Space character,
Default_Ignorable characters, full case folding beyond lower-casing, compatibility forms, code points unassigned in
the tables' Unicode version, some of them assigned later, ASCII and other punctuation, emoji, CJK) and a few
hundred seeded random mixes of them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from serving import doc_tokenizer
from serving.tokenizer import CHARS_NAME, NAME, make_tokenizer

FORMAT = "rnn-toolkit/tokenizer-conformance"
FILE = "tokenizer_conformance.json"
TOKENIZERS = (NAME, CHARS_NAME, doc_tokenizer.NAME)  # word, character and document (key-term) specs
WHITE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000"
# Unassigned in Unicode 14 (Python 3.11); most assigned since: Cyrillic modifier letters (15.0: NFKC to а, б),
# Latin capitals with lower-case forms (16.0), Kawi and Nag Mundari letters (15.0), CJK extension I (15.1),
# and ones still unassigned.
UNASSIGNED = "\U0001e030\U0001e031\ua7cb\ua7dc\U00011f04\U0001e4d0\U0002ebf0\U0001f7d9\u0378\U000e0080\u2065"
HARD = ("ßẞſςΣİıŉǰΐΰᾈᾳῼﬀﬁﬅꭰᎠᏸ\u212a\u212bµǅ"  # case folding beyond toLowerCase; Kelvin, Ångström signs
        "①½㎒ｆｕｌｌ™ℌ…"  # compatibility forms
        "\u00ad\u200b\u200d\ufeff\u034f\U000e0001\u180e"  # Default_Ignorable
        "e\u0301\u1100\u1161\u11a8한\u0300a"  # combining, jamo
        ".?!,;\"()[]{}'-:")
FIXED = [
    *[f"flights to denver.{w}" for w in WHITE], *[f"st.{w}louis" for w in WHITE],
    "end .", "end. ", ".", " . ", "...", "a.b.", "st. louis.", "wait?!", "(quoted) \"text\"", "",
    "Straße nach Zürich", "ΣΊΣΥΦΟΣ", "İstanbul ŉ ǰ", "ᏣᎳᎩ ꮳꮃꭹ", "ﬀ ﬁ ﬅ ﬆ", "① ½ ㎒ ｆｕｌｌ ™",
    "soft\u00adhyphen zero\u200bwidth", "a\ufeffb\u034fc", "e\u0301 \u0065\u0301", "한국어 \u1100\u1161\u11a8",
    *[f"x{ch}y {ch}." for ch in UNASSIGNED], "\U0001e030\u0301 \ua7cb.", "emoji 👩\u200d💻 🇫🇷",
    "x#y~z&w a/b@c non-linear user's 3-D.", "«quoted» — … ¿qué?", "日本語。中文，テスト", "ＡＢＣ１２３ 𝐀𝐁",
    "a \u00ad b\u200b \ufeff.",
]


def random_cases(count: int = 300, seed: int = 0) -> list[str]:
    """Seeded mixes of the hard characters, white space and ASCII words."""
    rng = random.Random(seed)
    pool = list(HARD + UNASSIGNED) + list(WHITE) + ["flights", "st.", "Denver", "é", " "] * 3
    return ["".join(rng.choice(pool) for _ in range(rng.randint(1, 12))) for _ in range(count)]


def vocabulary(metadata: dict) -> tuple[dict | None, str | None, list | None]:
    """(tokenizer spec, vocab key, vocab) of a model whose tokenizer this file covers, else Nones."""
    for spec_key, vocab_key in (("tokenizer", "vocab"), ("source_tokenizer", "source_vocab")):
        spec = metadata.get(spec_key)
        if isinstance(spec, dict) and spec.get("name") in TOKENIZERS and vocab_key in metadata:
            return spec, vocab_key, metadata[vocab_key]
    return None, None, None


def tokenize(spec: dict, text: str) -> dict:
    """``{"tokens": [...]}`` of ``text`` by the spec's tokenizer; the document tokenizer adds ``"offsets"``."""
    if spec.get("name") != doc_tokenizer.NAME:
        return {"tokens": make_tokenizer(spec)(text)}
    tokens = doc_tokenizer.DocTokenizer(spec)(text)
    return {"tokens": [t.text for t in tokens], "offsets": [[t.start, t.end] for t in tokens]}


def build(metadata: dict) -> dict | None:
    """The conformance object of a model's metadata (None: no tokenizer of ``TOKENIZERS``)."""
    spec, vocab_key, vocab = vocabulary(metadata)
    if spec is None:
        return None
    index = {token: i for i, token in enumerate(vocab)}
    unk = metadata.get("unk_id", metadata.get("special_ids", {}).get("unk", 1))
    cases = []
    for text in FIXED + random_cases():
        case = {"input": text, **tokenize(spec, text)}
        cases.append({**case, "ids": [index.get(t, unk) for t in case["tokens"]]})
    return {"format": FORMAT, "format_version": 1, "tokenizer": spec, "vocab_key": vocab_key, "unk_id": unk,
            "cases": cases}


def write(run_dir: str | Path, metadata: dict) -> Path | None:
    """Writes ``tokenizer_conformance.json`` into ``run_dir`` when the model has such a tokenizer."""
    conformance = build(metadata)
    if conformance is None:
        return None
    path = Path(run_dir) / FILE
    path.write_text(json.dumps(conformance, ensure_ascii=True, indent=1) + "\n", encoding="utf-8")
    return path
