"""Export: SavedModel with a named serving signature, ONNX, parity verification, and metadata in the model.

``export_model`` writes a trained model's exports into a (staging) run dir; ``reexport`` redoes it for an
existing run dir (``python -m export RUN_DIR``).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from export.exporter import ExportError, ParityError, export_model, reexport  # noqa: E402

__all__ = ["ExportError", "ParityError", "export_model", "reexport"]
