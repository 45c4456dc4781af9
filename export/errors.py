"""Why an export fails: :class:`ExportError` (a run dir cannot be exported) and :class:`ParityError` (an export's
outputs differ from Keras'; defined in ``export.parity``)."""

from export.parity import ParityError

__all__ = ["ExportError", "ParityError"]


class ExportError(RuntimeError):
    """A run dir cannot be exported (missing model, weights, metadata or parity inputs)."""
