"""Speech auto-encoder and spoken query-by-example search: retrieval metrics, DTW, the index, the model's masking,
one tiny run on built-in synthetic speech (export parity, serving search), bad audio and bad data."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines.retrieval import average_precision, cosine_similarities, rankings, retrieval_scores
from serving import InputError, ModelError
from serving.audio import write_wav
from serving.dtw import dtw, dtw_costs, dtw_many, frame_distances
from serving.speech_search import INDEX_FILE, Match, SpeechIndex, StaleIndexWarning

ROOT = Path(__file__).resolve().parents[1]


# --- retrieval metrics ----------------------------------------------------------------------------------------------

def test_average_precision_by_hand():
    assert average_precision([True, False, True]) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert average_precision([False, True, False, False, True]) == pytest.approx((1 / 2 + 2 / 5) / 2)
    assert average_precision([True, True]) == 1.0
    assert average_precision([False, False]) == 0.0


def test_map_and_precision_at_k_on_a_hand_checked_ranking():
    # items 0, 1 are "a", items 2, 3 are "b"; each row ranks the others by similarity.
    sims = np.array([
        [9.0, 0.1, 0.8, 0.5],   # query 0 (a): 2 (b), 3 (b), 1 (a)  -> AP 1/3
        [0.7, 9.0, 0.2, 0.1],   # query 1 (a): 0 (a), 2, 3         -> AP 1
        [0.3, 0.9, 9.0, 0.8],   # query 2 (b): 1 (a), 3 (b), 0     -> AP 1/2
        [0.1, 0.2, 0.3, 9.0],   # query 3 (b): 2 (b), 1, 0         -> AP 1
    ])
    assert [list(r) for r in rankings(sims)] == [[2, 3, 1], [0, 2, 3], [1, 3, 0], [2, 1, 0]]
    scores = retrieval_scores(sims, ["a", "a", "b", "b"], k=2)
    assert scores["map"] == pytest.approx((1 / 3 + 1 + 1 / 2 + 1) / 4)
    assert scores["precision_at_2"] == pytest.approx((0 + 0.5 + 0.5 + 0.5) / 4)
    assert scores["queries"] == 4


def test_queries_without_a_match_are_left_out_and_ties_keep_order():
    sims = np.zeros((3, 3))  # all tied: each query ranks the others in index order
    scores = retrieval_scores(sims, ["a", "b", "a"], k=10)
    # query 0: [1 (b), 2 (a)] -> AP 1/2; query 2: [0 (a), 1] -> AP 1; query 1 has no other "b"
    assert scores["queries"] == 2
    assert scores["map"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="no query has another item with its label"):
        retrieval_scores(sims, ["a", "b", "c"])


def test_cosine_similarities():
    sims = cosine_similarities(np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0], [0.0, 0.0]]))
    assert sims[0, 1] == pytest.approx(1.0) and sims[0, 2] == pytest.approx(0.0) and sims[3, 3] == 0.0


# --- DTW ------------------------------------------------------------------------------------------------------------

def _naive_dtw(a, b, distance="euclidean"):
    cost = frame_distances(a, b, distance)
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            acc[i, j] = cost[i - 1, j - 1] + min(acc[i - 1, j], acc[i, j - 1], acc[i - 1, j - 1])
    return acc[n, m] / (n + m)


def test_dtw_tiny_hand_cases():
    a = np.array([[0.0], [1.0], [2.0]])
    assert dtw(a, a) == 0.0
    # b repeats a's first frame: the warp absorbs it, cost 0
    assert dtw(a, np.array([[0.0], [0.0], [1.0], [2.0]])) == 0.0
    # one frame against two frames at distance 1 each: total 2 over 1 + 2 frames
    assert dtw(np.array([[0.0]]), np.array([[1.0], [1.0]])) == pytest.approx(2 / 3)
    # [0, 2] vs [1]: both frames align to the single one, 1 + 1 over 3
    assert dtw(np.array([[0.0], [2.0]]), np.array([[1.0]])) == pytest.approx(2 / 3)
    # 2-D frames, Euclidean: (3, 4) is 5 away from the origin
    assert dtw(np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]])) == pytest.approx(5 / 2)
    # cosine: same direction costs 0, opposite 2
    assert dtw(np.array([[1.0, 1.0]]), np.array([[2.0, 2.0]]), "cosine") == pytest.approx(0.0)
    assert dtw(np.array([[1.0, 0.0]]), np.array([[-1.0, 0.0]]), "cosine") == pytest.approx(1.0)  # 2 / 2


def test_vectorised_dtw_matches_the_textbook_recursion():
    rng = np.random.default_rng(0)
    query = rng.normal(size=(13, 4))
    candidates = [rng.normal(size=(int(rng.integers(1, 25)), 4)) for _ in range(12)]
    for distance in ("euclidean", "cosine"):
        got = dtw_many(query, candidates, distance, chunk=5)  # several chunks of mixed lengths
        want = [_naive_dtw(query, c, distance) for c in candidates]
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_dtw_refuses_empty_sequences():
    with pytest.raises(ValueError, match="at least one frame"):
        dtw_many(np.zeros((0, 3)), [np.ones((2, 3))])
    with pytest.raises(ValueError, match="candidate 1 has no frames"):
        dtw_many(np.ones((2, 3)), [np.ones((2, 3)), np.zeros((0, 3))])
    with pytest.raises(ValueError, match=r"frames have 3 features and candidate 0's shape is \(2, 2\)"):
        dtw_many(np.ones((2, 3)), [np.ones((2, 2))])
    with pytest.raises(ValueError, match="at least one frame"):
        dtw_costs(np.ones((1, 2, 2)), np.array([0]))


# --- the index ------------------------------------------------------------------------------------------------------

def test_index_search_ranks_by_cosine_and_round_trips(tmp_path):
    index = SpeechIndex(2, model_sha256="abc")
    index.add(["east", "north", "northeast"], np.array([[3.0, 0.0], [0.0, 0.5], [1.0, 1.0]]), ["e", "n", "ne"])
    index.add("west", np.array([-1.0, 0.0]))
    matches = index.search(np.array([2.0, 1.0]), k=3)
    assert [m.key for m in matches] == ["northeast", "east", "north"]
    assert matches[0] == Match("northeast", "ne", pytest.approx(3 / np.sqrt(10)))
    assert [m.key for m in index.search(np.array([1.0, 0.0]), k=2, exclude="east")] == ["northeast", "north"]
    assert index.search(np.array([-1.0, 0.0]), k=1)[0].label is None

    index.save(tmp_path / "index.npz")
    loaded = SpeechIndex.load(tmp_path / "index.npz")
    assert (loaded.keys, loaded.labels, loaded.model_sha256) == (index.keys, index.labels, "abc")
    assert loaded.search(np.array([2.0, 1.0]), k=3) == matches


def test_index_refuses_bad_vectors_and_keys(tmp_path):
    index = SpeechIndex(3)
    index.add(["a"], np.ones((1, 3)))
    with pytest.raises(InputError, match="already in the index"):
        index.add(["a"], np.ones((1, 3)))
    with pytest.raises(InputError, match="must have 3 values each, got shape"):
        index.add(["b"], np.ones((1, 4)))
    with pytest.raises(InputError, match="NaN"):
        index.add(["b"], np.array([[1.0, np.nan, 0.0]]))
    with pytest.raises(InputError, match="all-zero vector"):
        index.search(np.zeros(3))
    with pytest.raises(InputError, match="k must be at least 1"):
        index.search(np.ones(3), k=0)
    with pytest.raises(InputError, match="2 keys, 1 vectors"):
        index.add(["c", "d"], np.ones((1, 3)))
    assert len(index) == 1
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(ModelError, match="is not a speech index"):
        SpeechIndex.load(tmp_path / "bad.npz")


# --- the model ------------------------------------------------------------------------------------------------------

def test_padded_frames_do_not_change_the_utterance_vector():
    from models.speech_autoencoder import OUTPUT, RECONSTRUCTION, build_speech_autoencoder

    autoencoder, encoder = build_speech_autoencoder(6, units=5, bidirectional=True)
    rng = np.random.default_rng(1)
    short, long = rng.normal(size=(4, 6)).astype("float32"), rng.normal(size=(9, 6)).astype("float32")
    batch = np.zeros((2, 9, 6), np.float32)
    batch[0, :4], batch[1] = short, long
    together = np.asarray(encoder(batch)[OUTPUT])
    alone = np.asarray(encoder(short[None])[OUTPUT])
    assert together.shape == (2, 10)
    np.testing.assert_allclose(together[0], alone[0], atol=1e-6)
    assert np.abs(together[0] - together[1]).max() > 1e-3
    assert autoencoder(batch)[RECONSTRUCTION].shape == (2, 9, 6)
    # the autoencoder's encoder is the exported encoder: the same weights
    assert {id(w) for w in encoder.weights} <= {id(w) for w in autoencoder.weights}


# --- one tiny run on built-in data ----------------------------------------------------------------------------------

TINY = dict(synthetic_size=60, epochs=1, hidden=8, batch_size=32, patience=1)


@pytest.fixture(scope="module")
def speech_run(tmp_path_factory):
    """A trained and exported speech auto-encoder run on built-in synthetic words: (run dir, metrics)."""
    from pipelines.speech_autoencoder import SpeechAutoencoderConfig, run

    out = tmp_path_factory.mktemp("runs") / "speech_autoencoder"
    return out, run(SpeechAutoencoderConfig(out=str(out), **TINY))


@pytest.fixture(scope="module")
def search(speech_run):
    import serving

    return serving.load(speech_run[0])


def test_run_writes_metrics_export_and_index(speech_run):
    run_dir, metrics = speech_run
    for name in ("model.onnx", "metadata.json", "metrics.json", "model.keras", "saved_model", INDEX_FILE):
        assert (run_dir / name).exists(), name
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved == metrics and all(isinstance(v, (int, float)) for v in saved.values())
    for name in ("map", "precision_at_10", "mean_pooled_map", "dtw_map", "dtw_precision_at_10"):
        assert 0.0 < metrics[name] <= 1.0, name
    assert metrics["dtw_query_seconds"] > 0 and metrics["test_utterances"] == 20
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["task"] == "speech_autoencoder" and meta["sample_rate"] == 8000
    assert meta["feature_spec"]["n_mels"] == meta["inputs"]["features"]["shape"][-1] == 40
    assert meta["embedding_dim"] == 16 and meta["parity"]["onnx_max_abs_diff"]["embedding"] <= 1e-5


def test_served_vectors_match_keras_on_the_same_audio(speech_run, search):
    """numpy front end + onnxruntime (serving) vs tf.signal front end + Keras (training), on one clip."""
    import keras

    from pipelines.audio import features as tf_features
    from pipelines.synthetic_speech import words
    from serving.audio import FeatureSpec

    encoder = keras.saving.load_model(speech_run[0] / "model.keras", compile=False)
    waves = [w for w, _, _ in words(3, seed=7)]
    keras_vectors = [np.asarray(encoder(np.asarray(tf_features(w, FeatureSpec()))[None])["embedding"])[0] for w in waves]
    served = search.embed_batch([(w, 8000) for w in waves])  # one padded batch
    np.testing.assert_allclose(served, np.stack(keras_vectors), atol=1e-4)
    np.testing.assert_allclose(search.embed(write_wav(None, waves[1], 8000, "float32")), served[1], atol=1e-5)


def test_search_finds_an_indexed_clip_first(search, tmp_path):
    from pipelines.synthetic_speech import words

    assert len(search.index) == 20 and search.index.labels[:3] == ["0", "1", "2"]
    # the test split's clips are regenerated exactly by the same seed (offset 2 of the default seed 0)
    wave, symbol, _ = words(20, seed=2)[5]
    path = tmp_path / "query.wav"
    write_wav(path, wave, 8000, "float32")
    best = search.search(str(path), k=3)
    assert best[0].key == f"synthetic_test_5_{symbol}" and best[0].score == pytest.approx(1.0, abs=1e-4)
    assert best[0].score >= best[1].score >= best[2].score

    result = search.predict(str(path))
    assert len(result.vector) == 16 and result.frames == len(search.features(str(path)))
    assert result.matches[0].key == best[0].key and result.seconds == pytest.approx(len(wave) / 8000, abs=1e-3)
    json.dumps(result.to_dict())

    search.add("my_query", str(path), label="mine")
    assert [m.key for m in search.search(str(path), k=2)] in (
        [best[0].key, "my_query"], ["my_query", best[0].key])


def test_index_of_another_model_is_not_used(speech_run, tmp_path):
    import shutil

    import serving

    copy = tmp_path / "copy"
    shutil.copytree(speech_run[0], copy)
    index = SpeechIndex.load(copy / INDEX_FILE)
    index.model_sha256 = "0" * 64
    index.save(copy / INDEX_FILE)
    with pytest.warns(StaleIndexWarning, match="made with another export of the model"):
        fresh = serving.load(copy)
    assert len(fresh.index) == 0
    with pytest.raises(InputError, match="the index is empty"):
        fresh.search((np.sin(np.arange(4000) * 0.3) * 0.5, 8000))


def test_serving_cli_prints_the_nearest_clips(speech_run, tmp_path):
    from pipelines.synthetic_speech import words

    path = tmp_path / "q.wav"
    write_wav(path, words(20, seed=2)[3][0], 8000)
    out = subprocess.run([sys.executable, "-m", "serving", "predict", str(speech_run[0]), str(path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "16-value vector of" in out.stdout and "synthetic_test_3_3 (3) 1.000" in out.stdout


# --- bad audio ------------------------------------------------------------------------------------------------------

def _tone(seconds=0.5, rate=8000):
    return (0.5 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def test_bad_audio_gives_clear_errors(search, tmp_path):
    cases = {
        "silence": (np.zeros(4000, np.float32), 8000),
        "0-length file": b"",
        "corrupt header": b"RIFX" + b"\0" * 40,
        "NaN samples": (np.where(np.arange(4000) == 7, np.nan, _tone()), 8000),
        "too long": (np.tile(_tone(), 61), 8000),  # 30.5 s
        "3 channels": (np.stack([_tone()] * 3, axis=1), 8000),
        "not audio": 3.5,
    }
    messages = {
        "silence": "is silent", "0-length file": r"is empty \(0 bytes\)", "corrupt header": "not a WAV file",
        "NaN samples": "NaN or infinite samples", "too long": "lasts 30.5 s; this model takes clips of at most 30 s",
        "3 channels": "has 3 channels; mono is expected", "not audio": "audio must be a WAV path",
    }
    for name, clip in cases.items():
        with pytest.raises(InputError, match=messages[name]):
            search.embed(clip)
    with pytest.raises(InputError, match=r"^clip 1: .*is silent"):
        search.predict_batch([(_tone(), 8000), (np.zeros(4000, np.float32), 8000)])
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(InputError, match="empty.wav is empty"):
        search.search(str(tmp_path / "empty.wav"))
    with pytest.raises(InputError, match="audio file not found"):
        search.embed(str(tmp_path / "missing.wav"))


def test_stereo_is_averaged_and_other_rates_are_resampled(search):
    tone = _tone()
    mono = search.embed((tone, 8000))
    np.testing.assert_allclose(search.embed((np.stack([tone, tone], axis=1), 8000)), mono, atol=1e-6)
    np.testing.assert_allclose(search.embed(write_wav(None, np.stack([tone, tone], axis=1), 8000, "float32")), mono,
                               atol=1e-6)
    resampled = search.embed((np.sin(2 * np.pi * 440 * np.arange(8000) / 16000).astype(np.float32) * 0.5, 16000))
    assert np.dot(resampled, mono) / np.linalg.norm(resampled) / np.linalg.norm(mono) > 0.99


# --- bad data and settings ------------------------------------------------------------------------------------------

def test_fsdd_split_and_bad_folders(tmp_path):
    from pipelines.readers import DataError
    from pipelines.speech_autoencoder import SpeechAutoencoderConfig, load_data
    from serving.audio import FeatureSpec

    folder = tmp_path / "recordings"
    folder.mkdir()
    for digit in (1, 7):
        for index in (0, 5, 12):
            write_wav(folder / f"{digit}_alice_{index}.wav", _tone(0.1), 8000)
    (folder / "README.txt").write_text("not a recording")
    splits = load_data(SpeechAutoencoderConfig(data_dir=str(folder)), FeatureSpec())
    assert {k: [u.key for u in v] for k, v in splits.items()} == {
        "train": ["1_alice_12.wav", "7_alice_12.wav"], "valid": ["1_alice_5.wav", "7_alice_5.wav"],
        "test": ["1_alice_0.wav", "7_alice_0.wav"]}
    assert [u.label for u in splits["test"]] == ["1", "7"] and splits["test"][0].wave.dtype == np.float32

    with pytest.raises(DataError, match="FSDD folder not found"):
        load_data(SpeechAutoencoderConfig(data_dir=str(tmp_path / "nowhere")), FeatureSpec())


def test_cli_reports_bad_settings_and_missing_data(tmp_path):
    from pipelines.speech_autoencoder import main

    assert main(["--hidden", "0", "--out", str(tmp_path / "run")]) == 2
    assert main(["--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")]) == 2
    assert not (tmp_path / "run").exists()
