"""The Task contract, over every registered task: the state a run saves after an epoch carries on to exactly the
epoch it would have trained next; a run killed after an epoch and resumed with the same command ends with
bit-identical weights and the same metrics as an uninterrupted run; the registry and the flag vocabulary hold for
every task."""

from __future__ import annotations

import dataclasses
import json
import shutil
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from pipelines import registry, runner
from pipelines.common import CommonOptions, build_parser

# Extra settings per task that keep its resume tests to seconds (on top of --quick, 2 epochs, no export).
TINY = {
    "slot_filling": {},
    # the pretrain phase too (2 epochs: replayed too); no naive-Bayes path (fitted after training, not resumable)
    "sentiment": {"synthetic_size": 400, "pretrain_epochs": 2, "naive_bayes": 0},
    "speech_ctc": {"train_utterances": 64, "dev_utterances": 16, "test_utterances": 16, "max_digits": 3},
    "speech_autoencoder": {"synthetic_size": 60},
    "translation": {"synthetic_size": 200, "eval_limit": 30, "heatmaps": 0},
    "parsing": {"synthetic_size": 100},
    "reading_qa": {"epochs": 3, "linear_start_epochs": 1, "synthetic_size": 200},  # killed in the 2nd phase
}
# The tasks whose resume test runs the resumed run to the end and compares it with the uninterrupted one: a tagger
# (whose state is also made by a real kill), a seq2seq, a CTC/audio task with two phases (killed in the first), and
# reading comprehension (killed in its second phase: the first, done, is skipped). Every task, these included, has
# the cheaper check of test_the_state_saved_after_an_epoch_carries_on_to_the_next_epoch.
RESUMED_TO_THE_END = ("slot_filling", "translation", "speech_ctc", "reading_qa")
# The tasks whose recorded run is the session's run of their own tests (conftest.py), not one made here.
SHARED_RUNS = {"key_terms": "key_terms_run", "text_autoencoder": "text_autoencoder_run",
               "pos_tagging": "pos_tagging_run"}
KILL_AFTER = 1  # the epoch after which the killed runs stop (the recorded runs of conftest.py use the same)


def _config(task, out, **extra):
    fields = {f.name for f in dataclasses.fields(task.config_class)}
    settings = {"out": str(out), "quick": True, "epochs": 2, "patience": 10, "export": False,
                **TINY.get(task.name, {}), **extra}
    return task.config_class(**{k: v for k, v in settings.items() if k in fields})


def _checksums(run_dir):
    return json.loads((run_dir / "checkpoints" / "checksums.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(recorder, tmp_path_factory):
    """(name, the test's request) → the task's uninterrupted run, recorded (conftest.RecordedRun), made once for
    both resume tests; slot filling's is the session's (conftest.slot_quick_run), and so are those of SHARED_RUNS
    (the task tests' runs, with their own settings)."""
    runs = {}

    def get(name, request):
        if name not in runs:
            task = registry.get(name)
            if name in SHARED_RUNS:
                runs[name] = request.getfixturevalue(SHARED_RUNS[name])
            elif name == "slot_filling":
                runs[name] = request.getfixturevalue("slot_quick_run")
                assert dataclasses.replace(runs[name].config, out="") == _config(task, ""), \
                    "conftest's slot_quick_run has other settings than this test's"
            else:
                base = tmp_path_factory.mktemp(name)
                runs[name] = recorder(task, _config(task, base / "whole"), base / "states")
        return runs[name]

    return get


def _saved_variables(folder):
    """The variables of the resume state in ``folder`` (model then optimizer, in ResumeState's order)."""
    state = json.loads((folder / "state.json").read_text())
    with np.load(folder / state["variables"]) as arrays:
        return [arrays[f"v{i}"] for i in range(len(arrays.files))]


def _saved_states(folder):
    """Each phase's saved loop counters (but the seconds), config and variables under a resume folder, and its
    files (the .npz files themselves hold a time stamp)."""
    phases = {}
    for path in sorted(folder.rglob("state.json")):
        state = json.loads(path.read_text())
        loop = {k: v for k, v in state["loop"].items() if k != "seconds"}
        phases[str(path.parent.relative_to(folder))] = (loop, state["config"], _saved_variables(path.parent))
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()), phases


def _restore(state, out):
    """Puts a saved resume folder where a killed run with ``--out out`` would have left it."""
    shutil.copytree(state, f"{out}.resume")


@pytest.fixture(scope="module")
def slot_killed(tmp_path_factory):
    """A quick slot-filling run killed (runner.SimulatedKill) after its first epoch: whether it left a run dir,
    and a copy of the resume folder it left (each test restores its own copy)."""
    task = registry.get("slot_filling")
    base = tmp_path_factory.mktemp("slot_killed")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "KILL_AFTER_EPOCHS", KILL_AFTER)
        with pytest.raises(runner.SimulatedKill):
            task.run(_config(task, base / "run"))
    left_run_dir = (base / "run").exists()
    if (base / "run.resume").is_dir():
        shutil.copytree(base / "run.resume", base / "state")
    return SimpleNamespace(left_run_dir=left_run_dir, state=base / "state")


@pytest.mark.parametrize("name", registry.names())
def test_the_state_saved_after_an_epoch_carries_on_to_the_next_epoch(name, uninterrupted, request):
    """Every task, cheaply (its one uninterrupted run, nothing traced again), every training phase that ran past its
    first epoch: the resume state saved after the first epoch, loaded into the phase's trainer, trains the second
    epoch on that epoch's data made afresh (as a resumed run makes it) to bit-identical variables (model and
    optimizer) as the uninterrupted run saved after its second epoch. So the whole training state is in the saved
    variables and the task's data of an epoch depends only on the seed and the epoch: what a resumed run needs. The
    resumed run itself (the runner's part: skipping the done epochs and phases, the history, the best weights, the
    metrics) is run to the end in the next test for the tasks of RESUMED_TO_THE_END."""
    from pipelines.resume import ResumeState

    whole = uninterrupted(name, request)
    assert whole.killed_phase is not None, "no phase ran past its first epoch: nothing to resume"
    replayed = []
    for phase, (trainer, make_dataset, run, kwargs) in whole.trained.items():
        if not (whole.states / phase / str(KILL_AFTER + 1)).is_dir():
            continue  # the phase ended after its first epoch
        state = ResumeState(whole.states / phase / str(KILL_AFTER), run.config,
                            extra=dict(kwargs.get("fingerprint") or {}, phase=phase))
        assert state.load(trainer)["epoch"] == KILL_AFTER
        if kwargs.get("on_epoch_begin") is not None:
            kwargs["on_epoch_begin"](KILL_AFTER)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Your input ran out of data")  # as the runner does
            trainer.fit(make_dataset(KILL_AFTER), initial_epoch=KILL_AFTER, epochs=KILL_AFTER + 1, verbose=0,
                        shuffle=False)
        expected = _saved_variables(whole.states / phase / str(KILL_AFTER + 1))
        got = [np.asarray(v.numpy()) for v in list(trainer.variables) + list(trainer.optimizer.variables)]
        assert len(got) == len(expected), phase
        for a, b in zip(expected, got, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=phase)
        replayed.append(phase)
    assert whole.killed_phase in replayed


@pytest.mark.parametrize("name", RESUMED_TO_THE_END)
def test_a_run_killed_after_an_epoch_resumes_to_bit_identical_weights(name, uninterrupted, tmp_path, request, capsys):
    """The resumed run, to the end: started on the resume folder a run killed after its first epoch leaves, it
    carries on from there and ends with the uninterrupted run's weights, metrics and history. Slot filling's folder
    comes from a real kill (runner.SimulatedKill, right after the state is saved); the others' is the uninterrupted
    run's folder as it was at that moment, which is what a kill leaves (slot filling checks that the two are the
    same, phase by phase)."""
    task = registry.get(name)
    whole = uninterrupted(name, request)
    killed = tmp_path / "killed"
    if name == "slot_filling":
        real = request.getfixturevalue("slot_killed")
        assert not real.left_run_dir, "a killed run must not leave a run dir"
        assert real.state.is_dir(), "the killed run saved its state"
        files, phases = _saved_states(real.state)
        recorded_files, recorded_phases = _saved_states(whole.states / "killed")
        assert files == recorded_files and phases.keys() == recorded_phases.keys()
        for phase, (loop, config, variables) in phases.items():
            assert (loop, config) == recorded_phases[phase][:2]
            for a, b in zip(variables, recorded_phases[phase][2], strict=True):
                np.testing.assert_array_equal(a, b)
        _restore(real.state, killed)
    else:
        _restore(whole.states / "killed", killed)
    capsys.readouterr()

    resumed = task.run(_config(task, killed))
    assert f"resuming from {tmp_path / 'killed.resume'}" in capsys.readouterr().out
    assert not (tmp_path / "killed.resume").exists(), "the resume state is removed once the run completes"
    assert _checksums(killed) == _checksums(whole.out)
    assert {k: v for k, v in resumed.items() if k != "train_seconds"} == \
        {k: v for k, v in whole.metrics.items() if k != "train_seconds"}
    assert (killed / "history.csv").read_text() == (whole.out / "history.csv").read_text()


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


def test_a_killed_run_resumed_with_more_epochs_trains_them(tmp_path, slot_killed, capsys):
    task = registry.get("slot_filling")
    _restore(slot_killed.state, tmp_path / "run")  # killed after epoch 1 of 2
    task.run(_config(task, tmp_path / "run", epochs=3))
    out = capsys.readouterr().out
    assert "1 epoch(s) done" in out and "train epoch 3/3" in out and "train epoch 1/3" not in out
    assert [row.split(",")[0] for row in (tmp_path / "run" / "history.csv").read_text().splitlines()] == \
        ["epoch", "0", "1", "2"]


def test_a_state_saved_under_other_settings_is_refused_by_name(tmp_path, slot_killed):
    from pipelines.readers import DataError

    task = registry.get("slot_filling")
    _restore(slot_killed.state, tmp_path / "run")
    with pytest.raises(DataError, match="differs in: dropout"):
        task.run(_config(task, tmp_path / "run", dropout=0.1))
    assert not (tmp_path / "run").exists()
