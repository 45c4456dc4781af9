"""The errors serving raises: one for bad input, one for a bad or mismatched model."""


class ServingError(Exception):
    """Base class of every error raised by ``serving``."""


class InputError(ServingError, ValueError):
    """The input to a predictor is unusable: empty, too long, or of the wrong type."""


class ModelError(ServingError):
    """A model file or run dir is missing, not ONNX, or its metadata does not match it."""
