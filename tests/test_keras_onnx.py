"""export.keras_onnx: native ONNX RNN/LSTM/GRU conversion, checked against Keras in onnxruntime."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import pytest  # noqa: E402

from export.keras_onnx import UnsupportedLayer, convert  # noqa: E402
from models.heads import MaskedPooling  # noqa: E402
from models.slot_filling import build_slot_filler  # noqa: E402

TOL = 1e-5
VOCAB, EMBED, FEATURES, UNITS = 20, 5, 4, 6
L = keras.layers

CELLS = {
    "rnn": lambda **kw: L.SimpleRNN(UNITS, **kw),
    "lstm": lambda **kw: L.LSTM(UNITS, **kw),
    "gru": lambda **kw: L.GRU(UNITS, reset_after=True, **kw),
    "gru_v1": lambda **kw: L.GRU(UNITS, reset_after=False, **kw),
}
N_STATES = {"rnn": 1, "lstm": 2, "gru": 1, "gru_v1": 1}
MERGES = ["uni", "concat", "sum", "mul", "ave"]


# --------------------------------------------------------------------------------------------------------------------
# helpers


def _randomize(model, seed=0):
    """Random weights everywhere: Keras' zero biases would hide bias-splitting mistakes."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.normal(scale=0.6, size=w.shape).astype("float32"))
    return model


def _session(proto: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _run_onnx(session, feeds: dict) -> dict:
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds)))


def _run_keras(model, feeds: dict) -> dict:
    inputs = [feeds[t.name] for t in model.inputs]
    out = model(inputs if isinstance(model._inputs_struct, (list, tuple)) else inputs[0], training=False)
    if isinstance(out, dict):
        return {k: np.asarray(v) for k, v in out.items()}
    out = out if isinstance(out, (list, tuple)) else [out]
    return {name: np.asarray(v) for name, v in zip(model.output_names, out)}


def _id_batches(rng, shapes=((5, 7), (4, 3), (3, 1))):
    """Right-padded id batches whose lengths include 1 and the full length."""
    batches = []
    for batch, time in shapes:
        lens = rng.integers(1, time + 1, size=batch)
        lens[0], lens[-1] = 1, time
        ids = rng.integers(1, VOCAB, size=(batch, time)) * (np.arange(time) < lens[:, None])
        batches.append(({"ids": ids.astype(np.int32)}, lens))
    return batches


def _float_batches(rng, shapes=((5, 7), (3, 1), (2, 4))):
    return [({"features": rng.normal(size=(b, t, FEATURES)).astype(np.float32)}, np.full(b, t)) for b, t in shapes]


def _max_diff(model, proto, batches, per_step: set[str]) -> float:
    """Max |keras - onnxruntime| over the batches; per-step outputs compared at real steps only."""
    session, worst = _session(proto), 0.0
    for feeds, lens in batches:
        expected, got = _run_keras(model, feeds), _run_onnx(session, feeds)
        assert set(got) == set(expected)
        for name, want in expected.items():
            assert got[name].shape == want.shape, name
            if name in per_step:
                real = np.arange(want.shape[1]) < lens[:, None]
                want, have = want[real], got[name][real]
            else:
                have = got[name]
            worst = max(worst, float(np.abs(want - have).max()))
    return worst


def _sequence_input(masked: bool):
    if masked:
        ids = keras.Input((None,), dtype="int32", name="ids")
        return ids, L.Embedding(VOCAB, EMBED, mask_zero=True, name="embedding")(ids)
    features = keras.Input((None, FEATURES), name="features")
    return features, features


def _recurrent(cell: str, merge: str, **kw):
    layer = CELLS[cell](**kw)
    return layer if merge == "uni" else L.Bidirectional(layer, merge_mode=merge)


def _op_types(proto) -> set[str]:
    return {n.op_type for n in proto.graph.node}


# --------------------------------------------------------------------------------------------------------------------
# parity


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("masked", [True, False], ids=["masked", "unmasked"])
@pytest.mark.parametrize("merge", MERGES)
@pytest.mark.parametrize("cell", list(CELLS))
def test_recurrent_parity(cell, merge, masked, layers):
    """One model per case: a stack whose top layer returns sequences (``sequence``) and, beside it on the same
    input, one returning the last step (``last``)."""
    keras.utils.set_random_seed(1)
    inp, x = _sequence_input(masked)
    for _ in range(layers - 1):
        x = _recurrent(cell, merge, return_sequences=True)(x)
    sequence = _recurrent(cell, merge, return_sequences=True)(x)
    last = _recurrent(cell, merge, return_sequences=False)(x)
    model = _randomize(keras.Model(inp, {"sequence": sequence, "last": last}))
    proto = convert(model)

    op = {"rnn": "RNN", "lstm": "LSTM"}.get(cell, "GRU")
    assert sum(n.op_type == op for n in proto.graph.node) == layers + 1
    assert not _op_types(proto) & {"Loop", "Scan"}
    batches = _id_batches(np.random.default_rng(2)) if masked else _float_batches(np.random.default_rng(2))
    assert _max_diff(model, proto, batches, per_step={"sequence"}) <= TOL


@pytest.mark.parametrize("masked", [True, False], ids=["masked", "unmasked"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_return_state_and_initial_state(cell, bidirectional, masked):
    """States come back as [h(, c)] per direction, forward first; unmasked models also start from given states.

    Masked models pass ``initial_state=None``: the node then records no mask, yet Keras masks at run time."""
    keras.utils.set_random_seed(3)
    inp, x = _sequence_input(masked)
    n_states = N_STATES[cell] * (2 if bidirectional else 1)
    states_in = [] if masked else [keras.Input((UNITS,), name=f"state_{i}") for i in range(n_states)]
    layer = _recurrent(cell, "concat" if bidirectional else "uni", return_sequences=True, return_state=True)
    output, *states = layer(x, initial_state=states_in or None)
    outputs = {"sequence": output, **{f"out_state_{i}": s for i, s in enumerate(states)}}
    model = _randomize(keras.Model([inp, *states_in], outputs), seed=4)
    proto = convert(model)

    assert len(states) == n_states
    rng = np.random.default_rng(5)
    batches = _id_batches(rng) if masked else _float_batches(rng)
    for feeds, _ in batches:
        batch = next(iter(feeds.values())).shape[0]
        feeds.update({s.name: rng.normal(size=(batch, UNITS)).astype(np.float32) for s in states_in})
    assert _max_diff(model, proto, batches, per_step={"sequence"}) <= TOL


@pytest.mark.parametrize("return_sequences", [True, False])
def test_merge_mode_none_gives_two_outputs(return_sequences):
    keras.utils.set_random_seed(6)
    inp, x = _sequence_input(masked=True)
    forward, backward, h_f, c_f, h_b, c_b = L.Bidirectional(
        L.LSTM(UNITS, return_sequences=return_sequences, return_state=True), merge_mode=None)(x)
    names = ["forward", "backward", "h_f", "c_f", "h_b", "c_b"]
    model = _randomize(keras.Model(inp, dict(zip(names, [forward, backward, h_f, c_f, h_b, c_b]))), seed=7)
    proto = convert(model)

    assert [o.name for o in proto.graph.output] == sorted(names)
    per_step = {"forward", "backward"} if return_sequences else set()
    assert _max_diff(model, proto, _id_batches(np.random.default_rng(8)), per_step) <= TOL


@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_lone_go_backwards_layer(cell, return_sequences):
    """A go_backwards layer outside Bidirectional returns its outputs in reversed order under the original mask."""
    keras.utils.set_random_seed(9)
    inp, x = _sequence_input(masked=True)
    y = CELLS[cell](return_sequences=return_sequences, go_backwards=True)(x)
    if return_sequences:  # the reversed outputs and their (unreversed) mask feed the next layer
        y = CELLS[cell](return_sequences=True)(y)
    model = _randomize(keras.Model(inp, {"y": y}), seed=10)
    proto = convert(model)
    per_step = {"y"} if return_sequences else set()
    assert _max_diff(model, proto, _id_batches(np.random.default_rng(11)), per_step) <= TOL


@pytest.mark.parametrize(
    "cell, options",
    [
        ("rnn", dict(activation="relu")),
        ("rnn", dict(activation="sigmoid", use_bias=False)),
        ("lstm", dict(recurrent_activation="hard_sigmoid")),
        ("lstm", dict(activation="hard_sigmoid", recurrent_activation="sigmoid")),  # alphas only for the 2nd, 3rd
        ("lstm", dict(activation="relu", use_bias=False)),
        ("gru", dict(recurrent_activation="hard_sigmoid", activation="relu")),
        ("gru_v1", dict(activation="hard_sigmoid", use_bias=False)),
    ],
)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_activations_and_options(cell, options, bidirectional):
    keras.utils.set_random_seed(12)
    inp, x = _sequence_input(masked=True)
    y = _recurrent(cell, "concat" if bidirectional else "uni", return_sequences=True, **options)(x)
    model = _randomize(keras.Model(inp, {"y": y}), seed=13)
    assert _max_diff(model, convert(model), _id_batches(np.random.default_rng(14)), {"y"}) <= TOL


@pytest.mark.parametrize("masked", [True, False], ids=["masked", "unmasked"])
@pytest.mark.parametrize("mode", ["mean", "max", "mean_max"])
def test_pooling_dense_and_merges(mode, masked):
    keras.utils.set_random_seed(15)
    inp, x = _sequence_input(masked)
    x = L.SpatialDropout1D(0.3)(x)
    a = L.Dense(UNITS, activation="tanh")(x)
    b = L.Dense(UNITS, activation="relu")(x)
    both = L.Concatenate()([L.Add()([a, b]), L.Dense(3, activation="sigmoid")(x)])
    seq = L.Bidirectional(L.GRU(UNITS, return_sequences=True), merge_mode="ave")(both)
    pooled = L.Dropout(0.5)(MaskedPooling(mode)(seq))
    outputs = {"steps": L.Dense(4)(seq), "pooled": L.Dense(3, activation="softmax", use_bias=False)(pooled)}
    model = _randomize(keras.Model(inp, outputs), seed=16)
    proto = convert(model)
    batches = _id_batches(np.random.default_rng(17)) if masked else _float_batches(np.random.default_rng(17))
    assert _max_diff(model, proto, batches, per_step={"steps"}) <= TOL


def test_padded_steps_are_filled_as_keras_does_only_where_an_output_reads_them():
    """A lone masked LSTM repeats its last output over the padded steps (a Where) only when some output depends on
    those steps: not through per-step layers into a masked mean or attention, yes into a max or a per-step output."""
    def build(read: bool):
        inp, x = _sequence_input(True)
        h = L.LSTM(UNITS, return_sequences=True)(x)
        attended = L.Attention()([h, L.LayerNormalization()(L.Dense(UNITS)(h))])
        outputs = {"mean": L.GlobalAveragePooling1D()(attended)}
        if read:
            outputs.update(max=L.GlobalMaxPooling1D()(h), steps=L.Dense(3)(L.Dropout(0.1)(h)))
        return _randomize(keras.Model(inp, outputs), seed=18)

    for read in (False, True):
        model = build(read)
        proto = convert(model)
        recurrent_fill = [n for n in proto.graph.node if n.op_type == "Where" and n.name.startswith("lstm")]
        assert len(recurrent_fill) == int(read)
        assert _max_diff(model, proto, _id_batches(np.random.default_rng(19)), per_step=set()) <= TOL


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_slot_filler(cell, bidirectional, layers):
    keras.utils.set_random_seed(18)
    model = _randomize(build_slot_filler(VOCAB, 5, 4, cell=cell, embed_dim=EMBED, units=UNITS, layers=layers,
                                         bidirectional=bidirectional), seed=19)
    proto = convert(model)
    onnx.checker.check_model(proto, full_check=True)

    assert not _op_types(proto) & {"Loop", "Scan"}
    assert {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[cell] in _op_types(proto)
    (token_ids,) = proto.graph.input
    assert token_ids.name == "token_ids" and token_ids.type.tensor_type.elem_type == onnx.TensorProto.INT32
    assert [d.dim_param for d in token_ids.type.tensor_type.shape.dim] == ["batch", "time"]
    assert {o.name: o.type.tensor_type.elem_type for o in proto.graph.output} == {
        "slot_probs": onnx.TensorProto.FLOAT, "intent_probs": onnx.TensorProto.FLOAT}
    batches = [({"token_ids": f["ids"]}, lens) for f, lens in _id_batches(np.random.default_rng(20))]
    assert _max_diff(model, proto, batches, per_step={"slot_probs"}) <= TOL


def test_model_loaded_from_keras_file(tmp_path):
    """A reloaded model records its masks as NotEqual(ids, 0) ops rather than the tensors' own masks."""
    keras.utils.set_random_seed(27)
    built = _randomize(build_slot_filler(VOCAB, 5, 4, cell="gru", embed_dim=EMBED, units=UNITS, layers=2), seed=28)
    built.save(tmp_path / "model.keras")
    model = keras.saving.load_model(tmp_path / "model.keras", compile=False)
    proto = convert(model)
    assert "GRU" in _op_types(proto) and not _op_types(proto) & {"Loop", "Scan"}
    batches = [({"token_ids": f["ids"]}, lens) for f, lens in _id_batches(np.random.default_rng(29))]
    assert _max_diff(model, proto, batches, per_step={"slot_probs"}) <= TOL


@pytest.mark.parametrize("opset", [14, 18, 21])
def test_other_opsets(opset):
    keras.utils.set_random_seed(21)
    model = _randomize(build_slot_filler(VOCAB, 5, 4, cell="lstm", embed_dim=EMBED, units=UNITS, layers=1), seed=22)
    proto = convert(model, opset=opset)
    assert proto.opset_import[0].version == opset
    batches = [({"token_ids": f["ids"]}, lens) for f, lens in _id_batches(np.random.default_rng(23))]
    assert _max_diff(model, proto, batches, per_step={"slot_probs"}) <= TOL


def test_rows_of_padding_only():
    """A row with no real step: Keras keeps the initial (zero) state; onnxruntime accepts sequence length 0."""
    keras.utils.set_random_seed(24)
    model = _randomize(build_slot_filler(VOCAB, 5, 4, cell="gru", embed_dim=EMBED, units=UNITS, layers=2), seed=25)
    ids = np.array([[0, 0, 0], [3, 4, 0], [5, 6, 7]], np.int32)
    assert _max_diff(model, convert(model), [({"token_ids": ids}, np.array([0, 2, 3]))], {"slot_probs"}) <= TOL


# --------------------------------------------------------------------------------------------------------------------
# what raises


def _unsupported(build) -> UnsupportedLayer:
    keras.utils.set_random_seed(26)
    with pytest.raises(UnsupportedLayer) as caught:
        convert(build())
    return caught.value


def test_layer_without_emitter_raises_naming_the_layer():
    def build():
        inp, x = _sequence_input(masked=False)
        x = L.UpSampling1D(2, name="my_upsampling")(x)
        return keras.Model(inp, L.LSTM(UNITS)(x))

    err = _unsupported(build)
    assert err.layer_name == "my_upsampling"
    assert "'my_upsampling' (UpSampling1D)" in str(err)


@pytest.mark.parametrize(
    "make, layer_class, why",
    [
        (lambda: L.SimpleRNN(UNITS, activation="linear", name="bad"), "SimpleRNN", "activation 'linear'"),
        (lambda: L.LSTM(UNITS, activation="gelu", name="bad"), "LSTM", "activation 'gelu'"),
        (lambda: L.Bidirectional(L.GRU(UNITS, recurrent_activation="silu"), name="bad"), "Bidirectional",
         "recurrent_activation 'silu'"),
        (lambda: L.Dense(3, activation="mish", name="bad"), "Dense", "activation 'mish'"),
        (lambda: L.LSTM(UNITS, stateful=True, name="bad"), "LSTM", "stateful=True"),
    ],
)
def test_unsupported_options_raise(make, layer_class, why):
    def build():
        inp = keras.Input((None, FEATURES), batch_size=2, name="features")
        return keras.Model(inp, make()(inp))

    err = _unsupported(build)
    assert err.layer_name == "bad" and err.layer_class == layer_class
    assert why in str(err) and f"'bad' ({layer_class})" in str(err)


def test_initial_state_on_masked_input_raises():
    """Keras ignores the mask when initial_state is passed (two tensor arguments), which ONNX can't mirror."""
    def build():
        inp, x = _sequence_input(masked=True)
        h0 = keras.Input((UNITS,), name="h0")
        return keras.Model([inp, h0], L.GRU(UNITS, name="gru_h0")(x, initial_state=[h0]))

    assert _unsupported(build).layer_name == "gru_h0"


def test_merging_masked_with_unmasked_raises():
    def build():
        ids = keras.Input((None,), dtype="int32", name="ids")
        masked = L.Embedding(VOCAB, EMBED, mask_zero=True)(ids)
        plain = L.Embedding(VOCAB, EMBED, name="plain")(ids)
        return keras.Model(ids, L.LSTM(UNITS)(L.Concatenate(name="mixed")([masked, plain])))

    assert _unsupported(build).layer_name == "mixed"


def test_old_opset_is_refused():
    model = keras.Model(*_sequence_input(masked=False))
    with pytest.raises(ValueError, match="opset 13"):
        convert(model, opset=13)


# --------------------------------------------------------------------------------------------------------------------
# The emitter registry: one way to register, complete on import, no import cycle

import ast  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXPORT_DIR = ROOT / "export"


def _python(code: str) -> subprocess.CompletedProcess:
    """Runs ``code`` in a fresh interpreter at the repository root."""
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


_FRESH_REGISTRY = """
import sys
import {entry}
import keras
from export.registry import EMITTERS
from models.attention import LogSoftmax, PaddingMask, SeqAttention
from models.memory import MemN2N
from models.ngrams import LogLinearMix, NaiveBayesNgrams
need = [SeqAttention, PaddingMask, LogSoftmax, MemN2N, NaiveBayesNgrams, LogLinearMix, keras.layers.LSTM,
        keras.layers.Bidirectional]
missing = [c.__name__ for c in need if c not in EMITTERS]
assert not missing, f"not registered: {{missing}}"
assert "export.seq2seq_export" not in sys.modules and "export.exporter" not in sys.modules, sorted(sys.modules)
from export.onnx_export import to_onnx
from models.seq2seq import Seq2SeqSpec, build_seq2seq
models = build_seq2seq(Seq2SeqSpec(12, 11, hidden=4, embed_dim=4, attention_units=4))
print(to_onnx(models.encoder, route="native")[1], to_onnx(models.decoder_step, route="native")[1])
"""


@pytest.mark.parametrize("entry", ["export.keras_onnx", "export.onnx_export"])
def test_importing_only_the_converter_registers_every_emitter(entry):
    """No import-order dependence: a fresh process that imports only the converter converts a seq2seq model
    natively (its attention, padding-mask and log-softmax emitters live in export/emit_seq2seq.py)."""
    done = _python(_FRESH_REGISTRY.format(entry=entry))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-2:] == ["native", "native"]


def _export_modules() -> list[str]:
    return sorted("export" if p.stem == "__init__" else f"export.{p.stem}" for p in EXPORT_DIR.glob("*.py"))


def _top_level_export_imports(module: str) -> set[str]:
    """The export modules ``module`` imports when it is imported (module-level statements, not function bodies)."""
    path = EXPORT_DIR / ("__init__.py" if module == "export" else f"{module.split('.')[1]}.py")
    known, found = set(_export_modules()), set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in known and name != module}


def test_export_modules_import_without_cycles():
    """Statically: module-level imports among export modules form no cycle, and emitter modules import only the
    registry from export/. Dynamically: each export module imported first, with no other export module loaded
    (one interpreter; export* is dropped from sys.modules before each import: no module outside export/ imports
    export, so this is a fresh start for every one of them)."""
    graph = {module: _top_level_export_imports(module) for module in _export_modules()}
    for module, deps in graph.items():
        if module.startswith("export.emit_"):
            assert deps <= {"export.registry"}, f"{module} imports {sorted(deps)}"
    assert graph["export.registry"] == set()
    state, cycle = {}, []

    def visit(module, path):
        state[module] = "open"
        for dep in sorted(graph[module]):
            if state.get(dep) == "open":
                cycle.append(path + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])
    assert not cycle, f"import cycle: {' -> '.join(cycle[0])}"

    code = f"""
import importlib, sys, traceback
failed = []
for name in {_export_modules()!r}:
    for loaded in [m for m in sys.modules if m == "export" or m.startswith("export.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ": " + traceback.format_exc(limit=-3))
print("\\n".join(failed) or "ok")
"""
    done = _python(code)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout + done.stderr[-3000:]


def test_every_emitter_module_is_imported_by_the_converter():
    from export import keras_onnx

    listed = {module.__name__ for module in keras_onnx.EMITTER_MODULES}
    on_disk = {f"export.{p.stem}" for p in EXPORT_DIR.glob("emit_*.py")}
    assert listed == on_disk, "add the new emitter module to the imports at the top of export/keras_onnx.py"


def test_emits_registers_once_and_refuses_a_second_emitter():
    from export.keras_onnx import EMITTERS as converter_view
    from export.registry import EMITTERS, emits

    class Twice(L.Layer):
        pass

    @emits(Twice)
    def first(g, layer, call):
        return []

    assert EMITTERS[Twice] is first and converter_view[Twice] is first
    with pytest.raises(ValueError, match="already has an emitter"):
        @emits(Twice)
        def second(g, layer, call):
            return []
    with pytest.raises(TypeError):
        emits("Twice")
    with pytest.raises(TypeError):  # the registry is read-only: @emits is the one way in
        EMITTERS[Twice] = first


def test_one_default_opset():
    """export.registry.DEFAULT_OPSET is the only opset number written in export/ and benchmarks/."""
    import re

    from export import keras_onnx, onnx_export, registry

    assert keras_onnx.DEFAULT_OPSET == onnx_export.DEFAULT_OPSET == registry.DEFAULT_OPSET
    literal = re.compile(r"(OPSET\w*\s*=|opset\s*[=:]\s*|make_opsetid\([^,]+,)\s*\d")
    for path in [*EXPORT_DIR.glob("*.py"), *(ROOT / "benchmarks").glob("*.py")]:
        if path.name != "registry.py":
            assert not literal.search(path.read_text(encoding="utf-8")), path
