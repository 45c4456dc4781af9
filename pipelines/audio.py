"""The audio front end for training: tensorflow-io decoding and resampling, log-mel features with tf.signal,
per-utterance mean and variance normalisation, SpecAugment masking, speaker augmentation for training (speed
perturbation of waveforms, vocal-tract-length perturbation of the mel filterbank), and tf.data batching by length.

Every setting lives in :class:`FeatureSpec` (shared with serving, which computes the same features in numpy:
``serving.audio.features``; a test proves the two agree within 1e-4 on real recordings), so an exported model's
metadata says exactly how to turn a WAV file into its input.

    spec = FeatureSpec(sample_rate=8000)
    wave = load_audio("0_george_0.wav", spec.sample_rate)   # float32 mono numpy, resampled with tensorflow-io
    feats = features(wave, spec)                            # tf.Tensor [frames, n_mels], normalised
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

import pipelines  # noqa: F401  (quiet TensorFlow)
from pipelines.readers import DataError
from serving.audio import FeatureSpec

__all__ = ["FeatureSpec", "load_audio", "decode_audio", "resample", "magnitude", "log_mel", "normalize", "features",
           "speed_perturb", "vtlp_warp", "warped_mel_matrix", "vtlp_features", "random_vtlp_features", "spec_augment", "random_seeds", "array_dataset", "feature_dataset", "bucketed_feature_batches"]

_SCALES = {tf.int16: 32768.0, tf.int32: 2.0 ** 31, tf.float32: 1.0, tf.float64: 1.0}


def _tfio():
    import tensorflow_io as tfio  # imported late: it loads its kernels (and prints a CPU notice) on import

    return tfio


def decode_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decodes an audio file with tensorflow-io (WAV; FLAC, MP3 and OGG/Vorbis where tensorflow-io's build
    supports them): float32 samples in [-1, 1], mono (channels averaged), and the file's sample rate.

    Raises:
      DataError: the file is missing, cannot be decoded, has no samples, or has NaN samples.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"audio file not found: {path}")
    try:
        audio = _tfio().audio.AudioIOTensor(str(path))
        rate = int(audio.rate.numpy())
        samples = audio.to_tensor()
    except Exception as err:  # tensorflow-io raises several op errors for unreadable files
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"cannot decode {path}: {first}") from None
    if samples.dtype == tf.uint8:
        wave = (tf.cast(samples, tf.float32) - 128.0) / 128.0
    elif samples.dtype in _SCALES:
        wave = tf.cast(samples, tf.float32) / _SCALES[samples.dtype]
    else:
        raise DataError(f"{path}: unsupported sample type {samples.dtype.name}")
    wave = tf.reduce_mean(wave, axis=1).numpy()
    if wave.size == 0:
        raise DataError(f"{path} has no samples")
    if not np.all(np.isfinite(wave)):
        raise DataError(f"{path} has NaN or infinite samples")
    return wave.astype(np.float32), rate


def resample(wave, rate_in: int, rate_out: int) -> tf.Tensor:
    """Resamples mono float32 samples [n] from ``rate_in`` to ``rate_out`` Hz with tensorflow-io."""
    wave = tf.convert_to_tensor(wave, tf.float32)
    if rate_in == rate_out:
        return wave
    out = _tfio().audio.resample(wave[:, None], rate_in=rate_in, rate_out=rate_out)
    return out[:, 0]


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Decodes ``path`` (:func:`decode_audio`) and resamples it to ``sample_rate``: float32 mono numpy samples."""
    wave, rate = decode_audio(path)
    return resample(wave, rate, sample_rate).numpy()


def magnitude(wave, spec: FeatureSpec) -> tf.Tensor:
    """STFT magnitudes [frames, spectrogram_bins] of mono float32 samples [n] at ``spec.sample_rate``:
    ``tf.signal.stft`` (periodic Hann window, end zero-padded: ceil(n / frame_step) frames)."""
    wave = tf.convert_to_tensor(wave, tf.float32)
    stft = tf.signal.stft(wave, frame_length=spec.frame_length, frame_step=spec.frame_step,
                          fft_length=spec.n_fft, pad_end=True)
    # pad_end pads to a whole number of steps; frames starting at or past the end are dropped (ceil(n / step)).
    return tf.abs(stft[: (tf.shape(wave)[0] + spec.frame_step - 1) // spec.frame_step])


def log_mel(wave, spec: FeatureSpec) -> tf.Tensor:
    """Log-mel features [frames, n_mels] (not normalised) of mono float32 samples [n] at ``spec.sample_rate``:
    :func:`magnitude`, ``tf.signal.linear_to_mel_weight_matrix``, ``log(mel + log_offset)``.
    """
    weights = tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=spec.n_mels, num_spectrogram_bins=spec.spectrogram_bins, sample_rate=spec.sample_rate,
        lower_edge_hertz=spec.fmin, upper_edge_hertz=spec.upper_hz)
    return tf.math.log(tf.matmul(magnitude(wave, spec), weights) + spec.log_offset)


def normalize(feats, spec: FeatureSpec) -> tf.Tensor:
    """Per-utterance mean and variance normalisation (``spec.normalize``: each band's mean over time removed,
    then divided by one standard deviation over the clip, or by each band's own)."""
    feats = tf.convert_to_tensor(feats, tf.float32)
    if spec.normalize == "none":
        return feats
    centred = feats - tf.reduce_mean(feats, axis=0, keepdims=True)
    axis = [0] if spec.normalize == "utterance" else None
    var = tf.reduce_mean(tf.square(centred), axis=axis, keepdims=True)
    return centred / tf.sqrt(var + spec.norm_epsilon)


def features(wave, spec: FeatureSpec) -> tf.Tensor:
    """The model's input features [frames, n_mels]: :func:`log_mel` then :func:`normalize`."""
    return normalize(log_mel(wave, spec), spec)


# ------------------------------------------------------------------------------------------ speaker augmentation


def speed_perturb(wave: np.ndarray, factor: float) -> np.ndarray:
    """Speed perturbation (Ko et al. 2015): the clip played ``factor`` times faster, tempo and pitch together:
    band-limited (FFT) resampling to ``round(n / factor)`` samples kept at the same rate, so every frequency is
    multiplied by ``factor``. ``factor`` 1 returns a copy. Numpy, for building training utterances."""
    from serving.audio import resample

    if factor <= 0:
        raise ValueError(f"speed factor must be positive, got {factor}")
    wave = np.asarray(wave, np.float32)
    n_out = max(1, int(round(len(wave) / factor)))
    return wave.copy() if n_out == len(wave) else resample(wave, len(wave), n_out)


VTLP_BOUNDARY = 0.6  # the warp's knee as a fraction of Nyquist (Jaitly & Hinton: 4800 Hz at 16 kHz)


def vtlp_warp(hz, alpha, nyquist: float, boundary: float | None = None) -> tf.Tensor:
    """Jaitly & Hinton's (2013) vocal-tract-length warp of frequencies ``hz``: ``hz * alpha`` up to a knee at
    ``boundary * min(alpha, 1) / alpha`` (``boundary`` default ``VTLP_BOUNDARY * nyquist``), then the straight line
    that maps Nyquist onto itself, so the warped axis still spans [0, Nyquist]."""
    hz = tf.convert_to_tensor(hz, tf.float32)
    alpha = tf.cast(alpha, tf.float32)
    boundary = VTLP_BOUNDARY * nyquist if boundary is None else boundary
    low = boundary * tf.minimum(alpha, 1.0)  # where the knee lands after warping
    knee = low / alpha
    above = nyquist - (nyquist - low) / (nyquist - knee) * (nyquist - hz)
    return tf.where(hz <= knee, hz * alpha, above)


def _hertz_to_mel(hz) -> tf.Tensor:
    return 1127.0 * tf.math.log1p(hz / 700.0)


def warped_mel_matrix(spec: FeatureSpec, alpha) -> tf.Tensor:
    """[spectrogram_bins, n_mels] mel filters read on the VTLP-warped frequency axis: bin ``f`` weighs into the
    bands around ``vtlp_warp(f, alpha)``, so ``alpha`` > 1 moves spectral peaks to higher bands (a shorter vocal
    tract), < 1 to lower. ``alpha`` 1 gives ``tf.signal.linear_to_mel_weight_matrix``'s matrix (same formula)."""
    nyquist = spec.sample_rate / 2.0
    linear = tf.linspace(0.0, nyquist, spec.spectrogram_bins)[1:]  # the DC bin gets no weight
    bins_mel = _hertz_to_mel(vtlp_warp(linear, alpha, nyquist))[:, None]
    edges = tf.linspace(_hertz_to_mel(tf.constant(spec.fmin, tf.float32)),
                        _hertz_to_mel(tf.constant(spec.upper_hz, tf.float32)), spec.n_mels + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    slopes = tf.minimum((bins_mel - lower) / (center - lower), (upper - bins_mel) / (upper - center))
    return tf.pad(tf.maximum(0.0, slopes), [[1, 0], [0, 0]])


def vtlp_features(wave, spec: FeatureSpec, alpha) -> tf.Tensor:
    """The model's features (:func:`features`) with the mel filterbank warped by ``alpha``
    (:func:`warped_mel_matrix`): vocal-tract-length perturbation, for training only."""
    mel = tf.matmul(magnitude(wave, spec), warped_mel_matrix(spec, alpha))
    return normalize(tf.math.log(mel + spec.log_offset), spec)


def random_vtlp_features(wave, spec: FeatureSpec, max_change: float, seed) -> tf.Tensor:
    """:func:`vtlp_features` with ``alpha`` uniform in [1 - max_change, 1 + max_change], drawn statelessly from
    ``seed`` (a [2] integer tensor, e.g. from :func:`random_seeds`)."""
    alpha = tf.random.stateless_uniform((), tf.cast(seed, tf.int64), 1.0 - max_change, 1.0 + max_change)
    return vtlp_features(wave, spec, alpha)


def spec_augment(feats, freq_param: int = 8, time_param: int = 20, masks: int = 2, seed=None) -> tf.Tensor:
    """SpecAugment-style masking for training: ``masks`` bands of up to ``freq_param - 1`` mel bins and ``masks``
    spans of up to ``time_param - 1`` frames set to 0 (the normalised mean). A parameter of 0 turns that mask off.

    Without ``seed``, tensorflow-io's ``freq_mask`` / ``time_mask`` draw the masks (stateful random ops). With
    ``seed`` (a [2] integer tensor, e.g. from :func:`random_seeds`), the same masks are drawn by stateless random
    ops: a function of ``seed`` only, which is what training uses so that a resumed run repeats its augmentation.
    """
    feats = tf.convert_to_tensor(feats, tf.float32)
    if seed is None:
        tfio = _tfio()
        for _ in range(masks):
            if freq_param > 0:
                feats = tfio.audio.freq_mask(feats, param=min(freq_param, feats.shape[1] or freq_param))
            if time_param > 0:
                # never ask for a span longer than the clip (tensorflow-io would draw from an empty range)
                feats = tfio.audio.time_mask(feats, param=tf.minimum(time_param, tf.shape(feats)[0]))
        return feats
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=4 * masks)
    for i in range(masks):
        if freq_param > 0:
            feats = _stateless_mask(feats, 1, min(freq_param, feats.shape[1] or freq_param), seeds[4 * i : 4 * i + 2])
        if time_param > 0:
            feats = _stateless_mask(feats, 0, tf.minimum(time_param, tf.shape(feats)[0]), seeds[4 * i + 2 : 4 * i + 4])
    return feats


def _stateless_mask(feats, axis: int, param, seeds) -> tf.Tensor:
    """Zeroes a band (``axis`` 1) or span (``axis`` 0) of width in [0, param) at a start in [0, size - width),
    as tensorflow-io's masks do, drawn from ``seeds`` [2, 2]."""
    size = tf.shape(feats)[axis]
    width = tf.random.stateless_uniform((), seeds[0], 0, param, tf.int32)
    start = tf.random.stateless_uniform((), seeds[1], 0, size - width, tf.int32)
    indices = tf.range(size)
    inside = (indices >= start) & (indices < start + width)
    inside = inside[None, :] if axis == 1 else inside[:, None]
    return tf.where(inside, tf.zeros((), feats.dtype), feats)


def random_seeds(seed: int) -> tf.data.Dataset:
    """An endless dataset of [2] int64 seeds for stateless random ops (:func:`spec_augment`, noise), drawn from
    ``seed``. Each iteration draws a new stream, as a shuffle with ``reshuffle_each_iteration`` draws a new order:
    zipped with an epoch's data it makes the augmentation a function of the seed and the epoch only (see
    ``pipelines.training.epoch_dataset``), so a killed and resumed run sees the same masks and noise."""
    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)


def array_dataset(arrays: list[np.ndarray], dtype=tf.float32) -> tf.data.Dataset:
    """A dataset of the numpy arrays ``arrays`` (any first dimension, the rest equal), one element each."""
    lengths = np.array([len(a) for a in arrays], np.int64)
    flat = np.concatenate(arrays) if arrays else np.zeros(0)
    ragged = tf.RaggedTensor.from_row_lengths(tf.constant(flat, dtype), lengths)
    # each slice comes out as a ragged tensor of ragged rank 0: a dense tensor, typed as one for padded batching
    return tf.data.Dataset.from_tensor_slices(ragged).map(tf.convert_to_tensor)


def feature_dataset(waves: list[np.ndarray], targets, spec: FeatureSpec) -> tf.data.Dataset:
    """A dataset of (features [frames, n_mels], target) from in-memory waveforms at ``spec.sample_rate``;
    ``targets`` is any list of arrays or ragged int lists (one per wave)."""
    lengths = np.array([len(w) for w in waves], dtype=np.int64)
    flat = np.concatenate(waves).astype(np.float32) if waves else np.zeros(0, np.float32)
    ragged = tf.RaggedTensor.from_row_lengths(flat, lengths)
    target_ragged = tf.ragged.constant([list(t) for t in targets], dtype=tf.int32)
    dataset = tf.data.Dataset.from_tensor_slices((ragged, target_ragged))
    return dataset.map(lambda w, t: (features(w, spec), t), num_parallel_calls=tf.data.AUTOTUNE)


def bucketed_feature_batches(dataset: tf.data.Dataset, batch_size: int, boundaries: list[int], *,
                             shuffle: bool = True, seed: int = 0, augment=None, target_padding: int = -1,
                             drop_remainder: bool = False) -> tf.data.Dataset:
    """Caches (features, target) pairs, reshuffles them each epoch, optionally augments (after the cache, so the
    masks differ per epoch), groups clips of similar frame counts (``bucket_by_sequence_length`` with
    ``boundaries``; ``drop_remainder`` drops each bucket's last partial batch, as several replicas need), pads
    features with 0 and targets with ``target_padding``, and prefetches."""
    dataset = dataset.cache()
    if shuffle:
        dataset = dataset.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    if augment is not None:
        dataset = dataset.map(lambda x, y: (augment(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.bucket_by_sequence_length(
        element_length_func=lambda x, _: tf.shape(x)[0],
        bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        padding_values=(0.0, target_padding),
        drop_remainder=drop_remainder,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


def parity_report(paths, spec: FeatureSpec) -> dict:
    """Largest |TF features − numpy features| (``serving.audio.features``) over the audio files ``paths``:
    ``{"files": n, "max_abs_diff": x}``."""
    from serving import audio as np_audio

    worst = 0.0
    for path in paths:
        tf_feats = features(load_audio(path, spec.sample_rate), spec).numpy()
        worst = max(worst, float(np.abs(tf_feats - np_audio.features(str(path), spec)).max()))
    return {"files": len(paths), "max_abs_diff": worst}


def main(argv: list[str] | None = None) -> int:
    """``python -m pipelines.audio DIR``: the TF / numpy front-end parity over every WAV file in DIR."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m pipelines.audio", description=main.__doc__)
    parser.add_argument("data_dir", help="a folder of WAV files, e.g. ../shared/data/fsdd/recordings")
    parser.add_argument("--sample-rate", type=int, default=FeatureSpec.sample_rate)
    args = parser.parse_args(argv)
    paths = sorted(Path(args.data_dir).glob("*.wav"))
    if not paths:
        print(f"error: no .wav files in {args.data_dir}")
        return 2
    print(json.dumps(parity_report(paths, FeatureSpec(sample_rate=args.sample_rate))))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
