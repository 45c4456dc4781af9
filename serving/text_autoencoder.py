"""The text auto-encoder over onnxruntime: ``embed(text)`` → sentence vector, ``decode_vector(vector)`` → text.

The vector is the encoder's final state (``state_h``, then ``state_c`` for an LSTM, concatenated): the decoder's
only view of the sentence, since the auto-encoder has no attention.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from serving.base import deprecated_alias, register
from serving.errors import InputError, ModelError
from serving.seq2seq import Seq2SeqPredictor, detokenize


@register("text_autoencoder")
class TextAutoencoderPredictor(Seq2SeqPredictor):
    """Sentence → vector → the same sentence. ``predict(text)`` returns the reconstruction (a Seq2SeqResult)."""

    task = "text_autoencoder"

    def __init__(self, model, metadata: dict):
        super().__init__(model, metadata)
        if self.attention:
            raise ModelError(f"{model.path}: a text auto-encoder must not attend to the encoder outputs")
        self.widths = [int(self.model.encoder.output_shape(name)[-1]) for name in self.state_names]

    @property
    def dim(self) -> int:
        """The vector's length."""
        return sum(self.widths)

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Sentence vectors [len(texts), dim] (one encoder call).

        Raises:
          InputError: a text is empty, not a string, or longer than ``max_source_len`` tokens.
        """
        if isinstance(texts, (str, bytes)):
            raise InputError("embed_batch takes a list of strings; use embed for one string")
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        tokens = [self.tokens(t, "text" if len(texts) == 1 else f"texts[{i}]") for i, t in enumerate(texts)]
        states = self.encode_ids(self.source_ids(tokens))
        return np.concatenate([states[name] for name in self.state_names], axis=-1)

    def embed(self, text: str) -> np.ndarray:
        """The sentence vector of one text (float32 [dim])."""
        return self.embed_batch([text])[0]

    def decode_vector_batch(self, vectors, beam_size: int | None = None, max_len: int | None = None) -> list[str]:
        """Texts decoded from vectors [n, dim].

        Raises:
          InputError: the vectors do not have ``dim`` values each, or are not finite.
        """
        vectors = np.asarray(vectors, np.float32)
        if vectors.ndim == 1:
            vectors = vectors[None]
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise InputError(f"vectors must be [n, {self.dim}], got shape {list(vectors.shape)}")
        if not np.isfinite(vectors).all():
            raise InputError("vectors hold NaN or infinite values")
        bounds = np.cumsum([0] + self.widths)
        states = {name: vectors[:, bounds[i]: bounds[i + 1]] for i, name in enumerate(self.state_names)}
        hyps = self.decode_states(states, beam_size, max_len)
        return [detokenize(self.output_tokens(h), self.detokenizer) for h in hyps]

    def decode_vector(self, vector, beam_size: int | None = None, max_len: int | None = None) -> str:
        """The text decoded from one vector (float [dim])."""
        return self.decode_vector_batch(np.asarray(vector, np.float32)[None], beam_size, max_len)[0]

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two texts' vectors."""
        u, v = self.embed_batch([a, b])
        return float(u @ v / max(np.linalg.norm(u) * np.linalg.norm(v), 1e-12))

    # old names (a bare encode/decode meant token ids elsewhere): deprecated, they warn and call the new ones
    encode = deprecated_alias("embed", "encode")
    encode_batch = deprecated_alias("embed_batch", "encode_batch")
    decode = deprecated_alias("decode_vector", "decode")
    decode_batch = deprecated_alias("decode_vector_batch", "decode_batch")
