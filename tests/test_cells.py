"""Clockwork RNN and SCRN cells: shapes, the clock schedule, SCRN's decaying context, masks, Bidirectional,
saving, --cell choices, ONNX export parity and a slot-filling run served by onnxruntime."""

import json
import warnings

import keras
import numpy as np
import pytest

from models.cells import ClockworkRNNCell, SCRNCell, module_sizes
from models.recurrent import CELL_CHOICES, recurrent_classifier, recurrent_layer


def _rnn(cell, **kwargs):
    return keras.layers.RNN(cell, return_sequences=True, **kwargs)


def _x(batch=3, steps=9, features=5, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, steps, features)).astype("float32")


# --- Clockwork RNN -----------------------------------------------------------------------------------------------

def test_clockwork_modules_split_the_units_and_count_only_free_weights():
    assert module_sizes(10, 4) == [3, 3, 2, 2]
    cell = ClockworkRNNCell(10, periods=(1, 2, 4, 8))
    layer = _rnn(cell)
    layer(_x(features=5))
    # input kernel + bias + the blocks of modules i read from modules j >= i: 10*10, 7*3, 4*2, 2*2 -> 3*10+... rows
    free = 5 * 10 + 10 + 10 * 3 + 7 * 3 + 4 * 2 + 2 * 2
    assert layer.count_params() == free
    full = keras.ops.convert_to_numpy(cell.recurrent_kernel)
    assert full.shape == (10, 10)
    starts = [0, 3, 6, 8]
    for i, (start, size) in enumerate(zip(starts, module_sizes(10, 4))):
        assert not full[:start, start:start + size].any(), f"module {i} reads a faster module"
        assert full[start:, start:start + size].all()


def test_clock_schedule_really_skips_updates():
    periods = (1, 2, 4)
    cell = ClockworkRNNCell(6, periods=periods)
    h = keras.ops.convert_to_numpy(_rnn(cell)(_x(batch=2, steps=12, features=3)))  # [batch, time, 6]
    for i, period in enumerate(periods):
        block = h[:, :, 2 * i: 2 * i + 2]
        for t in range(1, 12):
            if t % period:
                np.testing.assert_array_equal(block[:, t], block[:, t - 1], err_msg=f"period {period}, step {t}")
            else:
                assert np.abs(block[:, t] - block[:, t - 1]).min() > 0, f"period {period} did not update at {t}"
    assert np.abs(h[:, 0]).min() > 0  # every module updates at the first step


def test_clock_state_counts_steps_and_slow_modules_ignore_fast_ones():
    cell = ClockworkRNNCell(4, periods=(1, 2))
    cell.build((None, 3))
    x = np.ones((1, 3), "float32")
    h0 = np.array([[0.5, -0.5, 0.2, 0.1]], "float32")
    h_fast_changed = h0 + np.array([[9.0, 9.0, 0, 0]], "float32")
    for t, slow_updates in ((0.0, True), (1.0, False), (2.0, True)):
        step = np.full((1, 1), t, "float32")
        h, (_, next_step) = cell(x, [h0, step])
        h2, _ = cell(x, [h_fast_changed, step])
        assert float(next_step[0, 0]) == t + 1
        h, h2 = keras.ops.convert_to_numpy(h), keras.ops.convert_to_numpy(h2)
        np.testing.assert_allclose(h[:, 2:], h2[:, 2:], atol=0, err_msg="the slow module reads the fast one")
        if not slow_updates:
            np.testing.assert_array_equal(h[:, 2:], h0[:, 2:])


def test_clockwork_rejects_bad_periods():
    with pytest.raises(ValueError, match="strictly increasing"):
        ClockworkRNNCell(8, periods=(2, 1))
    with pytest.raises(ValueError, match="need at least as many units"):
        ClockworkRNNCell(2, periods=(1, 2, 4))


# --- SCRN --------------------------------------------------------------------------------------------------------

def test_scrn_context_decays_by_alpha_and_splits_hidden_from_context():
    cell = SCRNCell(8, context_units=3, alpha=0.9)
    assert (cell.hidden_units, cell.context_units) == (5, 3)
    layer = _rnn(cell)
    zeros = np.zeros((2, 6, 4), "float32")
    s0 = np.random.default_rng(1).normal(size=(2, 3)).astype("float32")
    start = np.concatenate([np.zeros((2, 5), "float32"), s0], axis=-1)
    out = keras.ops.convert_to_numpy(layer(zeros, initial_state=[start]))
    assert out.shape == (2, 6, 8)
    for t in range(6):
        np.testing.assert_allclose(out[:, t, 5:], s0 * 0.9 ** (t + 1), rtol=1e-6)


def test_scrn_context_is_a_moving_average_of_the_projected_inputs():
    cell = SCRNCell(6, context_units=2, alpha=0.95)
    x = _x(batch=2, steps=5, features=3)
    out = keras.ops.convert_to_numpy(_rnn(cell)(x))
    B = keras.ops.convert_to_numpy(cell.context_kernel)
    s = np.zeros((2, 2), "float32")
    for t in range(5):
        s = 0.05 * x[:, t] @ B + 0.95 * s
        np.testing.assert_allclose(out[:, t, 4:], s, rtol=1e-5, atol=1e-6)


def test_scrn_rejects_bad_sizes():
    with pytest.raises(ValueError, match="context_units"):
        SCRNCell(4, context_units=4)
    with pytest.raises(ValueError, match="alpha"):
        SCRNCell(4, alpha=1.5)


# --- both cells in Keras -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", ["cwrnn", "scrn"])
def test_masked_steps_leave_the_state_as_if_they_were_not_there(cell):
    model = recurrent_classifier(cell, 8, None, 5, 3, return_sequences=False)
    layer = model.get_layer("recurrent")
    x = _x(batch=1, steps=7)
    keep = np.array([True, True, False, True, False, False, True])
    masked = keras.ops.convert_to_numpy(layer(x, mask=keep[None]))
    dropped = keras.ops.convert_to_numpy(layer(x[:, keep]))
    np.testing.assert_allclose(masked, dropped, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", ["cwrnn", "scrn"])
def test_bidirectional_layers_save_and_load(cell, tmp_path):
    ids = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(20, 4, mask_zero=True)(ids)
    y = recurrent_layer(cell, 6, bidirectional=True, name="bi")(x)
    model = keras.Model(ids, y)
    batch = np.array([[3, 4, 5, 6], [7, 8, 0, 0]], "int32")
    out = keras.ops.convert_to_numpy(model(batch))
    assert out.shape == (2, 4, 12)
    # the backward half of a padded row starts at its last real token: it equals the unpadded row's
    short = keras.ops.convert_to_numpy(model(batch[1:, :2]))
    np.testing.assert_allclose(out[1, :2], short[0], rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(batch)), out)


def test_every_task_offers_the_new_cells(capsys):
    assert CELL_CHOICES == ("rnn", "lstm", "gru", "cwrnn", "scrn")
    from pipelines import key_terms, sentiment, slot_filling

    for task in (slot_filling, sentiment, key_terms):
        with pytest.raises(SystemExit) as exit_info:
            task.main(["--help"])
        assert exit_info.value.code == 0
        assert "--cell {rnn,lstm,gru,cwrnn,scrn}" in capsys.readouterr().out, task.__name__


# --- export --------------------------------------------------------------------------------------------------------

def test_masked_bidirectional_cwrnn_and_scrn_onnx_match_keras():
    import onnxruntime as ort

    from export.onnx_export import to_onnx

    ids = keras.Input((None,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(30, 6, mask_zero=True)(ids)
    x = recurrent_layer("cwrnn", 8, bidirectional=True, name="cw")(x)
    x = recurrent_layer("scrn", 8, bidirectional=True, name="sc")(x)
    last = recurrent_layer("cwrnn", 5, bidirectional=False, return_sequences=False, name="last")(x)
    model = keras.Model(ids, {"steps": keras.layers.Dense(3, name="steps")(x), "last": last})
    proto, route = to_onnx(model, route="native")  # one Scan per layer (export/emit_cells.py)
    assert route == "native"
    ops = [node.op_type for node in proto.graph.node]
    assert ops.count("Scan") == 3 and "Loop" not in ops
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    for lengths in ([11, 4, 1, 7], [2, 2], [1]):
        batch = np.zeros((len(lengths), max(lengths)), "int32")
        for i, n in enumerate(lengths):
            batch[i, :n] = rng.integers(1, 30, n)
        want = {k: keras.ops.convert_to_numpy(v) for k, v in model(batch).items()}
        names = [o.name for o in session.get_outputs()]
        got = dict(zip(names, session.run(None, {"token_ids": batch})))
        steps_key = next(n for n in names if "steps" in n)
        last_key = next(n for n in names if "last" in n)
        for i, n in enumerate(lengths):
            assert np.abs(got[steps_key][i, :n] - want["steps"][i, :n]).max() <= 1e-5
        assert np.abs(got[last_key] - want["last"]).max() <= 1e-5


def test_slot_filling_with_a_clockwork_rnn_runs_end_to_end_to_serving(tmp_path):
    import serving
    from pipelines.slot_filling import main

    out = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["--cell", "cwrnn", "--quick", "--epochs", "1", "--synthetic-size", "200", "--out", str(out)]) == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["onnx_converter"] == "native"
    assert max(meta["parity"]["onnx_max_abs_diff"].values()) <= 1e-5
    assert json.loads((out / "config.json").read_text())["cell"] == "cwrnn"
    result = serving.load(out).predict("show me flights from boston to denver")
    assert result.intent in meta["intents"]
    assert len(result.tags) == len(result.words) == 7
    assert all(tag in meta["slot_tags"] for tag in result.tags)
