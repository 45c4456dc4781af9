"""The training lessons (``python -m pipelines.lessons``) reproduce the lecture's claims, on small settings."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pipelines.lessons import clipping, ctc_vs_trimming, error_surface, linear_rnn, vanishing
from pipelines.lessons.__main__ import main
from pipelines.lessons.report import plain


@pytest.fixture(scope="module")
def linear():
    return linear_rnn.run(linear_rnn.Settings.quick())


@pytest.fixture(scope="module")
def surface():
    return error_surface.run(error_surface.Settings.quick())


@pytest.fixture(scope="module")
def clipped():
    return clipping.run(clipping.Settings.quick())


@pytest.fixture(scope="module")
def vanished():
    return vanishing.run(vanishing.Settings.quick())


@pytest.fixture(scope="module")
def ctc():
    return ctc_vs_trimming.run(ctc_vs_trimming.Settings.quick())


# 1. the 1-neuron linear RNN

def test_bptt_through_1000_steps_matches_the_closed_form(linear):
    for row in linear["table"]:
        for got, want in ((row["y"], row["closed_y"]), (row["dy_dw"], row["closed_dy_dw"])):
            if want == 0:  # w = 0.01: 1e-1998 is below float64, autodiff underflows to 0 as well
                assert got == 0
            else:
                assert got == pytest.approx(want, rel=1e-9)
    sweep = linear["sweep"]
    np.testing.assert_allclose(sweep["dy_dw"], sweep["closed_dy_dw"], rtol=1e-9)


def test_the_lectures_values_of_y_at_1000(linear):
    rows = {row["w"]: row for row in linear["table"]}
    assert rows[1.0]["y"] == 1.0
    assert f"{rows[1.01]['y']:.1e}" == "2.1e+04"
    assert f"{rows[0.99]['y']:.1e}" == "4.4e-05"
    assert rows[0.01]["closed_y_log10"] == pytest.approx(-1998)


def test_the_gradient_at_1_01_exceeds_the_one_at_0_99_by_orders_of_magnitude(linear):
    rows = {row["w"]: row for row in linear["table"]}
    assert rows[1.01]["dy_dw"] / rows[0.99]["dy_dw"] > 1e6


def test_float32_cannot_hold_the_sweep_so_it_runs_in_float64(linear):
    low, high = linear["float32_range"]
    assert linear["sweep"]["w"][0] < low < 1 < high < linear["sweep"]["w"][-1]


# 2. the rough error surface

def test_keras_rnn_loss_equals_the_grid_loss():
    import keras

    from models.lessons import two_parameter_loss_grid, two_parameter_rnn

    settings = error_surface.Settings.quick()
    for w1, w2 in ((5.0, -1.5), (8.0, -4.1), (1.0, 0.5)):
        model = two_parameter_rnn(settings.steps, w1, w2)
        h = model([np.zeros((1, settings.steps, 1)), np.full((1, 1), settings.h0)])
        grid = two_parameter_loss_grid(np.array([w1]), np.array([w2]), settings.steps, settings.h0, settings.target)
        assert float((h[0, 0] - settings.target) ** 2) == pytest.approx(float(keras.ops.convert_to_numpy(grid)[0]))


def test_the_surface_has_plateaus_and_a_cliff(surface):
    loss = np.asarray(surface["grid"]["loss"])
    steps = np.abs(np.diff(loss, axis=1))
    assert np.mean(steps < 1e-3) > 0.5  # mostly flat
    assert steps.max() > 0.1  # one grid step off the cliff changes the loss by more than 0.1
    assert steps.max() > 1000 * np.median(steps)


def test_descent_jumps_off_the_cliff_and_clipping_keeps_it(surface):
    s = surface["settings"]
    plain_path, clipped_path = surface["plain"], surface["clipped"]
    assert max(plain_path["step_length"]) > 100 * s["learning_rate"] * s["clipnorm"]
    assert max(plain_path["grad_norm"]) > 100 * plain_path["grad_norm"][0]  # the wall is far steeper than the start
    assert max(clipped_path["step_length"]) <= s["learning_rate"] * s["clipnorm"] * (1 + 1e-9)
    assert clipped_path["loss"][-1] < plain_path["loss"][-1] / 10
    assert clipped_path["loss"][-1] < clipped_path["loss"][0]


# 3. exploding gradients and clipping

def test_unclipped_training_diverges_where_clipped_training_does_not(clipped):
    runs = clipped["runs"]
    none = runs["none"]
    assert none["diverged_at"] is not None
    assert not (math.isfinite(none["loss"][-1]) and math.isfinite(none["grad_norm"][-1]))
    assert none["grad_norm"][none["diverged_at"] - 2] > 100 * none["grad_norm"][0]  # it exploded first
    for name in ("clipnorm", "global_clipnorm", "clipvalue"):
        assert runs[name]["diverged_at"] is None, name
        assert len(runs[name]["loss"]) == clipped["settings"]["steps"]
    for name in ("clipnorm", "global_clipnorm"):  # norm clipping also learns: better than predicting 0
        assert runs[name]["eval_loss"] < clipped["baseline_loss"] / 2, name


def test_all_runs_start_from_the_same_weights_and_batches(clipped):
    first = {name: (run["loss"][0], run["grad_norm"][0]) for name, run in clipped["runs"].items()}
    assert len(set(first.values())) == 1


# 4. vanishing gradients, LSTM and GRU

def test_probe_gradient_is_the_hidden_state_gradient():
    """dL/dh_t through the probe equals dL/dh_t from stepping the cell by hand."""
    import keras
    import tensorflow as tf

    from models.lessons import probed_classifier, sequence_classifier

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(3, 6, 5)).astype("float32"))
    y = np.array([0, 2, 1])
    for cell in ("rnn", "lstm", "gru"):
        model = sequence_classifier(cell, 4, 6, 5, 3)
        probed = probed_classifier(model)
        zeros = tf.zeros((3, 6, 4))
        with tf.GradientTape() as tape:
            tape.watch(zeros)
            loss = keras.losses.sparse_categorical_crossentropy(y, probed([x, zeros]), from_logits=True)
            loss = tf.reduce_sum(loss)
        by_probe = tape.gradient(loss, zeros).numpy()
        np.testing.assert_allclose(probed([x, zeros]), model(x), atol=1e-6)

        layer = model.get_layer("recurrent")
        with tf.GradientTape() as tape:
            states = [tf.zeros((3, 4)) for _ in range(len(tf.nest.flatten(layer.cell.state_size)))]
            hs = []
            for t in range(6):
                tape.watch(states[0])
                hs.append(states[0])
                _, states = layer.cell(x[:, t], states)
                states = list(states) if isinstance(states, (list, tuple)) else [states]
            hs.append(states[0])
            tape.watch(hs[-1])
            loss = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(
                y, model.get_layer("readout")(hs[-1]), from_logits=True))
        by_hand = np.stack([g.numpy() for g in tape.gradient(loss, hs[1:])], axis=1)
        np.testing.assert_allclose(by_probe, by_hand, rtol=1e-4, atol=1e-7, err_msg=cell)


def test_gru_has_about_three_quarters_of_lstms_parameters(vanished):
    assert 0.7 < vanished["summary"]["gru_over_lstm_recurrent_params"] < 0.8


def test_gated_cells_remember_where_simple_rnn_forgets(vanished):
    longest = vanished["results"][str(max(vanished["settings"]["lengths"]))]
    gated = max(longest["lstm"]["accuracy"], longest["gru"]["accuracy"])
    assert gated > 0.9
    assert gated > longest["rnn"]["accuracy"] + 0.2


def test_simple_rnn_gradient_vanishes_and_a_trained_gated_cell_keeps_it(vanished):
    summary = vanished["summary"]
    assert summary["rnn_grad_first_over_last_init"] < 1e-2  # ||dL/dh_1|| is a tiny part of ||dL/dh_T||
    longest = vanished["results"][str(max(vanished["settings"]["lengths"]))]
    best = max(("lstm", "gru"), key=lambda cell: longest[cell]["accuracy"])  # the gated cell that learned best
    trained = summary[f"{best}_grad_first_over_last_trained"]
    assert trained > 1e-2
    assert trained > 100 * summary[f"{best}_grad_first_over_last_init"]


def test_clockwork_rnn_and_scrn_keep_more_gradient_than_simple_rnn(vanished):
    summary = vanished["summary"]  # at initialization, the same units: slow modules / the context carry it back
    assert summary["cwrnn_grad_first_over_last_init"] > 100 * summary["rnn_grad_first_over_last_init"]
    assert summary["scrn_grad_first_over_last_init"] > 10 * summary["rnn_grad_first_over_last_init"]


def test_equal_budget_gives_every_cell_the_lstms_parameter_count():
    from models.recurrent import recurrent_classifier

    settings = vanishing.Settings()
    features = settings.symbols + 1
    budget = vanishing.recurrent_params("lstm", settings.units, features)
    units = {cell: vanishing.units_of(settings, cell) for cell in settings.cells}
    assert units["lstm"] == settings.units and units["rnn"] > 2 * settings.units
    for cell in settings.cells:
        model = recurrent_classifier(cell, units[cell], None, features, settings.symbols)
        params = model.get_layer("recurrent").count_params()
        assert params == vanishing.recurrent_params(cell, units[cell], features), cell
        assert abs(params - budget) <= 0.02 * budget, (cell, params, budget)


# 5. trimming versus CTC

def test_trimming_gives_hao_bang_and_never_hao_bang_bang(ctc):
    trimming = ctc["trimming"]
    assert trimming["trimmed"] == "好棒"
    assert trimming["labellings_per_target"]["好棒"] > 0
    assert trimming["labellings_per_target"]["好棒棒"] == 0
    assert not trimming["any_output_with_a_repeat"]
    assert ctc_vs_trimming.ctc_collapse("好φ棒φ棒") == "好棒棒"
    assert ctc_vs_trimming.trim("好φ棒φ棒".replace("φ", "")) == "好棒"


def test_keras_ctc_loss_equals_the_brute_force_sum_over_alignments(ctc):
    for case in ctc["ctc"].values():
        for target, found in case["targets"].items():
            assert math.isfinite(found["keras_loss"]), target
            assert found["keras_loss"] == pytest.approx(found["loss"], abs=1e-5), (case["frames"], target)


def test_alignment_counts_follow_the_formula(ctc):
    # a target of L symbols with r adjacent repeats has C(T + L - r, 2L) alignments in T frames
    for case in ctc["ctc"].values():
        steps = len(case["frames"])
        for target, found in case["targets"].items():
            repeats = sum(a == b for a, b in zip(target, target[1:]))
            assert found["alignments"] == math.comb(steps + len(target) - repeats, 2 * len(target))
    assert "好φ棒φ棒" in ctc["short_alignments"]["好棒棒"]
    assert all(ctc_vs_trimming.ctc_collapse(p) == "好棒棒" for p in ctc["short_alignments"]["好棒棒"])


# the command line

def test_cli_quick_writes_figures_numbers_and_metrics(tmp_path, capsys):
    out = tmp_path / "lessons"
    figures = tmp_path / "figures"
    assert main(["--quick", "--only", "ctc_vs_trimming", "--out", str(out), "--figures", str(figures)]) == 0
    printed = capsys.readouterr().out
    assert "== ctc_vs_trimming" in printed and "好棒棒" in printed
    for name in ("ctc_vs_trimming",):
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size < 150_000
        assert (figures / f"{name}.png").read_bytes() == png.read_bytes()
        json.loads((out / f"{name}.json").read_text(), parse_constant=_no_nan)
    metrics = json.loads((out / "metrics.json").read_text(), parse_constant=_no_nan)
    assert set(metrics) == {"ctc_vs_trimming"}
    assert not list(tmp_path.glob(".lessons.partial-*"))


def _no_nan(name):
    raise ValueError(f"not plain JSON: {name}")


def test_cli_unknown_experiment_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--only", "linear_rnn,gradients", "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown experiment 'gradients'" in err and "ctc_vs_trimming" in err
    assert not (tmp_path / "x").exists()


def test_plain_json_turns_nan_and_inf_into_null():
    data = plain({"a": float("nan"), "b": [np.float32(1.5), float("inf")], "c": np.array([1, 2])})
    assert data == {"a": None, "b": [1.5, None], "c": [1, 2]}
    json.dumps(data, allow_nan=False)
