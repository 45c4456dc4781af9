"""Spoken query-by-example search over onnxruntime: a WAV clip in, its utterance vector out, and an index of such
vectors searched by cosine similarity.

    search = serving.load("runs/speech_autoencoder")    # a SpeechSearch; the run's index.npz comes with it
    vector = search.embed("query.wav")                  # the encoder's final state, [dim] float32
    search.add("clip-17", "other.wav", label="three")   # grow the index
    for match in search.search("query.wav", k=5):
        print(match.key, match.label, match.score)

The features are computed in numpy by ``serving.audio`` from the feature spec in the model's metadata (the same
log-mel front end the model was trained on), so no TensorFlow is needed.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from serving import audio
from serving.base import Predictor, Result, register
from serving.errors import InputError, ModelError
from serving.metadata import sha256
from serving.session import OnnxModel

INDEX_FILE = "index.npz"


class StaleIndexWarning(UserWarning):
    """The run dir's index.npz was made by another export of the model, so it was not loaded."""


@dataclasses.dataclass(frozen=True)
class Match:
    """One indexed clip found by a search: its key, its label (or None) and its cosine similarity to the query."""

    key: str
    label: str | None
    score: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class SpeechIndex:
    """Many utterance vectors, each under a key (and an optional label), searched by cosine similarity.

    Vectors are stored L2-normalised, so a search is one matrix-vector product.

    Args:
      dim: the vectors' size.
      model_sha256: the SHA-256 of the ONNX model whose vectors these are (checked when a predictor loads it).
    """

    def __init__(self, dim: int, model_sha256: str | None = None):
        if dim < 1:
            raise ValueError(f"dim must be at least 1, got {dim}")
        self.dim = int(dim)
        self.model_sha256 = model_sha256
        self.keys: list[str] = []
        self.labels: list[str | None] = []
        self._unit = np.zeros((0, self.dim), np.float32)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def vectors(self) -> np.ndarray:
        """The stored (unit-length) vectors, [len(self), dim]."""
        return self._unit

    def _units(self, vectors, what: str) -> np.ndarray:
        vectors = np.asarray(vectors, np.float32)
        if vectors.ndim == 1:
            vectors = vectors[None]
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise InputError(f"{what} must have {self.dim} values each, got shape {vectors.shape}")
        if not np.all(np.isfinite(vectors)):
            raise InputError(f"{what} has NaN or infinite values")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        if (norms == 0).any():
            raise InputError(f"{what} has an all-zero vector (no direction to compare)")
        return vectors / norms

    def add(self, keys: Sequence[str] | str, vectors, labels: Sequence[str | None] | None = None) -> None:
        """Adds vectors [n, dim] (or one [dim]) under ``keys`` (n strings, or one), with optional labels.

        Raises:
          InputError: wrong sizes, NaN or all-zero vectors, or a key already in the index.
        """
        keys = [keys] if isinstance(keys, str) else [str(k) for k in keys]
        units = self._units(vectors, "vectors")
        labels = [None] * len(keys) if labels is None else [None if x is None else str(x) for x in labels]
        if not len(keys) == len(units) == len(labels):
            raise InputError(f"got {len(keys)} keys, {len(units)} vectors and {len(labels)} labels")
        known = set(self.keys)
        for key in keys:
            if key in known:
                raise InputError(f"key {key!r} is already in the index")
            known.add(key)
        self.keys += keys
        self.labels += labels
        self._unit = np.concatenate([self._unit, units.astype(np.float32)])

    def search(self, vector, k: int = 5, exclude: str | None = None) -> list[Match]:
        """The ``k`` stored vectors most cosine-similar to ``vector`` [dim], best first (ties: insertion order).

        Args:
          exclude: a key to leave out (e.g. the query's own, when it is indexed too).

        Raises:
          InputError: ``k`` below 1, or a bad vector.
        """
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        scores = self._unit @ self._units(vector, "the query vector")[0]
        order = [i for i in np.argsort(-scores, kind="stable") if self.keys[i] != exclude][:k]
        return [Match(self.keys[i], self.labels[i], float(scores[i])) for i in order]

    def save(self, path: str | Path) -> None:
        """Writes the index as one .npz file (vectors, and the keys, labels and model checksum as JSON)."""
        info = {"dim": self.dim, "model_sha256": self.model_sha256, "keys": self.keys, "labels": self.labels}
        with open(path, "wb") as f:
            np.savez(f, vectors=self._unit, info=np.frombuffer(json.dumps(info).encode("utf-8"), np.uint8))

    @classmethod
    def load(cls, path: str | Path) -> "SpeechIndex":
        """Reads an index written by :meth:`save`.

        Raises:
          ModelError: the file is missing or not such an index.
        """
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"index file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                vectors = data["vectors"]
                info = json.loads(data["info"].tobytes().decode("utf-8"))
            index = cls(int(info["dim"]), info.get("model_sha256"))
            keys, labels = list(info["keys"]), list(info["labels"])
        except (OSError, ValueError, KeyError, UnicodeDecodeError) as err:
            raise ModelError(f"{path} is not a speech index ({err})") from None
        if vectors.shape != (len(keys), index.dim) or len(labels) != len(keys):
            raise ModelError(f"{path}: {len(keys)} keys and {len(labels)} labels for vectors of shape {vectors.shape}")
        index.keys, index.labels, index._unit = keys, labels, vectors.astype(np.float32)
        return index


@dataclasses.dataclass(frozen=True)
class EmbeddingResult(Result):
    """One clip's utterance vector, and its nearest indexed clips when the predictor has an index.

    Attributes:
      vector: the utterance vector (the encoder's final state).
      seconds: the clip's duration at the model's sample rate.
      frames: feature frames the encoder read.
      matches: the most similar indexed clips, best first (empty without an index).
    """

    vector: list[float]
    seconds: float
    frames: int
    matches: list[Match]

    def __str__(self) -> str:
        lines = [f"  {len(self.vector)}-value vector of {self.seconds:.2f} s ({self.frames} frames)"]
        return "\n".join(lines + [f"  {m.key} ({m.label}) {m.score:.3f}" for m in self.matches])


@register("speech_autoencoder")
class SpeechSearch(Predictor):
    """Embeds clips with an exported speech auto-encoder's encoder and searches an index of them.

    Use :func:`serving.load` on a run dir (its ``index.npz``, if present and made by this model, becomes the
    index) or a single ``.onnx`` file (empty index).

    Audio inputs are what :func:`serving.audio.read_wav` takes: a WAV path, WAV bytes, or ``(samples,
    sample_rate)``; any rate is resampled to the model's.
    """

    task = "speech_autoencoder"
    input_kind = "audio"

    def __init__(self, model: OnnxModel, metadata: dict, index: SpeechIndex | None = None, k: int = 5):
        self.model = model
        self.metadata = metadata
        try:
            self.spec = audio.FeatureSpec.from_dict(metadata["feature_spec"])
            self.input_name = metadata["inputs"]["features"]["name"]
            self.output = metadata["outputs"]["embedding"]["name"]
            self.dim = int(metadata["embedding_dim"])
        except KeyError as err:
            raise ModelError(f"{model.path}: speech auto-encoder metadata lacks {err}") from None
        except (TypeError, ValueError) as err:
            raise ModelError(f"{model.path}: bad feature spec in the metadata ({err})") from None
        if self.input_name not in model.inputs or self.output not in model.outputs:
            raise ModelError(f"{model.path}: metadata names input {self.input_name!r} / output {self.output!r}, "
                             f"not both in the graph")
        self.k = k
        self.index = index if index is not None else self._run_dir_index()
        if self.index.dim != self.dim:
            raise ModelError(f"the index holds {self.index.dim}-value vectors but the model makes {self.dim}")

    def _run_dir_index(self) -> SpeechIndex:
        """The index saved beside the model, if it was made with this very model; else an empty one."""
        path = self.model.path.parent / INDEX_FILE
        digest = sha256(self.model.path)
        if path.is_file():
            index = SpeechIndex.load(path)
            if index.model_sha256 == digest:
                return index
            warnings.warn(f"{path} was made with another export of the model (its vectors may not match); starting "
                          f"with an empty index: rebuild it with add_batch and save_index", StaleIndexWarning,
                          stacklevel=3)
        return SpeechIndex(self.dim, digest)

    def features(self, clip) -> np.ndarray:
        """The model's input features [frames, n_mels] for one clip.

        Raises:
          InputError: unreadable, empty, corrupt, NaN, silent or too long audio (see ``serving.audio``).
        """
        return self._read(clip)[0]

    def _read(self, clip) -> tuple[np.ndarray, float]:
        """(features, seconds at the model's rate) of one clip; a bare float array is taken at the model's rate."""
        if isinstance(clip, np.ndarray):
            clip = (clip, self.spec.sample_rate)
        samples = audio.waveform(clip, self.spec)
        feats = audio.normalize(audio.log_mel(samples, self.spec), self.spec)
        return feats, len(samples) / self.spec.sample_rate

    def _read_all(self, clips: list) -> list[tuple[np.ndarray, float]]:
        out = []
        for i, clip in enumerate(clips):
            try:
                out.append(self._read(clip))
            except InputError as err:
                raise InputError(f"clip {i}: {err}" if len(clips) > 1 else str(err)) from None
        return out

    def embed_batch(self, clips: Sequence, batch_size: int = 32) -> np.ndarray:
        """Utterance vectors [n, dim] of many clips, ``batch_size`` clips (zero-padded to the longest) per
        onnxruntime call.

        Raises:
          InputError: as :meth:`features`, naming the clip's index.
        """
        if isinstance(clips, (str, bytes, tuple, Path)):
            raise InputError("embed_batch takes a list of clips; use embed for one")
        return self.embed_features([f for f, _ in self._read_all(list(clips))], batch_size)

    def embed_features(self, feats: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """Utterance vectors [n, dim] of feature sequences [frames, n_mels] (already computed)."""
        if any(len(f) == 0 for f in feats):
            raise InputError("a feature sequence has no frames")
        out = np.zeros((len(feats), self.dim), np.float32)
        for start in range(0, len(feats), batch_size):
            chunk = feats[start : start + batch_size]
            padded = np.zeros((len(chunk), max(len(f) for f in chunk), self.spec.n_mels), np.float32)
            for row, f in enumerate(chunk):
                padded[row, : len(f)] = f
            out[start : start + len(chunk)] = self.model.run({self.input_name: padded}, [self.output])[self.output]
        return out

    def embed(self, clip) -> np.ndarray:
        """The utterance vector [dim] (float32) of one clip."""
        return self.embed_batch([clip])[0]

    def add(self, key: str, clip, label: str | None = None) -> None:
        """Embeds ``clip`` and adds it to the index under ``key``."""
        self.index.add([key], self.embed(clip)[None], [label])

    def add_batch(self, keys: Sequence[str], clips: Sequence, labels: Sequence[str | None] | None = None) -> None:
        """Embeds many clips and adds them to the index."""
        self.index.add(list(keys), self.embed_batch(clips), labels)

    def search(self, query, k: int = 5) -> list[Match]:
        """The ``k`` indexed clips most similar to the ``query`` clip, best first.

        Raises:
          InputError: bad audio, ``k`` below 1, or an empty index.
        """
        if not len(self.index):
            raise InputError("the index is empty; add clips first (add / add_batch)")
        return self.index.search(self.embed(query), k)

    def save_index(self, path: str | Path) -> None:
        self.index.save(path)

    def predict(self, clip) -> EmbeddingResult:
        """The clip's vector and, with a non-empty index, its ``self.k`` nearest indexed clips."""
        if isinstance(clip, list):
            raise InputError("predict takes one clip; use predict_batch for many")
        return self.predict_batch([clip])[0]

    def predict_batch(self, clips: Sequence, batch_size: int = 32) -> list[EmbeddingResult]:
        """:meth:`predict` for many clips, ``batch_size`` clips per onnxruntime call."""
        if isinstance(clips, (str, bytes, tuple, Path)):
            raise InputError("predict_batch takes a list of clips; use predict for one")
        read = self._read_all(list(clips))
        if not read:
            return []
        vectors = self.embed_features([f for f, _ in read], batch_size)
        return [EmbeddingResult(
            vector=[round(float(v), 6) for v in vector], seconds=round(seconds, 3), frames=len(f),
            matches=self.index.search(vector, self.k) if len(self.index) else [],
        ) for (f, seconds), vector in zip(read, vectors)]


# The name the issue uses for the embedding side of the predictor.
SpeechEmbedder = SpeechSearch
