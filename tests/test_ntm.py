"""Neural Turing Machine: each addressing step against small hand-computed cases, erase/add, the cell, the
copy and associative-recall generators, and the lesson's run on tiny settings."""

import math

import keras
import numpy as np
import pytest

from models import ntm
from pipelines.lessons import ntm as lesson


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _t(rows):
    return np.asarray(rows, "float32")


# --- addressing ----------------------------------------------------------------------------------------------------

def test_content_weights_are_a_softmax_of_scaled_cosine_similarities():
    memory = _t([[[1, 0], [0, 2], [3, 3]]])  # cosines with key (1, 0): 1, 0, 1/sqrt(2)
    key = _t([[2, 0]])
    for beta in (0.0, 1.0, 5.0):
        scores = beta * np.array([1.0, 0.0, 1 / math.sqrt(2)])
        want = np.exp(scores) / np.exp(scores).sum()
        np.testing.assert_allclose(_np(ntm.content_weights(memory, key, _t([[beta]])))[0], want, rtol=1e-5)
    # a large key strength focuses on the most similar row
    assert _np(ntm.content_weights(memory, key, _t([[100.0]])))[0, 0] > 0.999


def test_interpolation_gate_mixes_content_and_previous_weights():
    content, previous = _t([[0.7, 0.2, 0.1]]), _t([[0.0, 0.0, 1.0]])
    np.testing.assert_allclose(_np(ntm.interpolate(content, previous, _t([[1.0]]))), content)
    np.testing.assert_allclose(_np(ntm.interpolate(content, previous, _t([[0.0]]))), previous)
    np.testing.assert_allclose(_np(ntm.interpolate(content, previous, _t([[0.25]])))[0], [0.175, 0.05, 0.775],
                               rtol=1e-6)


def test_shift_is_a_circular_convolution():
    w = _t([[0.0, 1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(_np(ntm.shift(w, _t([[0, 0, 1]])))[0], [0, 0, 1, 0])  # +1: focus moves down
    np.testing.assert_array_equal(_np(ntm.shift(w, _t([[1, 0, 0]])))[0], [1, 0, 0, 0])  # -1: up
    np.testing.assert_array_equal(_np(ntm.shift(_t([[0, 0, 0, 1]]), _t([[0, 0, 1]])))[0], [1, 0, 0, 0])  # wraps
    # w = (0.5, 0.5, 0, 0), s(-1, 0, +1) = (0.2, 0.5, 0.3): out(i) = sum_k s(k) w(i - k)
    got = _np(ntm.shift(_t([[0.5, 0.5, 0, 0]]), _t([[0.2, 0.5, 0.3]])))[0]
    np.testing.assert_allclose(got, [0.35, 0.4, 0.15, 0.1], rtol=1e-6)
    assert got.sum() == pytest.approx(1.0)


def test_sharpening_raises_to_gamma_and_renormalises():
    got = _np(ntm.sharpen(_t([[0.5, 0.25, 0.25]]), _t([[2.0]])))[0]
    np.testing.assert_allclose(got, [0.25 / 0.375, 0.0625 / 0.375, 0.0625 / 0.375], rtol=1e-5)
    np.testing.assert_allclose(_np(ntm.sharpen(_t([[0.6, 0.4]]), _t([[1.0]])))[0], [0.6, 0.4], rtol=1e-5)


def test_addressing_pipeline_matches_numpy():
    rng = np.random.default_rng(0)
    memory = rng.normal(size=(2, 5, 3)).astype("float32")
    previous = rng.dirichlet(np.ones(5), 2).astype("float32")
    key = rng.normal(size=(2, 3)).astype("float32")
    beta, gate, gamma = _t([[2.0], [0.5]]), _t([[0.3], [0.9]]), _t([[1.5], [3.0]])
    shifts = rng.dirichlet(np.ones(3), 2).astype("float32")
    got = _np(ntm.address(memory, previous, key, beta, gate, shifts, gamma))
    for b in range(2):
        cos = memory[b] @ key[b] / (np.linalg.norm(memory[b], axis=1) * np.linalg.norm(key[b]))
        wc = np.exp(beta[b] * cos) / np.exp(beta[b] * cos).sum()
        wg = gate[b] * wc + (1 - gate[b]) * previous[b]
        ws = np.array([sum(shifts[b, k + 1] * wg[(i - k) % 5] for k in (-1, 0, 1)) for i in range(5)])
        want = ws ** gamma[b] / (ws ** gamma[b]).sum()
        np.testing.assert_allclose(got[b], want, rtol=1e-4, atol=1e-6)


def test_write_erases_then_adds_and_read_takes_the_weighted_rows():
    memory = _t([[[1, 1], [2, 2], [3, 3]]])
    w = _t([[1.0, 0.5, 0.0]])
    got = _np(ntm.write(memory, w, erase=_t([[1.0, 0.0]]), add=_t([[10.0, 0.0]])))[0]
    # row 0: fully erased in column 0 then +10; row 1: half erased (2 -> 1) then +5; row 2 untouched
    np.testing.assert_allclose(got, [[10, 1], [6, 2], [3, 3]])
    np.testing.assert_allclose(_np(ntm.read(memory, _t([[0.5, 0.0, 0.5]])))[0], [2, 2])


# --- the cell ------------------------------------------------------------------------------------------------------

def test_cell_outputs_weightings_that_sum_to_one_and_saves(tmp_path):
    model = ntm.ntm_model(4, 3, controller_units=8, memory_size=6, memory_width=5)
    x = np.random.default_rng(1).normal(size=(2, 7, 4)).astype("float32")
    out = {k: _np(v) for k, v in model(x).items()}
    assert out["logits"].shape == (2, 7, 3)
    for key in ("read_weights", "write_weights"):
        assert out[key].shape == (2, 7, 6)
        np.testing.assert_allclose(out[key].sum(-1), 1.0, rtol=1e-5)
        assert out[key].min() >= 0
    cell = model.get_layer("ntm").cell
    assert [s for s in cell.state_size] == [8, 8, 30, 6, 6, 5]
    model.save(tmp_path / "ntm.keras")
    loaded = keras.saving.load_model(tmp_path / "ntm.keras")
    np.testing.assert_allclose(_np(loaded(x)["write_weights"]), out["write_weights"], rtol=1e-6)


def test_cell_starts_focused_on_row_zero_with_a_constant_memory():
    cell = ntm.NTMCell(4, memory_size=5, memory_width=3)
    h, c, memory, w_read, w_write, read = [_np(s) for s in cell.get_initial_state(batch_size=2)]
    assert not h.any() and not c.any() and not read.any()
    np.testing.assert_array_equal(memory, np.full((2, 15), ntm.MEMORY_INIT, "float32"))
    np.testing.assert_array_equal(w_read, [[1, 0, 0, 0, 0]] * 2)
    np.testing.assert_array_equal(w_write, w_read)


def test_cell_rejects_bad_sizes():
    with pytest.raises(ValueError, match="memory_size must be positive"):
        ntm.NTMCell(4, memory_size=0)
    with pytest.raises(ValueError, match="shift_range 2 needs at least 5 memory rows"):
        ntm.NTMCell(4, memory_size=4, shift_range=2)


# --- the tasks -----------------------------------------------------------------------------------------------------

def test_copy_task_asks_for_the_vectors_after_the_delimiter():
    x, y, weights = lesson.copy_task([3, 1], 4, np.random.default_rng(0), steps=9)
    assert x.shape == (2, 9, 5) and y.shape == (2, 9, 4) and weights.shape == (2, 9)
    np.testing.assert_array_equal(y[0, 4:7], x[0, :3, :4])
    np.testing.assert_array_equal(x[0, :, 4], [0, 0, 0, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(weights[0], [0, 0, 0, 0, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(weights[1], [0, 0, 1, 0, 0, 0, 0, 0, 0])
    assert not x[:, 4:, :4].any()  # nothing on the input while answering
    with pytest.raises(ValueError, match="cannot hold a copy of length 5"):
        lesson.copy_task([5], 4, np.random.default_rng(0), steps=9)


def test_recall_task_asks_for_the_item_after_the_query():
    rng = np.random.default_rng(4)
    x, y, weights = lesson.recall_task([3] * 20, 5, 2, rng)
    assert x.shape[1] == lesson.recall_steps(3, 2) == 3 * 3 + 2 + 2 + 2
    for i in range(20):
        items = [x[i, 1 + 3 * k: 3 + 3 * k, :5] for k in range(3)]
        np.testing.assert_array_equal(x[i, [0, 3, 6], 5], 1)
        query = x[i, 10:12, :5]
        assert x[i, 9, 6] == 1 and x[i, 12, 6] == 1
        answer = y[i, 13:15]
        np.testing.assert_array_equal(weights[i], [0] * 13 + [1, 1])
        asked = [k for k in range(2) if np.array_equal(items[k], query)]
        assert asked and any(np.array_equal(items[k + 1], answer) for k in asked)


# --- the lesson ----------------------------------------------------------------------------------------------------

def test_lesson_trains_both_models_with_clipnorm_and_plots_the_weightings(tmp_path):
    settings = lesson.Settings(width=3, train_max=2, test_lengths=(2, 4), max_items=2, item_steps=1,
                               controller_units=8, memory_size=6, memory_width=4, lstm_units=8, batch=4, steps=12,
                               eval_size=4, jit=False, clipnorm=0.5)
    result = lesson.run(settings)
    for name in lesson.MODELS:
        for task in ("copy", "recall"):
            curve = result[task][name]
            assert len(curve["loss"]) == 3 and all(math.isfinite(v) for v in curve["loss"])
        assert set(result["copy"][name]["by_length"]) == {"2", "4"}
        assert 0 <= result["copy"][name]["by_length"]["4"]["bit_errors"] <= 4 * 3
    weights = np.asarray(result["weights"]["write"])
    assert weights.shape == (2 * 4 + 1, 6)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    assert "copy 4" in lesson.table(result) and "NTM" in lesson.table(result)
    lesson.plot(result, tmp_path / "ntm.png")
    assert (tmp_path / "ntm.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="memory_size 6 cannot hold a copy of length 8"):
        lesson.run(lesson.Settings(test_lengths=(8,), memory_size=6, steps=1, jit=False))
