"""The encoder–decoder (seq2seq) machine: one set of layers, three graphs.

Encoder: embedding (``<pad>`` = 0 masked) → stacked, optionally bidirectional GRU/LSTM. Its last layer's final
states (forward and backward concatenated) initialise the decoder, so the decoder has ``hidden * directions``
units. Decoder: embedding → one GRU/LSTM layer → [attention over the encoder outputs →
tanh(W [context; output])] → softmax over the target vocabulary, as log-probabilities.

``build_seq2seq`` returns :class:`Seq2SeqModels`:
  trainer       {source_ids [b, s], target_ids [b, t]} → log_probs [b, t, V]  (teacher forcing: target_ids
                starts with ``<s>``, the labels are the same tokens shifted left and ending with ``</s>``)
  encoder       source_ids → {memory [b, s, d], memory_mask [b, s], state_h [b, u] (, state_c)}
  decoder_step  {token_ids [b, k], state_h (, state_c) (, memory, memory_mask) (, word_position [b, k])} →
                {log_probs [b, k, V], new_state_h (, new_state_c) (, attention [b, k, s])}; decoding feeds k = 1.
All three share the same layer objects, so the inference graphs carry exactly the trained weights.
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

from models.attention import MODES, LogSoftmax, PaddingMask, PointedMemory, PointerPositions, SeqAttention

CELLS = {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM}
SOURCE, TARGET = "source_ids", "target_ids"
TOKENS, LOG_PROBS, ATTENTION = "token_ids", "log_probs", "attention"
MEMORY, MEMORY_MASK = "memory", "memory_mask"
WORD_POSITION = "word_position"


@dataclasses.dataclass(frozen=True)
class Seq2SeqSpec:
    """Sizes of the network.

    Attributes:
      source_vocab, target_vocab: vocabulary sizes (id 0 is padding in both).
      cell: ``gru`` or ``lstm``.
      embed_dim: embedding width (source and target).
      hidden: encoder units per direction; the decoder has ``hidden * (2 if bidirectional else 1)``.
      layers: stacked encoder layers.
      bidirectional: bidirectional encoder layers.
      attention: ``none``, ``additive`` (Bahdanau) or ``dot`` (Luong).
      attention_units: width of the additive score.
      dropout: dropout on embeddings and before the output layer (training only).
      pointer_id: 0 (off), or the target id that places one source word (the parser's ``XX``): then each
        decoder input also carries the encoder output of the next word to place, the word pointer (the decoder
        step takes ``word_position``, the count of those ids fed so far). Needs attention (the memory).
    """

    source_vocab: int
    target_vocab: int
    cell: str = "gru"
    embed_dim: int = 64
    hidden: int = 64
    layers: int = 1
    bidirectional: bool = True
    attention: str = "additive"
    attention_units: int = 64
    dropout: float = 0.1
    pointer_id: int = 0

    def check(self) -> None:
        """Raises ValueError naming the first bad field."""
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}; choose one of {', '.join(CELLS)}")
        if self.attention not in MODES:
            raise ValueError(f"unknown attention {self.attention!r}; choose one of {', '.join(MODES)}")
        for name in ("source_vocab", "target_vocab"):
            if getattr(self, name) < 5:
                raise ValueError(f"{name} must hold the 4 reserved ids and at least one token")
        for name in ("embed_dim", "hidden", "layers", "attention_units"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.pointer_id and (self.attention == "none" or not 4 <= self.pointer_id < self.target_vocab):
            raise ValueError(f"pointer_id {self.pointer_id} needs attention (the memory it points into) and a "
                             f"target id in 4..{self.target_vocab - 1}")

    @property
    def decoder_units(self) -> int:
        return self.hidden * (2 if self.bidirectional else 1)

    @property
    def state_names(self) -> list[str]:
        """The decoder's state tensors: ``state_h`` (and ``state_c`` for an LSTM)."""
        return ["state_h", "state_c"] if self.cell == "lstm" else ["state_h"]


@dataclasses.dataclass
class Seq2SeqModels:
    """The three graphs over one set of layers (see the module docstring)."""

    spec: Seq2SeqSpec
    trainer: keras.Model
    encoder: keras.Model
    decoder_step: keras.Model


def _encode(spec: Seq2SeqSpec, layers: dict, source_ids):
    """memory, memory_mask, and the decoder's initial states from the source ids."""
    x = layers["source_embedding"](source_ids)
    if spec.dropout:
        x = layers["source_dropout"](x)
    for i in range(spec.layers - 1):
        x = layers[f"encoder_{i}"](x)
    memory, *states = layers[f"encoder_{spec.layers - 1}"](x)
    per_dir = len(states) // (2 if spec.bidirectional else 1)
    if spec.bidirectional:  # [h_fw (, c_fw), h_bw (, c_bw)] → [h_fw ‖ h_bw (, c_fw ‖ c_bw)]
        states = [layers[f"encoder_state_{k}"]([states[k], states[per_dir + k]]) for k in range(per_dir)]
    return memory, layers["memory_mask"](source_ids), states


def _decode(spec: Seq2SeqSpec, layers: dict, token_ids, states, memory, memory_mask, positions=None):
    """log_probs, new states, attention weights (or None) for ``token_ids`` from ``states`` (``positions``: the
    word pointer's, with ``spec.pointer_id``)."""
    x = layers["target_embedding"](token_ids)
    if spec.dropout:
        x = layers["target_dropout"](x)
    if spec.pointer_id:
        x = layers["pointer_concat"]([x, layers["pointed_memory"](memory, memory_mask, positions)])
    outputs, *new_states = layers["decoder"](x, initial_state=list(states))
    weights = None
    if spec.attention != "none":
        context, weights = layers["attention"](outputs, memory, memory_mask)
        outputs = layers["attention_output"](layers["attention_concat"]([context, outputs]))
    if spec.dropout:
        outputs = layers["output_dropout"](outputs)
    return layers["log_probs"](layers["output"](outputs)), new_states, weights


def _layers(spec: Seq2SeqSpec) -> dict:
    cell = CELLS[spec.cell]
    layers = {
        "source_embedding": keras.layers.Embedding(spec.source_vocab, spec.embed_dim, mask_zero=True,
                                                   name="source_embedding"),
        # The decoder's ids are never padded where it matters (the loss skips padded labels), and an unmasked
        # decoder keeps its one-step graph a plain native ONNX GRU/LSTM with an initial state.
        "target_embedding": keras.layers.Embedding(spec.target_vocab, spec.embed_dim, name="target_embedding"),
        "memory_mask": PaddingMask(name=MEMORY_MASK),
        "decoder": cell(spec.decoder_units, return_sequences=True, return_state=True, name="decoder"),
        "output": keras.layers.Dense(spec.target_vocab, name="output_logits"),
        "log_probs": LogSoftmax(name=LOG_PROBS),
    }
    for i in range(spec.layers):
        last = i == spec.layers - 1
        rnn = cell(spec.hidden, return_sequences=True, return_state=last, name=f"encoder_{i}")
        layers[f"encoder_{i}"] = keras.layers.Bidirectional(rnn, name=f"encoder_{i}") if spec.bidirectional else rnn
    if spec.bidirectional:
        for k, name in enumerate(spec.state_names):
            layers[f"encoder_state_{k}"] = keras.layers.Concatenate(name=f"encoder_{name}")
    if spec.dropout:
        for name in ("source_dropout", "target_dropout", "output_dropout"):
            layers[name] = keras.layers.Dropout(spec.dropout, name=name)
    if spec.pointer_id:
        layers["pointer_positions"] = PointerPositions(spec.pointer_id, name="pointer_positions")
        layers["pointed_memory"] = PointedMemory(name="pointed_memory")
        layers["pointer_concat"] = keras.layers.Concatenate(name="pointer_concat")
    if spec.attention != "none":
        layers["attention"] = SeqAttention(spec.attention, spec.attention_units, name=ATTENTION)
        layers["attention_concat"] = keras.layers.Concatenate(name="attention_concat")
        layers["attention_output"] = keras.layers.Dense(spec.decoder_units, activation="tanh", name="attention_output")
    return layers


def build_seq2seq(spec: Seq2SeqSpec) -> Seq2SeqModels:
    """Builds the trainer, encoder and one-step decoder over shared layers.

    Raises:
      ValueError: a bad spec (see :meth:`Seq2SeqSpec.check`).
    """
    spec.check()
    layers = _layers(spec)
    units = spec.decoder_units

    source_ids = keras.Input((None,), dtype="int32", name=SOURCE)
    target_ids = keras.Input((None,), dtype="int32", name=TARGET)
    memory, memory_mask, states = _encode(spec, layers, source_ids)
    positions = layers["pointer_positions"](target_ids) if spec.pointer_id else None
    log_probs, _, _ = _decode(spec, layers, target_ids, states, memory, memory_mask, positions)
    trainer = keras.Model({SOURCE: source_ids, TARGET: target_ids}, log_probs, name="seq2seq_trainer")

    encoder_out = {name: state for name, state in zip(spec.state_names, states)}
    if spec.attention != "none":
        encoder_out = {MEMORY: memory, MEMORY_MASK: memory_mask, **encoder_out}
    encoder = keras.Model(source_ids, encoder_out, name="seq2seq_encoder")

    token_ids = keras.Input((None,), dtype="int32", name=TOKENS)
    state_in = [keras.Input((units,), name=name) for name in spec.state_names]
    inputs = {TOKENS: token_ids, **{name: t for name, t in zip(spec.state_names, state_in)}}
    memory_in = mask_in = None
    if spec.attention != "none":
        memory_in = keras.Input((None, memory.shape[-1]), name=MEMORY)
        mask_in = keras.Input((None,), name=MEMORY_MASK)
        inputs.update({MEMORY: memory_in, MEMORY_MASK: mask_in})
    positions_in = None
    if spec.pointer_id:
        positions_in = inputs[WORD_POSITION] = keras.Input((None,), dtype="int32", name=WORD_POSITION)
    step_log_probs, new_states, weights = _decode(spec, layers, token_ids, state_in, memory_in, mask_in, positions_in)
    outputs = {LOG_PROBS: step_log_probs, **{f"new_{n}": s for n, s in zip(spec.state_names, new_states)}}
    if weights is not None:
        outputs[ATTENTION] = weights
    decoder_step = keras.Model(inputs, outputs, name="seq2seq_decoder_step")
    return Seq2SeqModels(spec, trainer, encoder, decoder_step)


def sequence_loss(label_smoothing: float = 0.0):
    """Cross-entropy of log-probabilities [b, t, V] against label ids [b, t], averaged over the real (non-zero)
    labels of each sentence; with ``label_smoothing`` ε the target puts 1 - ε on the label and ε / V on every id."""

    def loss(labels, log_probs):
        labels = ops.cast(labels, "int32")
        mask = ops.cast(ops.not_equal(labels, 0), log_probs.dtype)
        nll = -ops.sum(ops.one_hot(labels, ops.shape(log_probs)[-1], dtype=log_probs.dtype) * log_probs, axis=-1)
        if label_smoothing:
            nll = (1.0 - label_smoothing) * nll - label_smoothing * ops.mean(log_probs, axis=-1)
        return ops.sum(nll * mask, axis=-1) / ops.maximum(ops.sum(mask, axis=-1), 1.0)

    return loss


def token_accuracy(labels, log_probs):
    """Share of real (non-zero) labels that the teacher-forced decoder ranks first, per sentence."""
    labels = ops.cast(labels, "int32")
    mask = ops.cast(ops.not_equal(labels, 0), "float32")
    hits = ops.cast(ops.equal(ops.cast(ops.argmax(log_probs, axis=-1), "int32"), labels), "float32") * mask
    return ops.sum(hits, axis=-1) / ops.maximum(ops.sum(mask, axis=-1), 1.0)


def compile_trainer(models: Seq2SeqModels, optimizer, label_smoothing: float = 0.0) -> None:
    """Compiles the trainer with :func:`sequence_loss` and :func:`token_accuracy`."""
    models.trainer.compile(optimizer=optimizer, loss=sequence_loss(label_smoothing), metrics=[token_accuracy])


@dataclasses.dataclass
class DocumentModels:
    """The hierarchical auto-encoder's document level: sentence vectors → document vector → sentence vectors.

    trainer   sentence_vectors [b, n, d] (zero rows pad) → {"vectors" [b, n, d], "present" [b, n, 1]}
    encoder   sentence_vectors → document vector [b, hidden]
    decoder   document vector → {"vectors", "present"}: n_max predicted sentence vectors and whether each exists
    """

    trainer: keras.Model
    encoder: keras.Model
    decoder: keras.Model


def build_document_autoencoder(vector_dim: int, hidden: int = 128, max_sentences: int = 4) -> DocumentModels:
    """A GRU reads the sentence vectors of a document (in order) into one document vector; a GRU unrolled over
    ``max_sentences`` steps from it writes the sentence vectors back, with a flag per step saying whether the
    document has a sentence there. Each written vector is then decoded into words by the sentence decoder
    (word → sentence → document, as in Li, Luong & Jurafsky 2015, with the sentence level kept frozen)."""
    vectors_in = keras.Input((None, vector_dim), name="sentence_vectors")
    doc = keras.layers.GRU(hidden, name="document_encoder")(keras.layers.Masking(0.0, name="padding")(vectors_in))
    doc_in = keras.Input((hidden,), name="document_vector")
    repeat = keras.layers.RepeatVector(max_sentences, name="repeat")
    rnn = keras.layers.GRU(hidden, return_sequences=True, name="document_decoder")
    to_vec = keras.layers.Dense(vector_dim, name="vectors")
    present = keras.layers.Dense(1, activation="sigmoid", name="present")

    def decode(d):
        h = rnn(repeat(d))
        return {"vectors": to_vec(h), "present": present(h)}

    return DocumentModels(keras.Model(vectors_in, decode(doc), name="document_trainer"),
                          keras.Model(vectors_in, doc, name="document_encoder"),
                          keras.Model(doc_in, decode(doc_in), name="document_decoder"))


def masked_vector_loss(targets, predicted):
    """Mean squared error over the sentence slots that hold a sentence (non-zero target rows)."""
    mask = ops.cast(ops.any(ops.not_equal(targets, 0.0), axis=-1), predicted.dtype)
    per_slot = ops.mean(ops.square(targets - predicted), axis=-1)
    return ops.sum(per_slot * mask, axis=-1) / ops.maximum(ops.sum(mask, axis=-1), 1.0)
