"""Shared fixtures: one small slot-filling run on built-in data, trained once per test session."""

from __future__ import annotations

import os

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
