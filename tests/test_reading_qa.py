"""Reading comprehension: bAbI reader and splits, built-in stories, MemN2N maths, training on the built-in stories,
export parity and the served answers (attention, bad input)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines.babi import dev_story_count, parse_stories, read_task
from pipelines.readers import DataError
from pipelines.synthetic_stories import synthetic_examples, synthetic_splits

BABI_LINES = """1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 Daniel went back to the hallway.
5 Mary got the football there.
6 Where is the football?\tbathroom\t5 1
1 Sandra journeyed to the garden.
2 Where is Sandra? \tgarden\t1""".splitlines()


def test_babi_parser_keeps_story_before_question_and_maps_supporting_lines():
    stories = parse_stories(BABI_LINES, task=2)
    assert [len(s) for s in stories] == [2, 1]
    first, second = stories[0]
    assert first.story == (("mary", "moved", "to", "the", "bathroom"), ("john", "went", "to", "the", "hallway"))
    assert first.question == ("where", "is", "mary") and first.answer == "bathroom" and first.supporting == (0,)
    # questions are not statements: line 5 is the fourth statement, index 3
    assert len(second.story) == 4 and second.supporting == (3, 0) and second.task == 2
    assert stories[1][0].story == (("sandra", "journeyed", "to", "the", "garden"),)


def test_babi_parser_names_bad_lines():
    with pytest.raises(DataError, match="line 2: expected 'N text'"):
        parse_stories(["1 Mary moved.", "Where is Mary?\tkitchen\t1"])
    with pytest.raises(DataError, match="supporting line 7"):
        parse_stories(["1 Mary moved to the garden.", "2 Where is Mary?\tgarden\t7"])


def test_babi_splits_hold_out_the_last_tenth_of_training_stories(tmp_path):
    story = "1 Mary moved to the kitchen.\n2 Where is Mary?\tkitchen\t1\n"
    other = "1 John went to the garden.\n2 Where is John?\tgarden\t1\n"
    (tmp_path / "qa1_single-supporting-fact_train.txt").write_text(story * 18 + other * 2)
    (tmp_path / "qa1_single-supporting-fact_test.txt").write_text(story * 3)
    splits = read_task(tmp_path, 1)
    assert (len(splits["train"]), len(splits["valid"]), len(splits["test"])) == (18, 2, 3)
    assert {ex.answer for ex in splits["valid"]} == {"garden"} and {ex.answer for ex in splits["train"]} == {"kitchen"}
    assert dev_story_count(200) == 20 and dev_story_count(3) == 1
    with pytest.raises(DataError, match="qa2_"):
        read_task(tmp_path, 2)
    with pytest.raises(DataError, match="1-20"):
        read_task(tmp_path, 21)


def test_built_in_stories_support_their_answers():
    examples = synthetic_examples(200, seed=3)
    assert {ex.task for ex in examples} == {1, 2}
    for ex in examples:
        assert ex.supporting and all(0 <= i < len(ex.story) for i in ex.supporting)
        support = [ex.story[i] for i in ex.supporting]
        if ex.task == 1:  # the person's last move names the answer
            person = ex.question[-1]
            assert support[0][0] == person and support[0][-1] == ex.answer
            assert not any(s[0] == person and s[-1] in ("bathroom", "bedroom", "garden", "hallway", "kitchen",
                                                        "office") for s in ex.story[ex.supporting[0] + 1:])
        else:  # two facts: one about the object, one placing its holder at the answer
            obj = ex.question[-1]
            assert len(support) == 2 and any(obj in s for s in support) and any(s[-1] == ex.answer for s in support)


def _numpy_memn2n(layer, story, question):
    """Reference MemN2N forward pass in numpy, straight from the paper's equations (one member); with
    ``position_formula="code"`` the position encoding of the authors' Matlab code (J = the padded width)."""
    w = layer.member_weights(0)
    d = layer.embed_dim
    dims = np.arange(1, d + 1)  # k in the paper

    def weight(j, length, width):
        if layer.position_formula == "code":
            return 1 + 4 * (dims - (d + 1) / 2) * (j - (width + 1) / 2) / (d * width)
        return (1 - j / length) - dims / d * (1 - 2 * j / length)

    def embed(ids, table):
        out = np.zeros(ids.shape[:-1] + (d,))
        for index in np.ndindex(ids.shape[:-1]):
            words = [x for x in ids[index] if x]  # the tests' sentences are padded at the end only
            for j, word in enumerate(words, 1):
                out[index] += weight(j, len(words), ids.shape[-1]) * table[word]
        return out

    valid = (story != 0).any(-1)
    u = embed(question, w["embedding_0"])
    weights = []
    for k in range(layer.hops):
        m = embed(story, w[f"embedding_{k}"]) + w[f"temporal_{k}"][: story.shape[1]]
        c = embed(story, w[f"embedding_{k + 1}"]) + w[f"temporal_{k + 1}"][: story.shape[1]]
        scores = np.where(valid, np.einsum("bd,bsd->bs", u, m), -np.inf)
        p = np.zeros_like(scores)
        for b, row in enumerate(scores):  # the authors' memory: S slots, the empty ones zero vectors (score 0)
            row = np.concatenate([row, np.zeros(max(layer.softmax_slots - valid[b].sum(), 0))])
            row = np.exp(row - row.max())
            p[b] = (row / row.sum())[: p.shape[1]]
        weights.append(p)
        u = u + np.einsum("bs,bsd->bd", p, c)
    logits = u @ w[f"embedding_{layer.hops}"][layer.answer_ids].T
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    return probs / probs.sum(-1, keepdims=True), np.stack(weights, 1)


def _assert_native_onnx_matches(model, story, question, probs, weights):
    """The model converts by the native route and its ONNX outputs match ``probs`` and ``weights`` to 1e-5."""
    import onnxruntime as ort

    from export.onnx_export import to_onnx

    proto, route = to_onnx(model)
    assert route == "native"
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    onnx_probs, onnx_attention = session.run(["answer_probs", "attention"], {"story": story, "question": question})
    assert np.abs(onnx_probs - probs).max() <= 1e-5 and np.abs(onnx_attention - weights).max() <= 1e-5


def test_memn2n_matches_the_papers_equations_and_masks_empty_slots():
    from models.memory import build_reading_model, extract_member, memory_layer

    rng = np.random.default_rng(0)
    story = rng.integers(2, 12, (3, 4, 5)).astype(np.int32)
    story[:, :, 3:] = 0
    story[0, 2:] = 0  # a story of two statements
    story[1, 1, 1:] = 0  # a one-word statement
    question = rng.integers(2, 12, (3, 5)).astype(np.int32)
    question[:, 3:] = 0
    model = build_reading_model("memn2n", sentence_len=5, members=3, vocab_size=12, answer_ids=[3, 5, 7],
                                memory_size=6, hops=2, embed_dim=8)
    single = extract_member(model, 2)
    out = single({"story": story, "question": question})
    probs, weights = _numpy_memn2n(memory_layer(single), story, question)
    np.testing.assert_allclose(np.asarray(out["answer_probs"]), probs, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["attention"]), weights, atol=1e-5)
    assert np.all(np.asarray(out["attention"])[0, :, 2:] == 0)
    both = model({"story": story, "question": question})
    np.testing.assert_allclose(np.asarray(both["answer_probs"])[:, 2], probs, atol=1e-5)
    assert not np.allclose(np.asarray(both["answer_probs"])[:, 0], probs, atol=1e-3)  # restarts differ


def test_memn2n_code_position_formula_matches_the_authors_matrix_and_exports_natively():
    from models.memory import build_reading_model, memory_layer

    rng = np.random.default_rng(4)
    story = rng.integers(2, 12, (2, 3, 6)).astype(np.int32)
    story[:, :, 4:] = 0
    story[1, 2] = 0
    story[0, 1, 2:] = 0  # a two-word statement: its words keep their positions' weights (J is the width)
    question = rng.integers(2, 12, (2, 6)).astype(np.int32)
    question[:, 3:] = 0
    model = build_reading_model("memn2n", sentence_len=6, vocab_size=12, answer_ids=[2, 4, 6, 8], memory_size=5,
                                hops=3, embed_dim=10, position_formula="code")
    layer = memory_layer(model)
    out = model({"story": story, "question": question})
    probs, weights = _numpy_memn2n(layer, story, question)
    np.testing.assert_allclose(np.asarray(out["answer_probs"]), probs, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["attention"]), weights, atol=1e-5)
    layer.position_formula = "paper"  # the two formulas give different models
    assert not np.allclose(_numpy_memn2n(layer, story, question)[0], probs, atol=1e-4)
    layer.position_formula = "code"
    _assert_native_onnx_matches(model, story, question, probs, weights)
    with pytest.raises(ValueError, match="position_formula must be one of paper, code, got 'absolute'"):
        build_reading_model("memn2n", sentence_len=6, vocab_size=12, answer_ids=[2], memory_size=5,
                            position_formula="absolute")


def test_memn2n_empty_slots_take_a_share_of_the_attention_and_export_natively():
    from models.memory import build_reading_model, memory_layer

    rng = np.random.default_rng(5)
    story = rng.integers(2, 12, (3, 4, 5)).astype(np.int32)
    story[:, :, 3:] = 0
    story[0, 1:] = 0  # one statement: 5 empty slots of S = 6
    story[1, 3:] = 0  # three statements
    question = rng.integers(2, 12, (3, 5)).astype(np.int32)
    sizes = dict(sentence_len=5, vocab_size=12, answer_ids=[3, 5, 7], memory_size=8, hops=2, embed_dim=8,
                 position_formula="code")
    model = build_reading_model("memn2n", softmax_slots=6, **sizes)
    layer = memory_layer(model)
    out = model({"story": story, "question": question})
    probs, weights = _numpy_memn2n(layer, story, question)
    np.testing.assert_allclose(np.asarray(out["answer_probs"]), probs, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["attention"]), weights, atol=1e-5)
    read = np.asarray(out["attention"]).sum(-1)  # [batch, hops]: what the statements get; the rest is unread
    assert np.all(read < 1 - 1e-3) and np.all(np.asarray(out["attention"])[:, :, 1:][0] == 0)
    masked = build_reading_model("memn2n", **sizes)
    memory_layer(masked).set_member_weights(0, layer.member_weights(0))
    np.testing.assert_allclose(np.asarray(masked({"story": story, "question": question})["attention"]).sum(-1), 1,
                               atol=1e-5)
    _assert_native_onnx_matches(model, story, question, probs, weights)
    with pytest.raises(ValueError, match="softmax_slots must not be negative, got -2"):
        build_reading_model("memn2n", softmax_slots=-2, **sizes)


def test_recurrent_reader_exports_natively_with_parity():
    """export/emit_memory.py: GRU ops for the sentence encoder (padded words past sequence_lens, an empty slot of
    length 0) and each hop's controller step; random weights, biases included, so no layout mistake hides."""
    from models.memory import build_reading_model

    rng = np.random.default_rng(1)
    model = build_reading_model("reader", sentence_len=4, vocab_size=10, answer_ids=[2, 3, 4], memory_size=5,
                                hops=2, embed_dim=6, units=8, attention_units=5)
    for w in model.weights:
        w.assign(rng.normal(scale=0.6, size=w.shape).astype("float32"))
    story = rng.integers(1, 10, (2, 3, 4)).astype(np.int32)
    story[0, 2] = 0
    story[:, :, 3] = 0
    story[1, 0, 1:] = 0
    question = rng.integers(1, 10, (2, 4)).astype(np.int32)
    question[0, 2:] = 0
    expected = model({"story": story, "question": question})
    probs, attention = np.asarray(expected["answer_probs"]), np.asarray(expected["attention"])
    assert attention.shape == (2, 2, 3) and np.all(attention[0, :, 2] == 0)
    _assert_native_onnx_matches(model, story, question, probs, attention)


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory):
    """A MemN2N trained on the built-in single-supporting-fact stories and exported: (run dir, metrics)."""
    from pipelines.reading_qa import ReadingQAConfig, run

    out = tmp_path_factory.mktemp("runs") / "reading_qa"
    metrics = run(ReadingQAConfig(out=str(out), task="1", epochs=10, restarts=2, synthetic_size=500,
                                  memory_size=12, decay_every=5, linear_start_epochs=2, optimizer="adam",
                                  position_formula="paper"))
    return out, metrics


def test_memn2n_learns_built_in_stories_and_exports_with_parity(qa_run):
    out, metrics = qa_run
    assert metrics["accuracy"] > 0.5  # 6 places: chance is 1/6
    # Adam keeps each restart's best dev epoch: the restart kept scores on dev what it scored at that epoch.
    assert metrics["keep"] == "best" and metrics["other_keep"]["keep"] == "last"
    assert 2 < metrics["chosen_epoch"] <= 10  # an epoch after the linear start
    assert metrics["dev_accuracy"] == pytest.approx(metrics["restart_dev_accuracy"][metrics["chosen_restart"]],
                                                    abs=1e-4)
    assert metrics["dev_accuracy"] == pytest.approx(max(metrics["restart_dev_accuracy"]), abs=1e-4)
    assert metrics["other_keep"]["dev_accuracy"] <= metrics["dev_accuracy"]
    assert metrics["onnx_max_abs_diff"] <= 1e-5 and metrics["saved_model_max_abs_diff"] <= 1e-5
    assert json.loads((out / "metrics.json").read_text())["accuracy"] == metrics["accuracy"]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["task"] == "reading_qa" and meta["memory_size"] == 12
    assert meta["onnx_converter"] == "native"  # export/emit_memory.py, not tf2onnx
    assert sorted(p.name for p in out.glob("attention_*.png")) == ["attention_0.png", "attention_1.png",
                                                                   "attention_2.png"]


def test_served_answer_matches_keras_and_reports_attention(qa_run):
    import keras

    import models.memory  # noqa: F401
    import serving
    from pipelines import reading_qa_data
    from pipelines.synthetic_stories import synthetic_examples, synthetic_splits
    from serving.vocab import Vocabulary

    out, _ = qa_run
    predictor = serving.load(out)
    model = keras.saving.load_model(out / "model.keras", compile=False)
    examples = synthetic_examples(20, tasks=(1,), seed=99)
    records = [{"story": [" ".join(s) + "." for s in ex.story], "question": " ".join(ex.question) + "?"}
               for ex in examples]
    results = predictor.predict_batch(records)
    meta = predictor.metadata
    stories, questions, _ = reading_qa_data.encode(examples, Vocabulary(meta["vocab"]), meta["labels"], 12,
                                                   meta["sentence_len"])
    slots = meta["model"]["softmax_slots"]
    assert slots == min(12, max(len(ex.story) for ex in synthetic_splits(500, (1,), seed=0)["train"]))
    for ex, result, story, q in zip(examples, results, stories, questions):
        out = model({"story": story[None], "question": q[None]})
        probs = np.asarray(out["answer_probs"])[0]
        assert result.answer == meta["labels"][int(probs.argmax())]
        assert abs(result.confidence - float(probs.max())) < 1e-5
        assert len(result.attention) == 3 and all(len(hop) == len(ex.story) for hop in result.attention)
        n, kept = len(ex.story), min(len(ex.story), 12)  # slot 0 is the last statement; older ones are dropped
        expected = np.zeros((3, n))
        expected[:, n - kept:] = np.asarray(out["attention"])[0][:, :kept][:, ::-1]
        np.testing.assert_allclose(result.attention, expected, atol=1e-5)
        # The empty slots (of softmax_slots) take the rest of each hop's weight.
        assert all(sum(hop) < 1 - 1e-6 if len(ex.story) < slots else abs(sum(hop) - 1) < 1e-4
                   for hop in result.attention)
        assert result.supporting and all(record_line == ex_line for record_line, ex_line in
                                         [(text, " ".join(ex.story[i]) + ".") for i, text in result.supporting])
    hits = [ex.answer == r.answer for ex, r in zip(examples, results)]
    assert np.mean(hits) > 0.5
    assert predictor.answer(records[0]["story"], records[0]["question"]).to_dict()["answer"] == results[0].answer


def test_served_bad_input_is_named(qa_run):
    import serving

    predictor = serving.load(qa_run[0])
    story = ["Mary moved to the bathroom.", "John went to the hallway."]
    with pytest.raises(serving.InputError, match="story is empty"):
        predictor.answer([], "Where is Mary?")
    with pytest.raises(serving.InputError, match="story is empty"):
        predictor.answer(["", "  ..."], "Where is Mary?")
    with pytest.raises(serving.InputError, match="has no '\\?'"):
        predictor.answer(story, "Where is Mary")
    with pytest.raises(serving.InputError, match="'story' must be a list"):
        predictor.predict({"story": 3, "question": "Where is Mary?"})
    unknown = predictor.answer(story + ["Zorblax teleported to the moon."], "Where is Zorblax?")
    assert unknown.unknown_words == ["zorblax", "teleported", "moon"]
    long_story = [f"Mary went to the {place}." for place in ("kitchen", "garden", "office") * 6]  # 18 > 12 slots
    with pytest.warns(serving.reading_qa.MemoryOverflowWarning, match="oldest 6 were not read"):
        result = predictor.answer(long_story, "Where is Mary?")
    assert result.dropped_statements == 6
    assert all(hop[:6] == [0.0] * 6 for hop in result.attention) and len(result.attention[0]) == 18


def test_babi_table_pools_runs_by_dev_accuracy_and_adds_a_joint_column(tmp_path):
    from benchmarks.babi_table import joint_column, pool_runs, write_table

    def put(folder, task, dev, test):
        run = folder / "memn2n" / f"qa{task}"
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({"dev_accuracy": dev, "accuracy": test, "train_seconds": 10}))

    put(tmp_path / "a", 2, 0.6, 0.58)
    put(tmp_path / "b", 2, 0.8, 0.77)  # better on dev: taken
    put(tmp_path / "a", 3, 0.9, 0.70)
    put(tmp_path / "b", 3, 0.5, 0.95)  # better on test only: not taken
    results = {"memn2n": {t: json.loads((tmp_path / "a" / "memn2n" / f"qa{t}" / "metrics.json").read_text())
                          for t in (2, 3)}}
    taken = pool_runs(results, [tmp_path / "b"])
    assert taken == [str(tmp_path / "b" / "memn2n" / "qa2")]
    joint = tmp_path / "joint"
    joint.mkdir()
    (joint / "metrics.json").write_text(json.dumps({"per_task_accuracy": {"2": 0.9, "3": 0.8}, "train_seconds": 60}))
    results.update(joint_column(joint))
    table = write_table(tmp_path, results)
    assert "| 2 | 23.0 | 10.0 | 8.3 | 11.4 |" in table and "| 3 | 30.0 | 20.0 | 40.3 | 21.9 |" in table
    assert "| **mean** | 26.5 (2 tasks) | 15.0 (2 tasks) | 24.3 | 16.6 |" in table


def _history(path):
    import csv

    with open(path) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_sgd_recipe_runs_linear_start_then_restarts_the_decay_schedule(tmp_path):
    from pipelines.reading_qa import ReadingQAConfig, run

    out = tmp_path / "sgd"
    config = ReadingQAConfig(out=str(out), task="1", optimizer="sgd", position_formula="code", epochs=10,
                             restarts=2, synthetic_size=600, memory_size=12, decay_every=4, linear_start_epochs=2,
                             export=False)
    metrics = run(config)
    # The authors' recipe: 0.005 per example, gradients summed over the batch of 32 → 0.16 on the batch mean;
    # linear start for exactly 2 epochs (its own phase), then the halving every 4 epochs counts from the softmax's
    # return.
    linear, history = _history(out / "history_linear-start.csv"), _history(out / "history.csv")
    assert (len(linear), len(history)) == (2, 8)
    resolved = config.resolved()
    assert [resolved.learning_rate_at(e) for e in range(2)] + \
        [resolved.learning_rate_at(e, softmax_from=2) for e in range(2, 10)] == pytest.approx([0.16] * 6 + [0.08] * 4)
    assert metrics["accuracy"] > 0.4  # 6 places: chance is 1/6
    # The authors keep the end of the schedule: the restart best on dev at the last epoch; the best-epoch pick is
    # scored beside it.
    last = [history[-1][f"val_accuracy_{m}"] for m in range(2)]
    assert metrics["keep"] == "last" and metrics["chosen_epoch"] == 10
    assert metrics["restart_dev_accuracy"] == pytest.approx(last, abs=1e-4)
    assert metrics["chosen_restart"] == int(np.argmax(last)) or last[0] == last[1]
    assert metrics["dev_accuracy"] == pytest.approx(last[metrics["chosen_restart"]])
    assert metrics["other_keep"]["keep"] == "best" and metrics["other_keep"]["dev_accuracy"] >= metrics["dev_accuracy"]
    assert metrics["other_keep"]["dev_accuracy"] == pytest.approx(max(max(row[f"val_accuracy_{m}"] for m in range(2))
                                                                     for row in history))
    config = json.loads((out / "config.json").read_text())
    assert config["optimizer"] == "sgd" and config["position_formula"] == "code"
    longest = max(len(ex.story) for ex in synthetic_splits(600, (1,), seed=0)["train"])
    assert config["softmax_slots"] == min(12, longest)  # -1 resolved from the data


def test_adam_linear_start_runs_on_the_learning_rate_schedule():
    from pipelines.reading_qa import ReadingQAConfig

    config = ReadingQAConfig(optimizer="adam", learning_rate=0.01, decay_every=3, epochs=10, linear_start_epochs=4)
    assert config.linear_epochs() == 4 and ReadingQAConfig(epochs=3).linear_epochs() == 2
    assert ReadingQAConfig(model="reader").linear_epochs() == 0 == ReadingQAConfig(linear_start=False).linear_epochs()
    # Adam: no restart of the halving when the softmax comes back.
    assert [config.learning_rate_at(e, softmax_from=2 if e >= 2 else None) for e in range(7)] == \
        pytest.approx([0.01] * 3 + [0.005] * 3 + [0.0025])


def test_units_is_a_deprecated_alias_of_hidden():
    from pipelines.common import build_parser, with_deprecated
    from pipelines.reading_qa import ReadingQAConfig

    with pytest.warns(FutureWarning, match="--units is deprecated; use --hidden"):
        args = build_parser(ReadingQAConfig, "").parse_args(["--units", "16"])
    assert args.hidden == 16
    with pytest.warns(FutureWarning, match="--units is deprecated; use --hidden"):
        assert with_deprecated(ReadingQAConfig, units=8).hidden == 8
    assert ReadingQAConfig(quick=True).resolved().hidden == 24


@pytest.mark.parametrize("field, value, message", [
    ("optimizer", "rmsprop", "--optimizer must be one of auto, sgd, adam, got 'rmsprop'"),
    ("position_formula", "absolute", "--position-formula must be paper or code, got 'absolute'"),
    ("keep", "first", "--keep must be one of auto, best, last, got 'first'"),
    ("softmax_slots", -3, "--softmax-slots must be -1 \\(auto\\), 0 \\(off\\) or a slot count, got -3"),
])
def test_reading_qa_config_names_a_bad_recipe(field, value, message):
    from pipelines.reading_qa import ReadingQAConfig

    with pytest.raises(DataError, match=message):
        ReadingQAConfig(**{field: value}).check()
