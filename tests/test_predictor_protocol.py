"""The one predictor protocol of serving (serving/base.py, docs/predictors.md): every registered predictor class and
every result type keep it, the registry picks the class by task, the CLI and the server have no per-task code.

Nothing here trains a model: results are built from small fake values, and the models loaded are identity graphs.
"""

from __future__ import annotations

import ast
import collections.abc
import dataclasses
import inspect
import json
import typing
from pathlib import Path

import numpy as np
import pytest

import serving
from serving.base import (INPUT_KINDS, PREDICTOR_MODULES, PREDICTORS, Predictor, Result, UnknownTaskError,
                          check_predictor_class, predictor_class, register)
from serving.key_terms import KeyTerm
from serving.speech import TimedSymbol
from serving.speech_search import Match

ROOT = Path(__file__).resolve().parents[1]
TASKS = {"slot_filling", "sentiment", "key_terms", "speech_ctc", "speech_autoencoder", "translation", "parsing",
         "text_autoencoder", "reading_qa"}

# One small result of each type, and what its printout must show.
SAMPLES = {
    serving.SlotFillingResult: (
        serving.SlotFillingResult(text="flights from boston", words=["flights", "from", "boston"],
                                  tags=["O", "O", "B-fromloc.city_name"], slots=[("fromloc.city_name", "boston")],
                                  intent="atis_flight", intent_confidence=0.9876, unknown_words=["zzz"]),
        ["flights from boston", "intent: atis_flight (0.988)", "fromloc.city_name: boston", "unknown words: zzz"]),
    serving.SentimentResult: (
        serving.SentimentResult(text="a superb film", label="positive", confidence=0.91,
                                probabilities={"negative": 0.09, "positive": 0.91}, tokens=["a", "superb", "film"],
                                unknown_tokens=[], truncated=True, attention=[("a", 0.1), ("superb", 0.8)]),
        ["a superb film", "positive (0.910)", "truncated to the first 3 tokens", "attention: superb 0.80"]),
    serving.KeyTermsResult: (
        serving.KeyTermsResult(text="A robust video decoder.", terms=[KeyTerm("robust video decoder", 0.75, [(2, 22)])],
                               tokens=["a", "robust", "video", "decoder", "."], tags=["O", "B-KP", "I-KP", "I-KP", "O"],
                               windows=1, unknown_tokens=["robust"]),
        ["5 tokens, 1 window", "1. robust video decoder (0.750) at 2-22"]),
    serving.ReadingQAResult: (
        serving.ReadingQAResult(question="Where is Mary?", answer="kitchen", confidence=0.5,
                                supporting=[(0, "Mary went to the kitchen.")], attention=[[1.0, 0.0]],
                                unknown_words=[], dropped_statements=0, truncated_sentences=[]),
        ["Where is Mary?", "→ kitchen (0.500)", "supporting [0] Mary went to the kitchen."]),
    serving.Seq2SeqResult: (
        serving.Seq2SeqResult(text="i like tea .", output="j'aime le thé .", output_tokens=["j'aime", "le", "thé", "."],
                              source_tokens=["i", "like", "tea", "."], unknown_tokens=[], score=-1.25,
                              normalized_score=-0.3125, finished=False, beam_size=4, attention=[[0.5, 0.5]]),
        ["i like tea .", "→ j'aime le thé .", "beam 4, score -1.250", "stopped at the length limit"]),
    serving.ParsingResult: (
        serving.ParsingResult(text="a dog .", words=["a", "dog", "."], tree="(S (NP (XX a) (XX dog)) (XX .))",
                              well_formed=False, repaired=True, output_tokens=["(S", "XX", ")S"],
                              linearized="(S (NP XX XX )NP XX )S", unknown_words=[], score=-0.5, finished=True,
                              beam_size=1),
        ["a dog .", "(S (NP (XX a) (XX dog)) (XX .))", "(repaired)"]),
    serving.SpeechResult: (
        serving.SpeechResult(text="3 1", symbols=[TimedSymbol("3", 0.1, 0.3, 0.9), TimedSymbol("1", 0.4, 0.6, 0.8)],
                             confidence=0.85, duration=0.8, decoder="greedy"),
        ["3 1  (0.850, 0.80 s)", "3 0.10-0.30 s, 1 0.40-0.60 s"]),
    serving.EmbeddingResult: (
        serving.EmbeddingResult(vector=[0.25, -0.5, 1.0], seconds=0.5, frames=50,
                                matches=[Match("clip-1", "three", 0.99), Match("clip-2", None, 0.5)]),
        ["3-value vector of 0.50 s (50 frames)", "clip-1 (three) 0.990", "clip-2 (None) 0.500"]),
}


def fake_value(hint):
    """A small value of the type ``hint`` (for result types that have no hand-written sample)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or type(hint).__name__ == "UnionType":
        return fake_value(next(a for a in args if a is not type(None)))
    if origin in (list, collections.abc.Sequence):
        return [fake_value(args[0] if args else str)]
    if origin is tuple:
        return tuple(fake_value(a) for a in args if a is not Ellipsis)
    if origin is dict:
        return {fake_value(args[0]): fake_value(args[1])}
    if dataclasses.is_dataclass(hint) or hasattr(hint, "_fields"):  # dataclass or NamedTuple
        return hint(**{name: fake_value(h) for name, h in typing.get_type_hints(hint).items()})
    return {str: "word", int: 2, float: 0.25, bool: True}[hint]


def sample(cls: type) -> Result:
    """The hand-written sample of a result type, else one built from its type hints."""
    if cls in SAMPLES:
        return SAMPLES[cls][0]
    return fake_value(cls)


def all_result_types() -> set[type]:
    found, todo = set(), [Result]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__.startswith("serving.") and sub not in found:
                found.add(sub)
                todo.append(sub)
    return found


@pytest.fixture
def restore_registry():
    saved = dict(PREDICTORS)
    yield
    PREDICTORS.clear()
    PREDICTORS.update(saved)


def identity_onnx(path: Path, task: str) -> Path:
    """A one-node ONNX graph carrying toolkit metadata for ``task``."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    meta = {"format": "rnn-toolkit/metadata", "format_version": 1, "task": task,
            "inputs": {"x": {"name": "x"}}, "outputs": {"y": {"name": "y"}}}
    model.metadata_props.add(key="metadata.json", value=json.dumps(meta))
    onnx.save(model, str(path))
    return path


# --- predictors -------------------------------------------------------------------------------------------------------

def test_every_task_has_a_registered_predictor_with_the_protocol():
    assert TASKS <= set(PREDICTORS)
    for task, cls in PREDICTORS.items():
        assert cls.task == task, cls
        assert cls.input_kind in INPUT_KINDS, cls
        assert issubclass(cls, Predictor), cls
        assert callable(cls.predict) and callable(cls.predict_batch), cls
        params = inspect.signature(cls.predict_batch).parameters
        assert "batch_size" in params and params["batch_size"].default is not inspect.Parameter.empty, cls
        check_predictor_class(cls)
    assert {PREDICTORS[t].input_kind for t in ("speech_ctc", "speech_autoencoder")} == {"audio"}
    assert PREDICTORS["reading_qa"].input_kind == "record"


def test_predictors_come_from_the_module_list_or_their_task_module():
    assert {cls.__module__ for cls in PREDICTORS.values() if cls.__module__ in PREDICTOR_MODULES} == \
        set(PREDICTOR_MODULES)  # each listed module registers a predictor
    for task, cls in PREDICTORS.items():  # the rest are found as serving/<task>.py
        assert cls.__module__ in PREDICTOR_MODULES or cls.__module__ == f"serving.{task}", cls


@pytest.mark.parametrize("task", ["no_such_task", "audio", "../etc", ""])  # audio: a serving module, no predictor
def test_unknown_task_names_the_known_ones(task):
    with pytest.raises(UnknownTaskError) as caught:
        predictor_class(task)
    message = str(caught.value)
    assert f"{task!r} has no predictor" in message
    for known in TASKS:
        assert known in message
    assert isinstance(caught.value, serving.ModelError) and caught.value.known == sorted(PREDICTORS)


def test_load_picks_the_class_through_the_registry(tmp_path, restore_registry):
    path = identity_onnx(tmp_path / "model.onnx", "protocol_probe")
    with pytest.raises(UnknownTaskError, match=r"model\.onnx: task 'protocol_probe' has no predictor.*slot_filling"):
        serving.load(path)

    @register("protocol_probe")
    class ProbePredictor(Predictor):
        input_kind = "text"

        def __init__(self, model, metadata):
            self.model, self.metadata = model, metadata

        def predict(self, x):
            return self.predict_batch([x])[0]

        def predict_batch(self, inputs, batch_size=64):
            out = self.model.run({"x": np.asarray([float(len(x)) for x in inputs], np.float32)})["y"]
            return [float(v) for v in out]

    assert ProbePredictor.task == "protocol_probe"  # set by the decorator
    loaded = serving.load(path)
    assert type(loaded) is ProbePredictor and loaded.metadata["task"] == "protocol_probe"
    assert loaded.predict_batch(["ab", "abcd"]) == [2.0, 4.0]

    seq2seq_dir = tmp_path / "seq2seq_run"  # an encoder + decoder step run dir goes through the registry too
    seq2seq_dir.mkdir()
    for name in ("encoder.onnx", "decoder_step.onnx"):
        identity_onnx(seq2seq_dir / name, "protocol_probe")
    loaded = serving.load(seq2seq_dir)
    assert type(loaded) is ProbePredictor and loaded.model.decoder.path.name == "decoder_step.onnx"


def test_register_refuses_classes_without_the_protocol(restore_registry):
    with pytest.raises(TypeError, match="input_kind"):
        @register("probe_a")
        class NoKind:
            def predict(self, x): ...

            def predict_batch(self, xs, batch_size=1): ...

    with pytest.raises(TypeError, match="batch_size"):
        @register("probe_b")
        class NoBatchSize:
            input_kind = "text"

            def predict(self, x): ...

            def predict_batch(self, xs): ...

    with pytest.raises(TypeError, match="no predict method"):
        @register("probe_c")
        class NoPredict:
            input_kind = "audio"

            def predict_batch(self, xs, batch_size=1): ...

    with pytest.raises(ValueError, match="already has a predictor: serving.slot_filling.SlotFillingPredictor"):
        @register("slot_filling")
        class Impostor(Predictor):
            input_kind = "text"

            def predict(self, x): ...

            def predict_batch(self, xs, batch_size=1): ...

    assert not {"probe_a", "probe_b", "probe_c"} & set(PREDICTORS)
    assert PREDICTORS["slot_filling"] is serving.SlotFillingPredictor


# --- results ----------------------------------------------------------------------------------------------------------

def test_samples_cover_the_result_types_of_the_listed_modules():
    listed = {cls for cls in all_result_types() if cls.__module__ in PREDICTOR_MODULES}
    assert listed <= set(SAMPLES), "add a sample of the new result type to SAMPLES"


def test_every_result_type_keeps_the_protocol():
    """Every Result subclass loaded (those of modules found by task name too), from its sample or fake values."""
    for cls in all_result_types():
        assert cls.__name__.endswith("Result") and dataclasses.is_dataclass(cls), cls
        result = sample(cls)
        assert json.loads(json.dumps(result.to_dict())).keys() == {f.name for f in dataclasses.fields(cls)}, cls
        assert str(result).strip() and f"{cls.__name__}(" not in str(result), cls


@pytest.mark.parametrize("cls", list(SAMPLES), ids=lambda cls: cls.__name__)
def test_result_to_dict_is_json_and_str_is_readable(cls):
    result, shown = SAMPLES[cls]
    assert dataclasses.is_dataclass(result) and isinstance(result, Result)
    data = result.to_dict()
    back = json.loads(json.dumps(data, ensure_ascii=False))
    assert set(back) == {f.name for f in dataclasses.fields(cls)}
    for field in dataclasses.fields(cls):  # every value survives JSON (tuples as lists)
        assert json.dumps(back[field.name], sort_keys=True) == json.dumps(data[field.name], sort_keys=True)
    text = str(result)
    assert text.strip() and "Result(" not in text  # not the dataclass repr
    for part in shown:
        assert part in text, (part, text)


def test_key_terms_to_dict_spells_out_each_term():
    result, _ = SAMPLES[serving.KeyTermsResult]
    assert result.to_dict()["terms"] == [{"term": "robust video decoder", "score": 0.75, "offsets": [[2, 22]]}]


def test_a_result_type_must_define_str_and_be_named_result():
    with pytest.raises(TypeError, match="must define __str__"):
        @dataclasses.dataclass
        class SilentResult(Result):
            x: int

    with pytest.raises(TypeError, match=r"must be named \*Result"):
        @dataclasses.dataclass
        class Outcome(Result):
            x: int

            def __str__(self):
                return str(self.x)


def test_slot_filling_printout_is_unchanged():
    result, _ = SAMPLES[serving.SlotFillingResult]
    assert str(result) == ("flights from boston\n  intent: atis_flight (0.988)\n  fromloc.city_name: boston\n"
                           "  unknown words: zzz")
    empty = dataclasses.replace(result, slots=[], unknown_words=[])
    assert str(empty) == "flights from boston\n  intent: atis_flight (0.988)\n  (no slots)"


# --- the CLI and the server have no per-task code ---------------------------------------------------------------------

def _per_task_code(path: Path) -> list[str]:
    """isinstance checks against result / predictor types, and task names as string constants, in a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
            names = {getattr(n, "attr", getattr(n, "id", "")) for n in ast.walk(node.args[1])}
            found += [f"isinstance {n}" for n in names if n.endswith(("Result", "Predictor"))]
            if isinstance(node.args[0], ast.Name) and node.args[0].id == "result":
                found.append("isinstance(result, ...)")
        if isinstance(node, ast.Constant) and node.value in PREDICTORS:
            found.append(f"task name {node.value!r}")
    return found


@pytest.mark.parametrize("module", ["__main__.py", "server.py", "batch_predict.py", "registry.py"])
def test_cli_server_and_batch_code_have_no_per_task_branches(module):
    path = ROOT / "serving" / module
    assert _per_task_code(path) == []
    assert "isinstance(result" not in path.read_text(encoding="utf-8")


def test_cli_prints_str_of_each_result_and_json_with_to_dict(monkeypatch, capsys):
    from serving import __main__ as cli

    results = [sample for sample, _ in SAMPLES.values()]

    class Fake:
        task, input_kind = "fake", "text"

        def predict_batch(self, inputs, batch_size=64):
            assert inputs == ["a", "b"]
            return results

    monkeypatch.setattr(cli.serving, "load", lambda path: Fake())
    assert cli.main(["predict", "somewhere", "a", "b"]) == 0
    assert capsys.readouterr().out == "".join(f"{r}\n" for r in results)
    assert cli.main(["predict", "--json", "somewhere", "a", "b"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == [json.loads(json.dumps(r.to_dict())) for r in results]


# --- names ------------------------------------------------------------------------------------------------------------

def _instance(cls, **methods):
    obj = cls.__new__(cls)  # no model: the aliases only delegate
    for name, fn in methods.items():
        setattr(obj, name, fn)
    return obj


def test_bare_encode_and_decode_are_only_deprecated_aliases():
    for cls in PREDICTORS.values():
        for name in ("encode", "decode", "encode_batch", "decode_batch"):
            member = getattr(cls, name, None)
            assert member is None or getattr(member, "deprecated_for", None), f"{cls.__name__}.{name}"


@pytest.mark.parametrize("cls, old, new", [
    (serving.SlotFillingPredictor, "encode", "token_ids"),
    (serving.TextAutoencoderPredictor, "encode", "embed"),
    (serving.TextAutoencoderPredictor, "encode_batch", "embed_batch"),
    (serving.TextAutoencoderPredictor, "decode", "decode_vector"),
    (serving.TextAutoencoderPredictor, "decode_batch", "decode_vector_batch"),
])
def test_old_names_warn_and_call_the_new_ones(cls, old, new):
    assert callable(getattr(cls, new)) and getattr(cls, old).deprecated_for == new
    calls = []
    obj = _instance(cls, **{new: lambda *a, **kw: calls.append((a, kw)) or "new result"})
    with pytest.warns(DeprecationWarning, match=rf"{cls.__name__}\.{old} is deprecated; use {new}"):
        assert getattr(obj, old)("x", beam_size=2) == "new result"
    assert calls == [(("x",), {"beam_size": 2})]


def test_task_verbs():
    assert callable(serving.SpeechRecognizer.recognize)
    assert callable(serving.ReadingQAPredictor.answer)
    assert callable(serving.SpeechSearch.embed) and callable(serving.SpeechSearch.search)
    assert callable(serving.TextAutoencoderPredictor.embed)
    seen = []
    recognizer = _instance(serving.SpeechRecognizer, predict=lambda clip: seen.append(clip) or "heard")
    assert recognizer.recognize("clip.wav") == "heard" and seen == ["clip.wav"]
