"""CTC speech recognition over onnxruntime: a WAV file in, the digit string, per-digit times and a confidence out.

The numpy front end (``serving.audio``) turns any WAV the reader accepts (PCM 8/16/24/32-bit or 32/64-bit float,
mono or stereo, any sample rate) into the model's log-mel features with the model's own ``feature_spec``; the
graph returns per-frame log-probabilities and ``serving.ctc`` decodes them (greedy by default, or prefix beam
search).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from serving import audio, ctc
from serving.base import Predictor, Result, register
from serving.errors import InputError, ModelError
from serving.session import OnnxModel


@dataclasses.dataclass(frozen=True)
class TimedSymbol:
    """One recognised symbol, where it was heard (seconds from the start of the clip) and its peak probability."""

    symbol: str
    start: float
    end: float
    prob: float


@dataclasses.dataclass(frozen=True)
class SpeechResult(Result):
    """What the model heard in one clip.

    Attributes:
      text: the symbols separated by spaces, e.g. ``"3 1 1 4"``.
      symbols: each symbol with its start and end time and peak probability.
      confidence: the best path's mean frame probability (greedy), or the best beam's share of the beams'
        total probability (beam search).
      duration: the clip's length in seconds.
      decoder: ``greedy`` or ``beam``.
    """

    text: str
    symbols: list[TimedSymbol]
    confidence: float
    duration: float
    decoder: str

    def __str__(self) -> str:
        times = ", ".join(f"{s.symbol} {s.start:.2f}-{s.end:.2f} s" for s in self.symbols)
        return f"{self.text or '(nothing recognised)'}  ({self.confidence:.3f}, {self.duration:.2f} s)\n  {times}"


@register("speech_ctc")
class SpeechRecognizer(Predictor):
    """Recognises digit strings with an exported ``speech_ctc`` model. Use :func:`serving.load` to build one.

    Args:
      model: the ONNX graph (inputs ``features``, ``frames``; output ``log_probs``).
      metadata: its metadata (feature spec, symbols, blank id, subsampling).
      decoder: ``greedy`` (default) or ``beam`` (prefix beam search, ``beam_width`` from the metadata).
    """

    task = "speech_ctc"
    input_kind = "audio"

    def __init__(self, model: OnnxModel, metadata: dict, decoder: str | None = None):
        self.model = model
        self.metadata = metadata
        try:
            self.spec = audio.FeatureSpec.from_dict(metadata["feature_spec"])
            self.symbols = list(metadata["symbols"])
            self.blank = int(metadata["blank_id"])
            self.subsample = int(metadata["subsample"])
            self.features_name = metadata["inputs"]["features"]["name"]
            self.frames_name = metadata["inputs"]["frames"]["name"]
            self.output = metadata["outputs"]["log_probs"]["name"]
            self.beam_width = int(metadata.get("decoder", {}).get("beam_width", 8))
            default = metadata.get("decoder", {}).get("default", "greedy")
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(f"{model.path}: speech_ctc metadata is incomplete or invalid ({err})") from None
        self.decoder = decoder or default
        if self.decoder not in ("greedy", "beam"):
            raise ModelError(f"unknown decoder {self.decoder!r}; choose greedy or beam")
        for name in (self.features_name, self.frames_name):
            if name not in model.inputs:
                raise ModelError(f"{model.path}: metadata names input {name!r}, not in the graph")
        if self.output not in model.outputs:
            raise ModelError(f"{model.path}: metadata names output {self.output!r}, not in the graph")
        width = model.output_shape(self.output)[-1]
        if isinstance(width, int) and width != len(self.symbols):
            raise ModelError(f"{model.path}: output has {width} classes but the metadata lists {len(self.symbols)}")

    @property
    def step_seconds(self) -> float:
        """Seconds per output step."""
        return self.subsample * self.spec.frame_seconds()

    def _decode(self, log_probs: np.ndarray, duration: float) -> SpeechResult:
        if self.decoder == "greedy":
            emissions = ctc.greedy(log_probs, self.blank)
            confidence = ctc.greedy_confidence(log_probs)
        else:
            beams = ctc.prefix_beam_search(log_probs, self.blank, self.beam_width)
            labels, best = beams[0]
            scores = np.array([s for _, s in beams])
            confidence = float(np.exp(best - scores.max()) / np.exp(scores - scores.max()).sum())
            emissions = ctc.align(log_probs, labels, self.blank)
        step = self.step_seconds
        symbols = [TimedSymbol(self.symbols[e.label], round(e.start * step, 3),
                               round(min((e.end + 1) * step, duration), 3), round(e.prob, 4)) for e in emissions]
        return SpeechResult(" ".join(s.symbol for s in symbols), symbols, round(confidence, 4), round(duration, 3),
                            self.decoder)

    def predict(self, clip) -> SpeechResult:
        """Recognises one clip: a WAV path, WAV bytes, or a ``(samples, sample_rate)`` tuple.

        Raises:
          InputError: the audio is unreadable, empty, silent, too long, has NaN samples, more than two channels
            or an unsupported sample format (the message says which).
        """
        if isinstance(clip, list):
            raise InputError("predict takes one clip; use predict_batch for many")
        return self.predict_batch([clip])[0]

    def recognize(self, clip) -> SpeechResult:
        """Audio → text: the same as :meth:`predict` (the task's verb)."""
        return self.predict(clip)

    def predict_batch(self, clips: Sequence, batch_size: int = 32) -> list[SpeechResult]:
        """Recognises many clips, ``batch_size`` per onnxruntime call (zero-padded, with each clip's frame count).

        Raises:
          InputError: as :meth:`predict`, naming the offending index.
        """
        if isinstance(clips, (str, bytes, tuple)):
            raise InputError("predict_batch takes a list of clips; use predict for one")
        clips = list(clips)
        results = []
        for start in range(0, len(clips), batch_size):
            chunk = clips[start:start + batch_size]
            waves, feats = [], []
            for i, clip in enumerate(chunk):
                try:
                    wave = audio.waveform(clip, self.spec)
                except InputError as err:
                    raise InputError(str(err) if len(clips) == 1 else f"clips[{start + i}]: {err}") from None
                waves.append(wave)
                feats.append(audio.normalize(audio.log_mel(wave, self.spec), self.spec))
            # a width that is a multiple of the stride keeps the strided 'same' convolution's frame grid the same
            # whatever the batch (TF pads (k - stride) // 2 frames on the left only then)
            width = -(-max(len(f) for f in feats) // self.subsample) * self.subsample
            x = np.zeros((len(feats), width, self.spec.n_mels), np.float32)
            for i, f in enumerate(feats):
                x[i, : len(f)] = f
            frames = np.array([len(f) for f in feats], np.int32)
            log_probs = self.model.run({self.features_name: x, self.frames_name: frames})[self.output]
            for i, (wave, n) in enumerate(zip(waves, frames)):
                steps = -(-int(n) // self.subsample)
                results.append(self._decode(log_probs[i, :steps], len(wave) / self.spec.sample_rate))
        return results
