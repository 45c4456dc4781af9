"""The pure-Python tokenizer in serving/ must give the words (and so the ids) that tensorflow-text gives."""

import pytest

from serving.tokenizer import Tokenizer, case_fold

TRICKY = [
    "Show me flights from BOSTON to Denver",
    "show me flights from boston to denver.",
    "what's the fare to st. louis ?",
    "I'd like to fly (one way) from Dallas, then to Atlanta!",
    'a "quoted" word; and [brackets] {braces}',
    "  leading and trailing spaces   ",
    "tabs\tand\nnew lines\r\nhere",
    "",
    "   ",
    "Straße ÉCOLE İstanbul ΣΊΣΥΦΟΣ",
    "ﬁne ligature, full-width ＢＯＳＴＯＮ ２ and ① circled",
    "zero\u200bwidth soft\u00adhyphen no\u00a0break ideographic\u3000space",
    "emoji ✈️ 🛫 to 東京 and 台北 on 11月2日",
    "ends with period and spaces .  ",
    "a.m. flights on 8:30 p.m.",
]


@pytest.fixture(scope="module")
def tf_tokenize():
    import tensorflow as tf

    from pipelines import text

    def run(texts):
        return [[w.decode() for w in row] for row in text.tokenize(tf.constant(texts)).to_list()]

    return run


def test_python_tokenizer_matches_tensorflow_text(tf_tokenize):
    tokenizer = Tokenizer()
    assert [tokenizer(t) for t in TRICKY] == tf_tokenize(TRICKY)


def test_examples_of_the_tokenization():
    tokenizer = Tokenizer()
    assert tokenizer("Fly to St. Louis, please.") == ["fly", "to", "st.", "louis", ",", "please", "."]
    assert tokenizer("ＢＯＳＴＯＮ") == ["boston"]
    assert tokenizer("   ") == []


def test_case_folding_matches_tensorflow_text_on_every_code_point():
    import tensorflow as tf
    import tensorflow_text as tf_text

    chars = [chr(c) for c in range(0x20, 0x30000) if not 0xD800 <= c < 0xE000]
    folded = tf_text.case_fold_utf8(tf.constant([c.encode() for c in chars])).numpy()
    differ = [ord(c) for c, f in zip(chars, folded) if f.decode() != case_fold(c)]
    # tensorflow-text's ICU predates Unicode 14; Python 3.11 knows these Unicode 14 additions, ICU does not.
    unicode_14 = [(0x180F, 0x180F), (0x2C2F, 0x2C2F), (0xA7C0, 0xA7F5), (0xAB69, 0xAB69), (0x10570, 0x105BC),
                  (0x10780, 0x107BA), (0x1FBF0, 0x1FBF9)]
    assert [hex(c) for c in differ if not any(a <= c <= b for a, b in unicode_14)] == []


def test_unknown_tokenizer_spec_is_refused():
    from serving.errors import ModelError

    with pytest.raises(ModelError, match="needs tokenizer 'bpe'"):
        Tokenizer({"name": "bpe"})
