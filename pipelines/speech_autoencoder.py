"""Speech auto-encoder and spoken query-by-example search: ``python -m pipelines.speech_autoencoder [--data-dir DIR]
[--quick]``.

An RNN encoder reads an utterance's log-mel frames into one vector (its final state) and an RNN decoder rebuilds
the frames from that vector alone (Audio Word2Vec); trained on reconstruction only, with gradient clipping. Each
test utterance then queries all the other test utterances, ranked by the cosine similarity of their vectors; mean
average precision and precision@10 of "same word" are compared with two baselines: mean-pooled log-mel features +
cosine, and DTW on the frame sequences (with its query time). The encoder is exported to ONNX (parity-checked) with
the feature spec in its metadata, and the test utterances are indexed for ``serving``'s search.

Data: built-in synthetic "speech" (in memory) by default, or the Free Spoken Digit Dataset's ``recordings`` folder
given with ``--data-dir`` (split by file index as ../shared/data/SPLITS.md fixes: test 0-4, dev 5-9, train 10-49).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time

import numpy as np

import pipelines  # noqa: F401  (quiet TensorFlow, Keras backend)
from pipelines.config import run_command_line
from pipelines.readers import DataError

TASK = "speech_autoencoder"


@dataclasses.dataclass(frozen=True)
class SpeechAutoencoderConfig:
    data_dir: str | None = dataclasses.field(default=None, metadata={"help": "FSDD recordings folder; none: built-in"})
    out: str = dataclasses.field(default="runs/speech_autoencoder", metadata={"help": "run dir to write"})
    epochs: int = dataclasses.field(default=30, metadata={"help": "most epochs (early stopping may end sooner)"})
    cell: str = dataclasses.field(default="gru", metadata={"help": "recurrent cell of encoder and decoder"})
    bidirectional: bool = dataclasses.field(default=True, metadata={"help": "bidirectional encoder"})
    layers: int = dataclasses.field(default=1, metadata={"help": "stacked encoder layers"})
    hidden: int = dataclasses.field(default=64, metadata={"help": "encoder units per direction"})
    noise: float = dataclasses.field(
        default=0.3, metadata={"help": "std of Gaussian noise added to the encoder's input frames (denoising); 0: none"})
    batch_size: int = 32
    learning_rate: float = 2e-3
    clipnorm: float = dataclasses.field(default=1.0, metadata={"help": "gradient norm clip; 0 disables"})
    patience: int = dataclasses.field(default=5, metadata={"help": "epochs without a better dev MAP"})
    dtw_distance: str = dataclasses.field(default="euclidean", metadata={"help": "DTW frame distance"})
    synthetic_size: int = dataclasses.field(default=1500, metadata={"help": "built-in training utterances"})
    seed: int = 0
    quick: bool = dataclasses.field(default=False, metadata={"help": "seconds-long smoke run"})

    def check(self) -> None:
        """Raises DataError naming the first setting out of range."""
        for name in ("epochs", "layers", "hidden", "batch_size", "synthetic_size", "patience"):
            if getattr(self, name) < 1:
                raise DataError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.noise < 0 or self.learning_rate <= 0 or self.clipnorm < 0:
            raise DataError("--noise must not be negative, --learning-rate must be positive, --clipnorm >= 0")

    def resolved(self) -> "SpeechAutoencoderConfig":
        """The config actually run: ``--quick`` shrinks the model, the data and the epochs."""
        if not self.quick:
            return self
        return dataclasses.replace(self, epochs=min(self.epochs, 3), hidden=min(self.hidden, 16), layers=1,
                                   synthetic_size=min(self.synthetic_size, 300), patience=2)


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One clip: a unique key (e.g. the file name), its label (the word spoken) and float32 mono samples."""

    key: str
    label: str
    wave: np.ndarray


def load_data(config: SpeechAutoencoderConfig, spec) -> dict[str, list[Utterance]]:
    """``{"train", "valid", "test"}`` utterances at ``spec.sample_rate``, labelled by the digit spoken: built-in
    synthetic words (``pipelines.synthetic_speech``; dev and test a fifth of train each, other seeds), or FSDD
    (``pipelines.fsdd``: test file indexes 0-4, dev 5-9, train 10-49).

    Raises:
      DataError: the FSDD folder is missing, empty or unreadable.
    """
    if config.data_dir is None:
        from pipelines.synthetic_speech import words

        sizes = {"train": config.synthetic_size, "valid": max(config.synthetic_size // 5, 20),
                 "test": max(config.synthetic_size // 5, 20)}
        return {name: [Utterance(f"synthetic_{name}_{i}_{symbol}", str(symbol), wave) for i, (wave, symbol, _) in
                       enumerate(words(size, seed=config.seed + offset, sample_rate=spec.sample_rate))]
                for offset, (name, size) in enumerate(sizes.items())}
    from pipelines.fsdd import load_waves, read_splits

    splits = read_splits(config.data_dir)
    return {name: [Utterance(rec.path.name, str(rec.digit), wave)
                   for rec, wave in zip(splits[part], load_waves(splits[part], spec.sample_rate))]
            for name, part in (("train", "train"), ("valid", "dev"), ("test", "test"))}


# --------------------------------------------------------------------------------------------------- features


def feature_lists(utterances: list[Utterance], spec) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each utterance's model features [frames, n_mels] and its log-mel frames before the per-utterance
    normalisation (for the mean-pooled baseline, whose mean over frames the normalisation would set to zero), both
    by the TF front end (``pipelines.audio``) in one tf.data pass, as numpy."""
    import tensorflow as tf

    from pipelines.audio import log_mel, normalize

    lengths = np.array([len(u.wave) for u in utterances], np.int64)
    waves = tf.RaggedTensor.from_row_lengths(np.concatenate([u.wave for u in utterances]).astype(np.float32), lengths)

    def both(wave):
        raw = log_mel(wave, spec)
        return normalize(raw, spec), raw

    dataset = tf.data.Dataset.from_tensor_slices(waves).map(both)
    pairs = [(x.numpy(), raw.numpy()) for x, raw in dataset]
    return [x for x, _ in pairs], [raw for _, raw in pairs]


def training_dataset(utterances: list[Utterance], spec, config: SpeechAutoencoderConfig):
    """Batches of (noisy features, clean features, frame weights): the front end inside tf.data, bucketed by
    length, padded with all-zero frames (weight 0, masked by the encoder)."""
    import tensorflow as tf

    from pipelines.audio import bucketed_feature_batches, feature_dataset
    from pipelines.batching import length_boundaries

    dataset = feature_dataset([u.wave for u in utterances], [[0]] * len(utterances), spec)
    longest = max(spec.num_frames(len(u.wave)) for u in utterances)
    batches = bucketed_feature_batches(dataset, config.batch_size, length_boundaries(longest), seed=config.seed)
    noise, seed = config.noise, config.seed

    def pairs(x, _):
        weights = tf.cast(tf.reduce_any(tf.not_equal(x, 0.0), axis=-1), tf.float32)
        noisy = x + tf.random.normal(tf.shape(x), stddev=noise, seed=seed) * weights[..., None] if noise else x
        return noisy, x, weights

    return batches.map(pairs, num_parallel_calls=tf.data.AUTOTUNE)


def padded(feats: list[np.ndarray]) -> np.ndarray:
    """Right-pads feature sequences with all-zero frames into [n, longest, n_mels] float32."""
    out = np.zeros((len(feats), max(len(f) for f in feats), feats[0].shape[1]), np.float32)
    for row, f in enumerate(feats):
        out[row, : len(f)] = f
    return out


def embed(encoder, feats: list[np.ndarray], batch_size: int = 64) -> np.ndarray:
    """Utterance vectors [n, dim] from the Keras encoder, in input order. Every clip is padded to the longest
    (masked frames change nothing), so the compiled predict function is traced once."""
    from models.speech_autoencoder import OUTPUT

    return np.asarray(encoder.predict(padded(feats), batch_size=batch_size, verbose=0)[OUTPUT])


# ------------------------------------------------------------------------------------------------ evaluation


def mean_pooled(raw: list[np.ndarray], center: np.ndarray) -> np.ndarray:
    """The mean-pooled baseline's vectors: each clip's mean log-mel frame minus ``center`` (the training set's
    mean frame, so that the cosine compares deviations from the average sound)."""
    return np.stack([f.mean(axis=0) for f in raw]) - center


def dtw_similarities(feats: list[np.ndarray], distance: str) -> tuple[np.ndarray, float]:
    """[n, n] negated length-normalised DTW scores (higher: more alike) and the mean seconds per query (one
    query against all the others)."""
    from serving.dtw import dtw_many

    n = len(feats)
    sims = np.full((n, n), -np.inf)
    started = time.perf_counter()
    for q in range(n):
        others = [i for i in range(n) if i != q]
        sims[q, others] = -dtw_many(feats[q], [feats[i] for i in others], distance)
    return sims, (time.perf_counter() - started) / n


def evaluate(encoder, feats, raw, labels, center, config, with_dtw: bool = True) -> dict:
    """MAP and precision@10 of the auto-encoder's vectors and the baselines on one split."""
    from pipelines.retrieval import cosine_similarities, retrieval_scores

    ae = retrieval_scores(cosine_similarities(embed(encoder, feats)), labels)
    pooled = retrieval_scores(cosine_similarities(mean_pooled(raw, center)), labels)
    metrics = {"map": ae["map"], "precision_at_10": ae["precision_at_10"],
               "mean_pooled_map": pooled["map"], "mean_pooled_precision_at_10": pooled["precision_at_10"]}
    if with_dtw:
        dtw_sims, dtw_seconds = dtw_similarities(feats, config.dtw_distance)
        dtw = retrieval_scores(dtw_sims, labels)
        metrics.update(dtw_map=dtw["map"], dtw_precision_at_10=dtw["precision_at_10"], dtw_query_seconds=dtw_seconds)
    return metrics


# ---------------------------------------------------------------------------------------------------- export


def parity_batches(feats: list[np.ndarray], n: int = 3, size: int = 8) -> list[dict]:
    """Real batches of mixed lengths for the export parity check: ``{"features": ..., "lengths": frames}``."""
    batches = []
    for start in range(0, min(len(feats), n * size), size):
        chunk = feats[start : start + size]
        batches.append({"features": padded(chunk), "lengths": np.array([len(f) for f in chunk], np.int32)})
    return batches


def task_metadata(config: SpeechAutoencoderConfig, spec, dim: int, labels: list[str]) -> dict:
    from models.speech_autoencoder import INPUT, OUTPUT

    return {
        "task": TASK,
        "inputs": {INPUT: {"name": INPUT, "dtype": "float32", "shape": ["batch", "time", spec.n_mels],
                           "pad_value": 0.0, "padding": "right, all-zero frames (masked)"}},
        "outputs": {OUTPUT: {"name": OUTPUT, "dtype": "float32", "shape": ["batch", dim]}},
        "sample_rate": spec.sample_rate,
        "feature_spec": spec.to_dict(),
        "embedding_dim": dim,
        "similarity": "cosine",
        "labels": labels,
        "model": {"cell": config.cell, "bidirectional": config.bidirectional, "layers": config.layers,
                  "hidden": config.hidden, "noise": config.noise},
    }


def write_index(run_dir, meta: dict, utterances: list[Utterance], feats: list[np.ndarray]) -> float:
    """Indexes ``utterances`` with the exported model (onnxruntime) into ``run_dir/index.npz``, for serving.

    Returns:
      The mean seconds of one served query from its features: embedding it (onnxruntime, one clip) and ranking
      the index by cosine similarity, timed over every indexed clip as the query.
    """
    from serving.session import OnnxModel
    from serving.speech_search import INDEX_FILE, SpeechSearch

    search = SpeechSearch(OnnxModel(run_dir / "model.onnx", threads=1), meta)
    search.index.add([u.key for u in utterances], search.embed_features(feats), [u.label for u in utterances])
    search.save_index(run_dir / INDEX_FILE)
    started = time.perf_counter()
    for u, f in zip(utterances, feats):
        search.index.search(search.embed_features([f])[0], 10, exclude=u.key)
    return (time.perf_counter() - started) / len(feats)


# ------------------------------------------------------------------------------------------------------- run


def run(config: SpeechAutoencoderConfig) -> dict:
    """Trains, evaluates and exports; returns the metrics. The run dir appears only when all succeeded."""
    from export import export_model
    from models.speech_autoencoder import RECONSTRUCTION, build_speech_autoencoder
    from pipelines import training
    from pipelines.evaluation import ValidationScore
    from pipelines.retrieval import cosine_similarities, retrieval_scores
    from serving.audio import FeatureSpec

    config.check()
    config = config.resolved()
    spec = FeatureSpec()
    splits = load_data(config, spec)
    for name, utterances in splits.items():
        if len({u.label for u in utterances}) < 2 or len(utterances) < 2:
            raise DataError(f"the {name} split needs at least two utterances of two words, got {len(utterances)}")
    started = time.time()
    with training.task_run(config, TASK) as run_dir:
        labels = sorted({u.label for u in splits["train"]})
        print(f"data: {', '.join(f'{k} {len(v)}' for k, v in splits.items())} utterances; words {labels}")
        feats, raw = {}, {}
        for name, utterances in splits.items():
            feats[name], raw[name] = feature_lists(utterances, spec)
        center = np.concatenate(raw["train"]).mean(axis=0)
        gold = {name: [u.label for u in utterances] for name, utterances in splits.items()}

        autoencoder, encoder = build_speech_autoencoder(spec.n_mels, cell=config.cell, units=config.hidden,
                                                        layers=config.layers, bidirectional=config.bidirectional)
        autoencoder.compile(optimizer=training.optimizer(config.learning_rate, config.clipnorm),
                            loss={RECONSTRUCTION: "mse"})
        dataset = training_dataset(splits["train"], spec, config).map(lambda x, y, w: (x, {RECONSTRUCTION: y}, w))
        validation = ValidationScore("map", lambda: retrieval_scores(
            cosine_similarities(embed(encoder, feats["valid"])), gold["valid"])["map"])
        autoencoder.fit(dataset, epochs=config.epochs, shuffle=False,
                        verbose=1 if sys.stdout.isatty() and not config.quick else 2,
                        callbacks=training.callbacks(run_dir, "val_map", config.patience, first=[validation]))
        autoencoder.load_weights(run_dir / "checkpoints" / "best.weights.h5")
        train_seconds = time.time() - started

        dev = evaluate(encoder, feats["valid"], raw["valid"], gold["valid"], center, config, with_dtw=False)
        metrics = {**evaluate(encoder, feats["test"], raw["test"], gold["test"], center, config),
                   "dev_map": dev["map"], "dev_mean_pooled_map": dev["mean_pooled_map"],
                   "test_utterances": len(splits["test"]), "embedding_dim": int(encoder.output["embedding"].shape[-1]),
                   "parameters": autoencoder.count_params(), "train_seconds": round(train_seconds, 1)}
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        encoder.save(run_dir / "model.keras")
        autoencoder.save(run_dir / "autoencoder.keras")
        meta = export_model(encoder, run_dir, task_metadata(config, spec, metrics["embedding_dim"], labels),
                            parity_batches(feats["valid"]))
        metrics["onnx_max_abs_diff"] = max(meta["parity"]["onnx_max_abs_diff"].values())
        metrics["autoencoder_query_seconds"] = write_index(run_dir, meta, splits["test"], feats["test"])
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def main(argv: list[str] | None = None) -> int:
    from models.speech_autoencoder import CELL_CHOICES
    from serving.dtw import DISTANCES

    config, metrics = run_command_line(
        SpeechAutoencoderConfig, run, argv, module_doc=__doc__, prog="python -m pipelines.speech_autoencoder",
        choices={"cell": CELL_CHOICES, "dtw_distance": DISTANCES})
    if metrics is None:
        return 2

    import serving

    search = serving.load(config.out)
    key, vector = search.index.keys[0], search.index.vectors[0]
    matches = search.index.search(vector, 5, exclude=key)
    print(f"\nonnxruntime, {config.out}/model.onnx, {len(search.index)} indexed test clips; query {key} "
          f"({search.index.labels[0]}):")
    for match in matches:
        print(f"  {match.key} ({match.label}) {match.score:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
