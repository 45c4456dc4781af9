"""CTC speech recognition: numpy decoders (greedy == keras.ops.ctc_decode, beam == brute force), the CTC loss,
trimming vs CTC on repeated digits, the model's padding invariance, and a tiny run end to end (train, export with
parity, serve WAV files of any rate and format, clear errors)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import serving
from serving import audio, ctc
from serving.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def _random_log_probs(rng, steps, classes, sharp=3.0):
    logits = rng.normal(0, sharp, (steps, classes))
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def _collapse(path, blank=0):
    return tuple(c for i, c in enumerate(path) if c != blank and (i == 0 or c != path[i - 1]))


# --- decoders -------------------------------------------------------------------------------------------------------

def test_greedy_equals_keras_ctc_decode():
    import keras

    rng = np.random.default_rng(0)
    lengths = np.array([30, 17, 5, 1, 24])
    batch = np.stack([_random_log_probs(rng, 30, 6, sharp=1.5) for _ in lengths]).astype(np.float32)
    decoded, _ = keras.ops.ctc_decode(batch, lengths, strategy="greedy", mask_index=0)
    decoded = np.asarray(decoded[0])
    for row, n in enumerate(lengths):
        ours = [e.label for e in ctc.greedy(batch[row, :n], blank=0)]
        theirs = [int(c) for c in decoded[row] if c >= 0]
        assert ours == theirs


def test_greedy_keeps_repeats_split_by_blank_and_times_them():
    # frames: 3 3 _ 3 _ _ 1 1  → "3 3 1", first 3 on frames 0-1, second on 3, the 1 on 6-7
    path = [3, 3, 0, 3, 0, 0, 1, 1]
    log_probs = np.log(np.full((8, 4), 0.02))
    log_probs[np.arange(8), path] = np.log(0.94)
    emissions = ctc.greedy(log_probs)
    assert [(e.label, e.start, e.end) for e in emissions] == [(3, 0, 1), (3, 3, 3), (1, 6, 7)]
    assert all(abs(e.prob - 0.94) < 1e-9 for e in emissions)
    aligned = ctc.align(log_probs, (3, 3, 1))
    assert [(e.label, e.start, e.end) for e in aligned] == [(3, 0, 1), (3, 3, 3), (1, 6, 7)]


def test_prefix_beam_search_finds_the_most_probable_labelling():
    rng = np.random.default_rng(1)
    for _ in range(5):
        log_probs = _random_log_probs(rng, 5, 3, sharp=1.0)
        totals: dict[tuple, float] = {}
        for path in itertools.product(range(3), repeat=5):  # every alignment, summed per labelling
            p = float(np.exp(sum(log_probs[t, c] for t, c in enumerate(path))))
            totals[_collapse(path)] = totals.get(_collapse(path), 0.0) + p
        best = max(totals, key=totals.get)
        found, score = ctc.prefix_beam_search(log_probs, blank=0, beam_width=50, prune=-np.inf)[0]
        assert found == best
        assert abs(np.exp(score) - totals[best]) < 1e-9


def test_beam_can_beat_greedy():
    # greedy picks blank at each frame (0.6) → "", but "1" has 1 - 0.6 * 0.6 = 0.64 in total
    log_probs = np.log(np.array([[0.6, 0.4], [0.6, 0.4]]))
    assert ctc.greedy(log_probs) == []
    assert ctc.prefix_beam_search(log_probs)[0][0] == (1,)


def test_packed_ctc_loss_is_the_negative_log_likelihood():
    from models.speech import PackedCTCLoss

    rng = np.random.default_rng(2)
    log_probs = _random_log_probs(rng, 4, 3, sharp=1.0)
    target = (1, 1)
    total = sum(np.exp(sum(log_probs[t, c] for t, c in enumerate(path)))
                for path in itertools.product(range(3), repeat=4) if _collapse(path) == target)
    padded = np.zeros((1, 6, 3), np.float32)
    padded[0, :4] = log_probs
    y = np.array([[4, 1, 1, 0]])  # 4 real steps, labels 1 1, padding 0
    loss = float(PackedCTCLoss()(y, padded))
    assert abs(loss + np.log(total)) < 1e-4


# --- trimming vs CTC, scoring ---------------------------------------------------------------------------------------

def test_trimming_merges_repeats_unless_silence_separates_them():
    from pipelines.speech_ctc import score, trim

    assert trim(np.array([4, 4, 4, 2, 2, 2, 2])) == [4, 2]
    assert trim(np.array([0, 4, 4, 4, 4, 0])) == [4]          # "3 3" spoken with no pause becomes "3"
    assert trim(np.array([0, 4, 4, 0, 4, 4, 0])) == [4, 4]    # a silent frame between keeps both
    figures = score(["3 3 1", "2 2", "5"], ["3 1", "2 2", "6"])
    assert figures["repeat_utterances"] == 2 and figures["repeats_merged"] == 0.5
    assert figures["repeat_accuracy"] == 0.5 and abs(figures["symbol_error_rate"] - 2 / 6) < 1e-9
    assert abs(figures["utterance_accuracy"] - 1 / 3) < 1e-9


def test_frame_labels_follow_the_segment_boundaries():
    from pipelines.speech_ctc import SpeechCTCConfig, Utterance, frame_labels

    spec = SpeechCTCConfig().feature_spec()
    utt = Utterance(np.zeros(8000, np.float32), (3, 3), ((800, 3200), (4000, 7200)))
    labels = frame_labels(utt, spec.num_frames(8000), spec, subsample=4)
    centres = np.arange(len(labels)) * 4 * spec.frame_step + spec.frame_length // 2
    assert set(labels[(centres >= 800) & (centres < 3200)]) == {4}
    assert set(labels[(centres >= 3200) & (centres < 4000)]) == {0}
    assert labels[0] == 0 and labels[-1] == 0 and set(labels) == {0, 4}


def test_model_output_does_not_depend_on_padding():
    from models.speech import build_speech_model

    model = build_speech_model(40, 11, units=8, conv_filters=8, subsample=4)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 40, 40)).astype(np.float32)  # widths padded to a multiple of the stride (4)
    x[1, 21:] = 0
    both = model({"features": x, "frames": np.array([40, 21], np.int32)})["log_probs"].numpy()
    alone = model({"features": x[1:, :24], "frames": np.array([21], np.int32)})["log_probs"].numpy()
    assert both.shape == (2, 10, 11) and alone.shape == (1, 6, 11)
    assert np.abs(both[1, :6] - alone[0]).max() < 1e-5


def test_beam_width_is_a_deprecated_spelling_of_beam_size():
    from pipelines.common import build_parser, with_deprecated
    from pipelines.speech_ctc import SPEECH_CTC, SpeechCTCConfig

    parser = build_parser(SpeechCTCConfig, "", choices=SPEECH_CTC.choices())
    with pytest.warns(FutureWarning, match="--beam-width is deprecated; use --beam-size"):
        args = parser.parse_args(["--beam-width", "4", "--max-minutes", "2", "--baseline-minutes", "1"])
    assert (args.beam_size, args.max_minutes, args.baseline_minutes) == (4, 2.0, 1.0)
    with pytest.warns(FutureWarning, match="use --beam-size"):
        assert with_deprecated(SpeechCTCConfig, beam_width=3).beam_size == 3
    from models.recurrent import CELL_TABLE

    assert SPEECH_CTC.choices()["cell"] == tuple(CELL_TABLE)  # every row of the one cell table builds


# --- a tiny run end to end ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ctc_run(tmp_path_factory):
    from pipelines.speech_ctc import SpeechCTCConfig, run

    out = tmp_path_factory.mktemp("runs") / "speech_ctc"
    config = SpeechCTCConfig(out=str(out), epochs=3, hidden=8, conv_filters=8, layers=1, train_utterances=48,
                             dev_utterances=8, test_utterances=8, baseline=False, max_digits=3, max_minutes=1e-6)
    return out, run(config)


def test_run_writes_metrics_and_a_parity_checked_export(ctc_run):
    out, metrics = ctc_run
    assert metrics["onnx_max_abs_diff"] <= 1e-5 and 0 <= metrics["utterance_accuracy"] <= 1
    assert metrics["split"] == "random voices" and "test_speakers" not in metrics
    assert metrics["single_digits"] == 8 and 0 <= metrics["single_digit_accuracy"] <= 1  # one-digit test clips
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["training_data"] == {"split": "random voices", "speed_perturb": 0.0, "vtlp": 0.0}
    assert json.loads((out / "config.json").read_text())["test_speakers"] is None
    assert meta["task"] == "speech_ctc" and meta["blank_id"] == 0 and meta["symbols"][0] == "<blank>"
    assert meta["symbols"][1:] == list("0123456789") and meta["sample_rate"] == 8000
    assert audio.FeatureSpec.from_dict(meta["feature_spec"]).frame_step == 80
    assert (out / "model.onnx").is_file() and (out / "saved_model").is_dir()
    assert json.loads((out / "metrics.json").read_text())["symbol_error_rate"] == metrics["symbol_error_rate"]
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 2  # header + one epoch: the time budget stopped the 3-epoch run after its first


def test_served_model_equals_keras_greedy_decoding(ctc_run):
    import keras

    import models  # noqa: F401
    from pipelines.speech_ctc import ctc_hypotheses, feature_arrays, predict_steps, Utterance, SpeechCTCConfig

    out, _ = ctc_run
    recognizer = serving.load(out)
    wavs = sorted((out / "examples").glob("*.wav"))
    waves = [audio.read_wav(p)[0] for p in wavs]
    model = keras.saving.load_model(out / "model.keras", compile=False)
    spec = SpeechCTCConfig().feature_spec()
    feats = feature_arrays([Utterance(w, (), ()) for w in waves], spec)
    keras_texts = ctc_hypotheses(predict_steps(model, feats, 4))
    served = recognizer.predict_batch([str(p) for p in wavs])
    assert [r.text for r in served] == keras_texts
    assert served == [recognizer.recognize(p) for p in wavs]  # texts, times and confidences: batch == one by one


def test_any_rate_and_format_is_recognised_alike(ctc_run, tmp_path):
    out, _ = ctc_run
    recognizer = serving.load(out)
    path = sorted((out / "examples").glob("*.wav"))[0]
    wave, rate = audio.read_wav(path)
    native = recognizer.recognize(path)
    assert native.duration == pytest.approx(len(wave) / rate, abs=1e-3) and 0 < native.confidence <= 1
    assert all(0 <= s.start < s.end <= native.duration for s in native.symbols)
    for fmt in ("int24", "int32", "float32"):
        assert recognizer.recognize(audio.write_wav(None, wave, rate, fmt)).text == native.text
    stereo = audio.write_wav(None, np.stack([wave, wave], axis=1), rate)
    assert recognizer.recognize(stereo).text == native.text
    up = recognizer.recognize((audio.resample(wave, rate, 16000), 16000))
    assert up.duration == pytest.approx(native.duration, abs=1e-3)
    beam = serving.speech.SpeechRecognizer(recognizer.model, recognizer.metadata, decoder="beam").recognize(path)
    assert beam.decoder == "beam" and 0 < beam.confidence <= 1


@pytest.mark.parametrize("clip,message", [
    (b"", "empty"),
    (b"RIFF\x00\x00\x00\x00WAVEfmt ", "fmt"),
    ((np.zeros(8000, np.float32), 8000), "silent"),
    ((np.full(800, np.nan, np.float32), 8000), "NaN"),
    ((np.ones(8000 * 31, np.float32) * 0.1, 8000), "at most 30 s"),
])
def test_bad_audio_is_refused_with_a_clear_error(ctc_run, clip, message):
    recognizer = serving.load(ctc_run[0])
    with pytest.raises(InputError, match=message):
        recognizer.recognize(clip)
    with pytest.raises(InputError, match=r"clips\[1\]"):
        recognizer.predict_batch([(np.ones(800, np.float32) * 0.1, 8000), clip])


def test_cli_recognizes_wav_files(ctc_run):
    out, _ = ctc_run
    wav = sorted((out / "examples").glob("*.wav"))[0]
    done = subprocess.run([sys.executable, "-m", "serving", "predict", str(out), str(wav), "--json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result) == {"text", "symbols", "confidence", "duration", "decoder"}


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "cwrnn", "scrn"])
def test_every_cell_of_the_table_builds_the_speech_model_and_keeps_the_mask(cell):
    from models.speech import OUTPUT, build_speech_model

    model = build_speech_model(12, 11, cell=cell, units=8, conv_filters=8, subsample=2, dropout=0.0)
    features = np.random.default_rng(0).normal(size=(2, 20, 12)).astype("float32")
    features[1, 10:] = 0.0  # padded frames of the shorter utterance
    short = np.asarray(model({"features": features[1:2, :10], "frames": np.array([10], "int32")})[OUTPUT])
    padded = np.asarray(model({"features": features, "frames": np.array([20, 10], "int32")})[OUTPUT])
    assert padded.shape == (2, 10, 11)
    np.testing.assert_allclose(padded[1, :5], short[0, :5], atol=1e-5)
