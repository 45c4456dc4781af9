"""The slot-filling entry point: flags map onto the config, and a seeded run repeats exactly."""

import dataclasses

import pytest

from pipelines.common import build_parser, from_args
from pipelines.slot_filling import SlotFillingConfig, run


def parse(*argv):
    parser = build_parser(SlotFillingConfig, "test", choices={"cell": ("rnn", "lstm", "gru")})
    return from_args(SlotFillingConfig, parser.parse_args(list(argv)))


def test_flags_map_onto_the_config():
    config = parse("--cell", "gru", "--epochs", "3", "--no-bidirectional", "--clipnorm", "0", "--data-dir", "d")
    assert (config.cell, config.epochs, config.bidirectional, config.clipnorm, config.data_dir) == ("gru", 3, False, 0.0, "d")
    assert parse() == SlotFillingConfig()
    assert parse("--quick").resolved().epochs <= 6


@pytest.mark.parametrize("flag, value, message", [
    ("epochs", 0, "--epochs must be at least 1, got 0"),
    ("dropout", 1.0, r"--dropout must be in \[0, 1\), got 1.0"),
    ("learning_rate", -1.0, "--learning-rate must be positive"),
])
def test_out_of_range_settings_are_refused_before_any_work(tmp_path, flag, value, message):
    from pipelines.readers import DataError

    with pytest.raises(DataError, match=message):
        run(SlotFillingConfig(out=str(tmp_path / "run"), **{flag: value}))
    assert not (tmp_path / "run").exists()


def test_unknown_cell_flag_is_refused(capsys):
    with pytest.raises(SystemExit):
        parse("--cell", "tcn")
    assert "invalid choice: 'tcn'" in capsys.readouterr().err


def test_seeded_runs_repeat_exactly(tmp_path, slot_quick_run):
    """A second run with the settings and seed of the session's quick slot-filling run (conftest.py; no export,
    which this does not check) repeats it: the same metrics, vocabulary and history."""
    first = slot_quick_run
    second = run(dataclasses.replace(first.config, out=str(tmp_path / "b")))
    drop = {"train_seconds"}
    assert {k: v for k, v in first.metrics.items() if k not in drop} == \
        {k: v for k, v in second.items() if k not in drop}
    assert (first.out / "vocab.txt").read_text() == (tmp_path / "b" / "vocab.txt").read_text()
    history = [(d / "history.csv").read_text() for d in (first.out, tmp_path / "b")]
    assert history[0] == history[1] and "loss" in history[0]
