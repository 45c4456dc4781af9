"""Batch inference (``python -m serving predict RUN_DIR --input ... --output out.jsonl``): streamed in batches,
one JSON line per input, resumable without duplicate lines."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

import serving
from serving.batch_predict import completed_ids, list_inputs, predict_file
from serving.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["show me flights from boston to denver", "what is the cheapest fare to atlanta", "",
         "flights from new york to seattle on monday", "list ground transportation in dallas",
         "i need a flight to st. louis", "which airlines fly to boston", "what does fare code qx mean"]


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def predictor(slot_run):
    return serving.load(slot_run[0])


@pytest.fixture()
def text_file(tmp_path):
    path = tmp_path / "utterances.txt"
    path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return path


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_every_line_predicted_once_with_errors_on_their_own_line(predictor, text_file, tmp_path):
    out = tmp_path / "out.jsonl"
    stats = predict_file(predictor, text_file, out, batch_size=3, progress=False)
    assert stats == {"total": 8, "skipped": 0, "written": 8, "errors": 1}
    lines = read_lines(out)
    assert [line["id"] for line in lines] == list(range(1, 9))
    assert lines[2] == {"id": 3, "error": "text is empty"}
    good = [t for t in TEXTS if t]
    expected = json.loads(json.dumps([r.to_dict() for r in predictor.predict_batch(good)]))
    outputs = [line["output"] for line in lines if "output" in line]
    # batches of 3 here, of 7 there: onnxruntime's float sums may differ in the last bits, nothing else may
    confidence = lambda rows: [row.pop("intent_confidence") for row in rows]
    np.testing.assert_allclose(confidence(outputs), confidence(expected), atol=1e-6)
    assert outputs == expected


def test_interrupted_run_resumes_without_duplicates(predictor, text_file, tmp_path):
    out = tmp_path / "out.jsonl"

    def interrupt(written):
        raise Stop

    with pytest.raises(Stop):  # stopped after the first batch of 3
        predict_file(predictor, text_file, out, batch_size=3, progress=False, on_batch=interrupt)
    assert [line["id"] for line in read_lines(out)] == [1, 2, 3]
    with open(out, "a", encoding="utf-8") as f:  # a write torn by the interruption
        f.write('{"id": 4, "output": {"text": "flights fr')
    assert completed_ids(out) == {"1", "2", "3"}
    stats = predict_file(predictor, text_file, out, batch_size=3, progress=False)
    assert stats["skipped"] == 3 and stats["written"] == 5
    ids = [line["id"] for line in read_lines(out)]
    assert ids == list(range(1, 9))
    again = predict_file(predictor, text_file, out, batch_size=3, progress=False)
    assert again["written"] == 0 and again["skipped"] == 8


def test_folder_of_text_documents(predictor, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i, text in enumerate(TEXTS[:3]):
        (docs / f"doc{i}.txt").write_text(text, encoding="utf-8")
    (docs / "notes.md").write_text("ignored", encoding="utf-8")
    out = tmp_path / "docs.jsonl"
    predict_file(predictor, docs, out, progress=False)
    lines = read_lines(out)
    assert [line["id"] for line in lines] == ["doc0.txt", "doc1.txt", "doc2.txt"]
    assert lines[0]["output"]["words"][:3] == ["show", "me", "flights"] and "error" in lines[2]


class FakeResult(dict):
    def to_dict(self):
        return dict(self)


class FakeAudio:
    """A stand-in audio predictor (input_kind "audio": it is given WAV paths)."""

    task, input_kind = "fake_audio", "audio"

    def predict_batch(self, xs):
        out = []
        for x in xs:
            try:
                with wave.open(x) as w:
                    out.append(FakeResult(frames=w.getnframes(), calls=len(xs)))
            except wave.Error as err:
                raise InputError(f"{x} is not a WAV file: {err}") from None
        return out


class FakeReader:
    """A stand-in record predictor (input_kind "record")."""

    task, input_kind = "fake_record", "record"

    def predict_batch(self, records):
        return [FakeResult(n=len(r["story"]), q=r["question"]) for r in records]


def write_wav(path: Path, frames: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(np.zeros(frames, "<i2").tobytes())


def test_folder_of_wavs_for_an_audio_model(tmp_path):
    clips = tmp_path / "clips"
    (clips / "b").mkdir(parents=True)
    write_wav(clips / "a.wav", 100)
    write_wav(clips / "b" / "c.wav", 300)
    (clips / "broken.wav").write_bytes(b"not a wav")
    out = tmp_path / "clips.jsonl"
    stats = predict_file(FakeAudio(), clips, out, batch_size=8, progress=False)
    assert stats["errors"] == 1
    lines = {line["id"]: line for line in read_lines(out)}
    assert lines["a.wav"]["output"] == {"frames": 100, "calls": 1}  # the batch fell back to one by one
    assert lines["b/c.wav"]["output"]["frames"] == 300 and "not a WAV file" in lines["broken.wav"]["error"]


def test_json_lines_of_records(tmp_path):
    src = tmp_path / "qa.jsonl"
    src.write_text('{"story": ["a.", "b."], "question": "where?"}\n[1, 2]\n{oops\n', encoding="utf-8")
    out = tmp_path / "qa.jsonl.out"
    predict_file(FakeReader(), src, out, progress=False)
    lines = read_lines(out)
    assert lines[0] == {"id": 1, "output": {"n": 2, "q": "where?"}}
    assert "line 2 is not a JSON object" in lines[1]["error"] and "line 3 is not valid JSON" in lines[2]["error"]


def test_inputs_of_the_wrong_form_are_refused(tmp_path):
    with pytest.raises(InputError, match="no such input"):
        list_inputs(tmp_path / "missing.txt", "text")
    with pytest.raises(InputError, match="holds no .wav files"):
        list_inputs(tmp_path, "audio")
    with pytest.raises(InputError, match="reads a JSON-lines file"):
        list_inputs(tmp_path, "record")


def test_cli_batch_mode_with_progress(slot_run, text_file, tmp_path):
    out = tmp_path / "cli.jsonl"
    cmd = [sys.executable, "-m", "serving", "predict", str(slot_run[0]), "--input", str(text_file),
           "--output", str(out), "--batch-size", "4"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "8/8 inputs" in done.stderr and "8 written (1 errors), 0 already there" in done.stderr
    assert len(read_lines(out)) == 8
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "0 written (0 errors), 8 already there" in done.stderr and len(read_lines(out)) == 8
    bad = subprocess.run(cmd[:5] + ["--input", str(tmp_path / "nope.txt"), "--output", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no such input file" in bad.stderr
