"""Built-in synthetic "speech", generated in memory in seconds, so the speech tasks run offline.

Each symbol (by default the ten digits) is a distinct formant pattern: a harmonic voice source (pitch 90–220 Hz,
one per "speaker") shaped by two formants whose frequencies glide from a start to an end value, like a vowel or a
diphone. Every token draws its own duration, loudness, speaker pitch and vocal-tract scale; white noise is added.
Words can be joined into utterances with random short gaps (``utterance``), returning the segment boundaries.
"""

from __future__ import annotations

import dataclasses

import numpy as np

DIGITS = tuple("0123456789")

# (F1 start, F1 end, F2 start, F2 end) in Hz, one row per symbol: vowels (flat) and diphones (glides).
_FORMANTS = np.array([
    [300, 300, 2300, 2300], [700, 700, 1200, 1200], [400, 400, 800, 800], [500, 300, 1800, 2300],
    [300, 700, 900, 1300], [650, 400, 1700, 900], [350, 600, 2000, 1000], [550, 550, 1800, 1800],
    [750, 350, 1100, 2200], [450, 450, 1000, 1500],
], dtype=np.float64)


def formants(n_symbols: int) -> np.ndarray:
    """[n_symbols, 4] formant trajectories: the fixed table, extended with seeded random ones past ten."""
    if n_symbols <= len(_FORMANTS):
        return _FORMANTS[:n_symbols]
    rng = np.random.default_rng(1234)
    extra = np.column_stack([rng.uniform(300, 800, (n_symbols - 10, 2)), rng.uniform(850, 2500, (n_symbols - 10, 2))])
    return np.concatenate([_FORMANTS, extra])


@dataclasses.dataclass(frozen=True)
class Speaker:
    """A synthetic voice: pitch ``f0`` in Hz and a vocal-tract scale for every formant."""

    f0: float
    scale: float

    @classmethod
    def random(cls, rng: np.random.Generator) -> "Speaker":
        return cls(f0=float(rng.uniform(90, 220)), scale=float(rng.uniform(0.9, 1.1)))


VOICES = 5  # the fixed voices of ``words`` (and of leave-speakers-out with built-in speech)


def voice_names(count: int = VOICES) -> list[str]:
    """The names of the fixed voices (``voice0`` …), the speakers ``--test-speakers`` can hold out."""
    return [f"voice{i}" for i in range(count)]


def voices(count: int = VOICES) -> list[Speaker]:
    """``count`` fixed voices, the same in every call (voice ``i`` is drawn from seed ``1000 + i``)."""
    return [Speaker.random(np.random.default_rng(1000 + i)) for i in range(count)]


def word(symbol: int, rng: np.random.Generator, sample_rate: int = 8000, speaker: Speaker | None = None,
         n_symbols: int = 10, duration: tuple[float, float] = (0.18, 0.45)) -> np.ndarray:
    """One spoken symbol: float32 samples of a random duration in ``duration`` seconds, peak about 0.3–0.9,
    without noise."""
    speaker = speaker or Speaker.random(rng)
    n = int(rng.uniform(*duration) * sample_rate)
    t = np.linspace(0.0, 1.0, n)
    f1s, f1e, f2s, f2e = formants(n_symbols)[symbol] * speaker.scale * rng.uniform(0.97, 1.03)
    f1, f2 = f1s + (f1e - f1s) * t, f2s + (f2e - f2s) * t
    f0 = speaker.f0 * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t + rng.uniform(0, 6)))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    # Formant gains on a coarse time grid (they change slowly), for the harmonics near a formant only.
    coarse = slice(None, None, 16)
    harmonics = np.arange(1, int(0.48 * sample_rate / speaker.f0) + 1)[:, None]
    freq = harmonics * f0[None, coarse]
    gain = np.exp(-0.5 * ((freq - f1[coarse]) / 90.0) ** 2) + 0.7 * np.exp(-0.5 * ((freq - f2[coarse]) / 120.0) ** 2)
    gain *= freq < 0.48 * sample_rate
    keep = gain.max(axis=1) > 1e-3
    gain = np.repeat(gain[keep], 16, axis=1)[:, :n]
    wave = (gain * np.sin(harmonics[keep] * phase[None, :])).sum(axis=0)
    envelope = np.minimum(1.0, np.minimum(t, 1 - t) / 0.12) ** 2
    wave *= envelope
    wave *= rng.uniform(0.3, 0.9) / (np.abs(wave).max() + 1e-9)
    return wave.astype(np.float32)


def add_noise(wave: np.ndarray, rng: np.random.Generator, level: tuple[float, float] = (0.003, 0.02)) -> np.ndarray:
    """Adds white noise of a random standard deviation in ``level``."""
    return (wave + rng.normal(0, rng.uniform(*level), len(wave))).astype(np.float32)


def utterance(symbols: list[int], rng: np.random.Generator, sample_rate: int = 8000, speaker: Speaker | None = None,
              n_symbols: int = 10, gap: tuple[float, float] = (0.03, 0.2), noise: bool = True
              ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Symbols spoken one after another by one speaker, with random gaps (also before and after).

    Returns:
      (samples float32, one (start, end) sample span per symbol).
    """
    speaker = speaker or Speaker.random(rng)
    pieces, spans, pos = [], [], 0
    for symbol in symbols:
        silence = np.zeros(int(rng.uniform(*gap) * sample_rate), np.float32)
        spoken = word(symbol, rng, sample_rate, speaker, n_symbols)
        pieces += [silence, spoken]
        pos += len(silence)
        spans.append((pos, pos + len(spoken)))
        pos += len(spoken)
    pieces.append(np.zeros(int(rng.uniform(*gap) * sample_rate), np.float32))
    wave = np.concatenate(pieces)
    return (add_noise(wave, rng) if noise else wave), spans


def words(count: int, seed: int = 0, sample_rate: int = 8000, n_symbols: int = 10, speakers: int = 5
          ) -> list[tuple[np.ndarray, int, int]]:
    """``count`` isolated spoken symbols, cycling through the symbols, each by one of ``speakers`` fixed voices,
    with a little silence around and noise: (samples, symbol, speaker index) triples."""
    rng = np.random.default_rng(seed)
    fixed = voices(speakers)
    out = []
    for i in range(count):
        symbol, who = i % n_symbols, int(rng.integers(speakers))
        wave, _ = utterance([symbol], rng, sample_rate, fixed[who], n_symbols, gap=(0.02, 0.08))
        out.append((wave, symbol, who))
    return out


def digit_strings(count: int, seed: int = 0, sample_rate: int = 8000, n_symbols: int = 10,
                  length: tuple[int, int] = (1, 7), repeat_prob: float = 0.25, speakers: list[Speaker] | None = None
                  ) -> list[tuple[np.ndarray, list[int], list[tuple[int, int]]]]:
    """``count`` utterances of 1–7 symbols (a symbol repeats the previous one with probability ``repeat_prob``,
    so repeated digits are common), each by a new random voice, or by one of ``speakers`` chosen at random:
    (samples, symbols, sample spans) triples."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        n = int(rng.integers(length[0], length[1] + 1))
        symbols = [int(rng.integers(n_symbols))]
        while len(symbols) < n:
            symbols.append(symbols[-1] if rng.random() < repeat_prob else int(rng.integers(n_symbols)))
        speaker = speakers[int(rng.integers(len(speakers)))] if speakers else None
        wave, spans = utterance(symbols, rng, sample_rate, speaker, n_symbols)
        out.append((wave, symbols, spans))
    return out
