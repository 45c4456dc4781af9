"""Joint slot filling + intent detection: embedding → (bi)directional recurrent stack → per-word slot softmax and
a pooled intent softmax."""

from __future__ import annotations

import keras

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
) -> keras.Model:
    """Builds the slot-filling model.

    Args:
      vocab_size: word ids run from 0 (padding, masked out) to ``vocab_size - 1``.
      n_slots: number of IOB slot tags.
      n_intents: number of intents.
      cell: ``rnn``, ``lstm`` or ``gru``.
      embed_dim, units, layers, bidirectional, dropout: sizes of the network.

    Returns:
      A model from ``token_ids`` [batch, time] int32 to ``{"slot_probs": [batch, time, n_slots],
      "intent_probs": [batch, n_intents]}``.
    """
    token_ids = keras.Input(shape=(None,), dtype="int32", name=INPUT)
    embedded = keras.layers.Embedding(vocab_size, embed_dim, mask_zero=True, name="embedding")(token_ids)
    if dropout:
        embedded = keras.layers.Dropout(dropout, name="embedding_dropout")(embedded)
    x = recurrent_stack(embedded, cell, units, layers, bidirectional=bidirectional, dropout=dropout)
    slots = tagger_head(x, n_slots, name=SLOT_OUTPUT)
    intent = classifier_head([x, embedded], n_intents, dropout=dropout, name=INTENT_OUTPUT)
    return keras.Model(token_ids, {SLOT_OUTPUT: slots, INTENT_OUTPUT: intent}, name="slot_filler")
