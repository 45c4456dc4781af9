"""A thin onnxruntime session wrapper: names from the graph, dtype casting, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from serving.errors import InputError, ModelError

_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


class OnnxModel:
    """One ONNX graph in an onnxruntime session; safe to share across threads.

    Args:
      path: the ``.onnx`` file.
      threads: intra-op threads (None: onnxruntime's default, one per core).
      providers: execution providers, CPU by default.

    Raises:
      ModelError: the file is missing or is not a valid ONNX model.
    """

    def __init__(self, path: str | Path, threads: int | None = None, providers: list[str] | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"model file not found: {self.path}")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises several private exception types here
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelError(f"{self.path} is not a valid ONNX model: {first_line}") from None
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.outputs = {o.name: o for o in self.session.get_outputs()}
        self.metadata_props = dict(self.session.get_modelmeta().custom_metadata_map)

    def output_shape(self, name: str) -> list:
        return list(self.outputs[name].shape)

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """Runs the graph; casts each feed to the graph's input dtype.

        Raises:
          InputError: a graph input is missing from ``feeds``, or a feed is not an input of the graph.
        """
        missing = sorted(set(self.inputs) - set(feeds))
        extra = sorted(set(feeds) - set(self.inputs))
        if missing or extra:
            raise InputError(f"{self.path.name} takes inputs {sorted(self.inputs)}; missing {missing}, unknown {extra}")
        cast = {name: np.asarray(value, dtype=_DTYPES.get(self.inputs[name].type)) for name, value in feeds.items()}
        names = outputs or list(self.outputs)
        return dict(zip(names, self.session.run(names, cast)))
