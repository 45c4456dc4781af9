"""Optional int8 dynamic quantization of an exported ONNX model (onnxruntime.quantization).

Weights of MatMul / LSTM (and the other ops onnxruntime quantizes dynamically) become int8; activations are
quantized on the fly. The metadata stays inside the file, so ``serving.load("run/model.int8.onnx")`` works.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx

from export import parity
from serving.session import OnnxModel

INT8_FILE = "model.int8.onnx"


def quantize_int8(source: Path, target: Path, batches: list[dict], per_step: set[str]) -> dict:
    """Writes the int8 form of ``source`` to ``target`` and measures what it changes on ``batches``.

    Returns:
      ``{"max_abs_diff": ..., "argmax_agreement": ...}``: vs the float model, over real steps of per-step outputs
      (argmax agreement: the share of rows / steps whose most probable class is unchanged).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # it suggests pre-processing on the root logger
    # onnxruntime has no CPU kernel for ConvInteger with int8 weights: convolutions stay float
    convs = [node.name for node in onnx.load(str(source)).graph.node if node.op_type == "Conv"]
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, nodes_to_exclude=convs)
    float_model, int8_model = OnnxModel(source), OnnxModel(target)
    worst, agree, total = 0.0, 0, 0
    for batch in batches:
        lengths = batch["lengths"]
        feeds = {k: v for k, v in batch.items() if k != "lengths"}
        reference, quantized = float_model.run(feeds), int8_model.run(feeds)
        worst = max(worst, *parity.compare(reference, quantized, lengths, per_step).values())
        for name, ref in reference.items():
            rows = [slice(None, n) for n in lengths] if name in per_step else [slice(None)] * len(lengths)
            for i, steps in enumerate(rows):
                a, b = ref[i][steps].argmax(-1), quantized[name][i][steps].argmax(-1)
                agree += int(np.sum(a == b))
                total += int(np.size(a))
    return {"max_abs_diff": worst, "argmax_agreement": agree / max(total, 1)}
