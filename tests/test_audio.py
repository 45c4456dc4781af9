"""The audio front end: WAV reading in serving (formats and bad input), numpy features == tf.signal features,
resampling, SpecAugment masks, the FSDD reader and the synthetic speech generator."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from serving import audio as sa
from serving.errors import InputError

SPEC = sa.FeatureSpec()


def _tone(freq=440.0, seconds=0.5, rate=8000, amp=0.5):
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def spoken():
    from pipelines import synthetic_speech

    return synthetic_speech.words(12, seed=3)


def test_numpy_mel_matrix_matches_tf_signal():
    import tensorflow as tf

    for spec in (SPEC, sa.FeatureSpec(sample_rate=16000, n_fft=512, frame_length=400, frame_step=160, n_mels=64,
                                      fmin=50, fmax=7000)):
        tf_matrix = tf.signal.linear_to_mel_weight_matrix(spec.n_mels, spec.spectrogram_bins, spec.sample_rate,
                                                          spec.fmin, spec.upper_hz).numpy()
        assert np.abs(tf_matrix - sa.mel_matrix(spec)).max() < 1e-5


def test_numpy_features_match_tf_features_on_synthetic_speech(spoken):
    from pipelines import audio

    for wave, _, _ in spoken:
        tf_feats = audio.features(wave, SPEC).numpy()
        np_feats = sa.features(wave, SPEC)
        assert tf_feats.shape == np_feats.shape == (SPEC.num_frames(len(wave)), SPEC.n_mels)
        assert np.abs(tf_feats - np_feats).max() <= 1e-4
        # the normalisation really normalises: every band centred, unit variance over the clip
        assert np.abs(np_feats.mean(axis=0)).max() < 1e-4 and abs(np_feats.std() - 1) < 1e-3
    for mode in ("none", "utterance"):
        other = sa.FeatureSpec(normalize=mode)
        tf_feats, np_feats = audio.features(spoken[0][0], other).numpy(), sa.features(spoken[0][0], other)
        assert np.abs(tf_feats - np_feats).max() <= 1e-4
    assert np.abs(np_feats.std(axis=0) - 1).max() < 1e-2  # "utterance": each band on its own


@pytest.mark.parametrize("fmt,tol", [("int8u", 1 / 64), ("int16", 1e-4), ("int24", 1e-6), ("int32", 1e-6),
                                     ("float32", 0.0)])
def test_read_wav_formats(tmp_path, fmt, tol):
    tone = _tone()
    path = tmp_path / f"tone_{fmt}.wav"
    sa.write_wav(path, tone, 8000, fmt)
    for source in (path, str(path), path.read_bytes()):
        samples, rate = sa.read_wav(source)
        assert rate == 8000 and samples.dtype == np.float32 and len(samples) == len(tone)
        assert np.abs(samples - tone).max() <= tol


def test_tensorflow_io_decodes_what_serving_reads(tmp_path):
    from pipelines import audio

    tone = _tone(330, 0.3, 16000)
    path = tmp_path / "tone.wav"
    sa.write_wav(path, tone, 16000, "int16")
    wave, rate = audio.decode_audio(path)
    assert rate == 16000
    np.testing.assert_array_equal(wave, sa.read_wav(path)[0])


def test_stereo_is_averaged_or_refused(tmp_path):
    left, right = _tone(300), _tone(500, amp=0.25)
    data = sa.write_wav(None, np.stack([left, right], axis=1), 8000, "float32")
    mono, _ = sa.read_wav(data)
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1e-7)
    with pytest.raises(InputError, match="2 channels; mono is expected"):
        sa.read_wav(data, stereo="error")
    with pytest.raises(InputError, match="3 channels"):
        sa.read_wav(sa.write_wav(None, np.stack([left] * 3, axis=1), 8000))


def test_any_rate_and_tuple_input_give_the_model_rate_features():
    tone8 = _tone(440, 0.5, 8000)
    tone16 = _tone(440, 0.5, 16000)
    resampled = sa.resample(tone16, 16000, 8000)
    assert len(resampled) == len(tone8)
    assert np.abs(resampled[100:-100] - tone8[100:-100]).max() < 1e-3
    feats16 = sa.features((tone16, 16000), SPEC)
    assert feats16.shape == sa.features(tone8, SPEC).shape
    ints = (tone8 * 32767).astype(np.int16)
    np.testing.assert_allclose(sa.read_wav((ints, 8000))[0], tone8, atol=1e-4)


def test_tensorflow_io_resampling_gives_close_features(spoken):
    from pipelines import audio

    wave = spoken[0][0]
    up = sa.resample(wave, 8000, 16000)
    tf_down = audio.resample(up, 16000, 8000).numpy()
    np_down = sa.resample(up, 16000, 8000)
    assert abs(len(tf_down) - len(np_down)) <= 1
    n = min(len(tf_down), len(np_down))
    # tensorflow-io's filter delays the signal by a few ms; once aligned, the features agree closely
    lag = int(np.correlate(tf_down[:n], np_down[:n], "full").argmax()) - (n - 1)
    assert 0 <= lag <= 0.005 * 8000
    tf_feats = audio.features(tf_down[lag:n], SPEC).numpy()
    assert np.abs(tf_feats - sa.features(np_down[: n - lag], SPEC)).mean() < 0.05


def _header_only(tag: int, bits: int, channels: int = 1, rate: int = 8000, data: bytes = b"\x01\x02" * 400):
    block = channels * max(bits // 8, 1)
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    return (b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE" + b"fmt "
            + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data)


@pytest.mark.parametrize("make,message", [
    (lambda p: b"", "empty"),
    (lambda p: b"RIFX\x00\x00\x00\x00WAVEjunk", "not a WAV file"),
    (lambda p: b"RIFF\x04\x00\x00\x00WAVE", "no valid 'fmt ' chunk"),
    (lambda p: sa.write_wav(None, _tone(), 8000)[:44 - 8], "no 'data' chunk"),
    (lambda p: _header_only(7, 8), "mu-law WAV data is not supported"),
    (lambda p: _header_only(1, 12), "12-bit PCM is not supported"),
    (lambda p: sa.write_wav(None, np.zeros(0), 8000), "0-length"),
    (lambda p: sa.write_wav(None, np.zeros(8000), 8000), "silent"),
    (lambda p: sa.write_wav(None, np.where(np.arange(8000) == 50, np.nan, _tone(seconds=1)), 8000, "float32"),
     "NaN"),
    (lambda p: sa.write_wav(None, _tone(seconds=31), 8000), "at most 30 s"),
    (lambda p: str(p / "missing.wav"), "not found"),
    (lambda p: 12, "got int"),
])
def test_bad_audio_gives_clear_input_errors(tmp_path, make, message):
    with pytest.raises(InputError, match=message):
        sa.features(make(tmp_path), SPEC)


def test_feature_spec_round_trips_through_metadata():
    spec = sa.FeatureSpec(sample_rate=16000, n_fft=512, frame_length=400, frame_step=160, fmax=7600)
    assert sa.FeatureSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="unknown settings"):
        sa.FeatureSpec.from_dict({**spec.to_dict(), "dither": 0.1})
    with pytest.raises(ValueError, match="n_fft"):
        sa.FeatureSpec(n_fft=128)


def test_spec_augment_masks_bands_and_spans_and_keeps_the_shape():
    import tensorflow as tf

    from pipelines import audio

    tf.random.set_seed(1)
    ones = tf.ones((50, 40))
    masked = audio.spec_augment(ones, freq_param=10, time_param=10, masks=2).numpy()
    assert masked.shape == (50, 40) and set(np.unique(masked)) <= {0.0, 1.0}
    assert (masked == 0).any()
    short = audio.spec_augment(tf.ones((3, 40)), time_param=20).numpy()  # shorter than the time mask
    assert short.shape == (3, 40)


def test_seeded_spec_augment_is_a_function_of_its_seed():
    import tensorflow as tf

    from pipelines import audio

    ones = tf.ones((50, 40))
    first = audio.spec_augment(ones, freq_param=10, time_param=10, seed=tf.constant([1, 2], tf.int64)).numpy()
    again = audio.spec_augment(ones, freq_param=10, time_param=10, seed=tf.constant([1, 2], tf.int64)).numpy()
    other = audio.spec_augment(ones, freq_param=10, time_param=10, seed=tf.constant([1, 3], tf.int64)).numpy()
    np.testing.assert_array_equal(first, again)
    assert first.shape == (50, 40) and set(np.unique(first)) <= {0.0, 1.0} and (first == 0).any()
    assert (first != other).any()
    bands, spans = (first == 0).all(axis=0), (first == 0).all(axis=1)  # whole mel bins, whole frames
    assert 0 < bands.sum() <= 2 * 9 and 0 < spans.sum() <= 2 * 9
    short = audio.spec_augment(tf.ones((3, 40)), time_param=20, seed=tf.constant([0, 0], tf.int64)).numpy()
    assert short.shape == (3, 40)


def test_random_seeds_draw_a_new_stream_each_epoch_from_the_seed_alone():
    from pipelines import audio
    from pipelines.training import epoch_dataset

    def make(seed):
        return audio.random_seeds(seed).take(3)

    def drawn(dataset):
        return [s.numpy().tolist() for s in dataset]

    per_epoch = [drawn(epoch_dataset(make, 5, epoch)) for epoch in range(3)]  # each epoch built afresh (resumed)
    assert per_epoch[0] != per_epoch[1] != per_epoch[2] != per_epoch[0]
    one_fit = make(5)
    assert [drawn(one_fit) for _ in range(3)] == per_epoch  # = the epochs of one uninterrupted run


def test_bucketed_feature_batches_pad_features_and_targets(spoken):
    from pipelines import audio

    waves = [w for w, _, _ in spoken]
    targets = [[s] * (1 + i % 3) for i, (_, s, _) in enumerate(spoken)]
    data = audio.feature_dataset(waves, targets, SPEC)
    batches = list(audio.bucketed_feature_batches(data, 4, [30, 60], seed=0, augment=audio.spec_augment))
    assert sum(len(x) for x, _ in batches) == len(waves)
    for x, y in batches:
        assert x.shape[2] == SPEC.n_mels and y.shape[0] == x.shape[0]
        assert set(np.unique(y.numpy())) - set(range(10)) <= {-1}


def test_synthetic_speech_is_seeded_and_spans_are_inside():
    from pipelines import synthetic_speech

    first = synthetic_speech.digit_strings(6, seed=5)
    again = synthetic_speech.digit_strings(6, seed=5)
    for (w1, s1, spans), (w2, s2, _) in zip(first, again):
        np.testing.assert_array_equal(w1, w2)
        assert s1 == s2 and 1 <= len(s1) <= 7 and len(spans) == len(s1)
        assert all(0 < a < b <= len(w1) for a, b in spans)
        assert all(spans[i][1] < spans[i + 1][0] for i in range(len(spans) - 1))


def test_fsdd_reader_splits_by_file_index(tmp_path):
    from pipelines import fsdd
    from pipelines.readers import DataError

    for name in ("3_alice_0.wav", "3_alice_7.wav", "4_bob_12.wav", "notes.txt", "x_bob_1.wav"):
        (tmp_path / name).write_bytes(sa.write_wav(None, _tone(), 8000))
    splits = fsdd.read_splits(tmp_path)
    assert [(r.digit, r.speaker, r.index) for r in splits["test"]] == [(3, "alice", 0)]
    assert [r.index for r in splits["dev"]] == [7] and [r.index for r in splits["train"]] == [12]
    with pytest.raises(DataError, match="no FSDD recordings"):
        fsdd.read_splits(tmp_path / "..")
    (tmp_path / "3_alice_7.wav").unlink()
    with pytest.raises(DataError, match="dev split"):
        fsdd.read_splits(tmp_path)
