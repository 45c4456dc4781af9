"""CTC speech recognition, output shorter than input: ``python -m pipelines.speech_ctc [--data-dir DIR] [--quick]``.

Digit strings ("3 1 1 4", repeats included) spoken as one clip are recognised from log-mel frames by a stacked
bidirectional RNN (after an optional strided Conv1D) trained with CTC loss; the lecture's baseline, a frame-wise
classifier whose per-frame labels are collapsed ("trimming"), is trained beside it on the same data and both are
scored with jiwer (symbol error rate, utterance accuracy, and how often repeated digits are lost).

Data: built-in synthetic speech by default; with ``--data-dir ../shared/data/fsdd/recordings``, utterances made by
concatenating 1–7 FSDD recordings of one speaker with random short gaps and noise, the recordings of each split
(test: file index 0–4, dev 5–9, train 10–49) used only for that split's utterances. ``--test-speakers NAME[,NAME]``
holds speakers out (leave-speakers-out): every recording of theirs is test, train and dev use the others only.
Besides the digit strings, every test recording is also decoded alone (``single_digit_accuracy``).

Training-only speaker augmentation (off by default): ``--speed-perturb X`` resamples each training recording by a
factor in [1 - X, 1 + X]; ``--vtlp X`` warps the mel filterbank of each training utterance by a factor in
[1 - X, 1 + X], drawn anew every epoch. Dev, test and served features are never augmented.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import time

import numpy as np

import pipelines  # noqa: F401  (quiet TensorFlow, Keras backend)
from pipelines import fsdd
from pipelines.common import CommonOptions, _help, check_positive, check_rate
from pipelines.readers import DataError
from pipelines.task import Context, Task

TASK = "speech_ctc"
DIGITS = tuple("0123456789")
SINGLE = "single_digits"  # the test split's recordings, each decoded alone (a split of its own in ctx.splits)


@dataclasses.dataclass(frozen=True)
class SpeechCTCConfig(CommonOptions):
    data_dir: str | None = _help("FSDD recordings folder; none: built-in", None)
    out: str = _help("run dir to write", "runs/speech_ctc")
    epochs: int = _help("most epochs of the CTC model (early stopping may end sooner)", 30)
    cell: str = _help("recurrent cell", "gru")
    layers: int = 2
    hidden: int = _help("recurrent units per direction", 64)
    subsample: int = _help("Conv1D stride over frames; 1: no convolution", 4)
    conv_filters: int = 64
    dropout: float = 0.2
    learning_rate: float = 2e-3
    clipnorm: float = _help("gradient norm clip; 0 disables", 5.0)
    patience: int = _help("epochs without a better dev symbol accuracy", 5)
    train_utterances: int = 2000
    dev_utterances: int = 200
    test_utterances: int = 500
    min_digits: int = 1
    max_digits: int = 7
    repeat_prob: float = _help("chance a digit repeats the previous one", 0.3)
    gap_min: float = _help("shortest gap between recordings, seconds", 0.02)
    gap_max: float = _help("longest gap between recordings, seconds", 0.15)
    noise: float = _help("largest added noise standard deviation", 0.005)
    freq_mask: int = _help("SpecAugment band width bound; 0: off", 8)
    time_mask: int = _help("SpecAugment span bound in frames; 0: off", 10)
    beam_size: int = _help("hypotheses kept by the prefix beam search (test figures; the served default)", 8)
    baseline: bool = _help("also train the frame-wise + trimming baseline", True)
    baseline_epochs: int = _help("most epochs of the baseline", 12)
    max_minutes: float = _help("time budget of the CTC model's training in minutes, checked after each epoch; "
                               "0: none", 0.0)
    baseline_minutes: float = _help("the same for the baseline", 0.0)
    test_speakers: str | None = _help(fsdd.TEST_SPEAKERS_HELP + "; built-in speech: voice0 ... voice4", None)
    speed_perturb: float = _help("speed perturbation of the training recordings: each resampled by a factor "
                                 "uniform in [1 - X, 1 + X] (tempo and pitch together); 0: off", 0.0)
    vtlp: float = _help("vocal-tract-length perturbation of the training utterances: the mel filterbank warped by "
                        "a factor uniform in [1 - X, 1 + X], per utterance and epoch; 0: off", 0.0)
    sample_rate: int = 8000
    n_mels: int = 40

    DEPRECATED_FLAGS = {"beam_width": "beam_size"}

    def check(self) -> None:
        """Raises DataError naming the first setting out of range."""
        super().check()
        check_positive(self, "layers", "hidden", "subsample", "conv_filters", "train_utterances", "dev_utterances",
                       "test_utterances", "min_digits", "beam_size", "baseline_epochs", "n_mels", "sample_rate")
        check_rate(self, "dropout")
        if self.max_digits < self.min_digits:
            raise DataError(f"--max-digits ({self.max_digits}) must be at least --min-digits ({self.min_digits})")
        if not 0 <= self.gap_min <= self.gap_max or self.noise < 0 or not 0 <= self.repeat_prob <= 1:
            raise DataError("need 0 <= --gap-min <= --gap-max, --noise >= 0 and --repeat-prob in [0, 1]")
        if self.learning_rate <= 0 or self.baseline_minutes < 0:
            raise DataError("--learning-rate must be positive and --baseline-minutes not negative")
        if not (0 <= self.speed_perturb < 0.5 and 0 <= self.vtlp < 0.5):
            raise DataError(f"--speed-perturb and --vtlp must be in [0, 0.5), got {self.speed_perturb} and "
                            f"{self.vtlp}")
        self.held_out()

    def held_out(self) -> list[str] | None:
        """The ``--test-speakers`` names, checked against the FSDD folder or the built-in voices; None: the
        speaker-dependent split.

        Raises:
          DataError: a malformed or unknown name, or every speaker held out (the message lists the speakers).
        """
        from pipelines import synthetic_speech

        names = fsdd.parse_speakers(self.test_speakers)
        if names is None:
            return None
        if self.data_dir is not None:
            return fsdd.check_speakers(self.data_dir, names)
        return fsdd.require_speakers(names, synthetic_speech.voice_names(), "the built-in speech")

    def resolved(self) -> "SpeechCTCConfig":
        """The config actually run: ``--quick`` shrinks the model, the data and the epochs."""
        if not self.quick:
            return self
        return dataclasses.replace(
            self, epochs=min(self.epochs, 3), hidden=24, conv_filters=24, layers=1, patience=2,
            train_utterances=min(self.train_utterances, 240), dev_utterances=min(self.dev_utterances, 40),
            test_utterances=min(self.test_utterances, 40), learning_rate=5e-3,
        )

    def feature_spec(self):
        from serving.audio import FeatureSpec

        return FeatureSpec(sample_rate=self.sample_rate, frame_length=self.sample_rate // 40,
                           frame_step=self.sample_rate // 100, n_fft=256 if self.sample_rate <= 8000 else 512,
                           n_mels=self.n_mels)


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One training or test clip: float32 samples at the model's rate, the digits said, each digit's (start, end)
    sample span (known from the concatenation), and who said it."""

    wave: np.ndarray
    digits: tuple[int, ...]
    spans: tuple[tuple[int, int], ...]
    speaker: str = ""  # FSDD's speaker name; "" for synthetic speech

    @property
    def text(self) -> str:
        return " ".join(DIGITS[d] for d in self.digits)


def _digit_sequence(rng, config: SpeechCTCConfig) -> list[int]:
    n = int(rng.integers(config.min_digits, config.max_digits + 1))
    digits = [int(rng.integers(10))]
    while len(digits) < n:
        digits.append(digits[-1] if rng.random() < config.repeat_prob else int(rng.integers(10)))
    return digits


def concatenate(pieces: list[np.ndarray], rng, config: SpeechCTCConfig) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Joins recordings with random gaps (also before and after) and adds noise of a random level."""
    rate, parts, spans, pos = config.sample_rate, [], [], 0
    for piece in pieces:
        gap = np.zeros(int(rng.uniform(config.gap_min, config.gap_max) * rate), np.float32)
        parts += [gap, piece]
        pos += len(gap)
        spans.append((pos, pos + len(piece)))
        pos += len(piece)
    parts.append(np.zeros(int(rng.uniform(config.gap_min, config.gap_max) * rate), np.float32))
    wave = np.concatenate(parts)
    wave = wave + rng.normal(0.0, rng.uniform(0.0, config.noise) + 1e-4, len(wave)).astype(np.float32)
    return wave.astype(np.float32), spans


def fsdd_utterances(data_dir: str, config: SpeechCTCConfig) -> dict[str, list[Utterance]]:
    """Digit-string clips from the FSDD recordings of each split, each spoken by one speaker (speed-perturbed per
    recording in ``train`` only, with ``--speed-perturb``), and ``single_digits``: every test recording alone."""
    splits = fsdd.read_splits(data_dir, config.held_out())
    counts = {"train": config.train_utterances, "dev": config.dev_utterances, "test": config.test_utterances}
    out = {}
    for offset, (split, recordings) in enumerate(splits.items()):
        waves = fsdd.load_waves(recordings, config.sample_rate)
        by_speaker: dict[str, dict[int, list[np.ndarray]]] = {}
        for rec, wave in zip(recordings, waves):
            by_speaker.setdefault(rec.speaker, {}).setdefault(rec.digit, []).append(wave)
        speakers = sorted(s for s, d in by_speaker.items() if len(d) == 10)
        if not speakers:
            raise DataError(f"{data_dir}: no speaker has all ten digits in the {split} split")
        rng = np.random.default_rng(config.seed + 101 * (offset + 1))
        # a stream of its own: dev and test never draw from it, and without --speed-perturb train is as before
        speed_rng = np.random.default_rng(config.seed + 7919) if split == "train" and config.speed_perturb else None
        utterances = []
        for _ in range(counts[split]):
            name = speakers[int(rng.integers(len(speakers)))]
            digits = _digit_sequence(rng, config)
            pieces = [by_speaker[name][d][int(rng.integers(len(by_speaker[name][d])))] for d in digits]
            if speed_rng is not None:
                pieces = [speed_perturbed(p, speed_rng, config.speed_perturb) for p in pieces]
            wave, spans = concatenate(pieces, rng, config)
            utterances.append(Utterance(wave, tuple(digits), tuple(spans), name))
        out[split] = utterances
        if split == "test":
            out[SINGLE] = [Utterance(w, (rec.digit,), ((0, len(w)),), rec.speaker) for rec, w in zip(recordings, waves)]
    return out


def speed_perturbed(wave: np.ndarray, rng, max_change: float) -> np.ndarray:
    """``wave`` played faster or slower by a factor uniform in [1 - max_change, 1 + max_change]
    (``pipelines.audio.speed_perturb``)."""
    from pipelines.audio import speed_perturb

    return speed_perturb(wave, float(rng.uniform(1.0 - max_change, 1.0 + max_change)))


def synthetic_utterances(config: SpeechCTCConfig) -> dict[str, list[Utterance]]:
    """Built-in synthetic digit strings (``pipelines.synthetic_speech``), a different seed per split, and
    ``single_digits`` (one-digit clips made like the test ones). Each utterance has a new random voice; with
    ``--test-speakers``, the five fixed voices instead: the named ones for test, the others for train and dev.
    ``--speed-perturb`` resamples each whole training utterance (its spans scaled alike)."""
    from pipelines import synthetic_speech

    names = config.held_out()
    voices = dict(zip(synthetic_speech.voice_names(), synthetic_speech.voices()))
    counts = {"train": config.train_utterances, "dev": config.dev_utterances, "test": config.test_utterances,
              SINGLE: config.test_utterances}
    speed_rng = np.random.default_rng(config.seed + 7919)
    out = {}
    for offset, (split, count) in enumerate(counts.items()):
        speakers = None
        if names:
            test_side = split in ("test", SINGLE)
            speakers = sorted(name for name in voices if (name in names) == test_side)
        made = synthetic_speech.digit_strings(
            count, seed=config.seed + 1000 * offset, sample_rate=config.sample_rate,
            length=(1, 1) if split == SINGLE else (config.min_digits, config.max_digits),
            repeat_prob=config.repeat_prob, speakers=[voices[n] for n in speakers] if speakers else None)
        utterances = [Utterance(w, tuple(d), tuple(s)) for w, d, s in made]
        if split == "train" and config.speed_perturb:
            utterances = [speed_perturbed_utterance(u, speed_rng, config.speed_perturb) for u in utterances]
        out[split] = utterances
    return out


def speed_perturbed_utterance(utt: Utterance, rng, max_change: float) -> Utterance:
    """A whole utterance speed-perturbed (:func:`speed_perturbed`), its digit spans scaled to the new length."""
    wave = speed_perturbed(utt.wave, rng, max_change)
    ratio = len(wave) / len(utt.wave)
    spans = tuple((int(a * ratio), min(len(wave), int(round(b * ratio)))) for a, b in utt.spans)
    return dataclasses.replace(utt, wave=wave, spans=spans)


def load_data(config: SpeechCTCConfig) -> dict[str, list[Utterance]]:
    if config.data_dir is None:
        return synthetic_utterances(config)
    return fsdd_utterances(config.data_dir, config)


# ------------------------------------------------------------------------------------------------ tf.data


def frame_labels(utt: Utterance, n_frames: int, spec, subsample: int) -> np.ndarray:
    """One class per output step from the known segment boundaries: digit d → d + 1 where the step's centre
    sample lies inside that digit's recording, else 0 (silence)."""
    steps = -(-n_frames // subsample)
    centres = np.arange(steps) * subsample * spec.frame_step + spec.frame_length // 2
    labels = np.zeros(steps, np.int32)
    for digit, (start, end) in zip(utt.digits, utt.spans):
        labels[(centres >= start) & (centres < end)] = digit + 1
    return labels


def feature_arrays(utterances: list[Utterance], spec) -> list[np.ndarray]:
    """tf.signal features of every clip (computed once; ``pipelines.audio.features``)."""
    fn = _feature_function(spec)
    return [fn(u.wave).numpy() for u in utterances]


@functools.lru_cache(maxsize=8)
def _feature_function(spec):
    """``pipelines.audio.features`` at ``spec`` as one traced tf.function (traced once per spec, not per split)."""
    import tensorflow as tf

    from pipelines.audio import features

    return tf.function(lambda w: features(w, spec), input_signature=[tf.TensorSpec([None], tf.float32)])


def _boundaries(feats: list[np.ndarray]) -> list[int]:
    lengths = np.array([len(f) for f in feats])
    return sorted(set(int(q) for q in np.quantile(lengths, [0.15, 0.3, 0.45, 0.6, 0.75, 0.9])))


def training_dataset(feats: list[np.ndarray], targets: list[np.ndarray], config: SpeechCTCConfig,
                     target_padding: int, *, seed: int, batch_size: int | None = None, drop_remainder: bool = False,
                     waves: list[np.ndarray] | None = None, spec=None):
    """({"features", "frames"}, target) batches: reshuffled each epoch, augmented with random draws from ``seed``
    and the epoch (stateless, ``pipelines.audio.random_seeds``), bucketed by frame count, padded (features with 0,
    targets with ``target_padding``), prefetched.

    Augmentation: with ``config.vtlp`` the features are recomputed from ``waves`` (the clips of ``feats``, at
    ``spec``) with a VTLP-warped mel filterbank (``pipelines.audio.random_vtlp_features``); then SpecAugment.
    """
    import tensorflow as tf

    from models.speech import FRAMES, INPUT
    from pipelines.audio import array_dataset, random_seeds

    if config.vtlp and (waves is None or spec is None):
        raise ValueError("--vtlp needs the training waves and the feature spec")
    source = waves if config.vtlp else feats
    data = tf.data.Dataset.zip((array_dataset(source), array_dataset(targets, tf.int32)))
    data = data.shuffle(len(feats), seed=seed, reshuffle_each_iteration=True)
    augment = augmentation(config, spec)
    if augment is not None:
        data = tf.data.Dataset.zip((data, random_seeds(seed))).map(
            lambda pair, s: (augment(pair[0], s), pair[1]), num_parallel_calls=tf.data.AUTOTUNE)
    data = data.map(lambda f, t: ({INPUT: f, FRAMES: tf.shape(f)[0]}, t))
    boundaries = _boundaries(feats)
    batch_size = batch_size or config.batch_size
    data = data.bucket_by_sequence_length(
        element_length_func=lambda x, _: tf.shape(x[INPUT])[0],
        bucket_boundaries=boundaries, bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        padding_values=({INPUT: 0.0, FRAMES: 0}, target_padding), drop_remainder=drop_remainder)
    return data.prefetch(tf.data.AUTOTUNE)


def augmentation(config: SpeechCTCConfig, spec):
    """The training-time map (element, [2] seed) → features: VTLP (from the wave, ``--vtlp``) then SpecAugment
    (``--freq-mask``, ``--time-mask``); None when both are off. Without VTLP, SpecAugment gets the seed itself (as
    before VTLP existed, so such runs are unchanged); with it, each gets half of a split seed."""
    import tensorflow as tf

    from pipelines.audio import random_vtlp_features, spec_augment

    masks = bool(config.freq_mask or config.time_mask)
    if not (config.vtlp or masks):
        return None

    def augment(x, seed):
        if config.vtlp:
            seed, vtlp_seed = tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2))
            x = random_vtlp_features(x, spec, config.vtlp, vtlp_seed)
        return spec_augment(x, config.freq_mask, config.time_mask, seed=seed) if masks else x

    return augment


def padded_batches(feats: list[np.ndarray], batch_size: int = 64, multiple: int = 1):
    """Input dicts of ``batch_size`` clips in order, features zero-padded to a multiple of ``multiple`` frames
    (the subsampling stride: then the strided convolution sees the same frame grid in any batch)."""
    from models.speech import FRAMES, INPUT

    for start in range(0, len(feats), batch_size):
        chunk = feats[start:start + batch_size]
        width = -(-max(len(f) for f in chunk) // multiple) * multiple
        x = np.zeros((len(chunk), width, chunk[0].shape[1]), np.float32)
        for i, f in enumerate(chunk):
            x[i, : len(f)] = f
        yield {INPUT: x, FRAMES: np.array([len(f) for f in chunk], np.int32)}


def predict_steps(model, feats: list[np.ndarray], subsample: int) -> list[np.ndarray]:
    """Each clip's per-step output (log-probabilities or frame probabilities), its real steps only."""
    from models.speech import FRAMES, output_frames

    out = []
    for batch in padded_batches(feats, multiple=subsample):
        values = next(iter(model(batch, training=False).values()))
        values = np.asarray(values)
        for row, n in zip(values, output_frames(batch[FRAMES], subsample)):
            out.append(row[:n])
    return out


# ------------------------------------------------------------------------------------------------ scoring


def single_digit_accuracy(refs: list[str], hyps: list[str]) -> float:
    """The share of isolated digits recognised: a clip counts iff its whole output is its one digit ("3" for
    "3"; "3 3", "" or "8" are wrong)."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if any(len(r.split()) != 1 for r in refs):
        raise ValueError("single_digit_accuracy takes one-digit references")
    return float(np.mean([r == h.strip() for r, h in zip(refs, hyps)])) if refs else float("nan")


def speaker_split(config: SpeechCTCConfig) -> dict:
    """Which split a run used, for its metrics and metadata: ``{"split": "speaker-dependent"}`` (FSDD by file
    index), ``{"split": "random voices"}`` (built-in speech), or ``"leave-speakers-out"`` with ``test_speakers`` and
    ``train_speakers`` (comma-separated names)."""
    from pipelines import synthetic_speech

    held_out = config.held_out()
    if held_out is None:
        return {"split": "speaker-dependent" if config.data_dir else "random voices"}
    found = fsdd.speakers(config.data_dir) if config.data_dir else synthetic_speech.voice_names()
    return {"split": "leave-speakers-out", "test_speakers": ",".join(held_out),
            "train_speakers": ",".join(name for name in found if name not in held_out)}


def ids_text(ids) -> str:
    """Class ids (digit d as d + 1) → "3 1 1 4"."""
    return " ".join(DIGITS[i - 1] for i in ids)


def trim(frame_classes: np.ndarray) -> list[int]:
    """The lecture's trimming: merge runs of the same frame label, then drop silence (class 0)."""
    out, last = [], None
    for c in frame_classes:
        if c != last and c != 0:
            out.append(int(c))
        last = c
    return out


def has_repeat(text: str) -> bool:
    words = text.split()
    return any(a == b for a, b in zip(words, words[1:]))


def collapse(text: str) -> str:
    words = text.split()
    return " ".join(w for i, w in enumerate(words) if i == 0 or w != words[i - 1])


def score(refs: list[str], hyps: list[str]) -> dict:
    """jiwer symbol (digit) error rate and utterance accuracy, plus the repeated-digit figures: accuracy on the
    utterances with an adjacent repeat, and how often a repeat was merged away (the output equals the reference
    with its repeats collapsed)."""
    import jiwer

    words = jiwer.process_words(refs, hyps)
    repeated = [(r, h) for r, h in zip(refs, hyps) if has_repeat(r)]
    return {
        "symbol_error_rate": float(words.wer),
        "utterance_accuracy": float(np.mean([r == h for r, h in zip(refs, hyps)])),
        "substitutions": int(words.substitutions), "deletions": int(words.deletions),
        "insertions": int(words.insertions),
        "repeat_utterances": len(repeated),
        "repeat_accuracy": float(np.mean([r == h for r, h in repeated])) if repeated else float("nan"),
        "repeats_merged": float(np.mean([h == collapse(r) for r, h in repeated])) if repeated else float("nan"),
    }


def ctc_hypotheses(log_probs: list[np.ndarray], decoder: str = "greedy", beam_size: int = 8) -> list[str]:
    """Decoded texts with serving's numpy decoders (the ones the served model uses)."""
    from models.speech import BLANK
    from serving import ctc

    if decoder == "greedy":
        return [ids_text([e.label for e in ctc.greedy(lp, BLANK)]) for lp in log_probs]
    return [ids_text(ctc.prefix_beam_search(lp, BLANK, beam_size)[0][0]) for lp in log_probs]


def task_metadata(config: SpeechCTCConfig, spec, model) -> dict:
    from models.speech import BLANK, FRAMES, INPUT, OUTPUT

    symbols = ["<blank>", *DIGITS]
    return {
        "task": TASK,
        "inputs": {INPUT: {"name": INPUT, "dtype": "float32", "shape": ["batch", "time", spec.n_mels],
                           "pad_value": 0.0},
                   FRAMES: {"name": FRAMES, "dtype": "int32", "shape": ["batch"]}},
        "outputs": {OUTPUT: {"name": OUTPUT, "dtype": "float32", "shape": ["batch", "time", len(symbols)],
                             "kind": "log_probs"}},
        "sample_rate": spec.sample_rate,
        "feature_spec": spec.to_dict(),
        "symbols": symbols,
        "blank_id": BLANK,
        "subsample": config.subsample,
        "output_seconds": config.subsample * spec.frame_step / spec.sample_rate,
        "decoder": {"default": "greedy", "beam_width": config.beam_size},  # the key serving reads
        "model": {"cell": config.cell, "layers": config.layers, "hidden": config.hidden,
                  "subsample": config.subsample, "conv_filters": config.conv_filters},
        "training_data": {**speaker_split(config), "speed_perturb": config.speed_perturb, "vtlp": config.vtlp},
    }


def parity_batches(feats: list[np.ndarray], subsample: int, n: int = 48, size: int = 16) -> list[dict]:
    """Dev batches of mixed lengths, with each clip's output step count, for the export parity check."""
    from models.speech import FRAMES, output_frames

    return [{**batch, "lengths": output_frames(batch[FRAMES], subsample)}
            for batch in padded_batches(feats[:n], size, subsample)]


# ------------------------------------------------------------------------------------------------ the task

class SpeechCTC(Task):
    """The CTC recognizer (phase ``train``) and the frame-wise + trimming baseline (phase ``baseline``), each a
    resumable ``runner.train`` phase picked by the dev symbol accuracy; the CTC model is the one exported.

    Timings other than ``train_seconds`` (the baseline's ``framewise_train_seconds``) are reported with the export
    figures: they differ between a run and its resumed twin, whose evaluation must be equal."""

    name = TASK
    config_class = SpeechCTCConfig
    monitor = "symbol_accuracy"
    exported: str | None = None  # the run dir of the last export (for the command line's demo)

    def choices(self):
        from models.recurrent import CELL_CHOICES
        from pipelines.distribute import STRATEGIES

        return {"cell": CELL_CHOICES, "strategy": STRATEGIES}

    def data(self, config):
        return load_data(config)

    def preprocess(self, ctx: Context):
        from models.speech import output_frames

        c, splits, started = ctx.config, ctx.splits, time.time()
        spec = c.feature_spec()
        feats = {split: feature_arrays(utts, spec) for split, utts in splits.items()}
        seconds = sum(len(u.wave) for u in splits["train"]) / spec.sample_rate
        print(f"data: {', '.join(f'{k} {len(v)}' for k, v in splits.items())} utterances; train {seconds / 60:.1f} "
              f"min of audio, {sum(len(f) for f in feats['train'])} frames; features in {time.time() - started:.0f} s")
        speakers = speaker_split(c)
        print(f"split: {speakers['split']}" + (f", test speakers {speakers['test_speakers']}, train speakers "
                                                f"{speakers['train_speakers']}" if "test_speakers" in speakers else ""))
        ctx.extras.update(
            feats=feats, refs={split: [u.text for u in utts] for split, utts in splits.items()},
            # CTC: y packs [output steps, label ids (digit d as d + 1), 0 padding]; frame-wise: one class per step
            targets={"ctc": [np.array([output_frames(len(f), c.subsample), *(d + 1 for d in u.digits)], np.int32)
                             for f, u in zip(feats["train"], splits["train"])],
                     "frames": [frame_labels(u, len(f), spec, c.subsample)
                                for f, u in zip(feats["train"], splits["train"])]})
        return spec

    def build_model(self, ctx: Context, head: str = "ctc"):
        from models.speech import build_speech_model

        c = ctx.config
        return build_speech_model(c.n_mels, len(DIGITS) + 1, head=head, cell=c.cell, units=c.hidden,
                                  layers_=c.layers, subsample=c.subsample, conv_filters=c.conv_filters,
                                  dropout=c.dropout)

    def compile(self, ctx: Context, model, head: str = "ctc"):
        from models.losses import SummedSequenceCrossEntropy
        from models.speech import PackedCTCLoss
        from pipelines import training

        c = ctx.config
        model.compile(optimizer=training.optimizer(c.learning_rate, c.clipnorm, c.ema),
                      loss=PackedCTCLoss() if head == "ctc" else SummedSequenceCrossEntropy())
        return model

    def train_data(self, ctx: Context, seed: int, head: str = "ctc"):
        return training_dataset(ctx.extras["feats"]["train"], ctx.extras["targets"][head], ctx.config,
                                0 if head == "ctc" else -1, seed=seed,
                                batch_size=ctx.config.batch_size * ctx.run.replicas,
                                drop_remainder=ctx.run.distributed,
                                waves=[u.wave for u in ctx.splits["train"]], spec=ctx.prep)

    def decode(self, ctx: Context, model, split: str, head: str = "ctc") -> list[str]:
        """``split``'s texts: CTC greedy decoding, or the frame-wise classes trimmed."""
        steps = predict_steps(model, ctx.extras["feats"][split], ctx.config.subsample)
        return ctc_hypotheses(steps) if head == "ctc" else [ids_text(trim(s.argmax(-1))) for s in steps]

    def validate(self, ctx: Context, model, head: str = "ctc") -> dict:
        dev = score(ctx.extras["refs"]["dev"], self.decode(ctx, model, "dev", head))
        return {"symbol_accuracy": 1.0 - dev["symbol_error_rate"], "utterance_accuracy": dev["utterance_accuracy"]}

    def fit(self, ctx: Context):
        """Builds both models first (the baseline's initial weights then do not depend on the CTC training, nor on
        whether it was resumed), then trains each in its own resumable phase."""
        from pipelines import runner

        c = ctx.config
        heads = {"ctc": dict(phase="train"), "frames": dict(phase="baseline", epochs=min(c.epochs, c.baseline_epochs),
                                                             max_minutes=c.baseline_minutes)}
        with ctx.run.strategy.scope():
            models = {head: self.compile(ctx, self.build_model(ctx, head), head)
                      for head in heads if head == "ctc" or c.baseline}
        print(f"CTC model: {models['ctc'].count_params()} parameters")
        for head, model in models.items():
            ctx.extras[f"{head}_loop"] = runner.train(
                model, lambda epoch, h=head: ctx.run.epoch_data(lambda seed: self.train_data(ctx, seed, h), epoch),
                ctx.run, validate=lambda m=model, h=head: self.validate(ctx, m, h), monitor=self.monitor, **heads[head])
        ctx.extras["baseline"] = models.get("frames")
        return models["ctc"]

    def evaluate(self, ctx: Context, model) -> dict:
        c, refs = ctx.config, ctx.extras["refs"]
        test_lp = predict_steps(model, ctx.extras["feats"]["test"], c.subsample)
        greedy = score(refs["test"], ctc_hypotheses(test_lp))
        beam = score(refs["test"], ctc_hypotheses(test_lp, "beam", c.beam_size))
        dev = score(refs["dev"], self.decode(ctx, model, "dev"))
        metrics = {
            **speaker_split(c),
            "symbol_error_rate": greedy["symbol_error_rate"],
            "utterance_accuracy": greedy["utterance_accuracy"],
            "beam_symbol_error_rate": beam["symbol_error_rate"],
            "beam_utterance_accuracy": beam["utterance_accuracy"],
            "dev_symbol_error_rate": dev["symbol_error_rate"],
            "repeat_utterances": greedy["repeat_utterances"],
            "repeat_accuracy": greedy["repeat_accuracy"],
            "repeats_merged": greedy["repeats_merged"],
            "test_utterances": len(ctx.splits["test"]),
            "single_digit_accuracy": single_digit_accuracy(refs[SINGLE], self.decode(ctx, model, SINGLE)),
            "single_digits": len(ctx.splits[SINGLE]),
            "parameters": model.count_params(),
        }
        if ctx.extras["baseline"] is not None:
            baseline = ctx.extras["baseline"]
            framewise = score(refs["test"], self.decode(ctx, baseline, "test", "frames"))
            metrics.update({f"framewise_{k}": framewise[k] for k in
                            ("symbol_error_rate", "utterance_accuracy", "repeat_accuracy", "repeats_merged")})
            metrics["framewise_single_digit_accuracy"] = single_digit_accuracy(
                refs[SINGLE], self.decode(ctx, baseline, SINGLE, "frames"))
        return metrics

    def export_spec(self, ctx: Context, model) -> dict:
        return task_metadata(ctx.config, ctx.prep, model)

    def parity_batches(self, ctx: Context) -> list[dict]:
        return parity_batches(ctx.extras["feats"]["dev"], ctx.config.subsample)

    def export(self, ctx: Context, model) -> dict:
        """The default export (model.keras, SavedModel, ONNX with parity), the ONNX route taken, the baseline's
        training time, and the first test clips as WAV files (``examples/``) to try the served model on."""
        from serving.audio import write_wav

        figures = super().export(ctx, model)
        figures["onnx_converter"] = json.loads((ctx.run_dir / "metadata.json").read_text())["onnx_converter"]
        if ctx.extras["baseline"] is not None:
            figures["framewise_train_seconds"] = round(ctx.extras["frames_loop"]["seconds"], 1)
        (ctx.run_dir / "examples").mkdir()
        for i, utt in enumerate(ctx.splits["test"][:5]):
            write_wav(ctx.run_dir / "examples" / f"{i}_{utt.text.replace(' ', '')}.wav", utt.wave, ctx.prep.sample_rate)
        self.exported = ctx.config.out
        return figures

    def main(self, argv: list[str] | None = None) -> int:
        """The command line (``runner.main``), then the exported model recognises the example WAV files."""
        self.exported = None
        status = super().main(argv)
        if status == 0 and self.exported:
            import serving
            from pathlib import Path

            recognizer = serving.load(self.exported)
            for path in sorted((Path(self.exported) / "examples").glob("*.wav"))[:3]:
                result = recognizer.recognize(path)
                print(f"onnxruntime, {path.name}: {result.text!r} ({result.confidence:.3f}) "
                      + " ".join(f"{s.symbol}@{s.start:.2f}-{s.end:.2f}s" for s in result.symbols))
        return status


SPEECH_CTC = SpeechCTC()


def run(config: SpeechCTCConfig) -> dict:
    """Trains the CTC model (and the frame-wise baseline), evaluates both on the test split, exports the CTC
    model (SavedModel + ONNX, parity-checked) and returns the metrics. The run dir appears only on success."""
    return SPEECH_CTC.run(config)


def main(argv: list[str] | None = None) -> int:
    return SPEECH_CTC.main(argv)


if __name__ == "__main__":
    sys.exit(main())
