"""Keeps TensorFlow's C++ log lines (grappler, absl) out of the terminal while a noisy step runs."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile


@contextlib.contextmanager
def captured_stderr():
    """Redirects file descriptor 2 to a temp file; on an exception the captured text is shown, then re-raised."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace")
            if text.strip():
                print(text[-4000:], file=sys.stderr)
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def quiet_converter_logs() -> None:
    """tf2onnx logs every conversion step at INFO; keep only its errors."""
    for name in ("tf2onnx", "tensorflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
