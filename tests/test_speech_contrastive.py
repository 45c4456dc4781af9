"""Contrastive training of the speech encoder and leave-speakers-out search: the NT-Xent loss on toy batches, the
views' augmentations on synthetic features, the leave-speakers-out retrieval metric on a hand-made index, the
speaker split, and one tiny contrastive leave-one-speaker-out run that exports and serves (parity asserted)."""

import json

import numpy as np
import pytest

from pipelines.retrieval import loso_retrieval_scores, retrieval_scores, speaker_queries
from serving.audio import FeatureSpec, write_wav

# --- the contrastive loss -------------------------------------------------------------------------------------------


def test_nt_xent_by_hand():
    from models.speech_autoencoder import nt_xent

    a = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    # anchor a0: partner b0 at cosine 1, the others (a1, b1) at 0; temperature 1
    want = -np.log(np.e / (np.e + 2.0))
    np.testing.assert_allclose(np.asarray(nt_xent(a, 3.0 * a, temperature=1.0)), [want, want], rtol=1e-6)


def test_nt_xent_is_low_for_matching_views_higher_when_shuffled_and_has_gradients():
    import tensorflow as tf

    from models.speech_autoencoder import CONTRASTIVE, NTXentLoss, nt_xent

    rng = np.random.default_rng(0)
    a = rng.normal(size=(16, 32)).astype(np.float32)
    same = float(np.mean(nt_xent(a, a + 0.01 * rng.normal(size=a.shape).astype(np.float32), 0.1)))
    shuffled = float(np.mean(nt_xent(a, a[rng.permutation(16)], 0.1)))
    assert same < 0.1 < np.log(31) - 1 < shuffled  # chance level is log(2 x 16 - 1)

    loss = NTXentLoss(temperature=0.1)
    pair = np.concatenate([a, a[::-1]], axis=1)
    assert float(loss(np.zeros(16), pair)) == pytest.approx(float(np.mean(nt_xent(a, a[::-1], 0.1))), rel=1e-6)
    assert NTXentLoss.from_config(loss.get_config()).temperature == 0.1

    variable = tf.Variable(a)
    with tf.GradientTape() as tape:
        value = tf.reduce_mean(nt_xent(variable, tf.constant(a[::-1].copy()), 0.1))
    grad = tape.gradient(value, variable).numpy()
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 1e-3
    assert CONTRASTIVE == "contrastive"


def test_frame_mse_ignores_padded_frames():
    from models.speech_autoencoder import FrameMSE

    target = np.zeros((2, 3, 2), np.float32)
    target[0, :2], target[1] = 1.0, 2.0
    pred = np.zeros_like(target)
    pred[0, 2] = 100.0  # a padded frame: not counted
    np.testing.assert_allclose(np.asarray(FrameMSE().call(target, pred)), [1.0, 4.0])


def test_contrastive_trainer_shares_the_encoder_and_trains_a_step():
    from models.speech_autoencoder import (
        CONTRASTIVE, INPUT, OUTPUT, RECONSTRUCTION, VIEW_A, VIEW_B, FrameMSE, NTXentLoss, build_contrastive_trainer,
        build_speech_autoencoder)

    autoencoder, encoder = build_speech_autoencoder(6, units=4)
    trainer = build_contrastive_trainer(encoder, autoencoder)
    assert {id(w) for w in autoencoder.weights} == {id(w) for w in trainer.weights}
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 5, 6)).astype(np.float32)
    out = trainer({VIEW_A: x, VIEW_B: x[:, ::-1], INPUT: x})
    assert out[CONTRASTIVE].shape == (4, 16) and out[RECONSTRUCTION].shape == (4, 5, 6)
    np.testing.assert_allclose(np.asarray(out[CONTRASTIVE])[:, :8], np.asarray(encoder(x)[OUTPUT]), atol=1e-6)
    import tensorflow as tf

    with tf.GradientTape() as tape:
        out = trainer({VIEW_A: x, VIEW_B: x[:, ::-1], INPUT: x})
        loss = NTXentLoss()(np.zeros(4), out[CONTRASTIVE]) + FrameMSE()(x, out[RECONSTRUCTION])
    grads = tape.gradient(loss, encoder.trainable_weights)  # both losses reach the encoder
    assert all(g is not None and np.all(np.isfinite(g)) for g in grads) and max(float(tf.reduce_max(tf.abs(g)))
                                                                                for g in grads) > 0


# --- the views ------------------------------------------------------------------------------------------------------

def _synthetic_features(frames=30, bands=40, seed=0):
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.normal(size=(frames, bands)), axis=0).astype(np.float32)  # smooth-ish in time
    x -= x.mean(axis=0)
    return x / x.std()  # normalised as the front end does: each band's mean 0, one standard deviation 1


def test_resample_frames_is_a_crop_and_a_tempo_change():
    from pipelines.speech_autoencoder import resample_frames

    x = _synthetic_features(10, 3)
    np.testing.assert_allclose(resample_frames(x, 0.0, 9.0, 10).numpy(), x, atol=1e-5)
    slow = resample_frames(x, 0.0, 9.0, 19).numpy()  # half speed: the original frames and the midpoints between
    np.testing.assert_allclose(slow[::2], x, atol=1e-5)
    np.testing.assert_allclose(slow[1::2], (x[:-1] + x[1:]) / 2, atol=1e-5)
    np.testing.assert_allclose(resample_frames(x, 2.0, 5.0, 4).numpy(), x[2:6], atol=1e-5)  # a crop


def test_warp_bins_moves_spectral_peaks():
    from pipelines.speech_autoencoder import warp_bins

    x = _synthetic_features(4, 40)
    np.testing.assert_allclose(warp_bins(x, 1.0).numpy(), x, atol=1e-6)
    peak = np.zeros((1, 40), np.float32)
    peak[0, 10] = 1.0
    assert int(np.argmax(warp_bins(peak, 1.2).numpy())) == 12  # band i reads band i / 1.2
    assert int(np.argmax(warp_bins(peak, 0.8).numpy())) == 8
    for alpha in (0.85, 1.15):  # the ends stay in place: the map covers all the bands
        ramp = np.arange(40, dtype=np.float32)[None]
        warped = warp_bins(ramp, alpha).numpy()[0]
        assert warped[0] == 0 and warped[-1] == pytest.approx(39) and np.all(np.diff(warped) > 0)


def test_augment_view_is_seeded_bounded_and_normalised():
    import tensorflow as tf

    from pipelines.speech_autoencoder import Augmentation, augment_view

    spec = FeatureSpec()
    x = _synthetic_features(50)
    aug = Augmentation(tempo=0.25, warp=0.15, crop=0.1, noise=0.0, freq_mask=0, time_mask=0)
    views = [augment_view(x, aug, tf.constant([s, 7], tf.int64), spec).numpy() for s in range(20)]
    again = augment_view(x, aug, tf.constant([3, 7], tf.int64), spec).numpy()
    np.testing.assert_array_equal(again, views[3])
    lengths = [len(v) for v in views]
    # at most 10% cut off each end, tempo factor in [1/1.25, 1.25]
    assert min(lengths) >= round(0.8 * 49 / 1.25) and max(lengths) <= round(50 * 1.25) + 1
    assert len(set(lengths)) > 5
    for v in views:
        assert v.shape[1] == 40 and np.all(np.isfinite(v))
        np.testing.assert_allclose(v.mean(axis=0), 0.0, atol=1e-4)  # the normalisation redone
        assert v.std() == pytest.approx(1.0, abs=1e-3)
    plain = augment_view(x, Augmentation(0.0, 0.0, 0.0, 0.0, 0, 0), tf.constant([1, 2], tf.int64), spec).numpy()
    np.testing.assert_allclose(plain, x, atol=1e-4)  # nothing asked: the clip itself

    masked = augment_view(x, Augmentation(0.0, 0.0, 0.0, 0.3, 9, 9), tf.constant([5, 1], tf.int64), spec).numpy()
    assert masked.shape == x.shape and 0.1 < np.std(masked - x) < 0.6


def test_view_dataset_pads_each_view_and_adds_the_clean_clip_for_both():
    from models.speech_autoencoder import CONTRASTIVE, INPUT, RECONSTRUCTION, VIEW_A, VIEW_B
    from pipelines.speech_autoencoder import SpeechAutoencoderConfig, view_dataset

    feats = [_synthetic_features(n, seed=n) for n in (12, 14, 13, 15, 30, 33)]
    config = SpeechAutoencoderConfig(objective="both", batch_size=4)
    batches = list(view_dataset(feats, config, FeatureSpec(), seed=1))
    assert sum(len(b[1][CONTRASTIVE]) for b in batches) == 6
    for inputs, targets in batches:
        assert set(inputs) == {VIEW_A, VIEW_B, INPUT} and set(targets) == {CONTRASTIVE, RECONSTRUCTION}
        for view in (inputs[VIEW_A], inputs[VIEW_B]):
            real = np.any(view.numpy() != 0, axis=-1)
            assert view.shape[0] == len(targets[CONTRASTIVE]) and view.shape[-1] == 40
            assert real.any(axis=1).all() and real[:, -1].any()  # padded to the batch's longest view
        clean = targets[RECONSTRUCTION].numpy()
        assert np.abs(inputs[INPUT].numpy() - clean).max() > 0  # --noise on the auto-encoder's input
    second = list(view_dataset(feats, config, FeatureSpec(), seed=1))
    np.testing.assert_array_equal(batches[0][0][VIEW_A].numpy(), second[0][0][VIEW_A].numpy())
    contrastive = next(iter(view_dataset(feats, SpeechAutoencoderConfig(objective="contrastive"), FeatureSpec(),
                                         seed=1)))
    assert set(contrastive[0]) == {VIEW_A, VIEW_B} and set(contrastive[1]) == {CONTRASTIVE}


def test_dtw_neighbours_are_the_nearest_by_dtw():
    from pipelines.speech_autoencoder import dtw_neighbours
    from serving.dtw import dtw_many

    rng = np.random.default_rng(3)
    words = [np.repeat(rng.normal(size=(5, 4)), 3, axis=0) for _ in range(3)]  # three "words", 15 frames each
    feats = [np.repeat(w, rng.integers(1, 3, size=len(w)), axis=0) + 0.05 * rng.normal(size=(1, 4)) for w in words
             for _ in range(2)]  # two tempo-varied takes of each
    assert [list(row) for row in dtw_neighbours(feats, 1)] == [[1], [0], [3], [2], [5], [4]]
    exact = dtw_neighbours(feats, 3, pool=1)
    for q, row in enumerate(exact):
        scores = dtw_many(feats[q], feats)
        scores[q] = np.inf
        assert list(row) == list(np.argsort(scores, kind="stable")[:3])


def test_dtw_neighbours_from_other_voices():
    from pipelines.readers import DataError
    from pipelines.speech_autoencoder import dtw_neighbours, voice_signatures

    rng = np.random.default_rng(4)
    word_a, word_b = rng.normal(size=(12, 3)), rng.normal(size=(12, 3))
    # clips 0, 1: word a by voice A (nearly the same); 2: word a by voice B (further); 3: word b by voice B
    feats = [word_a, word_a + 0.01, word_a + 0.3 * rng.normal(size=(12, 3)), word_b]
    raw = [f + offset for f, offset in zip(feats, (5.0, 5.1, -5.0, -5.1))]  # the voice: a level on every band
    voices = voice_signatures(raw)
    assert voices.shape == (4, 3)
    assert dtw_neighbours(feats, 1, pool=1)[0, 0] == 1
    # each clip's 1 nearest other voice excluded (1/3 of the 3 others): clip 0 must look past clip 1
    nearest = dtw_neighbours(feats, 1, pool=1, voices=voices, exclude=1 / 3)[:, 0]
    assert list(nearest[:3]) == [2, 2, 0] and nearest[3] in (0, 1)
    with pytest.raises(DataError, match="at most the 2 candidate partners"):
        dtw_neighbours(feats, 3, voices=voices, exclude=1 / 3)


def test_view_dataset_draws_second_views_from_the_partners():
    from models.speech_autoencoder import VIEW_A, VIEW_B
    from pipelines.speech_autoencoder import SpeechAutoencoderConfig, view_dataset

    lengths = [10, 13, 16, 19]  # a view's real frames tell which clip it was drawn from (no crop, tempo or masks)
    feats = [_synthetic_features(n, seed=n) for n in lengths]
    config = SpeechAutoencoderConfig(objective="contrastive", tempo=0, crop=0, noise=0, freq_mask=0, time_mask=0)
    partners = np.array([[1], [2], [3], [0]])
    pairs = set()
    data = view_dataset(feats, config, FeatureSpec(), seed=0, batch_size=2, partners=partners)
    for _ in range(6):  # each pass over the dataset is an epoch: new partners drawn
        for inputs, _ in data:
            a, b = (np.any(inputs[v].numpy() != 0, axis=-1).sum(axis=1) for v in (VIEW_A, VIEW_B))
            pairs |= {(lengths.index(x), lengths.index(y)) for x, y in zip(a, b)}
    assert pairs == {(i, i) for i in range(4)} | {(i, (i + 1) % 4) for i in range(4)}


# --- leave-speakers-out retrieval -----------------------------------------------------------------------------------

def test_loso_retrieval_scores_on_a_hand_made_index():
    # 5 clips: labels a a b a b, speakers x y x x y; only speaker x's clips (0, 2, 3) query, against all the others.
    labels, speakers = ["a", "a", "b", "a", "b"], ["x", "y", "x", "x", "y"]
    sims = np.array([
        [9.0, 0.2, 0.9, 0.1, 0.5],  # query 0 (a): 2 (b), 4 (b), 1 (a), 3 (a)  -> AP (1/3 + 2/4) / 2
        [0.0, 9.0, 0.0, 0.0, 0.0],  # (speaker y: never a query)
        [0.3, 0.0, 9.0, 0.2, 0.8],  # query 2 (b): 4 (b), 0, 3, 1                -> AP 1
        [0.8, 0.7, 0.1, 9.0, 0.2],  # query 3 (a): 0 (a), 1 (a), 4, 2            -> AP 1
        [0.0, 0.0, 0.0, 0.0, 9.0],
    ])
    scores = loso_retrieval_scores(sims, labels, speakers, ["x"], k=2)
    assert scores["queries"] == 3
    assert scores["map"] == pytest.approx(((1 / 3 + 2 / 4) / 2 + 1 + 1) / 3)
    assert scores["precision_at_2"] == pytest.approx((0 + 0.5 + 1) / 3)
    assert list(speaker_queries(speakers, ["y"])) == [1, 4]
    # every speaker held out: the usual all-queries figure
    assert loso_retrieval_scores(sims, labels, speakers, ["x", "y"]) == retrieval_scores(sims, labels)
    with pytest.raises(ValueError, match="no item is spoken by z"):
        loso_retrieval_scores(sims, labels, speakers, ["z"])


def _tone(seconds=0.1, rate=8000):
    return (0.5 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def test_fsdd_leave_speakers_out_split(tmp_path):
    from pipelines.readers import DataError
    from pipelines.speech_autoencoder import SpeechAutoencoderConfig, load_data

    folder = tmp_path / "recordings"
    folder.mkdir()
    for speaker in ("alice", "bob", "carol"):
        for digit in (1, 7):
            for index in (0, 5, 12):
                write_wav(folder / f"{digit}_{speaker}_{index}.wav", _tone(), 8000)
    splits = load_data(SpeechAutoencoderConfig(data_dir=str(folder), test_speakers="bob"), FeatureSpec())
    assert {u.speaker for u in splits["train"]} == {u.speaker for u in splits["valid"]} == {"alice", "carol"}
    assert [u.key for u in splits["train"]] == ["1_alice_12.wav", "7_alice_12.wav", "1_carol_12.wav", "7_carol_12.wav"]
    # the index: the usual test split (file index 0-4) of every speaker, the held-out one's clips among them
    assert [(u.key, u.speaker) for u in splits["test"]][:3] == [("1_alice_0.wav", "alice"), ("7_alice_0.wav", "alice"),
                                                                ("1_bob_0.wav", "bob")]
    assert len(splits["test"]) == 6
    with pytest.raises(DataError, match="unknown .*dave"):
        load_data(SpeechAutoencoderConfig(data_dir=str(folder), test_speakers="dave"), FeatureSpec())
    with pytest.raises(DataError, match="none is left to train on"):
        load_data(SpeechAutoencoderConfig(data_dir=str(folder), test_speakers="alice,bob,carol"), FeatureSpec())


def test_built_in_speakers_and_bad_settings(tmp_path):
    from pipelines.readers import DataError
    from pipelines.speech_autoencoder import SpeechAutoencoderConfig, load_data, main

    splits = load_data(SpeechAutoencoderConfig(synthetic_size=50, test_speakers="voice2,voice0"), FeatureSpec())
    assert {u.speaker for u in splits["train"]} | {u.speaker for u in splits["valid"]} <= {"voice1", "voice3", "voice4"}
    assert {"voice0", "voice2"} <= {u.speaker for u in splits["test"]}
    with pytest.raises(DataError, match="the built-in speakers are voice0"):
        load_data(SpeechAutoencoderConfig(test_speakers="george"), FeatureSpec())
    for flags in (["--temperature", "0"], ["--warp", "0.6"], ["--objective", "both", "--time-mask", "-1"],
                  ["--test-speakers", " , "], ["--test-speakers", "voice9"]):
        assert main(flags + ["--out", str(tmp_path / "run")]) == 2, flags
    assert not (tmp_path / "run").exists()


# --- one tiny contrastive run, leave-one-speaker-out ----------------------------------------------------------------

@pytest.fixture(scope="module")
def contrastive_run(tmp_path_factory):
    """A --quick contrastive run (shrunk further) on built-in words with voice1 held out, through the command line,
    exported and indexed: (run dir, metrics)."""
    from pipelines.speech_autoencoder import main

    out = tmp_path_factory.mktemp("runs") / "speech_contrastive"
    assert main(["--quick", "--objective", "contrastive", "--test-speakers", "voice1", "--synthetic-size", "60",
                 "--epochs", "1", "--hidden", "8", "--batch-size", "16", "--out", str(out)]) == 0
    return out, json.loads((out / "metrics.json").read_text())


def test_contrastive_loso_run_exports_and_serves(contrastive_run):
    import keras

    import serving
    from pipelines.audio import features as tf_features
    from pipelines.synthetic_speech import words

    run_dir, metrics = contrastive_run
    assert (run_dir / "model.onnx").is_file() and not (run_dir / "autoencoder.keras").exists()
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["model"]["objective"] == meta["training"]["objective"] == "contrastive"
    assert meta["training"]["test_speakers"] == ["voice1"] and meta["training"]["views"]["tempo"] == 0.25
    assert meta["parity"]["onnx_max_abs_diff"]["embedding"] <= 1e-5 and metrics["onnx_max_abs_diff"] <= 1e-5
    # voice1's test clips query the whole test split (every voice)
    assert 0 < metrics["query_utterances"] < metrics["test_utterances"] == 20
    for name in ("map", "dtw_map", "mean_pooled_map", "dev_map"):
        assert 0.0 < metrics[name] <= 1.0, name
    assert 0 < metrics["index_search_seconds"] < metrics["autoencoder_query_seconds"]

    search = serving.load(run_dir)
    assert len(search.index) == 20
    encoder = keras.saving.load_model(run_dir / "model.keras", compile=False)
    waves = [w for w, _, _ in words(3, seed=7)]
    want = np.stack([np.asarray(encoder(np.asarray(tf_features(w, FeatureSpec()))[None])["embedding"])[0]
                     for w in waves])
    np.testing.assert_allclose(search.embed_batch([(w, 8000) for w in waves]), want, atol=1e-4)
    assert search.search((waves[0], 8000), k=3)[0].score > 0.5

