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
import sys
import time

import numpy as np

import pipelines  # noqa: F401  (quiet TensorFlow, Keras backend)
from pipelines.common import CommonOptions, _help, check_positive
from pipelines.readers import DataError
from pipelines.task import Context, Task

TASK = "speech_autoencoder"


@dataclasses.dataclass(frozen=True)
class SpeechAutoencoderConfig(CommonOptions):
    data_dir: str | None = _help("FSDD recordings folder; none: built-in", None)
    out: str = _help("run dir to write", "runs/speech_autoencoder")
    epochs: int = _help("most epochs (early stopping may end sooner)", 30)
    cell: str = _help("recurrent cell of encoder and decoder", "gru")
    bidirectional: bool = _help("bidirectional encoder", True)
    layers: int = _help("stacked encoder layers", 1)
    hidden: int = _help("encoder units per direction", 64)
    noise: float = _help("std of Gaussian noise added to the encoder's input frames (denoising); 0: none", 0.3)
    learning_rate: float = 2e-3
    patience: int = _help("epochs without a better dev MAP", 5)
    dtw_distance: str = _help("DTW frame distance", "euclidean")
    synthetic_size: int = _help("built-in training utterances", 1500)

    def check(self) -> None:
        """Raises DataError naming the first setting out of range."""
        super().check()
        check_positive(self, "layers", "hidden", "synthetic_size", "patience")
        if self.noise < 0 or self.learning_rate <= 0:
            raise DataError("--noise must not be negative and --learning-rate must be positive")

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


def training_dataset(feats: list[np.ndarray], config: SpeechAutoencoderConfig, *, seed: int,
                     batch_size: int | None = None, drop_remainder: bool = False):
    """Batches of (noisy features, clean features, frame weights) from the training clips' features: reshuffled
    each epoch, bucketed by length, padded with all-zero frames (weight 0, masked by the encoder); the noise is
    drawn from ``seed`` and the epoch (stateless, ``pipelines.audio.random_seeds``)."""
    import tensorflow as tf

    from pipelines.audio import array_dataset, bucketed_feature_batches, random_seeds
    from pipelines.batching import length_boundaries

    dataset = tf.data.Dataset.zip((array_dataset(feats), tf.data.Dataset.from_tensors(0).repeat(len(feats))))
    batches = bucketed_feature_batches(dataset, batch_size or config.batch_size,
                                       length_boundaries(max(len(f) for f in feats)), seed=seed,
                                       target_padding=0, drop_remainder=drop_remainder)
    noise = config.noise

    def pairs(batch, noise_seed):
        x = batch[0]
        weights = tf.cast(tf.reduce_any(tf.not_equal(x, 0.0), axis=-1), tf.float32)
        if not noise:
            return x, x, weights
        return x + tf.random.stateless_normal(tf.shape(x), noise_seed, stddev=noise) * weights[..., None], x, weights

    return tf.data.Dataset.zip((batches, random_seeds(seed))).map(pairs, num_parallel_calls=tf.data.AUTOTUNE)


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


def retrieval_metrics(encoder, feats, raw, labels, center, config, with_dtw: bool = True) -> dict:
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


# ------------------------------------------------------------------------------------------------------ the task


class SpeechAutoencoder(Task):
    """Reconstruction training of the auto-encoder in one resumable phase, picked by the dev MAP of the encoder's
    vectors; the encoder alone is exported (with the test clips indexed for serving's search).

    Query timings (``dtw_query_seconds``, ``autoencoder_query_seconds``) are reported with the export figures: they
    differ between a run and its resumed twin, whose evaluation must be equal."""

    name = TASK
    config_class = SpeechAutoencoderConfig
    monitor = "map"
    exported: str | None = None  # the run dir of the last export (for the command line's demo)

    def choices(self):
        from models.recurrent import CELL_CHOICES
        from models.speech_autoencoder import CELL_CHOICES as BUILT
        from pipelines.distribute import STRATEGIES
        from serving.dtw import DISTANCES

        # the rows of the one cell table that build_speech_autoencoder builds (its decoder takes rnn, lstm, gru)
        return {"cell": tuple(c for c in CELL_CHOICES if c in BUILT), "dtw_distance": DISTANCES,
                "strategy": STRATEGIES}

    def data(self, config):
        from serving.audio import FeatureSpec

        splits = load_data(config, FeatureSpec())
        for name, utterances in splits.items():
            if len({u.label for u in utterances}) < 2 or len(utterances) < 2:
                raise DataError(f"the {name} split needs at least two utterances of two words, got {len(utterances)}")
        return splits

    def preprocess(self, ctx: Context):
        from serving.audio import FeatureSpec

        spec = FeatureSpec()
        labels = sorted({u.label for u in ctx.splits["train"]})
        print(f"data: {', '.join(f'{k} {len(v)}' for k, v in ctx.splits.items())} utterances; words {labels}")
        feats, raw = {}, {}
        for name, utterances in ctx.splits.items():
            feats[name], raw[name] = feature_lists(utterances, spec)
        ctx.extras.update(labels=labels, feats=feats, raw=raw, center=np.concatenate(raw["train"]).mean(axis=0),
                          gold={name: [u.label for u in utterances] for name, utterances in ctx.splits.items()})
        return spec

    def build_both(self, ctx: Context):
        """``(autoencoder, encoder)``, sharing the encoder's layers."""
        from models.speech_autoencoder import build_speech_autoencoder

        c = ctx.config
        return build_speech_autoencoder(ctx.prep.n_mels, cell=c.cell, units=c.hidden, layers=c.layers,
                                        bidirectional=c.bidirectional)

    def build_model(self, ctx: Context):
        return self.build_both(ctx)[1]

    def compile(self, ctx: Context, model):
        """Compiles the auto-encoder ``model`` (the trainer around the encoder) with the reconstruction loss."""
        from models.speech_autoencoder import RECONSTRUCTION
        from pipelines import training

        c = ctx.config
        model.compile(optimizer=training.optimizer(c.learning_rate, c.clipnorm, c.ema), loss={RECONSTRUCTION: "mse"})
        return model

    def train_data(self, ctx: Context, seed: int):
        from models.speech_autoencoder import RECONSTRUCTION

        data = training_dataset(ctx.extras["feats"]["train"], ctx.config, seed=seed,
                                batch_size=ctx.config.batch_size * ctx.run.replicas,
                                drop_remainder=ctx.run.distributed)
        return data.map(lambda x, y, w: (x, {RECONSTRUCTION: y}, w))

    def validate(self, ctx: Context, model) -> dict:
        from pipelines.retrieval import cosine_similarities, retrieval_scores

        return {"map": retrieval_scores(cosine_similarities(embed(model, ctx.extras["feats"]["valid"])),
                                        ctx.extras["gold"]["valid"])["map"]}

    def fit(self, ctx: Context):
        """Trains the auto-encoder (one phase); validates and returns its encoder."""
        from pipelines import runner

        with ctx.run.strategy.scope():
            autoencoder, encoder = self.build_both(ctx)
            self.compile(ctx, autoencoder)
        ctx.extras["autoencoder"] = autoencoder
        ctx.extras["loop"] = runner.train(
            autoencoder, lambda epoch: ctx.run.epoch_data(lambda seed: self.train_data(ctx, seed), epoch), ctx.run,
            validate=lambda: self.validate(ctx, encoder), monitor=self.monitor)
        return encoder

    def evaluate(self, ctx: Context, model) -> dict:
        e, c = ctx.extras, ctx.config
        dev = retrieval_metrics(model, e["feats"]["valid"], e["raw"]["valid"], e["gold"]["valid"], e["center"], c,
                                with_dtw=False)
        test = retrieval_metrics(model, e["feats"]["test"], e["raw"]["test"], e["gold"]["test"], e["center"], c)
        e["dtw_query_seconds"] = test.pop("dtw_query_seconds")
        return {**test, "dev_map": dev["map"], "dev_mean_pooled_map": dev["mean_pooled_map"],
                "test_utterances": len(ctx.splits["test"]), "embedding_dim": int(model.output["embedding"].shape[-1]),
                "parameters": e["autoencoder"].count_params()}

    def export_spec(self, ctx: Context, model) -> dict:
        return task_metadata(ctx.config, ctx.prep, int(model.output["embedding"].shape[-1]), ctx.extras["labels"])

    def parity_batches(self, ctx: Context) -> list[dict]:
        return parity_batches(ctx.extras["feats"]["valid"])

    def export(self, ctx: Context, model) -> dict:
        """The encoder (``model.keras``, SavedModel, ONNX with parity) and the auto-encoder (``autoencoder.keras``),
        the test clips indexed with the exported model, and the query timings."""
        from export import export_model
        from pipelines.training import float32_model

        encoder = float32_model(lambda: self.build_model(ctx), model)
        encoder.save(ctx.run_dir / "model.keras")
        ctx.extras["autoencoder"].save(ctx.run_dir / "autoencoder.keras")
        meta = export_model(encoder, ctx.run_dir, self.export_spec(ctx, encoder), self.parity_batches(ctx))
        self.exported = ctx.config.out
        return {"onnx_max_abs_diff": max(meta["parity"]["onnx_max_abs_diff"].values()),
                "dtw_query_seconds": ctx.extras["dtw_query_seconds"],
                "autoencoder_query_seconds": write_index(ctx.run_dir, meta, ctx.splits["test"],
                                                         ctx.extras["feats"]["test"])}

    def main(self, argv: list[str] | None = None) -> int:
        """The command line (``runner.main``), then one indexed test clip queries the exported model's index."""
        self.exported = None
        status = super().main(argv)
        if status == 0 and self.exported:
            import serving

            search = serving.load(self.exported)
            key, vector = search.index.keys[0], search.index.vectors[0]
            print(f"\nonnxruntime, {self.exported}/model.onnx, {len(search.index)} indexed test clips; query {key} "
                  f"({search.index.labels[0]}):")
            for match in search.index.search(vector, 5, exclude=key):
                print(f"  {match.key} ({match.label}) {match.score:.3f}")
        return status


SPEECH_AUTOENCODER = SpeechAutoencoder()


def run(config: SpeechAutoencoderConfig) -> dict:
    """Trains, evaluates and exports; returns the metrics. The run dir appears only when all succeeded."""
    return SPEECH_AUTOENCODER.run(config)


def main(argv: list[str] | None = None) -> int:
    return SPEECH_AUTOENCODER.main(argv)


if __name__ == "__main__":
    sys.exit(main())
