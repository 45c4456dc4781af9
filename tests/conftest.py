"""Shared fixtures, each trained once per test session: one small slot-filling run on built-in data (the serving
tests); one quick slot-filling run recorded for the resume tests (tests/test_task_contract.py) and the repeat test
(tests/test_pipeline.py); the runs of the task tests that other tests serve or replay too (sentiment, key terms,
text auto-encoder, part-of-speech tagging, translation)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

SMALL = dict(epochs=8, embed_dim=32, hidden=32, layers=1, learning_rate=5e-3, synthetic_size=1500, patience=8)


@pytest.fixture(scope="session")
def slot_run(tmp_path_factory):
    """A trained and exported slot-filling run dir (built-in data, small model): (path, metrics)."""
    from pipelines.slot_filling import SlotFillingConfig, run

    out = tmp_path_factory.mktemp("runs") / "slot_filling"
    metrics = run(SlotFillingConfig(out=str(out), **SMALL))
    return out, metrics


@pytest.fixture(scope="session")
def slot_model(slot_run):
    """The Keras model of :func:`slot_run`."""
    import keras

    import models.chars  # noqa: F401
    import models.heads  # noqa: F401
    import models.losses  # noqa: F401

    return keras.saving.load_model(slot_run[0] / "model.keras", compile=False)


# --------------------------------------------------------------------------------------------------------------------
# Recorded runs: what the resume tests compare against

# The epoch after which a killed run stops in the resume tests (runner.KILL_AFTER_EPOCHS).
KILL_AFTER = 1


@dataclasses.dataclass
class RecordedRun:
    """A completed run and what it left on the way.

    ``states/<phase>/<epoch>/`` holds each phase's resume state as saved after each of its epochs; ``states/killed/``
    the whole resume folder (every phase) as it was when a run killed after epoch ``KILL_AFTER`` of a phase would
    have stopped (the same condition as ``runner.KILL_AFTER_EPOCHS``: the first save of epoch ``KILL_AFTER`` of a
    phase that carries on), and ``killed_phase`` that phase. ``trained`` maps each phase to the arguments that
    ``runner.train`` was called with (the trainer, the epoch → dataset function, the run, the keywords)."""

    config: object
    out: Path
    metrics: dict
    states: Path
    killed_phase: str | None
    trained: dict


@contextlib.contextmanager
def _recording(states: Path):
    from pipelines import runner
    from pipelines.resume import ResumeState

    seen = {"killed_phase": None, "trained": {}}
    save, train = ResumeState.save, runner.train

    def saving(self, model, loop):
        save(self, model, loop)
        shutil.copytree(self.folder, states / self.folder.name / str(loop["epoch"]), dirs_exist_ok=True)
        if loop["epoch"] == KILL_AFTER and loop["stopped"] is None and seen["killed_phase"] is None:
            shutil.copytree(self.folder.parent, states / "killed")
            seen["killed_phase"] = self.folder.name

    def training(model, make_dataset, run, **kwargs):
        loop = train(model, make_dataset, run, **kwargs)
        seen["trained"][kwargs.get("phase", "train")] = (model, make_dataset, run, kwargs)
        return loop

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ResumeState, "save", saving)
        patch.setattr(runner, "train", training)
        yield seen


def record_run(task, config, states: Path) -> RecordedRun:
    """Runs ``task`` with ``config`` (uninterrupted), keeping its resume states in ``states`` (see RecordedRun)."""
    with _recording(Path(states)) as seen:
        metrics = task.run(config)
    return RecordedRun(config, Path(config.out), metrics, Path(states), seen["killed_phase"], seen["trained"])


# The settings of every task's resume test on top of the task's own (tests/test_task_contract.py): --quick,
# 2 epochs, no early stop, no export.
CONTRACT = dict(quick=True, epochs=2, patience=10, export=False)


@pytest.fixture(scope="session")
def slot_quick_run(tmp_path_factory) -> RecordedRun:
    """A quick slot-filling run (built-in data, 2 epochs, no export), recorded: the uninterrupted run of the
    slot-filling resume tests, and the first of the two runs of the repeat test."""
    from pipelines import registry

    base = tmp_path_factory.mktemp("slot_quick")
    task = registry.get("slot_filling")
    return record_run(task, task.config_class(out=str(base / "run"), **CONTRACT), base / "states")


@pytest.fixture(scope="session")
def recorder():
    """:func:`record_run`, for tests that record runs of their own."""
    return record_run


# --------------------------------------------------------------------------------------------------------------------
# One translation run for tests/test_translation.py and tests/test_reexport.py (which copies it before changing it)


@pytest.fixture(scope="session")
def translation_run(tmp_path_factory):
    """A seconds-long translation run on the built-in number pair, exported with SavedModels too (LSTM, additive
    attention of 8 units, beam 3, 60 test pairs decoded, 3 examples, 2 attention heat-maps): (run dir, metrics)."""
    from pipelines.translation import TranslationConfig, run

    out = tmp_path_factory.mktemp("runs") / "translation"
    config = TranslationConfig(out=str(out), synthetic_size=800, epochs=5, cell="lstm", hidden=24, embed_dim=16,
                               attention_units=8, learning_rate=1e-2, eval_limit=60, examples=3, heatmaps=2,
                               saved_model=True, max_len=12, max_target_len=8, beam_size=3,
                               dropout=0.0)
    return out, run(config)


# --------------------------------------------------------------------------------------------------------------------
# The task tests' runs, recorded: the tests of the task read them, tests/test_server.py serves the sentiment and
# key-term ones, and tests/test_task_contract.py replays an epoch of the key-term, text auto-encoder and tagging ones.


def _recorded(tmp_path_factory, name: str, out_name: str, **settings) -> RecordedRun:
    from pipelines import registry

    task = registry.get(name)
    base = tmp_path_factory.mktemp(name)
    return record_run(task, task.config_class(out=str(base / out_name), **settings), base / "states")


@pytest.fixture(scope="session")
def sentiment_run(tmp_path_factory) -> RecordedRun:
    """A quick sentiment run on the built-in reviews (word tokens, 5 epochs, the naive-Bayes path), exported."""
    return _recorded(tmp_path_factory, "sentiment", "sentiment", quick=True, epochs=5, synthetic_size=1200,
                     naive_bayes=2)


# windows of 48 tokens (documents are ~60-160)
KEY_TERMS_SMALL = dict(epochs=3, embed_dim=24, hidden=24, layers=1, learning_rate=1e-2, synthetic_size=160,
                       patience=3, batch_size=16, max_len=48, stride=32, dropout=0.1, token_dropout=0.1, min_count=1)


@pytest.fixture(scope="session")
def key_terms_run(tmp_path_factory) -> RecordedRun:
    """A small key-term run on built-in documents, with windows of 48 tokens (documents are ~60-160), exported."""
    return _recorded(tmp_path_factory, "key_terms", "key_terms", **KEY_TERMS_SMALL)


@pytest.fixture(scope="session")
def text_autoencoder_run(tmp_path_factory) -> RecordedRun:
    """A text auto-encoder run on the built-in sentences (6 epochs, then 5 of the document level), exported."""
    return _recorded(tmp_path_factory, "text_autoencoder", "text_autoencoder", synthetic_size=1200, held_out=100,
                     epochs=6, hidden=48, embed_dim=32, learning_rate=1e-2, saved_model=False, dropout=0.0,
                     doc_epochs=5, doc_hidden=64)


@pytest.fixture(scope="session")
def pos_tagging_run(tmp_path_factory) -> RecordedRun:
    """A quick part-of-speech tagging run on the built-in sentences (3 epochs), exported."""
    return _recorded(tmp_path_factory, "pos_tagging", "run", quick=True, epochs=3)
