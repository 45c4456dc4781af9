"""SavedModel export with a named serving signature."""

from __future__ import annotations

from pathlib import Path

import keras

from export.onnx_export import input_signature
from export.quiet import captured_stderr

SIGNATURE = "serving_default"


def write_saved_model(model: keras.Model, path: Path) -> None:
    """Writes a SavedModel whose ``serving_default`` signature takes the model's named inputs and returns its
    named outputs (e.g. ``token_ids`` → ``slot_probs``, ``intent_probs``)."""
    signature = input_signature(model)
    names = [spec.name for spec in signature]
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name=SIGNATURE,
        fn=lambda *inputs: model(dict(zip(names, inputs)) if len(names) > 1 else inputs[0], training=False),
        input_signature=signature,
    )
    with captured_stderr():
        archive.write_out(str(path), verbose=False)
