"""Every run dir gets a model card (README.md) and, for word or character tokenizers, a tokenizer conformance
file; the metadata's tokenizer spec states what another language needs to implement it exactly."""

from __future__ import annotations

import json
import unicodedata

from serving import conformance, model_card
from serving.tokenizer import Tokenizer


def test_run_dir_has_a_model_card_with_every_section(slot_run):
    card = (slot_run[0] / "README.md").read_text()
    for section in ("Data and split", "Metrics", "Training", "Versions and converter route", "Limits",
                    "How to call it", "Config"):
        assert f"## {section}" in card, section
    metrics = json.loads((slot_run[0] / "metrics.json").read_text())
    assert f"| slot_f1 | {metrics['slot_f1']} |" in card
    for call in ("serving.load(", "/v1/models/slot_filling/predict", "/v2/models/slot_filling/infer", ":predict",
                 "node predict.js", "tokenizer_conformance.json"):
        assert call in card, call


def test_metadata_states_the_tokenizer_rules(slot_run):
    spec = json.loads((slot_run[0] / "metadata.json").read_text())["tokenizer"]
    assert spec["unicode_version"] == unicodedata.unidata_version
    assert spec["white_space"] == "0009-000D 0020 0085 00A0 1680 2000-200A 2028-2029 202F 205F 3000"
    assert spec["final_period_trailing"] == "0009-000A 000C-000D 0020"  # not \v, U+0085, U+1680, U+2028, U+2029
    assert "200B-200F" in spec["ignorable"] and "0378-0379" in spec["unassigned"]


def test_conformance_file_is_what_serving_tokenizes(slot_run):
    data = json.loads((slot_run[0] / conformance.FILE).read_text())
    meta = json.loads((slot_run[0] / "metadata.json").read_text())
    tokenize, vocab = Tokenizer(meta["tokenizer"]), meta["vocab"]
    for case in data["cases"]:
        assert case["tokens"] == tokenize(case["input"])
        assert case["ids"] == [vocab.index(t) if t in vocab else meta["unk_id"] for t in case["tokens"]]
    finals = {c["input"]: c["tokens"] for c in data["cases"]}
    assert finals["flights to denver.\x0b"][-1] == "denver." and finals["flights to denver.\t"][-1] == "."


def test_model_card_facts_of_a_lone_onnx_file(slot_run):
    meta = json.loads((slot_run[0] / "metadata.json").read_text())
    facts = model_card.facts(slot_run[0] / "model.onnx", meta)
    assert facts["task"] == "slot_filling" and facts["metrics"] == {} and facts["limits"]["max_len"] == meta["max_len"]
