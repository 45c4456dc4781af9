"""Many-to-one text classification (sentiment): tokens in one per step, a class distribution out.

Three read-outs of the recurrent states: ``last`` (the lecture's: the state after the last token; with a
bidirectional layer, each direction's final state), ``mean`` (mean and max over the real steps) and ``attention``
(an additive attention's weighted sum, whose weights are a second output for inspection).
"""

from __future__ import annotations

import keras

from models.heads import AttentionPooling, MaskedPooling
from models.recurrent import recurrent_layer, recurrent_stack

INPUT = "token_ids"
OUTPUT = "class_probs"
ATTENTION = "attention_weights"
READOUTS = ("last", "mean", "attention")


def build_text_classifier(
    vocab_size: int,
    n_classes: int,
    *,
    readout: str = "attention",
    cell: str = "lstm",
    embed_dim: int = 128,
    units: int = 128,
    layers: int = 1,
    bidirectional: bool = True,
    dropout: float = 0.5,
    attention_units: int = 64,
) -> keras.Model:
    """Builds the classifier.

    Args:
      vocab_size: token ids run from 0 (padding, masked out) to ``vocab_size - 1``.
      n_classes: number of labels.
      readout: ``last``, ``mean`` or ``attention``.
      cell, embed_dim, units, layers, bidirectional, dropout: sizes of the network.
      attention_units: width of the attention's scoring layer.

    Returns:
      A model from ``token_ids`` [batch, time] int32 to ``{"class_probs": [batch, n_classes]}``, plus
      ``"attention_weights"`` [batch, time] for the attention read-out.

    Raises:
      ValueError: unknown read-out or cell.
    """
    if readout not in READOUTS:
        raise ValueError(f"unknown readout {readout!r}; choose one of {', '.join(READOUTS)}")
    token_ids = keras.Input(shape=(None,), dtype="int32", name=INPUT)
    x = keras.layers.Embedding(vocab_size, embed_dim, mask_zero=True, name="embedding")(token_ids)
    if dropout:
        x = keras.layers.SpatialDropout1D(dropout, name="embedding_dropout")(x)
    x = recurrent_stack(x, cell, units, layers - 1, bidirectional=bidirectional, dropout=dropout)
    outputs = {}
    if readout == "last":
        features = recurrent_layer(cell, units, return_sequences=False, bidirectional=bidirectional,
                                   name=f"rnn_{layers - 1}")(x)
    else:
        x = recurrent_layer(cell, units, bidirectional=bidirectional, name=f"rnn_{layers - 1}")(x)
        if readout == "mean":
            features = MaskedPooling("mean_max", name="pooling")(x)
        else:
            features, outputs[ATTENTION] = AttentionPooling(attention_units, return_attention=True, name="attention")(x)
    if dropout:
        features = keras.layers.Dropout(dropout, name="features_dropout")(features)
    outputs = {OUTPUT: keras.layers.Dense(n_classes, activation="softmax", name=OUTPUT)(features), **outputs}
    return keras.Model(token_ids, outputs, name=f"text_classifier_{readout}")
