"""CTC speech recognition, output shorter than input: ``python -m pipelines.speech_ctc [--data-dir DIR] [--quick]``.

Digit strings ("3 1 1 4", repeats included) spoken as one clip are recognised from log-mel frames by a stacked
bidirectional RNN (after an optional strided Conv1D) trained with CTC loss; the lecture's baseline, a frame-wise
classifier whose per-frame labels are collapsed ("trimming"), is trained beside it on the same data and both are
scored with jiwer (symbol error rate, utterance accuracy, and how often repeated digits are lost).

Data: built-in synthetic speech by default; with ``--data-dir ../shared/data/fsdd/recordings``, utterances made by
concatenating 1–7 FSDD recordings of one speaker with random short gaps and noise, the recordings of each split
(test: file index 0–4, dev 5–9, train 10–49) used only for that split's utterances.
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

TASK = "speech_ctc"
DIGITS = tuple("0123456789")


@dataclasses.dataclass(frozen=True)
class SpeechCTCConfig:
    data_dir: str | None = dataclasses.field(default=None, metadata={"help": "FSDD recordings folder; none: built-in"})
    out: str = dataclasses.field(default="runs/speech_ctc", metadata={"help": "run dir to write"})
    epochs: int = dataclasses.field(default=30, metadata={"help": "most epochs (early stopping may end sooner)"})
    cell: str = dataclasses.field(default="gru", metadata={"help": "recurrent cell"})
    layers: int = 2
    hidden: int = dataclasses.field(default=64, metadata={"help": "recurrent units per direction"})
    subsample: int = dataclasses.field(default=4, metadata={"help": "Conv1D stride over frames; 1: no convolution"})
    conv_filters: int = 64
    dropout: float = 0.2
    batch_size: int = 32
    learning_rate: float = 2e-3
    clipnorm: float = dataclasses.field(default=5.0, metadata={"help": "gradient norm clip; 0 disables"})
    patience: int = dataclasses.field(default=5, metadata={"help": "epochs without a better dev symbol accuracy"})
    train_utterances: int = 2000
    dev_utterances: int = 200
    test_utterances: int = 500
    min_digits: int = 1
    max_digits: int = 7
    repeat_prob: float = dataclasses.field(default=0.3, metadata={"help": "chance a digit repeats the previous one"})
    gap_min: float = dataclasses.field(default=0.02, metadata={"help": "shortest gap between recordings, seconds"})
    gap_max: float = dataclasses.field(default=0.15, metadata={"help": "longest gap between recordings, seconds"})
    noise: float = dataclasses.field(default=0.005, metadata={"help": "largest added noise standard deviation"})
    freq_mask: int = dataclasses.field(default=8, metadata={"help": "SpecAugment band width bound; 0: off"})
    time_mask: int = dataclasses.field(default=10, metadata={"help": "SpecAugment span bound in frames; 0: off"})
    beam_width: int = 8
    baseline: bool = dataclasses.field(default=True, metadata={"help": "also train the frame-wise + trimming baseline"})
    baseline_epochs: int = dataclasses.field(default=12, metadata={"help": "most epochs of the baseline"})
    max_minutes: float = dataclasses.field(default=0.0, metadata={"help": "stop CTC training after the epoch that "
                                                                          "passes this many minutes; 0: no limit"})
    baseline_minutes: float = dataclasses.field(default=0.0, metadata={"help": "the same for the baseline"})
    sample_rate: int = 8000
    n_mels: int = 40
    seed: int = 0
    quick: bool = dataclasses.field(default=False, metadata={"help": "seconds-long smoke run"})

    def check(self) -> None:
        """Raises DataError naming the first setting out of range."""
        for name in ("epochs", "layers", "hidden", "subsample", "conv_filters", "batch_size", "train_utterances",
                     "dev_utterances", "test_utterances", "min_digits", "beam_width", "n_mels", "sample_rate"):
            if getattr(self, name) < 1:
                raise DataError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.max_digits < self.min_digits:
            raise DataError(f"--max-digits ({self.max_digits}) must be at least --min-digits ({self.min_digits})")
        if not 0 <= self.gap_min <= self.gap_max or self.noise < 0 or not 0 <= self.repeat_prob <= 1:
            raise DataError("need 0 <= --gap-min <= --gap-max, --noise >= 0 and --repeat-prob in [0, 1]")
        if not 0 <= self.dropout < 1 or self.learning_rate <= 0 or self.clipnorm < 0:
            raise DataError("--dropout must be in [0, 1), --learning-rate positive, --clipnorm >= 0")

    def resolved(self) -> "SpeechCTCConfig":
        """The config actually run: ``--quick`` shrinks the model, the data and the epochs."""
        if not self.quick:
            return self
        return dataclasses.replace(
            self, epochs=min(self.epochs, 3), hidden=24, conv_filters=24, layers=1, patience=2, baseline=self.baseline,
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
    """One training or test clip: float32 samples at the model's rate, the digits said, and each digit's
    (start, end) sample span (known from the concatenation)."""

    wave: np.ndarray
    digits: tuple[int, ...]
    spans: tuple[tuple[int, int], ...]

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
    """Digit-string clips from the FSDD recordings of each split, each spoken by one speaker."""
    from pipelines import fsdd

    splits = fsdd.read_splits(data_dir)
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
        utterances = []
        for _ in range(counts[split]):
            speaker = by_speaker[speakers[int(rng.integers(len(speakers)))]]
            digits = _digit_sequence(rng, config)
            pieces = [speaker[d][int(rng.integers(len(speaker[d])))] for d in digits]
            wave, spans = concatenate(pieces, rng, config)
            utterances.append(Utterance(wave, tuple(digits), tuple(spans)))
        out[split] = utterances
    return out


def synthetic_utterances(config: SpeechCTCConfig) -> dict[str, list[Utterance]]:
    """Built-in synthetic digit strings (``pipelines.synthetic_speech``), a different seed per split."""
    from pipelines import synthetic_speech

    counts = {"train": config.train_utterances, "dev": config.dev_utterances, "test": config.test_utterances}
    out = {}
    for offset, (split, count) in enumerate(counts.items()):
        made = synthetic_speech.digit_strings(count, seed=config.seed + 1000 * offset, sample_rate=config.sample_rate,
                                              length=(config.min_digits, config.max_digits),
                                              repeat_prob=config.repeat_prob)
        out[split] = [Utterance(w, tuple(d), tuple(s)) for w, d, s in made]
    return out


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
    import tensorflow as tf

    from pipelines.audio import features

    fn = tf.function(lambda w: features(w, spec), input_signature=[tf.TensorSpec([None], tf.float32)])
    return [fn(u.wave).numpy() for u in utterances]


def _boundaries(feats: list[np.ndarray]) -> list[int]:
    lengths = np.array([len(f) for f in feats])
    return sorted(set(int(q) for q in np.quantile(lengths, [0.15, 0.3, 0.45, 0.6, 0.75, 0.9])))


def training_dataset(feats: list[np.ndarray], targets: list[np.ndarray], config: SpeechCTCConfig,
                     target_padding: int):
    """({"features", "frames"}, target) batches: cached, reshuffled each epoch, SpecAugment after the cache,
    bucketed by frame count, padded (features with 0, targets with ``target_padding``), prefetched."""
    import tensorflow as tf

    from models.speech import FRAMES, INPUT
    from pipelines.audio import spec_augment

    def gen():
        for f, t in zip(feats, targets):
            yield f, t

    data = tf.data.Dataset.from_generator(gen, output_signature=(
        tf.TensorSpec([None, config.n_mels], tf.float32), tf.TensorSpec([None], tf.int32)))
    data = data.cache().shuffle(len(feats), seed=config.seed, reshuffle_each_iteration=True)
    if config.freq_mask or config.time_mask:
        data = data.map(lambda f, t: (spec_augment(f, config.freq_mask, config.time_mask), t),
                        num_parallel_calls=tf.data.AUTOTUNE)
    data = data.map(lambda f, t: ({INPUT: f, FRAMES: tf.shape(f)[0]}, t))
    boundaries = _boundaries(feats)
    data = data.bucket_by_sequence_length(
        element_length_func=lambda x, _: tf.shape(x[INPUT])[0],
        bucket_boundaries=boundaries, bucket_batch_sizes=[config.batch_size] * (len(boundaries) + 1),
        padding_values=({INPUT: 0.0, FRAMES: 0}, target_padding))
    return data.prefetch(tf.data.AUTOTUNE)


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


def ctc_hypotheses(log_probs: list[np.ndarray], decoder: str = "greedy", beam_width: int = 8) -> list[str]:
    """Decoded texts with serving's numpy decoders (the ones the served model uses)."""
    from models.speech import BLANK
    from serving import ctc

    if decoder == "greedy":
        return [ids_text([e.label for e in ctc.greedy(lp, BLANK)]) for lp in log_probs]
    return [ids_text(ctc.prefix_beam_search(lp, BLANK, beam_width)[0][0]) for lp in log_probs]


def dev_score(model, feats, refs, subsample: int, decode):
    """A Keras callback adding ``val_symbol_accuracy`` (1 - dev symbol error rate of ``decode``'s texts) to the
    epoch logs, for checkpointing and early stopping."""
    from pipelines.evaluation import ValidationScore

    def value():
        return 1.0 - score(refs, decode(predict_steps(model, feats, subsample)))["symbol_error_rate"]

    return ValidationScore("symbol_accuracy", value)


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
        "decoder": {"default": "greedy", "beam_width": config.beam_width},
        "model": {"cell": config.cell, "layers": config.layers, "hidden": config.hidden,
                  "subsample": config.subsample, "conv_filters": config.conv_filters},
    }


def time_budget(minutes: float):
    """A Keras callback that ends training after the first epoch ending past ``minutes`` (0: never)."""
    import keras

    class _Budget(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.started = time.time()

        def on_epoch_end(self, epoch, logs=None):
            if minutes and time.time() - self.started > 60 * minutes:
                print(f" - time budget of {minutes:g} min used: training stops after epoch {epoch + 1}")
                self.model.stop_training = True

    return _Budget()


def _train(model, loss, train_ds, callbacks, config, epochs: int):
    from pipelines import training

    model.compile(optimizer=training.optimizer(config.learning_rate, config.clipnorm), loss=loss)
    model.fit(train_ds, epochs=epochs, shuffle=False,
              verbose=1 if sys.stdout.isatty() and not config.quick else 2, callbacks=callbacks)


def run(config: SpeechCTCConfig) -> dict:
    """Trains the CTC model (and the frame-wise baseline), evaluates both on the test split, exports the CTC
    model (SavedModel + ONNX, parity-checked) and returns the metrics. The run dir appears only on success."""
    from export import export_model
    from models.losses import SummedSequenceCrossEntropy
    from models.speech import build_speech_model, output_frames
    from pipelines import training

    config.check()
    config = config.resolved()
    spec = config.feature_spec()
    started = time.time()
    splits = load_data(config)
    with training.task_run(config, TASK) as run_dir:
        feats = {split: feature_arrays(utts, spec) for split, utts in splits.items()}
        refs = {split: [u.text for u in utts] for split, utts in splits.items()}
        seconds = sum(len(u.wave) for u in splits["train"]) / spec.sample_rate
        print(f"data: {', '.join(f'{k} {len(v)}' for k, v in splits.items())} utterances; train {seconds / 60:.1f} "
              f"min of audio, {sum(len(f) for f in feats['train'])} frames; data ready in {time.time() - started:.0f} s")

        arch = dict(cell=config.cell, units=config.hidden, layers_=config.layers, subsample=config.subsample,
                    conv_filters=config.conv_filters, dropout=config.dropout)
        # CTC: y packs [output steps, label ids (digit d as d + 1), 0 padding]
        ctc_targets = [np.array([output_frames(len(f), config.subsample), *(d + 1 for d in u.digits)], np.int32)
                       for f, u in zip(feats["train"], splits["train"])]
        model = build_speech_model(spec.n_mels, 11, head="ctc", **arch)
        from models.speech import PackedCTCLoss

        def decode_ctc(steps):
            return ctc_hypotheses(steps)

        dev_cb = dev_score(model, feats["dev"], refs["dev"], config.subsample, decode_ctc)
        print(f"CTC model: {model.count_params()} parameters")
        _train(model, PackedCTCLoss(), training_dataset(feats["train"], ctc_targets, config, 0),
               [*training.callbacks(run_dir, "val_symbol_accuracy", config.patience, first=[dev_cb]),
                time_budget(config.max_minutes)], config, config.epochs)
        model.load_weights(run_dir / "checkpoints" / "best.weights.h5")
        train_seconds = time.time() - started

        test_lp = predict_steps(model, feats["test"], config.subsample)
        greedy = score(refs["test"], ctc_hypotheses(test_lp))
        beam = score(refs["test"], ctc_hypotheses(test_lp, "beam", config.beam_width))
        dev = score(refs["dev"], ctc_hypotheses(predict_steps(model, feats["dev"], config.subsample)))
        metrics = {
            "symbol_error_rate": greedy["symbol_error_rate"],
            "utterance_accuracy": greedy["utterance_accuracy"],
            "beam_symbol_error_rate": beam["symbol_error_rate"],
            "beam_utterance_accuracy": beam["utterance_accuracy"],
            "dev_symbol_error_rate": dev["symbol_error_rate"],
            "repeat_utterances": greedy["repeat_utterances"],
            "repeat_accuracy": greedy["repeat_accuracy"],
            "repeats_merged": greedy["repeats_merged"],
            "test_utterances": len(splits["test"]),
            "parameters": model.count_params(),
            "train_seconds": round(train_seconds, 1),
        }

        if config.baseline:
            base_started = time.time()
            frame_targets = [frame_labels(u, len(f), spec, config.subsample)
                             for f, u in zip(feats["train"], splits["train"])]
            base = build_speech_model(spec.n_mels, 11, head="frames", **arch)

            def decode_frames(steps):
                return [ids_text(trim(s.argmax(-1))) for s in steps]

            base_dir = run_dir / "baseline"
            base_dir.mkdir()
            _train(base, SummedSequenceCrossEntropy(), training_dataset(feats["train"], frame_targets, config, -1),
                   [*training.callbacks(base_dir, "val_symbol_accuracy", config.patience,
                                        first=[dev_score(base, feats["dev"], refs["dev"], config.subsample,
                                                         decode_frames)]), time_budget(config.baseline_minutes)],
                   config,
                   min(config.epochs, config.baseline_epochs))
            base.load_weights(base_dir / "checkpoints" / "best.weights.h5")
            framewise = score(refs["test"], decode_frames(predict_steps(base, feats["test"], config.subsample)))
            metrics.update({
                "framewise_symbol_error_rate": framewise["symbol_error_rate"],
                "framewise_utterance_accuracy": framewise["utterance_accuracy"],
                "framewise_repeat_accuracy": framewise["repeat_accuracy"],
                "framewise_repeats_merged": framewise["repeats_merged"],
                "framewise_train_seconds": round(time.time() - base_started, 1),
            })
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print(f"test metrics (before export): {json.dumps(metrics)}", flush=True)
        model.save(run_dir / "model.keras")
        batches = []
        for batch in padded_batches(feats["dev"][:48], 16, config.subsample):
            batches.append({**batch, "lengths": output_frames(batch["frames"], config.subsample)})
        meta = export_model(model, run_dir, task_metadata(config, spec, model), batches)
        metrics["onnx_max_abs_diff"] = max(meta["parity"]["onnx_max_abs_diff"].values())
        metrics["onnx_converter"] = meta["onnx_converter"]
        # the first test clips as WAV files, to try the served model on
        from serving.audio import write_wav

        (run_dir / "examples").mkdir()
        for i, utt in enumerate(splits["test"][:5]):
            write_wav(run_dir / "examples" / f"{i}_{utt.text.replace(' ', '')}.wav", utt.wave, spec.sample_rate)
    return metrics


def main(argv: list[str] | None = None) -> int:
    config, metrics = run_command_line(
        SpeechCTCConfig, run, argv, module_doc=__doc__, prog="python -m pipelines.speech_ctc",
        choices={"cell": ("rnn", "lstm", "gru")})
    if metrics is None:
        return 2

    import serving
    from pathlib import Path

    recognizer = serving.load(config.out)
    for path in sorted((Path(config.out) / "examples").glob("*.wav"))[:3]:
        result = recognizer.recognize(path)
        print(f"onnxruntime, {path.name}: {result.text!r} ({result.confidence:.3f}) "
              + " ".join(f"{s.symbol}@{s.start:.2f}-{s.end:.2f}s" for s in result.symbols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
