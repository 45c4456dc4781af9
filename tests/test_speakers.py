"""Speaker independence (issue 22): the leave-speakers-out split (FSDD reader and built-in voices), the training-only
speaker augmentations (speed perturbation, VTLP) on synthetic audio, the single-digit metric, and the LOSO
benchmark's table and resumption. A tiny fake FSDD folder of synthetic WAVs stands in for the real one."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from pipelines.readers import DataError
from serving import audio as sa

SPEAKERS = ("alice", "bob", "carol")
INDEXES = (0, 5, 10)  # one recording per split and (speaker, digit): test 0-4, dev 5-9, train 10+


@pytest.fixture(scope="module")
def fake_fsdd(tmp_path_factory):
    """``{digit}_{speaker}_{index}.wav`` for 3 speakers (each its own synthetic voice), 10 digits, indexes 0/5/10."""
    from pipelines import synthetic_speech

    folder = tmp_path_factory.mktemp("fsdd")
    rng = np.random.default_rng(0)
    for speaker, voice in zip(SPEAKERS, synthetic_speech.voices(len(SPEAKERS))):
        for digit in range(10):
            for index in INDEXES:
                wave = synthetic_speech.word(digit, rng, speaker=voice, duration=(0.15, 0.25))
                (folder / f"{digit}_{speaker}_{index}.wav").write_bytes(sa.write_wav(None, wave, 8000))
    (folder / "README.txt").write_text("not a recording")
    return folder


def _tone(freqs, seconds=1.0, rate=8000):
    t = np.arange(int(seconds * rate)) / rate
    return sum(0.3 * np.sin(2 * np.pi * f * t) for f in freqs).astype(np.float32)


def _peaks(wave, count, rate=8000):
    """The ``count`` strongest frequencies (Hz) of ``wave``, ascending."""
    spectrum = np.abs(np.fft.rfft(wave))
    return sorted(np.argsort(spectrum)[-count:] * rate / len(wave))


# --- the split --------------------------------------------------------------------------------------------------

def test_speakers_are_listed_sorted(fake_fsdd):
    from pipelines import fsdd

    assert fsdd.speakers(fake_fsdd) == list(SPEAKERS)


def test_leave_one_speaker_out_holds_every_recording_of_the_speaker_out(fake_fsdd):
    from pipelines import fsdd

    splits = fsdd.read_splits(fake_fsdd, test_speakers=["bob"])
    who = {name: {r.speaker for r in recs} for name, recs in splits.items()}
    assert who == {"train": {"alice", "carol"}, "dev": {"alice", "carol"}, "test": {"bob"}}
    assert len(splits["test"]) == 10 * len(INDEXES)  # every index of bob, 0-49 in FSDD
    assert {r.index for r in splits["test"]} == set(INDEXES)
    assert {r.index for r in splits["train"]} == {10} and {r.index for r in splits["dev"]} == {5}
    assert len(splits["train"]) == len(splits["dev"]) == 2 * 10  # the others' index 0-4 are left unused
    # the speaker-dependent split is unchanged: every speaker everywhere, by file index
    default = fsdd.read_splits(fake_fsdd)
    assert {name: len(recs) for name, recs in default.items()} == {"train": 30, "dev": 30, "test": 30}
    assert {r.speaker for r in default["test"]} == set(SPEAKERS)


@pytest.mark.parametrize("held_out", [["alice"], ["bob"], ["carol"], ["alice", "carol"], ["carol", "carol", "bob"]])
def test_no_speaker_is_in_both_training_and_test(fake_fsdd, held_out):
    from pipelines import fsdd

    splits = fsdd.read_splits(fake_fsdd, test_speakers=held_out)
    train_side = {r.speaker for r in splits["train"] + splits["dev"]}
    assert {r.speaker for r in splits["test"]} == set(held_out)
    assert not train_side & set(held_out) and train_side == set(SPEAKERS) - set(held_out)


def test_the_disjointness_guard_fires_on_an_overlap(fake_fsdd):
    from pipelines import fsdd

    splits = fsdd.read_splits(fake_fsdd)  # speaker-dependent: everyone in both
    with pytest.raises(AssertionError, match="alice, bob, carol in both training and test"):
        fsdd.check_disjoint(splits)


def test_unknown_or_all_speakers_give_clear_errors(fake_fsdd):
    from pipelines import fsdd

    with pytest.raises(DataError, match="unknown speaker.*dave.*speakers found: alice, bob, carol"):
        fsdd.read_splits(fake_fsdd, test_speakers=["bob", "dave"])
    with pytest.raises(DataError, match="none is left to train on"):
        fsdd.read_splits(fake_fsdd, test_speakers=list(SPEAKERS))
    with pytest.raises(DataError, match="no test speaker"):
        fsdd.read_splits(fake_fsdd, test_speakers=[])
    assert fsdd.parse_speakers(" carol,alice ,carol") == ["alice", "carol"]
    assert fsdd.parse_speakers(None) is None and fsdd.parse_speakers(" ") is None
    with pytest.raises(DataError, match="not a speaker name: a b"):
        fsdd.parse_speakers("a b,carol")


def test_config_checks_the_test_speakers_flag(fake_fsdd):
    from pipelines.common import build_parser, from_args
    from pipelines.speech_ctc import SpeechCTCConfig

    parser = build_parser(SpeechCTCConfig, "")
    config = from_args(SpeechCTCConfig, parser.parse_args(
        ["--data-dir", str(fake_fsdd), "--test-speakers", "carol,bob", "--speed-perturb", "0.1", "--vtlp", "0.1"]))
    config.check()
    assert config.held_out() == ["bob", "carol"] and (config.speed_perturb, config.vtlp) == (0.1, 0.1)
    with pytest.raises(DataError, match="speakers found: alice, bob, carol"):
        dataclasses.replace(config, test_speakers="zoe").check()
    with pytest.raises(DataError, match="built-in speech; speakers found: voice0, voice1, voice2, voice3, voice4"):
        SpeechCTCConfig(test_speakers="bob").check()
    with pytest.raises(DataError, match=r"--vtlp must be in \[0, 0.5\)"):
        dataclasses.replace(config, vtlp=0.5).check()
    assert SpeechCTCConfig().held_out() is None


def test_fsdd_utterances_keep_the_held_out_speaker_for_test_only(fake_fsdd):
    from pipelines.speech_ctc import SINGLE, SpeechCTCConfig, fsdd_utterances

    config = SpeechCTCConfig(data_dir=str(fake_fsdd), test_speakers="bob", train_utterances=12, dev_utterances=4,
                             test_utterances=6, max_digits=3)
    utts = fsdd_utterances(str(fake_fsdd), config)
    assert {u.speaker for u in utts["train"] + utts["dev"]} <= {"alice", "carol"}
    assert {u.speaker for u in utts["test"]} == {"bob"} and len(utts["test"]) == 6
    singles = utts[SINGLE]  # every test recording of bob, alone, as read
    assert len(singles) == 30 and {u.speaker for u in singles} == {"bob"}
    assert all(len(u.digits) == 1 and u.spans == ((0, len(u.wave)),) for u in singles)
    assert sorted(u.text for u in singles) == sorted(str(d) for d in range(10) for _ in INDEXES)


def test_built_in_voices_can_be_held_out(monkeypatch):
    from pipelines import speech_ctc, synthetic_speech

    asked = []
    real = synthetic_speech.digit_strings

    def spy(count, *, speakers=None, **kwargs):
        asked.append(speakers)
        return real(count, speakers=speakers, **kwargs)

    monkeypatch.setattr(synthetic_speech, "digit_strings", spy)
    config = speech_ctc.SpeechCTCConfig(test_speakers="voice1", train_utterances=4, dev_utterances=2,
                                        test_utterances=3, max_digits=2)
    made = speech_ctc.synthetic_utterances(config)
    voices = synthetic_speech.voices()
    assert asked[0] == asked[1] == [voices[0], *voices[2:]]  # train, dev: the other four voices
    assert asked[2] == asked[3] == [voices[1]]               # test, single digits: voice1 only
    assert [len(made[k]) for k in ("train", "dev", "test", speech_ctc.SINGLE)] == [4, 2, 3, 3]
    assert all(len(u.digits) == 1 for u in made[speech_ctc.SINGLE])
    assert speech_ctc.speaker_split(config) == {"split": "leave-speakers-out", "test_speakers": "voice1",
                                                "train_speakers": "voice0,voice2,voice3,voice4"}


def test_metadata_records_the_split_and_the_augmentation(fake_fsdd):
    from pipelines.speech_ctc import SpeechCTCConfig, task_metadata

    config = SpeechCTCConfig(data_dir=str(fake_fsdd), test_speakers="alice", vtlp=0.1)
    meta = task_metadata(config, config.feature_spec(), None)
    assert meta["training_data"] == {"split": "leave-speakers-out", "test_speakers": "alice",
                                     "train_speakers": "bob,carol", "speed_perturb": 0.0, "vtlp": 0.1}
    plain = task_metadata(SpeechCTCConfig(data_dir=str(fake_fsdd)), config.feature_spec(), None)
    assert plain["training_data"]["split"] == "speaker-dependent"


# --- augmentation ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("factor", [0.9, 1.1, 1.25])
def test_speed_perturbation_scales_length_and_every_frequency_by_the_factor(factor):
    from pipelines.audio import speed_perturb

    wave = _tone([300.0, 900.0])  # a "pitch" and its third harmonic
    fast = speed_perturb(wave, factor)
    assert len(fast) == round(len(wave) / factor) and fast.dtype == np.float32
    low, high = _peaks(fast, 2)
    resolution = 8000 / len(fast)
    assert abs(low - 300 * factor) <= resolution and abs(high - 900 * factor) <= resolution
    assert abs(high / low - 3.0) < 0.02  # the harmonic relation is kept: tempo and pitch move together
    np.testing.assert_array_equal(speed_perturb(wave, 1.0), wave)


def test_a_speed_perturbed_utterance_keeps_its_spans_on_its_digits():
    from pipelines.speech_ctc import Utterance, speed_perturbed_utterance

    class Draw:  # a generator whose uniform draw is the factor 1.25
        @staticmethod
        def uniform(low, high):
            assert (low, high) == (0.7, 1.3)
            return 1.25

    utt = Utterance(_tone([400.0]), (1, 2), ((800, 3200), (4000, 7200)))
    fast = speed_perturbed_utterance(utt, Draw(), 0.3)
    assert len(fast.wave) == 6400 and fast.digits == (1, 2)
    assert fast.spans == ((640, 2560), (3200, 5760))


def test_vtlp_with_alpha_one_is_the_plain_front_end():
    import tensorflow as tf

    from pipelines import audio, synthetic_speech

    spec = sa.FeatureSpec()
    plain = tf.signal.linear_to_mel_weight_matrix(spec.n_mels, spec.spectrogram_bins, spec.sample_rate, spec.fmin,
                                                  spec.upper_hz).numpy()
    assert np.abs(audio.warped_mel_matrix(spec, 1.0).numpy() - plain).max() < 1e-5
    wave, _ = synthetic_speech.utterance([3, 1, 4], np.random.default_rng(1))
    warped = audio.vtlp_features(wave, spec, 1.0).numpy()
    assert np.abs(warped - audio.features(wave, spec).numpy()).max() < 1e-4
    assert np.abs(warped - sa.features((wave, 8000), spec)).max() < 1e-4  # serving's numpy front end


def test_vtlp_moves_a_spectral_peak_up_for_alpha_above_one_and_down_below():
    import tensorflow as tf

    from pipelines import audio

    spec = sa.FeatureSpec()
    wave = _tone([1000.0])
    nyquist = spec.sample_rate / 2

    def peak_band(alpha):
        mel = tf.matmul(audio.magnitude(wave, spec), audio.warped_mel_matrix(spec, alpha)).numpy().mean(0)
        return (mel * np.arange(spec.n_mels)).sum() / mel.sum()  # the spectral centroid in bands

    low, same, high = peak_band(0.85), peak_band(1.0), peak_band(1.15)
    assert low < same - 1 and high > same + 1
    ends = audio.vtlp_warp([0.0, nyquist], 1.1, nyquist).numpy()
    assert np.allclose(ends, [0.0, nyquist])  # the warped axis still spans [0, Nyquist]
    warped = audio.vtlp_warp(np.linspace(0, nyquist, 50), 0.9, nyquist).numpy()
    assert np.all(np.diff(warped) > 0) and abs(warped[5] - 0.9 * np.linspace(0, nyquist, 50)[5]) < 1e-3


def test_augmentation_never_touches_dev_or_test(fake_fsdd):
    from pipelines.speech_ctc import SINGLE, SPEECH_CTC, SpeechCTCConfig, fsdd_utterances
    from pipelines.task import Context

    base = SpeechCTCConfig(data_dir=str(fake_fsdd), test_speakers="carol", train_utterances=8, dev_utterances=4,
                           test_utterances=4, max_digits=3)
    augmented = dataclasses.replace(base, speed_perturb=0.2, vtlp=0.2)
    plain, perturbed = fsdd_utterances(str(fake_fsdd), base), fsdd_utterances(str(fake_fsdd), augmented)
    for split in ("dev", "test", SINGLE):
        assert all(np.array_equal(a.wave, b.wave) for a, b in zip(plain[split], perturbed[split]))
    assert len(plain["train"]) == len(perturbed["train"]) and plain["train"][0].digits == perturbed["train"][0].digits
    assert len(plain["train"][0].wave) != len(perturbed["train"][0].wave)  # the same recordings, sped up or down
    feats = {}
    for name, config, splits in (("plain", base, plain), ("augmented", augmented, perturbed)):
        ctx = Context(task=SPEECH_CTC, config=config, splits=splits, run=None)
        SPEECH_CTC.preprocess(ctx)
        feats[name] = ctx.extras["feats"]
    for split in ("dev", "test", SINGLE):
        assert all(np.array_equal(a, b) for a, b in zip(feats["plain"][split], feats["augmented"][split]))


def test_vtlp_changes_the_training_features_only_where_asked():
    from models.speech import INPUT
    from pipelines.speech_ctc import SpeechCTCConfig, Utterance, feature_arrays, training_dataset
    from pipelines import synthetic_speech

    spec = SpeechCTCConfig().feature_spec()
    wave, _ = synthetic_speech.utterance([5, 2], np.random.default_rng(2))
    feats = feature_arrays([Utterance(wave, (5, 2), ())], spec)
    targets = [np.array([1, 6, 3], np.int32)]

    def first_batch(config):
        data = training_dataset(feats, targets, config, 0, seed=3, waves=[wave], spec=spec)
        return next(iter(data))[0][INPUT].numpy()[0]

    off = SpeechCTCConfig(freq_mask=0, time_mask=0)
    np.testing.assert_array_equal(first_batch(off), feats[0])
    warped = first_batch(dataclasses.replace(off, vtlp=0.2))
    assert warped.shape == feats[0].shape and np.abs(warped - feats[0]).max() > 0.05
    with pytest.raises(ValueError, match="--vtlp needs the training waves"):
        training_dataset(feats, targets, dataclasses.replace(off, vtlp=0.2), 0, seed=3)


# --- the single-digit metric -------------------------------------------------------------------------------------

def test_single_digit_accuracy_counts_exact_one_digit_outputs():
    from pipelines.speech_ctc import single_digit_accuracy

    assert single_digit_accuracy(["3", "5", "0", "7", "1"], ["3", "5 5", "", "8", "1"]) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="one-digit references"):
        single_digit_accuracy(["3 4"], ["3 4"])
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        single_digit_accuracy(["3", "4"], ["3"])


# --- the LOSO benchmark ------------------------------------------------------------------------------------------

def _fold_metrics(error, single, framewise):
    return {"symbol_error_rate": error, "single_digit_accuracy": single, "utterance_accuracy": 1 - 3 * error,
            "framewise_symbol_error_rate": framewise, "framewise_single_digit_accuracy": 0.9, "train_seconds": 60.0}


def test_loso_benchmark_runs_missing_folds_passes_flags_through_and_tabulates(fake_fsdd, tmp_path, monkeypatch):
    from benchmarks import speech_loso

    out = tmp_path / "loso"
    (out / "fold_alice").mkdir(parents=True)
    (out / "fold_alice" / "metrics.json").write_text(json.dumps(_fold_metrics(0.02, 0.96, 0.10)))
    official = tmp_path / "official"
    official.mkdir()
    (official / "metrics.json").write_text(json.dumps(_fold_metrics(0.015, 0.99, 0.07)))
    ran = []

    def fake_fold(command, log):
        ran.append(command)
        speaker = command[command.index("--test-speakers") + 1]
        error = {"bob": 0.04, "carol": 0.12}[speaker]
        folder = speech_loso.fold_dir(out, speaker)
        folder.mkdir()
        (folder / "metrics.json").write_text(json.dumps(_fold_metrics(error, 0.93, 0.2)))
        return 0

    monkeypatch.setattr(speech_loso, "run_fold", fake_fold)
    status = speech_loso.main(["--data-dir", str(fake_fsdd), "--out", str(out), "--max-minutes", "7",
                               "--official", str(official), "--baseline-minutes", "2", "--vtlp", "0.1"])
    assert status == 0
    assert [c[c.index("--test-speakers") + 1] for c in ran] == ["bob", "carol"]  # alice was done already
    assert all(c[-4:] == ["--baseline-minutes", "2", "--vtlp", "0.1"] and "7.0" in c for c in ran)
    table = (out / "table.md").read_text()
    assert "| carol | 12.00 % | 93.00 % |" in table and "| **mean (3 folds)** | 6.00 % | 94.00 % |" in table
    assert f"| speaker-dependent test split ({official}) | 1.50 % | 99.00 % |" in table
    assert "no fold above 10 % (not met)" in table and "mean digit error <= 5 % (not met)" in table
    summary = json.loads((out / "table.json").read_text())["summary"]
    assert summary["worst_fold_digit_error"] == 0.12 and summary["mean"]["framewise_symbol_error_rate"] == \
        pytest.approx((0.1 + 0.2 + 0.2) / 3)
    ran.clear()
    assert speech_loso.main(["--data-dir", str(fake_fsdd), "--out", str(out)]) == 0 and ran == []  # all done
    with pytest.raises(SystemExit, match="use the benchmark's --speakers"):
        speech_loso.main(["--data-dir", str(fake_fsdd), "--test-speakers", "bob"])
