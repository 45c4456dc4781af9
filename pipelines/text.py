"""Text preprocessing with tensorflow-text: the training side of ``serving/tokenizer.py``.

Pre-split words (a seq.in line) are only normalized; raw text (user input) is normalized, punctuation is split
off, and it is split on white space. ``serving.tokenizer`` is the pure-Python replica; a test proves they agree.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_text as tf_text

from serving import tokenizer as spec
from serving.vocab import UNK_ID


def normalize(words: tf.Tensor) -> tf.Tensor:
    """NFKC case folding of each string (``tensorflow_text.case_fold_utf8``)."""
    return tf_text.case_fold_utf8(words)


def tokenize(texts: tf.Tensor) -> tf.RaggedTensor:
    """Raw texts [batch] → words [batch, (words)], as ``serving.tokenizer.Tokenizer`` does."""
    texts = normalize(texts)
    texts = tf.strings.regex_replace(texts, spec.PUNCT_PATTERN, r" \1 ")
    texts = tf.strings.regex_replace(texts, spec.FINAL_PERIOD_PATTERN, r" .\1")
    return tf_text.WhitespaceTokenizer().tokenize(texts)


def lookup_table(path: str, default: int = UNK_ID) -> tf.lookup.StaticHashTable:
    """A string → id table read from a vocabulary file (line number = id); unknown strings map to ``default``."""
    initializer = tf.lookup.TextFileInitializer(
        str(path),
        key_dtype=tf.string,
        key_index=tf.lookup.TextFileIndex.WHOLE_LINE,
        value_dtype=tf.int64,
        value_index=tf.lookup.TextFileIndex.LINE_NUMBER,
    )
    return tf.lookup.StaticHashTable(initializer, default_value=default)


def chars(texts: tf.Tensor) -> tf.RaggedTensor:
    """Raw texts [batch] (or one text) → characters, as ``serving.tokenizer.CharTokenizer`` does: NFKC case
    folding, white space runs → one ``▁``, ends stripped, one token per code point."""
    texts = normalize(texts)
    space = spec.white_space_pattern()
    texts = tf.strings.regex_replace(texts, f"^{space}|{space}$", "")
    texts = tf.strings.regex_replace(texts, space, spec.SPACE_SYMBOL)
    return tf.strings.unicode_split(texts, "UTF-8")


def tokenize_with_offsets(texts: tf.Tensor) -> tuple[tf.RaggedTensor, tf.RaggedTensor, tf.RaggedTensor]:
    """Raw texts [batch] → (tokens, starts, ends), each [batch, (tokens)], as ``serving.doc_tokenizer`` does
    (spec ``casefold_words_v1``): split on white space, ASCII punctuation except ``-`` and ``'`` split off, each
    token case-folded, tokens that fold to nothing dropped. Offsets are UTF-8 byte offsets into the original text."""
    from serving import doc_tokenizer

    tokens, starts, ends = tf_text.regex_split_with_offsets(
        texts, doc_tokenizer.DELIM_PATTERN, doc_tokenizer.PUNCT_PATTERN
    )
    tokens = normalize(tokens)
    keep = tf.strings.length(tokens) > 0
    return tf.ragged.boolean_mask(tokens, keep), tf.ragged.boolean_mask(starts, keep), tf.ragged.boolean_mask(ends, keep)
