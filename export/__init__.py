"""Export: SavedModel with a named serving signature, ONNX, parity verification, and metadata in the model.

``export_model`` writes a trained model's exports into a (staging) run dir; ``reexport`` redoes it for an
existing run dir, seq2seq runs included (``python -m export RUN_DIR``); ``export_keras_model`` exports any user's
Keras model (``python -m export MODEL.keras``, see ``export/user_model.py``).

The package imports nothing on its own (the names below load ``export.exporter`` on first use), so importing one
submodule (``export.rundir``, ``export.registry``...) runs only that module and what it imports.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__all__ = ["ExportError", "ParityError", "export_keras_model", "export_model", "reexport"]


def __getattr__(name: str):
    if name == "export_keras_model":
        from export import user_model

        return user_model.export_keras_model
    if name in __all__:
        from export import exporter

        return getattr(exporter, name)
    raise AttributeError(f"module 'export' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
