"""Model builders: shapes, masking of padded steps, and the summed sequence loss."""

import keras
import numpy as np
import pytest

from models.losses import SummedSequenceCrossEntropy
from models.recurrent import recurrent_layer
from models.slot_filling import build_slot_filler


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_outputs_have_one_slot_distribution_per_word_and_one_intent(cell):
    model = build_slot_filler(50, 7, 4, cell=cell, embed_dim=8, units=8, layers=2)
    out = model(np.array([[3, 4, 5, 0], [6, 0, 0, 0]], np.int32))
    assert out["slot_probs"].shape == (2, 4, 7)
    assert out["intent_probs"].shape == (2, 4)
    np.testing.assert_allclose(np.sum(out["slot_probs"], -1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.sum(out["intent_probs"], -1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("cell, bidirectional", [("lstm", True), ("gru", True), ("rnn", False)])
def test_padding_changes_nothing_at_real_steps(cell, bidirectional):
    keras.utils.set_random_seed(1)
    model = build_slot_filler(50, 7, 4, cell=cell, embed_dim=8, units=8, layers=2, bidirectional=bidirectional)
    short = model(np.array([[3, 4, 5]], np.int32))
    padded = model(np.array([[3, 4, 5, 0, 0, 0, 0]], np.int32))
    np.testing.assert_allclose(short["slot_probs"][0], padded["slot_probs"][0, :3], atol=1e-6)
    np.testing.assert_allclose(short["intent_probs"], padded["intent_probs"], atol=1e-6)


def test_unknown_cell_is_refused():
    with pytest.raises(ValueError, match="unknown cell 'tcn'; choose one of rnn, lstm, gru"):
        recurrent_layer("tcn", 4)


def test_loss_is_cross_entropy_summed_over_real_steps_and_averaged_over_sentences():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5), size=(2, 4)).astype("float32")
    labels = np.array([[1, 2, 3, -1], [4, 0, -1, -1]])
    expected = -(np.log(probs[0, 0, 1]) + np.log(probs[0, 1, 2]) + np.log(probs[0, 2, 3])
                 + np.log(probs[1, 0, 4]) + np.log(probs[1, 1, 0])) / 2
    assert float(SummedSequenceCrossEntropy()(labels, probs)) == pytest.approx(expected, rel=1e-5)


def test_model_survives_keras_save_and_load(tmp_path):
    model = build_slot_filler(30, 5, 3, embed_dim=8, units=8, layers=1)
    ids = np.array([[3, 4, 0]], np.int32)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    np.testing.assert_allclose(model(ids)["slot_probs"], loaded(ids)["slot_probs"], atol=1e-7)
