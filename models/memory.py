"""Attention-based memory models for reading comprehension (bAbI).

Both read a story held in memory, one sentence per slot, and a question; a read head attends over the slots
(``hops`` times) and the retrieved content answers the question.

``MemN2N``: the End-To-End Memory Network of Sukhbaatar et al. (2015): sentences embedded as position-encoded bags
of words plus a temporal encoding, adjacent weight tying (A^{k+1} = C^k, B = A^1, W^T = C^K), optional linear
start (the attention softmax removed until it is switched on, see :func:`set_linear_start`).

``RecurrentReader``: a GRU reads the words of each sentence and of the question; the question's state drives an
attention (a small MLP on [m*u, |m-u|]) over the sentence states plus a temporal encoding; each hop's read-out
updates the controller with a GRU cell, and the answer is read from the controller and the question.

Memory layout: slot 0 holds the most recent sentence (so the temporal encoding means "how long ago"); an all-zero
row is an empty slot, masked out of the attention. Both layers can hold ``members`` independent models side by side
(a leading weight axis, one einsum for all), so several random restarts train in one pass; the best on dev is
then copied into a one-member model (:func:`extract_member`) for export.
"""

from __future__ import annotations

import keras
from keras import ops

STORY, QUESTION = "story", "question"
OUTPUT, ATTENTION = "answer_probs", "attention"
MODELS = ("memn2n", "reader")
POSITION_FORMULAS = ("paper", "code")
_NEG = -1e9


def _position_bags(ids, vocab_size: int, formula: str = "paper", embed_dim: int = 1):
    """Position-encoding bags of ``ids`` [..., words]: (a, c) [..., vocab] such that word j's weight in dimension k
    is l_kj = a_j - (k/d) c_j, summed per word id.

    ``paper``: l_kj = (1 - j/J) - (k/d)(1 - 2j/J), J the sentence's real length (Sukhbaatar et al. 2015, sec. 4.1).
    ``code``: l_kj = 1 + 4 (k - (d+1)/2)(j - (J+1)/2) / (d J), J the padded width: the authors' Matlab code, twice
    the paper's scale and the same for a word at position j whatever the sentence's length."""
    real = ops.cast(ops.not_equal(ids, 0), "float32")
    j = ops.cast(ops.arange(1, ops.shape(ids)[-1] + 1), "float32")
    if formula == "code":
        width = ops.cast(ops.shape(ids)[-1], "float32")
        centred = j - (width + 1.0) / 2.0
        a = (1.0 - 2.0 * (embed_dim + 1) * centred / (embed_dim * width)) * real
        c = (-4.0 * centred / width) * real
    else:
        length = ops.maximum(ops.sum(real, axis=-1, keepdims=True), 1.0)
        a = (1.0 - j / length) * real
        c = (1.0 - 2.0 * j / length) * real
    one_hot = ops.one_hot(ids, vocab_size)
    return ops.einsum("...w,...wv->...v", a, one_hot), ops.einsum("...w,...wv->...v", c, one_hot)


def _masked_softmax(scores, valid, softmax_slots: int = 0):
    """Softmax over the last axis of ``scores`` restricted to ``valid`` (float 0/1) slots; all-empty rows give 0.

    With ``softmax_slots`` S > 0 the softmax spans S slots: a story of n < S statements leaves S - n empty slots that
    score 0 and take their share of the weight (one extra column scoring log(S - n)), so a read can return little."""
    scores = ops.where(valid > 0, scores, _NEG)
    if not softmax_slots:
        return ops.softmax(scores, axis=-1) * valid
    empty = ops.maximum(float(softmax_slots) - ops.sum(valid, axis=-1, keepdims=True), 0.0)
    sink = ops.where(empty > 0, ops.log(ops.maximum(empty, 1.0)), _NEG) + ops.zeros_like(scores[..., :1])
    return ops.softmax(ops.concatenate([scores, sink], axis=-1), axis=-1)[..., :-1] * valid


class _Members(keras.layers.Layer):
    """Base: ``members`` copies of every weight, stacked at call time (weights of member m are named ``m{m}_...``)."""

    def __init__(self, members: int = 1, **kwargs):
        super().__init__(**kwargs)
        if members < 1:
            raise ValueError(f"members must be at least 1, got {members}")
        self.members = members
        # A plain dict (kept out of Keras' attribute tracking; add_weight already tracks the variables).
        object.__setattr__(self, "_weights_by_name", {})

    def _add(self, name: str, shape, initializer):
        """One weight per member; ``initializer`` is a factory, called per member (a reused unseeded Keras
        initializer would give every member the same values)."""
        self._weights_by_name[name] = [
            self.add_weight(name=f"m{m}_{name}", shape=shape, initializer=initializer()) for m in range(self.members)]

    def _stack(self, name: str):
        parts = [ops.expand_dims(p, 0) for p in self._weights_by_name[name]]
        return parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=0)

    def member_weights(self, member: int) -> dict:
        """Member ``member``'s weights as numpy arrays, by name."""
        return {name: ops.convert_to_numpy(parts[member]) for name, parts in self._weights_by_name.items()}

    def set_member_weights(self, member: int, weights: dict) -> None:
        for name, value in weights.items():
            self._weights_by_name[name][member].assign(value)

    def _outputs(self, logits, attention):
        """[members, batch, answers] logits and [members, batch, hops, slots] weights → the layer's outputs."""
        probs = ops.softmax(logits, axis=-1)
        if self.members == 1:
            return probs[0], attention[0]
        return ops.transpose(probs, (1, 0, 2)), ops.transpose(attention, (1, 0, 2, 3))

    def compute_output_shape(self, input_shape):
        story = input_shape[0]
        if self.members == 1:
            return (story[0], len(self.answer_ids)), (story[0], self.hops, story[1])
        return (story[0], self.members, len(self.answer_ids)), (story[0], self.members, self.hops, story[1])


@keras.saving.register_keras_serializable(package="rnn_toolkit")
class MemN2N(_Members):
    """End-To-End Memory Network layer: ``[story [batch, slots, words], question [batch, words]]`` int ids →
    ``(answer probabilities [batch, answers], attention [batch, hops, slots])`` (with ``members`` > 1 a members
    axis after the batch).

    Args:
      vocab_size: word ids run from 0 (padding) to ``vocab_size - 1``.
      answer_ids: the word ids that can be answers, in output order (the output layer is C^K at those rows).
      memory_size: most slots (the temporal encoding's length).
      embed_dim: d.
      hops: K, the number of attention reads.
      position_encoding: PE bags (else plain bags of words).
      position_formula: ``paper`` or ``code`` (the authors' Matlab code), see :func:`_position_bags`.
      temporal: add the learned temporal encoding T_A / T_C.
      init_std: weights start from N(0, init_std).
      members: independent models side by side.
      softmax_slots: S > 0: the attention softmax spans S slots, the empty ones scoring 0, as in the authors'
        code (a fixed memory of S = min(50, longest training story) slots, empty ones zero vectors); a short story
        can then put weight on nothing. 0: empty slots are masked out.
    """

    def __init__(self, vocab_size: int, answer_ids, memory_size: int, embed_dim: int = 20, hops: int = 3,
                 position_encoding: bool = True, temporal: bool = True, init_std: float = 0.1, members: int = 1,
                 position_formula: str = "paper", softmax_slots: int = 0, **kwargs):
        super().__init__(members, **kwargs)
        if softmax_slots < 0:
            raise ValueError(f"softmax_slots must not be negative, got {softmax_slots}")
        self.softmax_slots = int(softmax_slots)
        self.vocab_size, self.answer_ids, self.memory_size = vocab_size, [int(i) for i in answer_ids], memory_size
        self.embed_dim, self.hops, self.init_std = embed_dim, hops, init_std
        self.position_encoding, self.temporal = position_encoding, temporal
        if position_formula not in POSITION_FORMULAS:
            raise ValueError(f"position_formula must be one of {', '.join(POSITION_FORMULAS)}, got {position_formula!r}")
        self.position_formula = position_formula

    def build(self, input_shape):
        init = lambda: keras.initializers.RandomNormal(stddev=self.init_std)  # noqa: E731
        for k in range(self.hops + 1):  # A^1 (= B), C^1 (= A^2), ..., C^K (= W^T)
            self._add(f"embedding_{k}", (self.vocab_size, self.embed_dim), init)
            if self.temporal:
                self._add(f"temporal_{k}", (self.memory_size, self.embed_dim), init)
        # 1: attention softmax on; 0: linear start (no softmax). Not trained; exported models have 1.
        self.softmax_gate = self.add_weight(name="softmax_gate", shape=(), initializer="ones", trainable=False)

    def _encode(self, bags, table, temporal=None):
        """Bags [batch, (slots,) vocab] x tables [members, vocab, d] → [members, batch, (slots,) d]."""
        a, c = bags
        out = ops.einsum("b...v,nvd->nb...d", a, table)
        if self.position_encoding:
            k = ops.cast(ops.arange(1, self.embed_dim + 1), "float32") / self.embed_dim
            out = out - k * ops.einsum("b...v,nvd->nb...d", c, table)
        if temporal is not None:
            slots = ops.shape(a)[1]
            out = out + ops.expand_dims(temporal[:, :slots], 1)
        return out

    def _bags(self, ids):
        if self.position_encoding:
            return _position_bags(ids, self.vocab_size, self.position_formula, self.embed_dim)
        real = ops.cast(ops.not_equal(ids, 0), "float32")
        bag = ops.einsum("...w,...wv->...v", real, ops.one_hot(ids, self.vocab_size))
        return bag, bag

    def call(self, inputs):
        story, question = inputs
        story, question = ops.cast(story, "int32"), ops.cast(question, "int32")
        valid = ops.cast(ops.any(ops.not_equal(story, 0), axis=-1), "float32")  # [batch, slots]
        story_bags, question_bags = self._bags(story), self._bags(question)
        tables = [self._stack(f"embedding_{k}") for k in range(self.hops + 1)]
        times = [self._stack(f"temporal_{k}") if self.temporal else None for k in range(self.hops + 1)]
        memories = [self._encode(story_bags, tables[k], times[k]) for k in range(self.hops + 1)]
        u = self._encode(question_bags, tables[0])  # [members, batch, d]
        gate = self.softmax_gate
        weights = []
        for k in range(self.hops):
            scores = ops.einsum("nbd,nbsd->nbs", u, memories[k])
            p = gate * _masked_softmax(scores, valid, self.softmax_slots) + (1.0 - gate) * scores * valid
            weights.append(p)
            u = u + ops.einsum("nbs,nbsd->nbd", p, memories[k + 1])
        answers = ops.take(tables[self.hops], ops.convert_to_tensor(self.answer_ids, "int32"), axis=1)
        logits = ops.einsum("nbd,nad->nba", u, answers)
        return self._outputs(logits, ops.stack(weights, axis=2))

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "answer_ids": self.answer_ids,
                "memory_size": self.memory_size, "embed_dim": self.embed_dim, "hops": self.hops,
                "position_encoding": self.position_encoding, "temporal": self.temporal, "init_std": self.init_std,
                "members": self.members, "position_formula": self.position_formula,
                "softmax_slots": self.softmax_slots}


def _gru_step(x, h, w, u, b):
    """One GRU step for all members: x [n, B, e], h [n, B, h]; w [n, e, 3h], u [n, h, 3h], b [n, 2, 3h]
    (Keras' reset_after layout: gates z, r, candidate)."""
    units = ops.shape(h)[-1]
    gx = ops.einsum("nbe,neg->nbg", x, w) + ops.expand_dims(b[:, 0], 1)
    gh = ops.einsum("nbh,nhg->nbg", h, u) + ops.expand_dims(b[:, 1], 1)
    z = ops.sigmoid(gx[..., :units] + gh[..., :units])
    r = ops.sigmoid(gx[..., units:2 * units] + gh[..., units:2 * units])
    candidate = ops.tanh(gx[..., 2 * units:] + r * gh[..., 2 * units:])
    return z * h + (1.0 - z) * candidate


@keras.saving.register_keras_serializable(package="rnn_toolkit")
class RecurrentReader(_Members):
    """Attention-based recurrent reader: same inputs and outputs as :class:`MemN2N`.

    A GRU (``units``) runs over the words of each sentence and of the question (shared weights; padded words leave
    the state as it was); its last states are the sentence memories (plus a temporal encoding) and the question
    vector q. Each hop attends with score_i = v · tanh(W [m_i * u; |m_i - u|] + b), reads o = Σ p_i m_i and
    updates the controller u ← GRUCell(o, u); the answer is softmax(V [u; q]).

    Args:
      vocab_size, answer_ids, memory_size, hops, members: as :class:`MemN2N`.
      sentence_len: words per sentence and per question (a static size: the GRU is unrolled over it).
      embed_dim: word embedding width.
      units: GRU and memory width.
      attention_units: width of the attention MLP.
    """

    def __init__(self, vocab_size: int, answer_ids, memory_size: int, sentence_len: int, embed_dim: int = 32,
                 units: int = 64, attention_units: int = 32, hops: int = 2, members: int = 1, **kwargs):
        super().__init__(members, **kwargs)
        self.vocab_size, self.answer_ids, self.memory_size = vocab_size, [int(i) for i in answer_ids], memory_size
        self.sentence_len, self.embed_dim, self.units = sentence_len, embed_dim, units
        self.attention_units, self.hops = attention_units, hops

    def build(self, input_shape):
        glorot, ortho, zeros = keras.initializers.GlorotUniform, keras.initializers.Orthogonal, keras.initializers.Zeros
        small = lambda: keras.initializers.RandomNormal(stddev=0.1)  # noqa: E731
        e, h, a = self.embed_dim, self.units, self.attention_units
        self._add("embedding", (self.vocab_size, e), lambda: keras.initializers.RandomUniform(-0.05, 0.05))
        self._add("temporal", (self.memory_size, h), small)
        self._add("encoder_kernel", (e, 3 * h), glorot)
        self._add("encoder_recurrent", (h, 3 * h), ortho)
        self._add("encoder_bias", (2, 3 * h), zeros)
        self._add("attention_kernel", (2 * h, a), glorot)
        self._add("attention_bias", (a,), zeros)
        self._add("attention_score", (a,), small)
        self._add("controller_kernel", (h, 3 * h), glorot)
        self._add("controller_recurrent", (h, 3 * h), ortho)
        self._add("controller_bias", (2, 3 * h), zeros)
        self._add("output_kernel", (2 * h, len(self.answer_ids)), glorot)
        self._add("output_bias", (len(self.answer_ids),), zeros)

    def _encode(self, ids, params):
        """ids [batch, rows, words] → last GRU states [members, batch, rows, units]."""
        batch, rows = ops.shape(ids)[0], ops.shape(ids)[1]
        flat = ops.reshape(ids, (-1, self.sentence_len))
        x = ops.take(params["embedding"], flat, axis=1)  # [members, batch*rows, words, e]
        real = ops.cast(ops.not_equal(flat, 0), "float32")
        h = ops.zeros((self.members, ops.shape(flat)[0], self.units))
        for t in range(self.sentence_len):
            new = _gru_step(x[:, :, t], h, params["encoder_kernel"], params["encoder_recurrent"], params["encoder_bias"])
            keep = ops.expand_dims(real[:, t : t + 1], 0)
            h = keep * new + (1.0 - keep) * h
        return ops.reshape(h, (self.members, batch, rows, self.units))

    def call(self, inputs):
        story, question = inputs
        story, question = ops.cast(story, "int32"), ops.cast(question, "int32")
        params = {name: self._stack(name) for name in self._weights_by_name}
        valid = ops.cast(ops.any(ops.not_equal(story, 0), axis=-1), "float32")  # [batch, slots]
        slots = ops.shape(story)[1]
        memory = self._encode(story, params) + ops.expand_dims(params["temporal"][:, :slots], 1)
        q = self._encode(ops.expand_dims(question, 1), params)[:, :, 0]  # [members, batch, units]
        u, weights = q, []
        for _ in range(self.hops):
            uu = ops.expand_dims(u, 2)
            features = ops.concatenate([memory * uu, ops.abs(memory - uu)], axis=-1)
            hidden = ops.tanh(ops.einsum("nbsf,nfa->nbsa", features, params["attention_kernel"])
                              + params["attention_bias"][:, None, None, :])
            scores = ops.einsum("nbsa,na->nbs", hidden, params["attention_score"])
            p = _masked_softmax(scores, valid)
            weights.append(p)
            read = ops.einsum("nbs,nbsh->nbh", p, memory)
            u = _gru_step(read, u, params["controller_kernel"], params["controller_recurrent"],
                          params["controller_bias"])
        logits = ops.einsum("nbf,nfa->nba", ops.concatenate([u, q], axis=-1), params["output_kernel"])
        logits = logits + ops.expand_dims(params["output_bias"], 1)
        return self._outputs(logits, ops.stack(weights, axis=2))

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "answer_ids": self.answer_ids,
                "memory_size": self.memory_size, "sentence_len": self.sentence_len, "embed_dim": self.embed_dim,
                "units": self.units, "attention_units": self.attention_units, "hops": self.hops,
                "members": self.members}


_LAYERS = {"memn2n": MemN2N, "reader": RecurrentReader}


def build_reading_model(kind: str, *, sentence_len: int, members: int = 1, **sizes) -> keras.Model:
    """Builds a reading-comprehension model.

    Args:
      kind: ``memn2n`` or ``reader``.
      sentence_len: words per sentence / question (inputs are [batch, slots, sentence_len] and
        [batch, sentence_len] int32, 0 = padding).
      members: independent models side by side (outputs then get a members axis after the batch).
      **sizes: the layer's arguments (vocab_size, answer_ids, memory_size, hops, embed_dim, ...).

    Returns:
      A model from ``{"story", "question"}`` to ``{"answer_probs": [batch, answers], "attention": [batch, hops,
      slots]}``: the answer distribution and each hop's attention weight on each memory slot (slot 0 = the most
      recent sentence).

    Raises:
      ValueError: unknown ``kind``.
    """
    if kind not in _LAYERS:
        raise ValueError(f"unknown model {kind!r}; choose one of {', '.join(MODELS)}")
    if kind == "reader":
        sizes["sentence_len"] = sentence_len
    story = keras.Input(shape=(None, sentence_len), dtype="int32", name=STORY)
    question = keras.Input(shape=(sentence_len,), dtype="int32", name=QUESTION)
    probs, attention = _LAYERS[kind](members=members, name=kind, **sizes)([story, question])
    return keras.Model({STORY: story, QUESTION: question}, {OUTPUT: probs, ATTENTION: attention}, name=f"{kind}_qa")


def memory_layer(model: keras.Model) -> _Members:
    """The MemN2N / RecurrentReader layer of a model built by :func:`build_reading_model`."""
    return next(layer for layer in model.layers if isinstance(layer, _Members))


def set_linear_start(model: keras.Model, on: bool) -> None:
    """Linear start (MemN2N): ``on`` removes the attention softmax; off puts it back."""
    layer = memory_layer(model)
    if hasattr(layer, "softmax_gate"):
        layer.softmax_gate.assign(0.0 if on else 1.0)


def extract_member(model: keras.Model, member: int) -> keras.Model:
    """A one-member model holding member ``member``'s weights of a multi-member ``model``."""
    layer = memory_layer(model)
    config = {k: v for k, v in layer.get_config().items() if k in _SIZE_KEYS}
    kind = "memn2n" if isinstance(layer, MemN2N) else "reader"
    sentence_len = model.input[QUESTION].shape[-1]
    single = build_reading_model(kind, sentence_len=sentence_len, **config)
    memory_layer(single).set_member_weights(0, layer.member_weights(member))
    return single


_SIZE_KEYS = ("vocab_size", "answer_ids", "memory_size", "embed_dim", "hops", "position_encoding", "temporal",
              "init_std", "units", "attention_units", "position_formula", "softmax_slots")
