"""The seq2seq decoder's word pointer (``models.seq2seq`` ``pointer_id``): training positions, the memory lookup,
its ONNX export, and serving's step carrying the position as a state."""

import numpy as np
import pytest

START, XX = 2, 5


def _models(**sizes):
    from models.seq2seq import Seq2SeqSpec, build_seq2seq

    return build_seq2seq(Seq2SeqSpec(20, 12, hidden=8, embed_dim=8, attention_units=8, pointer_id=XX, **sizes))


def test_positions_count_the_pointer_tokens_fed_so_far():
    from models.attention import PointerPositions

    tokens = np.array([[START, 7, XX, XX, 8, XX], [START, XX, 0, 0, 0, 0]], np.int32)
    assert np.asarray(PointerPositions(XX)(tokens)).tolist() == [[0, 0, 1, 2, 2, 3], [0, 1, 1, 1, 1, 1]]


def test_pointed_memory_copies_the_row_and_clips_past_the_last_word():
    from models.attention import PointedMemory

    memory = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], np.float32)
    positions = np.array([[0, 2, 3, 9], [1, 2, 0, 5]], np.int32)
    out = np.asarray(PointedMemory()(memory, mask, positions))
    expected = [[memory[0, i] for i in (0, 2, 2, 2)], [memory[1, i] for i in (1, 1, 0, 1)]]
    np.testing.assert_array_equal(out, np.array(expected))


def test_pointer_needs_attention_and_a_real_target_id():
    from models.seq2seq import Seq2SeqSpec, build_seq2seq

    with pytest.raises(ValueError, match="pointer_id 5 needs attention"):
        build_seq2seq(Seq2SeqSpec(20, 12, attention="none", pointer_id=XX))
    with pytest.raises(ValueError, match="target id in 4..11"):
        build_seq2seq(Seq2SeqSpec(20, 12, pointer_id=12))


def test_teacher_forced_trainer_equals_the_step_graph_fed_the_counts():
    models = _models()
    src = np.array([[4, 6, 7, 0], [8, 9, 0, 0]], np.int32)
    tgt = np.array([[START, XX, 9, XX, XX, 3], [START, 9, XX, XX, 0, 0]], np.int32)
    trained = np.asarray(models.trainer({"source_ids": src, "target_ids": tgt}))
    enc = {k: np.asarray(v) for k, v in models.encoder(src).items()}
    step = models.decoder_step({"token_ids": tgt, "word_position": np.cumsum(tgt == XX, axis=1).astype(np.int32),
                                **enc})
    np.testing.assert_allclose(np.asarray(step["log_probs"]), trained, atol=1e-6)
    moved = models.decoder_step({"token_ids": tgt, "word_position": np.zeros_like(tgt), **enc})
    assert np.abs(np.asarray(moved["log_probs"]) - trained).max() > 1e-4  # the position is really read


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_exported_step_matches_keras_and_serving_decodes_like_keras(tmp_path, cell):
    from export.seq2seq_export import export_seq2seq
    from pipelines.seq2seq import keras_decode, tokenizer_spec
    from serving.seq2seq import Seq2SeqModel, Seq2SeqPredictor
    from serving.session import OnnxModel

    models = _models(cell=cell)
    src = np.array([[5, 6, 7, 0, 0], [8, 9, 0, 0, 0], [5, 5, 5, 5, 4], [19, 0, 0, 0, 0]], np.int32)
    vocab = ["<pad>", "<unk>", "<s>", "</s>", "a", "XX", *"bcdefg"]
    task = {"task": "seq2seq", "target_vocab": vocab, "source_vocab": [f"w{i}" for i in range(20)],
            "special_ids": {"pad": 0, "unk": 1, "start": 2, "end": 3}, "source_tokenizer": tokenizer_spec("whitespace"),
            "max_source_len": 5, "max_target_len": 12}
    meta = export_seq2seq(models, tmp_path, task, [src, src[1:, :3]], start_id=START, saved_model=False)
    assert meta["onnx_converter"] == {"encoder": "native", "decoder_step": "native"}
    assert meta["word_pointer"] == {"token": "XX", "id": XX, "input": "word_position"}
    assert max(meta["parity"]["onnx_max_abs_diff"]["decoder_step"].values()) <= 1e-5
    predictor = Seq2SeqPredictor(Seq2SeqModel(OnnxModel(tmp_path / "encoder.onnx"),
                                              OnnxModel(tmp_path / "decoder_step.onnx")), meta)
    for beam in (1, 3):
        served = predictor.decode_states(predictor.encode_ids(src), beam_size=beam, max_len=12)
        keras = keras_decode(models, src, max_len=12, beam_size=beam)
        assert [h.ids for h in served] == [h.ids for h in keras]
