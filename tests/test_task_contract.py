"""The Task contract, over every registered task: a run killed after an epoch and resumed with the same command
ends with bit-identical weights and the same metrics as an uninterrupted run; the registry and the flag vocabulary
hold for every task."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pipelines import registry, runner
from pipelines.common import CommonOptions, build_parser

# Extra settings per task that keep its resume test to seconds (on top of --quick, 2 epochs, no export).
TINY = {
    "slot_filling": {},
    "sentiment": {"synthetic_size": 400, "pretrain_epochs": 1, "naive_bayes": 2},  # the pretrain phase too
    "key_terms": {"synthetic_size": 120},
    "speech_ctc": {"train_utterances": 64, "dev_utterances": 16, "test_utterances": 16, "max_digits": 3},
    "speech_autoencoder": {"synthetic_size": 60},
    "translation": {"synthetic_size": 200, "eval_limit": 30, "heatmaps": 0},
    "parsing": {"synthetic_size": 100},
    "text_autoencoder": {"synthetic_size": 200, "held_out": 40, "doc_epochs": 2},  # the document phase too
    "reading_qa": {"epochs": 3, "linear_start_epochs": 1, "synthetic_size": 200},  # killed in the 2nd phase
}


def _config(task, out, **extra):
    fields = {f.name for f in dataclasses.fields(task.config_class)}
    settings = {"out": str(out), "quick": True, "epochs": 2, "patience": 10, "export": False,
                **TINY.get(task.name, {}), **extra}
    return task.config_class(**{k: v for k, v in settings.items() if k in fields})


def _checksums(run_dir):
    return json.loads((run_dir / "checkpoints" / "checksums.json").read_text())


@pytest.mark.parametrize("name", registry.names())
def test_a_run_killed_after_an_epoch_resumes_to_bit_identical_weights(name, tmp_path, monkeypatch, capsys):
    task = registry.get(name)
    whole = task.run(_config(task, tmp_path / "whole"))

    monkeypatch.setattr(runner, "KILL_AFTER_EPOCHS", 1)
    with pytest.raises(runner.SimulatedKill):
        task.run(_config(task, tmp_path / "killed"))
    assert not (tmp_path / "killed").exists(), "a killed run must not leave a run dir"
    assert (tmp_path / "killed.resume").is_dir(), "the killed run saved its state"
    capsys.readouterr()

    monkeypatch.setattr(runner, "KILL_AFTER_EPOCHS", None)
    resumed = task.run(_config(task, tmp_path / "killed"))
    assert f"resuming from {tmp_path / 'killed.resume'}" in capsys.readouterr().out
    assert not (tmp_path / "killed.resume").exists(), "the resume state is removed once the run completes"
    assert _checksums(tmp_path / "killed") == _checksums(tmp_path / "whole")
    assert {k: v for k, v in resumed.items() if k != "train_seconds"} == \
        {k: v for k, v in whole.items() if k != "train_seconds"}
    assert (tmp_path / "killed" / "history.csv").read_text() == (tmp_path / "whole" / "history.csv").read_text()


@pytest.mark.parametrize("name", registry.names())
def test_every_task_has_the_contract_and_the_common_flags(name):
    task = registry.get(name)
    assert task.name == name
    assert issubclass(task.config_class, CommonOptions)
    parser = build_parser(task.config_class, task.description(), choices=task.choices())
    flags = {option for action in parser._actions for option in action.option_strings}
    for common in ("--epochs", "--batch-size", "--learning-rate", "--clipnorm", "--max-minutes", "--strategy",
                   "--mixed-precision", "--resume", "--no-resume", "--seed", "--quick", "--out", "--data-dir"):
        assert common in flags, f"{name} lacks {common}"
    for old in task.config_class.DEPRECATED_FLAGS:
        assert f"--{old.replace('_', '-')}" in flags
    if "cell" in task.choices():
        from models.recurrent import CELL_TABLE

        assert set(task.choices()["cell"]) <= set(CELL_TABLE)


def test_an_unknown_task_is_refused_with_the_registered_names():
    with pytest.raises(KeyError, match="slot_filling"):
        registry.get("no_such_task")


def test_a_deprecated_flag_still_works_and_names_its_replacement():
    from pipelines.slot_filling import SlotFillingConfig

    parser = build_parser(SlotFillingConfig, "")
    with pytest.warns(FutureWarning, match="--units is deprecated; use --hidden"):
        args = parser.parse_args(["--units", "24", "--word-dropout", "0.1"])
    assert (args.hidden, args.token_dropout) == (24, 0.1)


def test_a_killed_run_resumed_with_more_epochs_trains_them(tmp_path, monkeypatch, capsys):
    task = registry.get("slot_filling")
    monkeypatch.setattr(runner, "KILL_AFTER_EPOCHS", 1)
    with pytest.raises(runner.SimulatedKill):
        task.run(_config(task, tmp_path / "run", epochs=2))
    monkeypatch.setattr(runner, "KILL_AFTER_EPOCHS", None)
    task.run(_config(task, tmp_path / "run", epochs=3))
    out = capsys.readouterr().out
    assert "1 epoch(s) done" in out and "train epoch 3/3" in out and "train epoch 1/3" not in out
    assert [row.split(",")[0] for row in (tmp_path / "run" / "history.csv").read_text().splitlines()] == \
        ["epoch", "0", "1", "2"]


def test_a_state_saved_under_other_settings_is_refused_by_name(tmp_path, monkeypatch):
    from pipelines.readers import DataError

    task = registry.get("slot_filling")
    monkeypatch.setattr(runner, "KILL_AFTER_EPOCHS", 1)
    with pytest.raises(runner.SimulatedKill):
        task.run(_config(task, tmp_path / "run"))
    monkeypatch.setattr(runner, "KILL_AFTER_EPOCHS", None)
    with pytest.raises(DataError, match="differs in: dropout"):
        task.run(_config(task, tmp_path / "run", dropout=0.1))
    assert not (tmp_path / "run").exists()
