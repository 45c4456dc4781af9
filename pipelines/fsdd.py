"""Reader for the Free Spoken Digit Dataset (``../shared/data/fsdd/recordings``): ``{digit}_{speaker}_{i}.wav``,
8 kHz mono, split by the file index ``i`` as ../shared/data/SPLITS.md fixes it: test 0–4 (FSDD's official
rule), dev 5–9, train 10–49; or leave-speakers-out (``read_splits(..., test_speakers=[...])``): every recording of
the named speakers is test, train and dev keep the index rule over the other speakers."""

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


TEST_SPEAKERS_HELP = ("leave-speakers-out: NAME[,NAME] of the speakers whose every recording is test; train and dev "
                      "use the other speakers only (none: the speaker-dependent split by file index)")


def parse_speakers(text: str | None) -> list[str] | None:
    """``--test-speakers`` text ("theo" or "theo,lucas") → sorted unique names; None or blank → None."""
    if text is None or not text.strip():
        return None
    names = sorted({name.strip() for name in text.split(",") if name.strip()})
    bad = [name for name in names if not re.fullmatch(r"[A-Za-z0-9]+", name)]
    if bad:
        raise DataError(f"--test-speakers: not a speaker name: {', '.join(bad)} (expected NAME[,NAME])")
    return names


def speakers(data_dir: str | Path) -> list[str]:
    """The sorted speaker names of the FSDD recordings in ``data_dir``.

    Raises:
      DataError: as :func:`list_recordings`.
    """
    return sorted({rec.speaker for rec in list_recordings(data_dir)})


def read_splits(data_dir: str | Path, test_speakers: list[str] | None = None) -> dict[str, list[Recording]]:
    """The recordings of ``data_dir`` grouped into ``train``, ``dev`` and ``test``.

    Without ``test_speakers`` the split is by file index (see :func:`split_of`): speaker-dependent. With it
    (leave-speakers-out), ``test`` holds *every* recording (index 0-49) of the named speakers, and ``train`` and
    ``dev`` come only from the other speakers by the same index rules (dev 5-9, train 10+); the other speakers'
    indexes 0-4 are left unused, so train and dev are the same files as in the speaker-dependent split minus the
    held-out voices.

    Raises:
      DataError: as :func:`list_recordings`; a named speaker is not in the folder; every speaker is held out; or a
        split is empty.
    """
    recordings = list_recordings(data_dir)
    if test_speakers is None:
        splits = {name: [] for name in SPLITS}
        for rec in recordings:
            splits[rec.split].append(rec)
    else:
        splits = _speaker_splits(recordings, check_speakers(data_dir, test_speakers, recordings))
    empty = [name for name, recs in splits.items() if not recs]
    if empty:
        raise DataError(f"{data_dir}: no recordings for the {', '.join(empty)} split (file indexes 0-4 are test, "
                        f"5-9 dev, 10+ train)")
    return splits


def check_speakers(data_dir: str | Path, names: list[str], recordings: list[Recording] | None = None) -> list[str]:
    """``names`` sorted and de-duplicated, after checking them against the speakers of ``data_dir`` (see
    :func:`require_speakers`)."""
    found = sorted({rec.speaker for rec in recordings}) if recordings is not None else speakers(data_dir)
    return require_speakers(names, found, f"FSDD folder {data_dir}")


def require_speakers(names: list[str], found: list[str], where: str) -> list[str]:
    """``names`` sorted and de-duplicated, after checking that each is one of ``found`` (the speakers of
    ``where``) and that at least one speaker is left for training.

    Raises:
      DataError: an unknown name (the message lists the speakers found), no name, or every speaker named.
    """
    names = sorted(set(names))
    unknown = [name for name in names if name not in found]
    if unknown:
        raise DataError(f"unknown speaker(s) {', '.join(unknown)} in {where}; speakers found: {', '.join(found)}")
    if not names:
        raise DataError(f"no test speaker named; speakers in {where}: {', '.join(found)}")
    if len(names) == len(found):
        raise DataError(f"every speaker of {where} ({', '.join(found)}) is held out for test: none is left to "
                        f"train on")
    return names


def _speaker_splits(recordings: list[Recording], test_speakers: list[str]) -> dict[str, list[Recording]]:
    held_out = set(test_speakers)
    splits = {name: [] for name in SPLITS}
    for rec in recordings:
        if rec.speaker in held_out:
            splits["test"].append(rec)
        elif rec.split != "test":
            splits[rec.split].append(rec)
    check_disjoint(splits)
    return splits


def check_disjoint(splits: dict[str, list[Recording]]) -> None:
    """Asserts that no speaker of ``test`` is also in ``train`` or ``dev`` (the leave-speakers-out guarantee)."""
    seen = {name: {rec.speaker for rec in recs} for name, recs in splits.items()}
    overlap = (seen["train"] | seen["dev"]) & seen["test"]
    assert not overlap, f"speaker(s) {', '.join(sorted(overlap))} in both training and test"


def load_waves(recordings: list[Recording], sample_rate: int) -> list[np.ndarray]:
    """Decodes the recordings with tensorflow-io (``pipelines.audio.load_audio``) at ``sample_rate``."""
    from pipelines.audio import load_audio

    return [load_audio(rec.path, sample_rate) for rec in recordings]
