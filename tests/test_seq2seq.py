"""The seq2seq machine: numpy beam search on hand-made decoders, export parity of every variant, and a small
trained model whose onnxruntime decoding equals Keras' token for token."""

import random

import numpy as np
import pytest

from serving.beam import beam_search, greedy

START, END = 2, 3


class TableDecoder:
    """A decoder whose next-token log-probs depend only on the previous token (a transition table); counts calls
    and the rows of each call."""

    def __init__(self, table: dict[int, dict[int, float]], vocab: int = 8):
        self.log_probs = np.full((vocab, vocab), -30.0)
        for prev, nexts in table.items():
            for token, p in nexts.items():
                self.log_probs[prev, token] = np.log(p)
        self.calls = []

    def __call__(self, tokens, states):
        self.calls.append(len(tokens))
        return self.log_probs[tokens], {"h": states["h"] + 1}, None


def _states(batch):
    return {"h": np.zeros((batch, 2), np.float32)}


# --- decoding on hand-made decoders -----------------------------------------------------------------------------

def test_end_symbol_stops_decoding():
    step = TableDecoder({START: {4: 1.0}, 4: {5: 1.0}, 5: {END: 1.0}, END: {4: 1.0}})
    hyp = greedy(step, _states(1), 1, start_id=START, end_id=END, max_len=20)[0]
    assert hyp.ids == [4, 5] and hyp.finished
    assert len(step.calls) == 3  # 4, 5, then </s>: nothing after it
    hyp = beam_search(step, _states(1), 1, beam_size=3, start_id=START, end_id=END, max_len=20)[0]
    assert hyp.ids == [4, 5] and hyp.finished


def test_max_length_guard_stops_a_decoder_that_never_ends():
    step = TableDecoder({START: {4: 1.0}, 4: {4: 0.9, 5: 0.1}, 5: {4: 1.0}})
    hyp = greedy(step, _states(1), 1, start_id=START, end_id=END, max_len=7)[0]
    assert hyp.ids == [4] * 7 and not hyp.finished and len(step.calls) == 7
    hyp = beam_search(step, _states(1), 1, beam_size=2, start_id=START, end_id=END, max_len=7)[0]
    assert len(hyp.ids) == 7 and not hyp.finished


def test_beam_finds_the_sequence_greedy_misses():
    # Greedy takes 4 (0.6) then is stuck with 0.4 x 0.4; 5 (0.4) leads to </s> with 1.0: 0.4 > 0.6 * 0.4.
    table = {START: {4: 0.6, 5: 0.4}, 4: {6: 0.4, 7: 0.3, END: 0.3}, 6: {END: 1.0}, 7: {END: 1.0}, 5: {END: 1.0}}
    g = greedy(TableDecoder(table), _states(1), 1, start_id=START, end_id=END, max_len=10)[0]
    b = beam_search(TableDecoder(table), _states(1), 1, beam_size=2, start_id=START, end_id=END, max_len=10,
                    length_penalty=0.0)[0]
    assert g.ids == [4, 6] and b.ids == [5]
    assert b.score == pytest.approx(np.log(0.4)) and g.score == pytest.approx(np.log(0.6 * 0.4))


def test_length_penalty_favours_longer_outputs():
    # A short output (</s> at once, 0.5) against a long one (5 steps of 0.9 each, then </s> 1.0).
    table = {START: {END: 0.5, 4: 0.5}, 4: {5: 1.0}, 5: {6: 1.0}, 6: {7: 1.0}, 7: {END: 1.0}}
    raw = beam_search(TableDecoder(table), _states(1), 1, beam_size=2, start_id=START, end_id=END, max_len=10,
                      length_penalty=0.0)[0]
    assert raw.ids == []  # ties at log 0.5: the first finished wins
    normalized = beam_search(TableDecoder(table), _states(1), 1, beam_size=2, start_id=START, end_id=END,
                             max_len=10, length_penalty=1.0)[0]
    assert normalized.ids == [4, 5, 6, 7]


def test_beam_size_one_is_greedy_on_random_decoders():
    rng = np.random.default_rng(0)
    for trial in range(20):
        step = TableDecoder({})
        step.log_probs = np.log(rng.dirichlet(np.ones(8) * 0.5, size=8))
        g = greedy(step, _states(3), 3, start_id=START, end_id=END, max_len=12)
        b = beam_search(step, _states(3), 3, beam_size=1, start_id=START, end_id=END, max_len=12)
        assert [h.ids for h in g] == [h.ids for h in b], trial
        assert [h.score for h in g] == pytest.approx([h.score for h in b])


def test_each_step_is_one_call_for_the_whole_batch_and_beam():
    step = TableDecoder({START: {4: 0.5, 5: 0.5}, 4: {END: 0.5, 6: 0.5}, 5: {6: 1.0}, 6: {END: 1.0}})
    beam_search(step, _states(5), 5, beam_size=3, start_id=START, end_id=END, max_len=10)
    assert step.calls and set(step.calls) == {15}  # 5 sentences x 3 hypotheses, every call
    step.calls.clear()
    greedy(step, _states(5), 5, start_id=START, end_id=END, max_len=10)
    assert len(step.calls) <= 3 and step.calls[0] == 5


def test_top_candidates_equal_a_stable_full_sort_with_ties():
    from serving.beam import _top

    rng = np.random.default_rng(1)
    for _ in range(100):
        scores = rng.integers(0, 4, (3, 9)).astype(float)  # many ties
        scores[0, 2] = scores[1] = -np.inf  # a dead hypothesis, a finished sentence
        for n in (1, 3, 9, 12):
            assert (_top(scores, n) == np.argsort(-scores, axis=1, kind="stable")[:, :n]).all()


# --- export parity of every variant --------------------------------------------------------------------------------

@pytest.mark.parametrize("cell,attention,bidirectional,layers", [
    ("gru", "additive", True, 2), ("lstm", "dot", False, 1), ("gru", "none", True, 1), ("lstm", "additive", True, 1),
])
def test_encoder_and_decoder_step_onnx_match_keras(tmp_path, cell, attention, bidirectional, layers):
    from export.seq2seq_export import export_seq2seq
    from models.seq2seq import Seq2SeqSpec, build_seq2seq

    models = build_seq2seq(Seq2SeqSpec(20, 17, cell=cell, attention=attention, bidirectional=bidirectional,
                                       layers=layers, hidden=8, embed_dim=8, attention_units=8))
    src = np.array([[5, 6, 7, 0, 0], [8, 9, 0, 0, 0], [5, 5, 5, 5, 4], [19, 0, 0, 0, 0]], np.int32)
    meta = export_seq2seq(models, tmp_path, {"task": "seq2seq"}, [src, src[1:, :3]], start_id=START,
                          saved_model=False)
    assert meta["onnx_converter"] == {"encoder": "native", "decoder_step": "native"}
    diffs = meta["parity"]["onnx_max_abs_diff"]
    assert max(max(d.values()) for d in diffs.values()) <= 1e-5
    expected = {"log_probs", *(f"new_{n}" for n in models.spec.state_names)} | ({"attention"} if attention != "none"
                                                                               else set())
    assert set(diffs["decoder_step"]) == expected
    assert (tmp_path / "encoder.onnx").is_file() and (tmp_path / "decoder_step.onnx").is_file()


# --- a trained model: ORT decoding == Keras decoding ---------------------------------------------------------------

WORDS = "a b c d e f g".split()


def _reverse_pairs(n, seed):
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        src = [rng.choice(WORDS) for _ in range(rng.randint(1, 5))]
        pairs.append((src, src[::-1]))
    return pairs


@pytest.fixture(scope="module")
def reverse_run(tmp_path_factory):
    """A small GRU + additive attention model trained to reverse letter sequences, exported."""
    from types import SimpleNamespace

    from pipelines.seq2seq import Seq2SeqConfig, Seq2SeqTask, load_models

    out = tmp_path_factory.mktemp("runs") / "reverse"
    config = Seq2SeqConfig(out=str(out), epochs=6, hidden=24, embed_dim=16, attention_units=16, learning_rate=1e-2,
                           batch_size=32, max_len=8, max_target_len=10, saved_model=False, patience=8, dropout=0.0)
    splits = {"train": _reverse_pairs(600, 0), "valid": _reverse_pairs(40, 1), "test": _reverse_pairs(60, 2)}
    metrics = Seq2SeqTask(splits).run(config)
    models, meta = load_models(out)
    trained = SimpleNamespace(models=models, source_vocab=meta["source_vocab"], target_vocab=meta["target_vocab"],
                              meta=meta, metrics=metrics)
    return out, trained, splits


def test_ort_greedy_equals_keras_greedy_token_for_token(reverse_run):
    import serving
    from pipelines.seq2seq import keras_decode, pad, to_ids

    out, trained, splits = reverse_run
    sources = [s for s, _ in splits["test"]]
    predictor = serving.load(out)
    ort = predictor.decode_tokens(sources, beam_size=1)
    keras_hyps = keras_decode(trained.models, pad(to_ids(sources, trained.source_vocab)), max_len=10)
    assert [h.ids for h in ort] == [h.ids for h in keras_hyps]
    assert all(h.finished for h in ort)
    assert [h.score for h in ort] == pytest.approx([h.score for h in keras_hyps], abs=1e-4)
    # and it learned: most reversals are exact
    exact = np.mean([predictor.output_tokens(h) == t for h, (_, t) in zip(ort, splits["test"])])
    assert exact >= 0.8


def test_ort_beam_one_equals_greedy_and_beam_is_at_least_as_likely(reverse_run):
    import serving

    out, _, splits = reverse_run
    predictor = serving.load(out / "encoder.onnx")  # the encoder file finds decoder_step.onnx beside it
    sources = [s for s, _ in splits["test"]][:30]
    greedy_hyps = predictor.decode_tokens(sources, beam_size=1)
    beam1 = [predictor.decode_states(predictor.encode_ids(predictor.source_ids([s])), beam_size=1)[0]
             for s in sources[:5]]
    assert [h.ids for h in greedy_hyps[:5]] == [h.ids for h in beam1]
    from serving.beam import beam_search

    states = predictor.encode_ids(predictor.source_ids(sources))
    beam = beam_search(predictor.step, states, len(sources), beam_size=4, start_id=2, end_id=3, max_len=10,
                       length_penalty=0.0)
    assert all(b.score >= g.score - 1e-6 for b, g in zip(beam, greedy_hyps))


def test_predict_text_result_and_bad_input(reverse_run):
    import serving
    from serving import InputError

    out, _, _ = reverse_run
    predictor = serving.load(out)
    result = predictor.predict("a b c", beam_size=3)
    assert result.output == "c b a" and result.finished and result.beam_size == 3
    assert len(result.attention) == 4 and len(result.attention[0]) == 3  # 3 tokens + </s>, over 3 source tokens
    assert result.to_dict()["output_tokens"] == ["c", "b", "a"]
    unknown = predictor.predict("a zz b")
    assert unknown.unknown_tokens == ["zz"]
    with pytest.raises(InputError, match="text is empty"):
        predictor.predict("   ")
    with pytest.raises(InputError, match=r"texts\[1\] has 9 tokens; this model reads at most 8"):
        predictor.predict_batch(["a", "a b c d e f g a b"])
    with pytest.raises(InputError, match="must be a string"):
        predictor.predict(3)
    guarded = predictor.decode_tokens([["a", "b", "c", "d"]], beam_size=2, max_len=2)[0]
    assert len(guarded.ids) == 2 and not guarded.finished


def test_run_dir_metadata_and_mismatch_is_caught(reverse_run, tmp_path):
    import json
    import shutil

    import serving
    from serving import ModelError

    out, _, _ = reverse_run
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["special_ids"] == {"pad": 0, "unk": 1, "start": 2, "end": 3}
    assert meta["source_vocab"][:4] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert set(meta["files"]) == {"encoder.onnx", "decoder_step.onnx"}
    for name in ("source_vocab.txt", "target_vocab.txt", "model.weights.h5", "config.json"):
        assert (out / name).is_file(), name
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "decoder_step.onnx").unlink()
    with pytest.raises(ModelError, match="no decoder_step.onnx"):
        serving.load(broken)


def test_ort_decoding_makes_one_decoder_call_per_step_for_the_whole_beam(reverse_run):
    import serving

    out, _, splits = reverse_run
    predictor = serving.load(out)
    rows, run = [], predictor.model.decoder.run

    def counted(feeds, outputs=None):
        rows.append(len(feeds["token_ids"]))
        return run(feeds, outputs)

    predictor.model.decoder.run = counted
    sources = [s for s, _ in splits["test"]][:10]
    hyps = predictor.decode_tokens(sources, beam_size=3, max_len=10)
    assert set(rows) == {30} and len(rows) <= max(len(h.ids) for h in hyps) + 1
    rows.clear()
    predictor.decode_tokens(sources, beam_size=1, max_len=10)
    assert rows[0] == 10 and len(rows) <= 10
