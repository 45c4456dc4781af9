"""The native emitters' parity matrix: every emitter of the layers around recurrent layers, against Keras, over
masked (``Masking``, right-padded) and unmasked inputs at batch 1, an odd batch and a large batch, lengths 1 to max.

One model per case × masking (built once), three batches each; every output compared in full (padded steps too:
the emitters reproduce Keras' values there) through onnxruntime.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import pytest  # noqa: E402

from export.keras_onnx import UnsupportedLayer, convert  # noqa: E402
from models.speech import build_speech_model  # noqa: E402

# Keras warns when Conv1D and the poolings drop the mask, as they should
pytestmark = [pytest.mark.filterwarnings("ignore:Layer .* does not support masking"),
              pytest.mark.filterwarnings("ignore:You passed `rms_scaling=True`")]
TOL = 1e-5
FEATURES, UNITS, MAX_TIME = 3, 4, 7
BATCHES = (1, 5, 33)  # batch 1, an odd batch, a large batch
L = keras.layers
WORST: dict[str, float] = {}


# --------------------------------------------------------------------------------------------------------------------
# The cases: name → (builder of the outputs dict from the (masked) sequence, shortest time the model accepts)


def _activations(x):
    names = ["relu6", "gelu", "selu", "elu", "softplus", "softsign", "hard_sigmoid", "log_softmax", "leaky_relu",
             "silu", "hard_silu", "softmax", "exponential"]
    layers = {"relu_layer": L.ReLU(), "relu_capped": L.ReLU(max_value=0.5), "leaky_relu_layer": L.LeakyReLU(0.1),
              "elu_layer": L.ELU(0.7), "softmax_layer": L.Softmax(axis=1)}
    out = {name: layer(L.Permute((1, 2))(x) if name == "softmax_layer" else x) for name, layer in layers.items()}
    return {**out, **{name: L.Activation(name)(x) for name in names}}


def _merges(x):
    a, b, c = L.Dense(UNITS)(x), L.Dense(UNITS, activation="tanh")(x), L.Dense(UNITS)(x)
    merged = [L.Multiply()([a, b, c]), L.Subtract()([a, b]), L.Maximum()([a, b, c]), L.Minimum()([a, c]),
              L.Average()([a, b])]
    return {"seq": L.GRU(UNITS, return_sequences=True)(L.Concatenate()(merged))}


def _rnn_cells(x):
    out = {}
    for name, cell in {"lstm": L.LSTMCell, "gru": L.GRUCell, "rnn": L.SimpleRNNCell}.items():
        out[f"{name}_seq"] = L.RNN(cell(UNITS), return_sequences=True)(x)
        out[f"{name}_last"] = L.RNN(cell(UNITS))(x)
    out["backwards"] = L.RNN(L.GRUCell(UNITS), return_sequences=True, go_backwards=True)(x)
    out["zero_output"] = L.RNN(L.LSTMCell(UNITS), return_sequences=True, zero_output_for_mask=True)(x)
    return out


def _stacked(x):
    seq, *states = L.RNN(L.StackedRNNCells([L.LSTMCell(UNITS), L.GRUCell(3), L.SimpleRNNCell(UNITS)]),
                         return_sequences=True, return_state=True)(x)
    last = L.RNN(L.StackedRNNCells([L.GRUCell(UNITS), L.GRUCell(UNITS)]), go_backwards=True)(x)
    return {"seq": seq, "last": last, **{f"state_{i}": s for i, s in enumerate(keras.tree.flatten(states))}}


def _bidirectional(x):
    seq, *states = L.Bidirectional(L.RNN(L.StackedRNNCells([L.LSTMCell(3), L.GRUCell(UNITS)]), return_sequences=True,
                                         return_state=True), merge_mode="sum")(x)
    return {"cell": L.Bidirectional(L.RNN(L.LSTMCell(UNITS), return_sequences=True))(x),
            "stacked_last": L.Bidirectional(L.RNN(L.StackedRNNCells([L.SimpleRNNCell(UNITS), L.SimpleRNNCell(3)])),
                                            merge_mode="ave")(x),
            "stacked": seq, **{f"state_{i}": s for i, s in enumerate(keras.tree.flatten(states))}}


def _attention(x):
    q = L.Dense(UNITS)(x)
    dot, weights = L.Attention(use_scale=True)([q, x, q], return_attention_scores=True)
    return {"dot": dot, "weights": weights,
            "causal": L.Attention()([q, q], use_causal_mask=True),
            "concat": L.Attention(score_mode="concat", use_scale=True)([q, q]),
            "additive": L.GRU(UNITS, return_sequences=True)(L.AdditiveAttention()([q, x, q])),
            "additive_unscaled": L.AdditiveAttention(use_scale=False)([q, q])}


def _multi_head(x):
    """Each MultiHeadAttention reads tensors of its own: Keras' MultiHeadAttention.call erases the masks of the
    tensors it reads (set_keras_mask(query, None)), so a later reader of the same tensors would see none."""
    q = [L.Dense(UNITS)(x) for _ in range(4)]
    self_attention = L.MultiHeadAttention(2, 3)(q[0], q[0])
    cross, scores = L.MultiHeadAttention(2, 2, value_dim=3, output_shape=5)(q[1], x, key=q[2],
                                                                           return_attention_scores=True)
    causal = L.MultiHeadAttention(1, 3, use_bias=False)(q[3], q[3], use_causal_mask=True)
    return {"self": L.GRU(UNITS, return_sequences=True)(self_attention), "cross": cross, "scores": scores,
            "causal": causal}


def _multi_head_dropout(x):
    """With dropout Keras takes its Softmax-layer path (masked rows of weights zeroed)."""
    return {"y": L.MultiHeadAttention(2, 3, dropout=0.1)(x, L.Dense(UNITS)(x), use_causal_mask=True)}


def _shapes(x):
    pooled = L.GlobalAveragePooling1D()(L.Dense(8)(x))
    grid = L.Permute((2, 1))(L.Reshape((2, 4))(pooled))
    return {"flat": L.Flatten()(grid), "reshaped": L.Reshape((-1, 2))(grid)}


CASES = {
    "masking_gru_timedistributed_dense": (lambda x: {"y": L.TimeDistributed(L.Dense(10))(
        L.GRU(UNITS, return_sequences=True)(x))}, 1),
    "conv1d_valid": (lambda x: {"y": L.GRU(UNITS, return_sequences=True)(L.Conv1D(UNITS, 3, activation="relu")(x))}, 3),
    "conv1d_strided": (lambda x: {"same": L.Conv1D(UNITS, 3, strides=2, padding="same")(x),
                                  "causal": L.Conv1D(UNITS, 3, strides=2, padding="causal")(x),
                                  "valid": L.Conv1D(UNITS, 1, strides=3, use_bias=False)(x)}, 1),
    "conv1d_causal_dilated": (lambda x: {"y": L.LSTM(UNITS)(L.Conv1D(UNITS, 2, padding="causal", dilation_rate=2,
                                                                     activation="gelu")(x))}, 1),
    "max_pooling1d": (lambda x: {"valid": L.MaxPooling1D(2)(x), "same": L.MaxPooling1D(3, 2, padding="same")(x)}, 2),
    "average_pooling1d": (lambda x: {"valid": L.AveragePooling1D(2, 1)(x),
                                     "same": L.AveragePooling1D(3, 2, padding="same")(x)}, 2),
    "global_max_pooling1d": (lambda x: {"y": L.GlobalMaxPooling1D()(L.LSTM(UNITS, return_sequences=True)(x)),
                                        "keep": L.GlobalMaxPooling1D(keepdims=True)(x)}, 1),
    "global_average_pooling1d": (lambda x: {"y": L.GlobalAveragePooling1D()(L.GRU(UNITS, return_sequences=True)(x)),
                                            "keep": L.GlobalAveragePooling1D(keepdims=True)(x)}, 1),
    "layer_normalization": (lambda x: {"y": L.SimpleRNN(UNITS, return_sequences=True)(L.LayerNormalization()(x)),
                                       "rms": L.LayerNormalization(rms_scaling=True)(x),
                                       "plain": L.LayerNormalization(center=False, scale=False, epsilon=0.1)(x),
                                       "rms_layer": L.RMSNormalization()(x),
                                       "two_axes": L.LayerNormalization(axis=(-2, -1))(L.Reshape((-1, 1, FEATURES))(x)),
                                       "middle": L.LayerNormalization(axis=-2)(L.Reshape((-1, 1, FEATURES))(x))}, 1),
    "batch_normalization": (lambda x: {"y": L.LSTM(UNITS, return_sequences=True)(L.BatchNormalization()(x))}, 1),
    "time_distributed": (lambda x: {"ln": L.TimeDistributed(L.LayerNormalization())(x),
                                    "act": L.TimeDistributed(L.Activation("tanh"))(x)}, 1),
    "time_distributed_4d": (lambda x: {"y": L.TimeDistributed(L.GRU(UNITS))(
        L.TimeDistributed(L.Conv1D(UNITS, 1))(L.Reshape((-1, 1, FEATURES))(x)))}, 1),
    "repeat_vector": (lambda x: {"y": L.TimeDistributed(L.Dense(2))(L.LSTM(UNITS, return_sequences=True)(
        L.RepeatVector(5)(L.LSTM(UNITS)(x))))}, 1),
    "activation": (_activations, 1),
    "noise_identity": (lambda x: {"y": L.GRU(UNITS, return_sequences=True)(
        L.GaussianDropout(0.3)(L.GaussianNoise(0.5)(L.SpatialDropout1D(0.5)(x))))}, 1),
    "reshape_permute_flatten": (_shapes, 1),
    "get_item": (lambda x: {"last": x[..., -2:], "first_step": x[:, 0], "reversed": x[:, ::-1, 1],
                            "strided": L.LSTM(UNITS, return_sequences=True)(x)[:, 1::2, ::3]}, 2),
    "merges": (_merges, 1),
    "rnn_over_cells": (_rnn_cells, 1),
    "stacked_rnn_cells": (_stacked, 1),
    "bidirectional_cells": (_bidirectional, 1),
    "attention": (_attention, 1),
    "multi_head_attention": (_multi_head, 1),
    "multi_head_attention_dropout": (_multi_head_dropout, 1),
}


# --------------------------------------------------------------------------------------------------------------------
# helpers


def _randomize(model, seed=0):
    """Random weights (positive variances): Keras' zero biases and unit scales would hide layout mistakes."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        value = rng.normal(scale=0.6, size=w.shape).astype("float32")
        w.assign(np.abs(value) + 0.1 if "variance" in w.path else value)
    return model


def _batches(rng, masked: bool, min_time: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(features, lengths) at batch 1, an odd and a large batch. Masked: time MAX_TIME, right-padded with zero frames,
    lengths 1..MAX_TIME (1 and MAX_TIME always present); unmasked: time min_time, 4 and MAX_TIME."""
    out = []
    for batch, time in zip(BATCHES, (min_time, max(min_time, 4), MAX_TIME)):
        time = MAX_TIME if masked else time
        x = rng.normal(size=(batch, time, FEATURES)).astype(np.float32)
        lens = rng.integers(1, time + 1, size=batch) if masked else np.full(batch, time)
        lens[0] = 1 if masked and batch > 1 else lens[0]
        lens[-1] = time
        x[np.arange(time)[None, :] >= lens[:, None]] = 0.0
        out.append((x, lens))
    return out


def _session(proto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _max_diff(model, proto, batches) -> float:
    session, worst = _session(proto), 0.0
    names = [o.name for o in session.get_outputs()]
    for x, _ in batches:
        expected = {k: np.asarray(v) for k, v in model(x, training=False).items()}
        got = dict(zip(names, session.run(None, {"features": x})))
        assert set(got) == set(expected)
        for name, want in expected.items():
            assert got[name].shape == want.shape, (name, got[name].shape, want.shape)
            worst = max(worst, float(np.abs(want - got[name]).max()))
    return worst


# --------------------------------------------------------------------------------------------------------------------
# the matrix


@pytest.fixture(scope="module", autouse=True)
def _summary():
    """Prints the matrix's worst difference (run with -s to see it)."""
    yield
    if WORST:
        case = max(WORST, key=WORST.get)
        print(f"\nemitter matrix: {len(WORST)} cases x {len(BATCHES)} batches, max |onnx - keras| "
              f"{WORST[case]:.2e} ({case})")


@pytest.mark.parametrize("masked", [True, False], ids=["masked", "unmasked"])
@pytest.mark.parametrize("case", list(CASES))
def test_emitter_parity(case, masked):
    build, min_time = CASES[case]
    keras.utils.set_random_seed(1)
    features = keras.Input((None, FEATURES), name="features")
    x = L.Masking(0.0)(features) if masked else features
    model = _randomize(keras.Model(features, build(x)))
    proto = convert(model)
    assert not {n.op_type for n in proto.graph.node} & {"Loop", "Scan"}
    worst = _max_diff(model, proto, _batches(np.random.default_rng(2), masked, min_time))
    WORST[f"{case}/{'masked' if masked else 'unmasked'}"] = worst
    assert worst <= TOL


@pytest.mark.parametrize("opset", [14, 18, 21])
def test_other_opsets(opset):
    """Reduce ops take their axes as inputs from opset 18."""
    keras.utils.set_random_seed(7)
    features = keras.Input((None, FEATURES), name="features")
    x = L.LayerNormalization()(L.Masking()(features))
    h = L.GRU(UNITS, return_sequences=True)(x)
    outputs = {"avg": L.GlobalAveragePooling1D()(L.AdditiveAttention()([h, h])), "max": L.GlobalMaxPooling1D()(h),
               "rms": L.LayerNormalization(rms_scaling=True)(x)}
    model = _randomize(keras.Model(features, outputs))
    proto = convert(model, opset=opset)
    assert proto.opset_import[0].version == opset
    assert _max_diff(model, proto, _batches(np.random.default_rng(8), True, 1)) <= TOL


def test_masking_gru_timedistributed_dense_shape():
    """Issue 20's wrong fallback: Masking → GRU(return_sequences) → TimeDistributed(Dense) at 5 × 24 steps."""
    features = keras.Input((None, FEATURES), name="features")
    y = L.TimeDistributed(L.Dense(10))(L.GRU(UNITS, return_sequences=True)(L.Masking()(features)))
    model = _randomize(keras.Model(features, {"y": y}))
    x, _ = _batches(np.random.default_rng(6), True, 1)[1]
    x = np.concatenate([x, np.zeros((5, 24 - MAX_TIME, FEATURES), np.float32)], axis=1)
    got = _session(convert(model)).run(None, {"features": x})[0]
    assert got.shape == (5, 24, 10)
    assert np.abs(got - np.asarray(model(x)["y"])).max() <= TOL


def test_speech_ctc_model_with_frame_mask():
    """models.speech: FrameMask → strided same-padded Conv1D → SubsampleMask handed to each Bidirectional GRU as
    its mask → log-softmax Dense. Compared at each clip's real output steps."""
    keras.utils.set_random_seed(3)
    model = _randomize(build_speech_model(FEATURES, 5, units=UNITS, layers_=2, subsample=2, conv_filters=UNITS))
    proto = convert(model)
    session, rng = _session(proto), np.random.default_rng(4)
    for batch in BATCHES:
        frames = rng.integers(1, 12, size=batch).astype(np.int32)
        frames[-1] = 11
        x = rng.normal(size=(batch, 11, FEATURES)).astype(np.float32) * (np.arange(11)[None, :, None] < frames[:, None,
                                                                                                               None])
        want = np.asarray(model({"features": x, "frames": frames}, training=False)["log_probs"])
        got = session.run(None, {"features": x, "frames": frames})[0]
        assert got.shape == want.shape
        real = np.arange(want.shape[1])[None, :] < -(-frames[:, None] // 2)
        assert np.abs(got[real] - want[real]).max() <= TOL


# --------------------------------------------------------------------------------------------------------------------
# what is refused


def _refused(build) -> UnsupportedLayer:
    keras.utils.set_random_seed(5)
    features = keras.Input((None, FEATURES), name="features")
    with pytest.raises(UnsupportedLayer) as caught:
        convert(keras.Model(features, build(L.Masking()(features))))
    return caught.value


@pytest.mark.parametrize("build, why", [
    (lambda x: L.MultiHeadAttention(2, 3, use_gate=True, name="bad")(x, x), "use_gate"),
    (lambda x: L.Activation("mish", name="bad")(x), "activation 'mish'"),
    (lambda x: L.MultiHeadAttention(2, 3, output_shape=(2, 5), name="bad")(x, x), "output_shape"),
])
def test_refusals_name_the_layer(build, why):
    err = _refused(build)
    assert err.layer_name == "bad" and why in str(err)
