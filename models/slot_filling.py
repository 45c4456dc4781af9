"""Joint slot filling + intent detection: embedding → (bi)directional recurrent stack → per-word slot softmax and
a pooled intent softmax."""

from __future__ import annotations

import keras

from models.chars import CHAR_INPUT, CharFeatures
from models.heads import classifier_head, tagger_head
from models.recurrent import recurrent_stack

INPUT = "token_ids"
SLOT_OUTPUT = "slot_probs"
INTENT_OUTPUT = "intent_probs"


def build_slot_filler(
    vocab_size: int,
    n_slots: int,
    n_intents: int,
    *,
    cell: str = "lstm",
    embed_dim: int = 128,
    units: int = 128,
    layers: int = 2,
    bidirectional: bool = True,
    dropout: float = 0.3,
    n_chars: int = 0,
    char_dim: int = 32,
    char_filters: int = 64,
    word_chars: int = 16,
) -> keras.Model:
    """Builds the slot-filling model.

    Args:
      vocab_size: word ids run from 0 (padding, masked out) to ``vocab_size - 1``.
      n_slots: number of IOB slot tags.
      n_intents: number of intents.
      cell: ``rnn``, ``lstm`` or ``gru``.
      embed_dim, units, layers, bidirectional, dropout: sizes of the network.
      n_chars: with a character vocabulary (ids 0 = padding … n_chars - 1), each word vector also gets a
        character CNN's summary of the word (:class:`models.chars.CharFeatures`, ``char_filters`` wide), read from
        a second input ``char_ids`` [batch, time, word_chars]; 0: words only.

    Returns:
      A model from ``token_ids`` [batch, time] int32 (and ``char_ids``) to ``{"slot_probs": [batch, time,
      n_slots], "intent_probs": [batch, n_intents]}``.
    """
    token_ids = keras.Input(shape=(None,), dtype="int32", name=INPUT)
    embedded = keras.layers.Embedding(vocab_size, embed_dim, mask_zero=True, name="embedding")(token_ids)
    inputs = token_ids
    if n_chars:
        char_ids = keras.Input(shape=(None, word_chars), dtype="int32", name=CHAR_INPUT)
        embedded = CharFeatures(n_chars, char_dim, char_filters, name="char_features")([embedded, char_ids])
        inputs = {INPUT: token_ids, CHAR_INPUT: char_ids}
    if dropout:
        embedded = keras.layers.Dropout(dropout, name="embedding_dropout")(embedded)
    x = recurrent_stack(embedded, cell, units, layers, bidirectional=bidirectional, dropout=dropout)
    slots = tagger_head(x, n_slots, name=SLOT_OUTPUT)
    intent = classifier_head([x, embedded], n_intents, dropout=dropout, name=INTENT_OUTPUT)
    return keras.Model(inputs, {SLOT_OUTPUT: slots, INTENT_OUTPUT: intent}, name="slot_filler")
