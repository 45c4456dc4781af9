"""Speech auto-encoder and spoken query-by-example search: ``python -m pipelines.speech_autoencoder [--data-dir DIR]
[--objective reconstruct|contrastive|both] [--test-speakers NAME[,NAME]] [--quick]``.

An RNN encoder reads an utterance's log-mel frames into one vector (its final state), trained without labels:
``reconstruct``, an RNN decoder rebuilds the frames from that vector alone (Audio Word2Vec); ``contrastive``, the
vectors of two augmented views of each clip (tempo, frequency warp, crops, masks, noise) must find each other among
the batch's other clips (NT-Xent); ``both``, the two losses summed. Each test utterance then queries all the other
test utterances, ranked by the cosine similarity of their vectors; mean average precision and precision@10 of "same
word" are compared with two baselines: mean-pooled log-mel features + cosine, and DTW on the frame sequences (with
its query time). The encoder is exported to ONNX (parity-checked) with the feature spec in its metadata, and the
test utterances are indexed for ``serving``'s search.

Data: built-in synthetic "speech" (in memory) by default, or the Free Spoken Digit Dataset's ``recordings`` folder
given with ``--data-dir`` (split by file index as ../shared/data/SPLITS.md fixes: test 0-4, dev 5-9, train 10-49).
``--test-speakers`` leaves speakers out: they are not in train or dev, and only their test clips query the index of
every speaker's test clips.
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
    objective: str = _help("training objective (no labels): reconstruct, contrastive (NT-Xent between two augmented "
                           "views of each clip) or both", "reconstruct")
    temperature: float = _help("NT-Xent temperature (contrastive, both)", 0.1)
    reconstruction_weight: float = _help("weight of the reconstruction loss beside the contrastive one (both)", 1.0)
    tempo: float = _help("views: most tempo change, frames resampled by a factor in [1/(1+x), 1+x]", 0.25)
    warp: float = _help("views: most vocal-tract-length warp of the mel bins, a factor in [1-x, 1+x]", 0.15)
    crop: float = _help("views: most of the clip cut off each end (a fraction of its frames)", 0.1)
    freq_mask: int = _help("views: SpecAugment band of up to N-1 mel bins set to 0; 0: none", 8)
    time_mask: int = _help("views: SpecAugment span of up to N-1 frames set to 0; 0: none", 8)
    pairs: int = _help("contrastive positives: each clip's second view is of the clip itself or of one of its N "
                       "nearest training clips by DTW (mined without labels); 0: the clip itself", 0)
    voice_exclude: float = _help("--pairs: mine each clip's partners outside its X (a fraction of the training "
                                 "clips) nearest by voice (mean raw log-mel), so that more are other speakers; "
                                 "0: anywhere", 0.0)
    test_speakers: str | None = _help("leave speakers out: NAME[,NAME] kept out of train and dev; only their test "
                                      "clips query the index of every speaker's test clips (FSDD names, or "
                                      "voice0-voice4 built in)", None)

    def check(self) -> None:
        """Raises DataError naming the first setting out of range."""
        super().check()
        check_positive(self, "layers", "hidden", "synthetic_size", "patience")
        if self.noise < 0 or self.learning_rate <= 0:
            raise DataError("--noise must not be negative and --learning-rate must be positive")
        if self.temperature <= 0 or self.reconstruction_weight < 0:
            raise DataError("--temperature must be positive and --reconstruction-weight not negative")
        if self.tempo < 0 or not 0 <= self.warp < 0.5 or not 0 <= self.crop < 0.5:
            raise DataError("--tempo must not be negative, --warp and --crop must be in [0, 0.5)")
        if self.freq_mask < 0 or self.time_mask < 0 or self.pairs < 0:
            raise DataError("--freq-mask, --time-mask and --pairs must not be negative")
        if not 0 <= self.voice_exclude < 1:
            raise DataError(f"--voice-exclude must be in [0, 1), got {self.voice_exclude}")
        if self.test_speakers is not None and not held_out_speakers(self):
            raise DataError("--test-speakers names no speaker")

    def resolved(self) -> "SpeechAutoencoderConfig":
        """The config actually run: ``--quick`` shrinks the model, the data and the epochs."""
        if not self.quick:
            return self
        return dataclasses.replace(self, epochs=min(self.epochs, 3), hidden=min(self.hidden, 16), layers=1,
                                   synthetic_size=min(self.synthetic_size, 300), patience=2)


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One clip: a unique key (e.g. the file name), its label (the word spoken), float32 mono samples and who
    speaks."""

    key: str
    label: str
    wave: np.ndarray
    speaker: str = ""


SYNTHETIC_VOICES = 5  # pipelines.synthetic_speech.words' fixed voices, named voice0 ... voice4


def held_out_speakers(config: SpeechAutoencoderConfig) -> list[str]:
    """The sorted names of ``--test-speakers`` (comma-separated); [] without it."""
    return sorted({name.strip() for name in (config.test_speakers or "").split(",") if name.strip()})


def load_data(config: SpeechAutoencoderConfig, spec) -> dict[str, list[Utterance]]:
    """``{"train", "valid", "test"}`` utterances at ``spec.sample_rate``, labelled by the digit spoken: built-in
    synthetic words (``pipelines.synthetic_speech``; dev and test a fifth of train each, other seeds; speakers
    ``voice0``-``voice4``), or FSDD (``pipelines.fsdd``: test file indexes 0-4, dev 5-9, train 10-49).

    With ``--test-speakers`` the named speakers' clips are left out of train and dev (FSDD: ``read_splits(...,
    test_speakers)``'s train and dev), and test stays the usual test split of every speaker: the index that their
    clips query.

    Raises:
      DataError: the FSDD folder is missing, empty or unreadable; an unknown speaker, every speaker held out, or
        a held-out speaker with no test clip.
    """
    held_out = held_out_speakers(config)
    if config.data_dir is None:
        from pipelines.synthetic_speech import words

        names = [f"voice{i}" for i in range(SYNTHETIC_VOICES)]
        unknown = [name for name in held_out if name not in names]
        if unknown or len(held_out) == len(names):
            raise DataError(f"--test-speakers {','.join(held_out)}: the built-in speakers are {', '.join(names)}; "
                            f"name some of them, not all")
        sizes = {"train": config.synthetic_size, "valid": max(config.synthetic_size // 5, 20),
                 "test": max(config.synthetic_size // 5, 20)}
        splits = {name: [Utterance(f"synthetic_{name}_{i}_{symbol}", str(symbol), wave, names[who])
                         for i, (wave, symbol, who) in
                         enumerate(words(size, seed=config.seed + offset, sample_rate=spec.sample_rate))]
                  for offset, (name, size) in enumerate(sizes.items())}
        for name in ("train", "valid"):
            splits[name] = [u for u in splits[name] if u.speaker not in held_out]
    else:
        from pipelines.fsdd import load_waves, read_splits

        recordings = read_splits(config.data_dir)
        parts = {"train": recordings["train"], "valid": recordings["dev"], "test": recordings["test"]}
        if held_out:
            loso = read_splits(config.data_dir, test_speakers=held_out)
            parts.update(train=loso["train"], valid=loso["dev"])
        splits = {name: [Utterance(rec.path.name, str(rec.digit), wave, rec.speaker)
                         for rec, wave in zip(recs, load_waves(recs, spec.sample_rate))]
                  for name, recs in parts.items()}
    missing = sorted(set(held_out) - {u.speaker for u in splits["test"]})
    if missing:
        raise DataError(f"no test clip of {', '.join(missing)} to query with")
    return splits


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


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """How one contrastive view is drawn from a clip's features (``--tempo``, ``--warp``, ``--crop``,
    ``--noise``, ``--freq-mask``, ``--time-mask``); see :func:`augment_view`."""

    tempo: float = 0.25
    warp: float = 0.15
    crop: float = 0.1
    noise: float = 0.3
    freq_mask: int = 8
    time_mask: int = 8

    @classmethod
    def of(cls, config: SpeechAutoencoderConfig) -> "Augmentation":
        return cls(config.tempo, config.warp, config.crop, config.noise, config.freq_mask, config.time_mask)


def resample_frames(feats, start, stop, frames):
    """``frames`` frames [frames, n_mels] read at evenly spaced (fractional) positions from ``start`` to ``stop``
    of ``feats`` [time, n_mels], each interpolated linearly between its two neighbouring frames: a crop and a tempo
    change in one."""
    import tensorflow as tf

    last = tf.cast(tf.shape(feats)[0] - 1, tf.float32)
    positions = tf.clip_by_value(tf.linspace(tf.cast(start, tf.float32), tf.cast(stop, tf.float32), frames), 0.0, last)
    low = tf.floor(positions)
    frac = (positions - low)[:, None]
    low = tf.cast(low, tf.int32)
    high = tf.minimum(low + 1, tf.cast(last, tf.int32))
    return tf.gather(feats, low) * (1.0 - frac) + tf.gather(feats, high) * frac


def warp_bins(feats, alpha, knee: float = 0.8):
    """Vocal-tract-length style warp of the mel axis of ``feats`` [time, n_mels]: output band ``i`` reads band
    ``i / alpha`` (interpolated), so ``alpha`` > 1 moves spectral peaks up (a shorter vocal tract), < 1 down; above
    ``knee`` x the top band x min(alpha, 1) the map turns into the straight line that keeps the top band in place
    (Jaitly and Hinton's piecewise-linear warp, on mel bands). ``alpha`` 1 is the identity."""
    import tensorflow as tf

    top = float(feats.shape[-1] - 1)
    alpha = tf.cast(alpha, tf.float32)
    bands = tf.range(feats.shape[-1], dtype=tf.float32)
    edge = knee * top * tf.minimum(alpha, 1.0)
    source = tf.where(bands <= edge, bands / alpha, edge / alpha + (bands - edge) * (top - edge / alpha) / (top - edge))
    source = tf.clip_by_value(source, 0.0, top)
    low = tf.floor(source)
    frac = source - low
    low = tf.cast(low, tf.int32)
    high = tf.minimum(low + 1, int(top))
    return tf.gather(feats, low, axis=1) * (1.0 - frac) + tf.gather(feats, high, axis=1) * frac


def augment_view(feats, aug: Augmentation, seed, spec):
    """One random view [frames', n_mels] of a clip's normalised features [frames, n_mels], drawn from ``seed`` (a
    [2] integer tensor) only: up to ``crop`` of the frames cut off each end, the tempo changed by a factor in
    [1/(1+tempo), 1+tempo] (frames resampled: at least 2 stay), the mel bands warped by a factor in [1-warp,
    1+warp] (:func:`warp_bins`), the per-utterance normalisation redone, Gaussian noise of std ``noise``, then one
    SpecAugment band and span set to 0 (``pipelines.audio.spec_augment``)."""
    import tensorflow as tf

    from pipelines.audio import normalize, spec_augment

    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 6)
    length = tf.cast(tf.shape(feats)[0], tf.float32)

    def uniform(i, low, high):
        return tf.random.stateless_uniform((), seeds[i], low, high) if high > low else tf.constant(low, tf.float32)

    cut = aug.crop * length
    start = uniform(0, 0.0, 1.0) * cut
    stop = tf.maximum(length - 1.0 - uniform(1, 0.0, 1.0) * cut, start)
    rate = tf.exp(uniform(2, -float(np.log1p(aug.tempo)), float(np.log1p(aug.tempo))))
    frames = tf.maximum(tf.cast(tf.round((stop - start + 1.0) / rate), tf.int32), 2)
    x = resample_frames(feats, start, stop, frames)
    x = warp_bins(x, uniform(3, 1.0 - aug.warp, 1.0 + aug.warp))
    x = normalize(x, spec)
    if aug.noise:
        x = x + tf.random.stateless_normal(tf.shape(x), seeds[4], stddev=aug.noise)
    if aug.freq_mask or aug.time_mask:
        x = spec_augment(x, aug.freq_mask, aug.time_mask, masks=1, seed=seeds[5])
    return x


def voice_signatures(raw: list[np.ndarray]) -> np.ndarray:
    """[n, n_mels]: each clip's mean raw log-mel frame (before the per-utterance normalisation: the voice and the
    channel more than the word), standardised over the clips."""
    means = np.stack([f.mean(axis=0) for f in raw])
    return (means - means.mean(axis=0)) / np.maximum(means.std(axis=0), 1e-6)


def dtw_neighbours(feats: list[np.ndarray], k: int, distance: str = "euclidean", pool: int = 2,
                   voices: np.ndarray | None = None, exclude: float = 0.0) -> np.ndarray:
    """Each clip's ``k`` nearest other clips by length-normalised DTW (``serving.dtw``), found without labels:
    [n, k] indices, nearest first. The frames are averaged in groups of ``pool`` first (4 x less work for 2), and
    each pair is aligned once (DTW is symmetric), every clip against the longer ones in one vectorised call.

    With ``voices`` ([n, d], e.g. :func:`voice_signatures`) and ``exclude`` > 0, each clip's round(exclude x (n -
    1)) nearest other clips by the cosine of their voices are not candidates: its partners come from other voices.
    """
    from serving.dtw import dtw_many

    n = len(feats)
    excluded = int(round(exclude * (n - 1))) if voices is not None else 0
    if not 0 < k <= n - 1 - excluded:
        raise DataError(f"--pairs must be at most the {n - 1 - excluded} candidate partners of each training clip, "
                        f"got {k}")
    small = [f[: len(f) // pool * pool].reshape(-1, pool, f.shape[1]).mean(axis=1) if len(f) >= pool else f
             for f in feats]
    order = np.argsort([len(f) for f in small], kind="stable")  # similar lengths side by side: little padding
    dist = np.full((n, n), np.inf, np.float32)
    for p, q in enumerate(order[:-1]):
        rest = order[p + 1:]
        dist[q, rest] = dist[rest, q] = dtw_many(small[q], [small[i] for i in rest], distance)
    if excluded:
        from pipelines.retrieval import cosine_similarities

        same_voice = cosine_similarities(voices)
        np.fill_diagonal(same_voice, np.inf)  # the clip itself first, then its nearest voices
        near = np.argsort(-same_voice, axis=1, kind="stable")[:, : excluded + 1]
        dist[np.arange(n)[:, None], near] = np.inf
    return np.argsort(dist, axis=1, kind="stable")[:, :k]


def view_dataset(feats: list[np.ndarray], config: SpeechAutoencoderConfig, spec, *, seed: int,
                 batch_size: int | None = None, drop_remainder: bool = False, partners: np.ndarray | None = None):
    """Contrastive training batches: ``({"view_a", "view_b"}, {"contrastive": dummy zeros})``, an
    :func:`augment_view` view of each training clip and a second view of the clip itself or, with ``partners``
    ([n, k] indices, e.g. :func:`dtw_neighbours`), of the clip or one of its partners, each of the k + 1 equally
    likely (reshuffled each epoch, bucketed by the clip's length, each view right-padded with all-zero frames);
    objective ``both`` adds the input ``features`` (the clip with ``--noise``) and the target ``reconstruction``
    (the clean clip). The views and partners are drawn from ``seed`` and the epoch only (stateless,
    ``pipelines.audio.random_seeds``), so a resumed run repeats them."""
    import tensorflow as tf

    from models.speech_autoencoder import CONTRASTIVE, INPUT, RECONSTRUCTION, VIEW_A, VIEW_B
    from pipelines.audio import random_seeds
    from pipelines.batching import length_boundaries

    aug, both, noise = Augmentation.of(config), config.objective == "both", config.noise
    batch_size = batch_size or config.batch_size
    n = len(feats)
    lengths = np.array([len(f) for f in feats], np.int64)
    clips = tf.RaggedTensor.from_row_lengths(tf.constant(np.concatenate(feats), tf.float32), lengths)
    own = np.arange(n)[:, None]
    table = tf.constant(own if partners is None else np.concatenate([own, partners], axis=1), tf.int64)
    order = tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True)

    def views(i, view_seed):
        seeds = tf.random.experimental.stateless_split(tf.cast(view_seed, tf.int64), 4)
        j = table[i, tf.random.stateless_uniform((), seeds[3], 0, table.shape[1], tf.int64)]
        x, other = clips[i], clips[j]
        noisy = x + tf.random.stateless_normal(tf.shape(x), seeds[2], stddev=noise) if both and noise else x
        return noisy, x, augment_view(x, aug, seeds[0], spec), augment_view(other, aug, seeds[1], spec)

    boundaries = length_boundaries(int(lengths.max()))
    batches = tf.data.Dataset.zip((order, random_seeds(seed))).map(views, num_parallel_calls=tf.data.AUTOTUNE)
    batches = batches.bucket_by_sequence_length(
        element_length_func=lambda noisy, x, a, b: tf.shape(x)[0], bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1), padding_values=(0.0, 0.0, 0.0, 0.0),
        drop_remainder=drop_remainder)

    def named(noisy, x, a, b):
        inputs, targets = {VIEW_A: a, VIEW_B: b}, {CONTRASTIVE: tf.zeros(tf.shape(x)[:1])}
        if both:
            inputs[INPUT], targets[RECONSTRUCTION] = noisy, x
        return inputs, targets

    return batches.map(named).prefetch(tf.data.AUTOTUNE)


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


def dtw_similarities(feats: list[np.ndarray], distance: str, queries=None) -> tuple[np.ndarray, float]:
    """[n, n] negated length-normalised DTW scores (higher: more alike) and the mean seconds per query (one
    query against all the others). With ``queries`` (indices) only their rows are computed (the others stay
    -inf)."""
    from serving.dtw import dtw_many

    n = len(feats)
    queries = range(n) if queries is None else queries
    sims = np.full((n, n), -np.inf)
    started = time.perf_counter()
    for q in queries:
        others = [i for i in range(n) if i != q]
        sims[q, others] = -dtw_many(feats[q], [feats[i] for i in others], distance)
    return sims, (time.perf_counter() - started) / len(queries)


def retrieval_metrics(encoder, feats, raw, labels, center, config, with_dtw: bool = True, queries=None) -> dict:
    """MAP and precision@10 of the auto-encoder's vectors and the baselines on one split: every clip queries the
    others, or only the clips ``queries`` (indices; leave-speakers-out), each still against all the others."""
    from pipelines.retrieval import cosine_similarities, retrieval_scores

    ae = retrieval_scores(cosine_similarities(embed(encoder, feats)), labels, queries=queries)
    pooled = retrieval_scores(cosine_similarities(mean_pooled(raw, center)), labels, queries=queries)
    metrics = {"map": ae["map"], "precision_at_10": ae["precision_at_10"],
               "mean_pooled_map": pooled["map"], "mean_pooled_precision_at_10": pooled["precision_at_10"]}
    if with_dtw:
        dtw_sims, dtw_seconds = dtw_similarities(feats, config.dtw_distance, queries)
        dtw = retrieval_scores(dtw_sims, labels, queries=queries)
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
                  "hidden": config.hidden, "noise": config.noise, "objective": config.objective},
        "training": training_summary(config),
    }


def training_summary(config: SpeechAutoencoderConfig) -> dict:
    """How the encoder was trained, for the metadata: the objective (never digit labels: ``"labels": "dev model
    selection only"``), its settings, and the speakers left out."""
    summary = {"objective": config.objective, "labels": "dev model selection only"}
    if config.objective != "reconstruct":
        summary.update(temperature=config.temperature, views=dataclasses.asdict(Augmentation.of(config)),
                       dtw_pairs=config.pairs, voice_exclude=config.voice_exclude)
    if config.objective == "both":
        summary["reconstruction_weight"] = config.reconstruction_weight
    if held_out_speakers(config):
        summary["test_speakers"] = held_out_speakers(config)
    return summary


def write_index(run_dir, meta: dict, utterances: list[Utterance], feats: list[np.ndarray], queries=None
                ) -> tuple[float, float]:
    """Indexes ``utterances`` with the exported model (onnxruntime) into ``run_dir/index.npz``, for serving.

    Returns:
      The mean seconds of one served query from its features: embedding it (onnxruntime, one clip, one thread)
      and ranking the index by cosine similarity; and of the ranking alone. Timed over every indexed clip as the
      query (or the clips ``queries``: indices).
    """
    from serving.session import OnnxModel
    from serving.speech_search import INDEX_FILE, SpeechSearch

    search = SpeechSearch(OnnxModel(run_dir / "model.onnx", threads=1), meta)
    search.index.add([u.key for u in utterances], search.embed_features(feats), [u.label for u in utterances])
    search.save_index(run_dir / INDEX_FILE)
    queries = range(len(utterances)) if queries is None else queries
    search.embed_features([feats[queries[0]]])  # warm-up
    started = time.perf_counter()
    for q in queries:
        search.index.search(search.embed_features([feats[q]])[0], 10, exclude=utterances[q].key)
    query_seconds = (time.perf_counter() - started) / len(queries)
    vectors = search.index.vectors
    started = time.perf_counter()
    for q in queries:
        search.index.search(vectors[q], 10, exclude=utterances[q].key)
    return query_seconds, (time.perf_counter() - started) / len(queries)


# ------------------------------------------------------------------------------------------------------ the task


class SpeechAutoencoder(Task):
    """Unsupervised training of the encoder (reconstruction, contrastive or both) in one resumable phase, picked by
    the dev MAP of the encoder's vectors; the encoder alone is exported (with the test clips indexed for serving's
    search).

    Query timings (``dtw_query_seconds``, ``autoencoder_query_seconds``) are reported with the export figures: they
    differ between a run and its resumed twin, whose evaluation must be equal."""

    name = TASK
    config_class = SpeechAutoencoderConfig
    monitor = "map"
    exported: str | None = None  # the run dir of the last export (for the command line's demo)

    def choices(self):
        from models.recurrent import CELL_CHOICES
        from models.speech_autoencoder import CELL_CHOICES as BUILT
        from models.speech_autoencoder import OBJECTIVES
        from pipelines.distribute import STRATEGIES
        from serving.dtw import DISTANCES

        # the rows of the one cell table that build_speech_autoencoder builds (its decoder takes rnn, lstm, gru)
        return {"cell": tuple(c for c in CELL_CHOICES if c in BUILT), "dtw_distance": DISTANCES,
                "strategy": STRATEGIES, "objective": OBJECTIVES}

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
        held_out = held_out_speakers(ctx.config)
        test_speakers = [u.speaker for u in ctx.splits["test"]]
        if held_out:
            from pipelines.retrieval import speaker_queries

            queries = speaker_queries(test_speakers, held_out)
            print(f"leave speakers out: {', '.join(held_out)} not in train or dev; their {len(queries)} test clips "
                  f"query all {len(test_speakers)} test clips")
        ctx.extras.update(labels=labels, feats=feats, raw=raw, center=np.concatenate(raw["train"]).mean(axis=0),
                          gold={name: [u.label for u in utterances] for name, utterances in ctx.splits.items()},
                          queries=queries if held_out else None)
        if ctx.config.objective != "reconstruct" and ctx.config.pairs:
            started = time.time()
            partners = dtw_neighbours(feats["train"], ctx.config.pairs, ctx.config.dtw_distance,
                                      voices=voice_signatures(raw["train"]), exclude=ctx.config.voice_exclude)
            ctx.extras["partners"] = partners
            words = np.array(ctx.extras["gold"]["train"])
            voices = np.array([u.speaker for u in ctx.splits["train"]])
            print(f"positive pairs: each training clip's {ctx.config.pairs} nearest by DTW"
                  + (f" outside its {ctx.config.voice_exclude:g} nearest by voice" if ctx.config.voice_exclude else "")
                  + f", mined in {time.time() - started:.0f} s (a diagnostic, not used in training: the same word "
                  f"{np.mean(words[partners] == words[:, None]):.3f}, the same speaker "
                  f"{np.mean(voices[partners] == voices[:, None]):.3f})")
        return spec

    def build_both(self, ctx: Context):
        """``(autoencoder, encoder)``, sharing the encoder's layers; the autoencoder is None for the contrastive
        objective (no decoder)."""
        from models.speech_autoencoder import build_speech_autoencoder

        c = ctx.config
        if c.objective == "contrastive":
            return None, self.build_model(ctx)
        return build_speech_autoencoder(ctx.prep.n_mels, cell=c.cell, units=c.hidden, layers=c.layers,
                                        bidirectional=c.bidirectional)

    def build_model(self, ctx: Context):
        """The encoder alone (the exported model)."""
        from models.speech_autoencoder import build_speech_encoder

        c = ctx.config
        return build_speech_encoder(ctx.prep.n_mels, cell=c.cell, units=c.hidden, layers=c.layers,
                                    bidirectional=c.bidirectional)

    def compile(self, ctx: Context, model):
        """Compiles the trainer ``model``: the auto-encoder with the reconstruction loss, or the contrastive trainer
        with NT-Xent (and, for ``both``, the frame-masked reconstruction loss weighted ``--reconstruction-weight``)."""
        from models.speech_autoencoder import CONTRASTIVE, RECONSTRUCTION, FrameMSE, NTXentLoss
        from pipelines import training

        c = ctx.config
        optimizer = training.optimizer(c.learning_rate, c.clipnorm, c.ema)
        if c.objective == "reconstruct":
            model.compile(optimizer=optimizer, loss={RECONSTRUCTION: "mse"})
            return model
        losses, weights = {CONTRASTIVE: NTXentLoss(c.temperature)}, {CONTRASTIVE: 1.0}
        if c.objective == "both":
            losses[RECONSTRUCTION], weights[RECONSTRUCTION] = FrameMSE(), c.reconstruction_weight
        model.compile(optimizer=optimizer, loss=losses, loss_weights=weights)
        return model

    def train_data(self, ctx: Context, seed: int):
        from models.speech_autoencoder import RECONSTRUCTION

        c = ctx.config
        batch_size, drop = c.batch_size * ctx.run.replicas, ctx.run.distributed
        if c.objective != "reconstruct":
            return view_dataset(ctx.extras["feats"]["train"], c, ctx.prep, seed=seed, batch_size=batch_size,
                                drop_remainder=drop, partners=ctx.extras.get("partners"))
        data = training_dataset(ctx.extras["feats"]["train"], c, seed=seed, batch_size=batch_size,
                                drop_remainder=drop)
        return data.map(lambda x, y, w: (x, {RECONSTRUCTION: y}, w))

    def validate(self, ctx: Context, model) -> dict:
        from pipelines.retrieval import cosine_similarities, retrieval_scores

        return {"map": retrieval_scores(cosine_similarities(embed(model, ctx.extras["feats"]["valid"])),
                                        ctx.extras["gold"]["valid"])["map"]}

    def fit(self, ctx: Context):
        """Trains the encoder inside its trainer (the auto-encoder, or the contrastive trainer) in one phase;
        validates and returns the encoder."""
        from models.speech_autoencoder import build_contrastive_trainer
        from pipelines import runner

        with ctx.run.strategy.scope():
            autoencoder, encoder = self.build_both(ctx)
            trainer = autoencoder if ctx.config.objective == "reconstruct" else \
                build_contrastive_trainer(encoder, autoencoder)
            self.compile(ctx, trainer)
        ctx.extras.update(autoencoder=autoencoder, trainer=trainer)
        ctx.extras["loop"] = runner.train(
            trainer, lambda epoch: ctx.run.epoch_data(lambda seed: self.train_data(ctx, seed), epoch), ctx.run,
            validate=lambda: self.validate(ctx, encoder), monitor=self.monitor)
        return encoder

    def evaluate(self, ctx: Context, model) -> dict:
        """Dev and test retrieval figures; under leave-speakers-out the test figures are over the held-out
        speakers' queries only (``query_utterances``), each against all ``test_utterances``."""
        e, c = ctx.extras, ctx.config
        dev = retrieval_metrics(model, e["feats"]["valid"], e["raw"]["valid"], e["gold"]["valid"], e["center"], c,
                                with_dtw=False)
        test = retrieval_metrics(model, e["feats"]["test"], e["raw"]["test"], e["gold"]["test"], e["center"], c,
                                 queries=e["queries"])
        e["dtw_query_seconds"] = test.pop("dtw_query_seconds")
        queries = len(ctx.splits["test"]) if e["queries"] is None else len(e["queries"])
        return {**test, "dev_map": dev["map"], "dev_mean_pooled_map": dev["mean_pooled_map"],
                "test_utterances": len(ctx.splits["test"]), "query_utterances": queries,
                "embedding_dim": int(model.output["embedding"].shape[-1]),
                "parameters": e["trainer"].count_params()}

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
        if ctx.extras["autoencoder"] is not None:
            ctx.extras["autoencoder"].save(ctx.run_dir / "autoencoder.keras")
        meta = export_model(encoder, ctx.run_dir, self.export_spec(ctx, encoder), self.parity_batches(ctx))
        self.exported = ctx.config.out
        query_seconds, search_seconds = write_index(ctx.run_dir, meta, ctx.splits["test"], ctx.extras["feats"]["test"],
                                                    ctx.extras["queries"])
        return {"onnx_max_abs_diff": max(meta["parity"]["onnx_max_abs_diff"].values()),
                "dtw_query_seconds": ctx.extras["dtw_query_seconds"],
                "autoencoder_query_seconds": query_seconds, "index_search_seconds": search_seconds}

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
