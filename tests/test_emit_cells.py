"""export.emit_cells: Clockwork RNN, SCRN and NTM layers as one ONNX Scan each, checked against Keras in onnxruntime
(masked and unmasked, batch 1 / odd / large, lengths 1..max, every direction and merge mode)."""

from __future__ import annotations

import collections

import keras
import numpy as np
import onnxruntime as ort
import pytest

from export.keras_onnx import UnsupportedLayer, convert
from models.cells import ClockworkRNNCell, SCRNCell
from models.ntm import NTMCell, ntm_model

TOL = 1e-5
VOCAB, FEATURES = 20, 4
L = keras.layers
CELLS = {"cwrnn": lambda: ClockworkRNNCell(7, periods=(1, 2, 3)), "scrn": lambda: SCRNCell(6, alpha=0.9),
         "ntm": lambda: NTMCell(6, memory_size=5, memory_width=3)}
# (wrapper, RNN options): a lone layer, go_backwards, Bidirectional merges; last outputs and states
SHAPES = [
    ("uni", {"return_sequences": True}),
    ("uni", {"return_sequences": True, "go_backwards": True, "zero_output_for_mask": True}),
    ("uni", {"return_state": True}),
    ("concat", {"return_sequences": True}),
    ("ave", {"return_sequences": False}),
    (None, {"return_sequences": True, "return_state": True}),
]


def _model(cell: str, wrap, masked: bool, options: dict) -> keras.Model:
    if masked:
        inputs = keras.Input((None,), dtype="int32", name="x")
        x = L.Embedding(VOCAB, 5, mask_zero=True)(inputs)
    else:
        inputs = x = keras.Input((None, FEATURES), name="x")
    rnn = L.RNN(CELLS[cell](), **options)
    y = rnn(x) if wrap == "uni" else L.Bidirectional(rnn, merge_mode=wrap)(x)
    model = keras.Model(inputs, y)
    rng = np.random.default_rng(0)
    for w in model.weights:  # random biases too: zeros would hide mistakes
        w.assign(rng.normal(scale=0.6, size=w.shape).astype("float32"))
    return model


def _batches(masked: bool, rng):
    """Batch 1, an odd batch and a large one; lengths 1..max (right-padded ids) or full float steps."""
    for batch, time in ((1, 1), (1, 6), (5, 9), (64, 12)):
        lens = rng.integers(1, time + 1, size=batch)
        lens[0], lens[-1] = time, 1 if batch > 1 else time
        if masked:
            yield (rng.integers(1, VOCAB, size=(batch, time)) * (np.arange(time) < lens[:, None])).astype("int32")
        else:
            yield rng.normal(size=(batch, time, FEATURES)).astype("float32")


def _worst(model, proto, masked: bool) -> float:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    worst = 0.0
    for x in _batches(masked, np.random.default_rng(1)):
        want = model(x, training=False)
        want = want if isinstance(want, (list, tuple)) else [want]
        got = session.run(None, {"x": x})
        assert len(got) == len(want)
        for a, b in zip(want, got):
            assert np.shape(a) == b.shape
            worst = max(worst, float(np.abs(np.asarray(a) - b).max()))
    return worst


@pytest.mark.parametrize("masked", [True, False], ids=["masked", "unmasked"])
@pytest.mark.parametrize("wrap,options", SHAPES, ids=[f"{w}-{'-'.join(o)}" for w, o in SHAPES])
@pytest.mark.parametrize("cell", ["cwrnn", "scrn"])
def test_parity_with_keras_everywhere(cell, wrap, options, masked):
    model = _model(cell, wrap, masked, options)
    proto = convert(model)
    ops = collections.Counter(node.op_type for node in proto.graph.node)
    assert ops["Scan"] == 1 and not ops["Loop"]  # both directions of a Bidirectional share the Scan
    assert _worst(model, proto, masked) <= TOL


@pytest.mark.parametrize("shape,masked", [(0, True), (0, False), (1, True), (4, True)],
                         ids=["uni-masked", "uni-unmasked", "backwards-masked", "bi-last-masked"])
def test_ntm_parity_with_keras(shape, masked):
    wrap, options = SHAPES[shape]
    model = _model("ntm", wrap, masked, options)
    proto = convert(model)
    assert sum(node.op_type == "Scan" for node in proto.graph.node) == 1
    assert _worst(model, proto, masked) <= TOL


def test_ntm_model_converts_natively_with_its_read_out_slices():
    """ntm_model reads the cell's output in slices (y[..., :split], Keras' GetItem op): no tf2onnx fallback."""
    model = ntm_model(FEATURES, 3, controller_units=6, memory_size=5, memory_width=3)
    rng = np.random.default_rng(0)
    for w in model.weights:
        w.assign(rng.normal(scale=0.6, size=w.shape).astype("float32"))
    proto = convert(model)
    ops = collections.Counter(node.op_type for node in proto.graph.node)
    assert ops["Scan"] == 1 and ops["Slice"] == 3 and not ops["Loop"]
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert sorted(names) == ["logits", "read_weights", "write_weights"]
    for x in _batches(False, np.random.default_rng(1)):
        want = model(x, training=False)
        for name, got in zip(names, session.run(None, {"x": x})):
            assert got.shape == tuple(want[name].shape)
            assert np.abs(np.asarray(want[name]) - got).max() <= TOL


def test_scan_body_is_minimal():
    for wrap, output in (("uni", "Identity"), ("concat", "Where")):  # Bidirectional zeroes masked outputs
        proto = convert(_model("cwrnn", wrap, True, {"return_sequences": True}))
        (scan,) = [n for n in proto.graph.node if n.op_type == "Scan"]
        assert [n.op_type for n in scan.attribute[0].g.node] == ["MatMul", "Add", "Tanh", "Where", output]


def test_initial_state_is_refused_with_a_reason():
    x = keras.Input((None, FEATURES), name="x")
    h0 = keras.Input((6,), name="h0")
    y = L.RNN(SCRNCell(6))(x, initial_state=[h0])
    with pytest.raises(UnsupportedLayer, match="initial_state"):
        convert(keras.Model([x, h0], y))


def test_slot_filler_with_custom_cells_converts_natively():
    from export.onnx_export import to_onnx
    from models.slot_filling import build_slot_filler

    for cell in ("cwrnn", "scrn"):
        model = build_slot_filler(50, 6, 3, cell=cell, embed_dim=8, units=8, layers=2, dropout=0.0)
        proto, route = to_onnx(model, route="native")
        assert route == "native"
        assert sum(n.op_type == "Scan" for n in proto.graph.node) == 2
