"""Sequence tagger: embedding → (bi)directional recurrent stack → a tag softmax at every token (key-term IOB)."""

from __future__ import annotations

import keras

from models.heads import tagger_head
from models.recurrent import recurrent_stack

INPUT = "token_ids"
OUTPUT = "tag_probs"


def build_tagger(
    vocab_size: int,
    n_tags: int,
    *,
    cell: str = "lstm",
    embed_dim: int = 128,
    units: int = 128,
    layers: int = 2,
    bidirectional: bool = True,
    dropout: float = 0.3,
) -> keras.Model:
    """Builds the tagger.

    Args:
      vocab_size: token ids run from 0 (padding, masked out) to ``vocab_size - 1``.
      n_tags: number of tags.
      cell: ``rnn``, ``lstm`` or ``gru``.
      embed_dim, units, layers, bidirectional, dropout: sizes of the network (dropout after the embedding and
        after each recurrent layer).

    Returns:
      A model from ``token_ids`` [batch, time] int32 to ``{"tag_probs": [batch, time, n_tags]}``.

    Raises:
      ValueError: unknown cell.
    """
    token_ids = keras.Input(shape=(None,), dtype="int32", name=INPUT)
    x = keras.layers.Embedding(vocab_size, embed_dim, mask_zero=True, name="embedding")(token_ids)
    if dropout:
        x = keras.layers.Dropout(dropout, name="embedding_dropout")(x)
    x = recurrent_stack(x, cell, units, layers, bidirectional=bidirectional, dropout=dropout)
    return keras.Model(token_ids, {OUTPUT: tagger_head(x, n_tags, name=OUTPUT)}, name="tagger")
