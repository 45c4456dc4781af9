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


def _member(token_ids, prefix: str, n_classes: int, *, readout, cell, embed_dim, units, layers, bidirectional,
            dropout, attention_units, vocab_size, pool_embeddings):
    """One classifier on ``token_ids``: (class probabilities, attention weights or None)."""
    x = keras.layers.Embedding(vocab_size, embed_dim, mask_zero=True, name=f"{prefix}embedding")(token_ids)
    if dropout:
        x = keras.layers.SpatialDropout1D(dropout, name=f"{prefix}embedding_dropout")(x)
    embedded = x
    x = recurrent_stack(x, cell, units, layers - 1, bidirectional=bidirectional, dropout=dropout, prefix=f"{prefix}rnn")
    weights = None
    if readout == "last":
        features = recurrent_layer(cell, units, return_sequences=False, bidirectional=bidirectional,
                                   name=f"{prefix}rnn_{layers - 1}")(x)
    else:
        x = recurrent_layer(cell, units, bidirectional=bidirectional, name=f"{prefix}rnn_{layers - 1}")(x)
        if readout == "mean":
            features = MaskedPooling("mean_max", name=f"{prefix}pooling")(x)
        else:
            features, weights = AttentionPooling(attention_units, return_attention=True, name=f"{prefix}attention")(x)
    if pool_embeddings:  # a bag-of-words path beside the recurrent read-out
        pooled = MaskedPooling("max", name=f"{prefix}embedding_pooling")(embedded)
        features = keras.layers.Concatenate(name=f"{prefix}features")([features, pooled])
    if dropout:
        features = keras.layers.Dropout(dropout, name=f"{prefix}features_dropout")(features)
    probs = keras.layers.Dense(n_classes, activation="softmax", name=f"{prefix}{OUTPUT}")(features)
    return probs, weights


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
    members: int = 1,
    pool_embeddings: bool = False,
) -> keras.Model:
    """Builds the classifier.

    Args:
      vocab_size: token ids run from 0 (padding, masked out) to ``vocab_size - 1``.
      n_classes: number of labels.
      readout: ``last``, ``mean`` (mean and max over the real steps) or ``attention``.
      cell, embed_dim, units, layers, bidirectional, dropout: sizes of the network.
      attention_units: width of the attention's scoring layer.
      pool_embeddings: also feed the classifier the max over the steps of the word embeddings (a bag-of-words
        path beside the recurrent read-out).
      members: with more than one, an ensemble: that many independent classifiers (layers named ``m0_...``,
        ``m1_...``) whose probabilities (and attention weights) are averaged. Train each member on its own loss
        (:func:`member_outputs`).

    Returns:
      A model from ``token_ids`` [batch, time] int32 to ``{"class_probs": [batch, n_classes]}``, plus
      ``"attention_weights"`` [batch, time] for the attention read-out.

    Raises:
      ValueError: unknown read-out or cell, or fewer than one member.
    """
    if readout not in READOUTS:
        raise ValueError(f"unknown readout {readout!r}; choose one of {', '.join(READOUTS)}")
    if members < 1:
        raise ValueError(f"members must be at least 1, got {members}")
    token_ids = keras.Input(shape=(None,), dtype="int32", name=INPUT)
    sizes = dict(readout=readout, cell=cell, embed_dim=embed_dim, units=units, layers=layers,
                 bidirectional=bidirectional, dropout=dropout, attention_units=attention_units, vocab_size=vocab_size,
                 pool_embeddings=pool_embeddings)
    if members == 1:
        probs, weights = _member(token_ids, "", n_classes, **sizes)
    else:
        branches = [_member(token_ids, f"m{i}_", n_classes, **sizes) for i in range(members)]
        probs = keras.layers.Average(name=OUTPUT)([p for p, _ in branches])
        weights = None if readout != "attention" else keras.layers.Average(name=ATTENTION)([w for _, w in branches])
    outputs = {OUTPUT: probs} if weights is None else {OUTPUT: probs, ATTENTION: weights}
    name = f"text_classifier_{readout}" + (f"_x{members}" if members > 1 else "")
    return keras.Model(token_ids, outputs, name=name)


def member_outputs(model: keras.Model) -> dict:
    """The class-probability tensor of each member (``{"class_probs": ...}`` for a single model), for training
    every member on its own loss."""
    members = [layer for layer in model.layers if layer.name.startswith("m") and layer.name.endswith("_" + OUTPUT)]
    if not members:
        return {OUTPUT: model.get_layer(OUTPUT).output}
    return {layer.name: layer.output for layer in members}


def build_language_model(
    vocab_size: int, out_vocab: int, *, cell: str = "lstm", embed_dim: int = 128, units: int = 128,
    bidirectional: bool = True, prefix: str = "",
) -> keras.Model:
    """A language model over the classifier's embedding and first recurrent layer, for pre-training them on the
    training texts (Dai & Le 2015's LM-LSTM; forward and backward as in ELMo's biLM).

    The forward direction at step t predicts token t+1, the backward direction token t-1. Its layers are named as
    the classifier's (``{prefix}embedding``, ``{prefix}rnn_0``), so :func:`copy_pretrained` can move the weights.

    Returns:
      A model from ``token_ids`` to ``{"next": [batch, time, out_vocab]}`` (plus ``"previous"`` when
      bidirectional) logits.
    """
    token_ids = keras.Input(shape=(None,), dtype="int32", name=INPUT)
    x = keras.layers.Embedding(vocab_size, embed_dim, mask_zero=True, name=f"{prefix}embedding")(token_ids)
    if bidirectional:
        layer = keras.layers.Bidirectional(recurrent_layer(cell, units, bidirectional=False), merge_mode=None,
                                           name=f"{prefix}rnn_0")
        forward, backward = layer(x)
        return keras.Model(token_ids, {
            "next": keras.layers.Dense(out_vocab, name="next")(forward),
            "previous": keras.layers.Dense(out_vocab, name="previous")(backward),
        }, name="language_model")
    forward = recurrent_layer(cell, units, bidirectional=False, name=f"{prefix}rnn_0")(x)
    return keras.Model(token_ids, {"next": keras.layers.Dense(out_vocab, name="next")(forward)}, name="language_model")


def copy_pretrained(language_model: keras.Model, classifier: keras.Model, prefix: str = "") -> None:
    """Copies the pre-trained embedding and first recurrent layer into the classifier (same shapes)."""
    for name in (f"{prefix}embedding", f"{prefix}rnn_0"):
        classifier.get_layer(name).set_weights(language_model.get_layer(name).get_weights())
