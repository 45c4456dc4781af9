"""Reader for the Free Spoken Digit Dataset (``../shared/data/fsdd/recordings``): ``{digit}_{speaker}_{i}.wav``,
8 kHz mono, split by the file index ``i`` as ../shared/data/SPLITS.md fixes it: test 0–4 (FSDD's official
rule), dev 5–9, train 10–49."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from pipelines.readers import DataError

NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")
SPLITS = ("train", "dev", "test")


def split_of(index: int) -> str:
    """The split of a recording by its file index: ``test`` for 0–4, ``dev`` for 5–9, ``train`` above."""
    return "test" if index < 5 else "dev" if index < 10 else "train"


@dataclasses.dataclass(frozen=True)
class Recording:
    """One FSDD file: its path, the spoken digit, the speaker and the file index."""

    path: Path
    digit: int
    speaker: str
    index: int

    @property
    def split(self) -> str:
        return split_of(self.index)


def list_recordings(data_dir: str | Path) -> list[Recording]:
    """Every ``{digit}_{speaker}_{i}.wav`` in ``data_dir``, sorted by (speaker, digit, index); other files are
    ignored.

    Raises:
      DataError: the folder is missing or holds no FSDD-named WAV file.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"FSDD folder not found: {data_dir}")
    found = []
    for path in data_dir.iterdir():
        match = NAME.match(path.name)
        if match:
            found.append(Recording(path, int(match.group(1)), match.group(2), int(match.group(3))))
    if not found:
        raise DataError(f"{data_dir} holds no FSDD recordings named {{digit}}_{{speaker}}_{{index}}.wav")
    return sorted(found, key=lambda r: (r.speaker, r.digit, r.index))


def read_splits(data_dir: str | Path) -> dict[str, list[Recording]]:
    """The recordings of ``data_dir`` grouped into ``train``, ``dev`` and ``test`` (see :func:`split_of`).

    Raises:
      DataError: as :func:`list_recordings`, or a split is empty.
    """
    splits = {name: [] for name in SPLITS}
    for rec in list_recordings(data_dir):
        splits[rec.split].append(rec)
    empty = [name for name, recs in splits.items() if not recs]
    if empty:
        raise DataError(f"{data_dir}: no recordings for the {', '.join(empty)} split (file indexes 0-4 are test, "
                        f"5-9 dev, 10+ train)")
    return splits


def load_waves(recordings: list[Recording], sample_rate: int) -> list[np.ndarray]:
    """Decodes the recordings with tensorflow-io (``pipelines.audio.load_audio``) at ``sample_rate``."""
    from pipelines.audio import load_audio

    return [load_audio(rec.path, sample_rate) for rec in recordings]
