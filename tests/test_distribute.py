"""Training at scale and through faults: strategies, two-worker training, kill -9 and resume, determinism, mixed
precision and the cuDNN check."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# A tiny tagger run: built-in data, small model, no early stopping.
TINY = ["--quick", "--synthetic-size", "300", "--patience", "100", "--hidden", "16", "--embed-dim", "16"]


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    return env


def _slot_filling(args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "pipelines.slot_filling", *TINY, *args], cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def _finish(proc, timeout=400) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def _weights(run_dir: Path) -> list[tuple[str, np.ndarray]]:
    """Every weight the run ended with (``checkpoints/train.weights.h5``, written with or without export), by name."""
    import h5py

    weights = []
    with h5py.File(run_dir / "checkpoints" / "train.weights.h5", "r") as f:
        f.visititems(lambda name, item: weights.append((name, item[()])) if isinstance(item, h5py.Dataset) else None)
    return weights


def _checksums(run_dir: Path) -> dict:
    return json.loads((run_dir / "checkpoints" / "checksums.json").read_text())


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


# --------------------------------------------------------------------------------------------------------------------
# Strategy selection


def test_strategy_names_and_cluster_specs_are_checked(monkeypatch):
    from pipelines.distribute import cluster_config, make_strategy
    from pipelines.readers import DataError

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(DataError, match="unknown --strategy 'horovod'"):
        make_strategy("horovod")
    with pytest.raises(DataError, match="--task-index must be 0..1"):
        cluster_config("127.0.0.1:1,127.0.0.1:2", None)
    with pytest.raises(DataError, match="host:port"):
        cluster_config("localhost", 0)
    with pytest.raises(DataError, match="needs --workers"):
        cluster_config(None, 1)
    with pytest.raises(DataError, match="multi_worker needs the cluster"):
        make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(DataError, match="TF_CONFIG is not a cluster spec"):
        cluster_config(None, None)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"index": 1}}))
    assert cluster_config(None, None)["task"]["index"] == 1
    with pytest.raises(DataError, match="2-worker cluster was given but --strategy is mirrored"):
        make_strategy("mirrored")
    monkeypatch.delenv("TF_CONFIG")
    strategy, worker = make_strategy("one_device")
    assert strategy.num_replicas_in_sync == 1 and worker.is_chief and worker.count == 1


def test_unknown_strategy_on_the_command_line_exits_2():
    proc = subprocess.run([sys.executable, "-m", "pipelines.slot_filling", "--strategy", "ps"], cwd=ROOT,
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "invalid choice: 'ps'" in proc.stderr


# --------------------------------------------------------------------------------------------------------------------
# Resumable runs


def test_killed_run_resumes_to_the_same_weights_as_an_uninterrupted_one(tmp_path):
    """kill -9 after the second epoch's state is saved, run the same command again: it carries on from there and
    ends bit for bit where an uninterrupted run with the same seed ends (which also proves seeded runs repeat).
    No export: the weights are compared in checkpoints/."""
    epochs = ["--epochs", "4", "--no-export"]
    whole = _slot_filling([*epochs, "--out", str(tmp_path / "whole")])
    killed = _slot_filling([*epochs, "--out", str(tmp_path / "killed")])
    state = tmp_path / "killed.resume" / "train" / "state.json"  # the runner's state of the phase "train"
    deadline = time.time() + 400
    while time.time() < deadline and killed.poll() is None:
        if state.is_file() and json.loads(state.read_text())["loop"]["epoch"] >= 2:
            break
        time.sleep(0.2)
    assert killed.poll() is None, "the run ended before it could be killed:\n" + killed.communicate()[0][-2000:]
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "killed").exists(), "a killed run must not leave a run dir"
    saved_epoch = json.loads(state.read_text())["loop"]["epoch"]
    assert saved_epoch >= 2

    out = _finish(_slot_filling([*epochs, "--out", str(tmp_path / "killed")]))
    assert f"resuming from {tmp_path / 'killed.resume' / 'train'}: {saved_epoch} epoch(s) done" in out
    assert f"epoch {saved_epoch}/4 -" not in out and "epoch 4/4 -" in out  # only the missing epochs ran
    _finish(whole)
    assert not (tmp_path / "killed.resume").exists(), "the resume state is removed once the run completes"

    whole_weights, resumed_weights = _weights(tmp_path / "whole"), _weights(tmp_path / "killed")
    assert whole_weights and [name for name, _ in whole_weights] == [name for name, _ in resumed_weights]
    for (_, a), (_, b) in zip(whole_weights, resumed_weights, strict=True):
        np.testing.assert_array_equal(a, b)
    assert _checksums(tmp_path / "whole") == _checksums(tmp_path / "killed")
    whole_metrics = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    resumed_metrics = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert {k: v for k, v in whole_metrics.items() if k != "train_seconds"} == \
        {k: v for k, v in resumed_metrics.items() if k != "train_seconds"}
    history = (tmp_path / "killed" / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["0", "1", "2", "3"]


def _tiny_model():
    import keras

    from models.slot_filling import build_slot_filler

    model = build_slot_filler(30, 5, 3, embed_dim=8, units=8, layers=1)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    return model


def test_resume_state_refuses_another_config_and_a_torn_save(tmp_path):
    from pipelines.readers import DataError
    from pipelines.resume import ResumeState
    from pipelines.slot_filling import SlotFillingConfig

    model = _tiny_model()
    config = SlotFillingConfig(out=str(tmp_path / "run"))
    state = ResumeState(tmp_path / "state", config)
    assert state.load(model) is None
    state.save(model, {"epoch": 3, "best": 0.5})
    before = [v.numpy().copy() for v in model.variables]
    for v in model.trainable_variables:
        v.assign(v.numpy() + 1)
    assert state.load(model) == {"epoch": 3, "best": 0.5}
    for a, b in zip(before, model.variables, strict=True):
        np.testing.assert_array_equal(a, b.numpy())
    # The epoch count may change (train longer); the seed may not.
    assert ResumeState(tmp_path / "state", SlotFillingConfig(out=config.out, epochs=99)).load(model)["epoch"] == 3
    with pytest.raises(DataError, match=r"different configuration \(differs in: seed\)"):
        ResumeState(tmp_path / "state", SlotFillingConfig(out=config.out, seed=1)).load(model)
    # A save torn between its two renames leaves state.json naming variables that do not match.
    (tmp_path / "state" / "variables-3.npz").write_bytes(b"torn")
    with pytest.raises(DataError, match="does not match .*state.json"):
        state.load(model)
    # A temporary file left by a killed save is never read.
    state.save(model, {"epoch": 4, "best": 0.6})
    (tmp_path / "state" / ".variables-5.npz.tmp-999").write_bytes(b"half")
    assert state.load(model)["epoch"] == 4
    assert sorted(p.name for p in (tmp_path / "state").glob("variables-*")) == ["variables-4.npz"]


# --------------------------------------------------------------------------------------------------------------------
# Multi-worker


def test_two_workers_train_in_step_and_only_the_chief_exports(tmp_path):
    ports = _free_ports(2)
    workers = ",".join(f"127.0.0.1:{p}" for p in ports)
    out = tmp_path / "mw"
    procs = [_slot_filling(["--epochs", "2", "--strategy", "multi_worker", "--workers", workers,
                            "--task-index", str(i), "--out", str(out)]) for i in range(2)]
    logs = [_finish(p, timeout=500) for p in procs]
    checksums = [line.split(": ")[-1] for log in logs for line in log.splitlines()
                 if "weights checksum" in line]
    assert len(checksums) == 2 and checksums[0] == checksums[1], logs[1][-2000:]
    assert "worker 1 of 2" in logs[0] and "worker 2 of 2" in logs[1]
    meta = json.loads((out / "metadata.json").read_text())
    assert max(meta["parity"]["onnx_max_abs_diff"].values()) <= 1e-5
    assert json.loads((out / "config.json").read_text())["strategy"] == "multi_worker"
    assert not list(tmp_path.glob("*.resume")) and sorted(p.name for p in tmp_path.iterdir()) == ["mw"]

    import serving

    result = serving.load(out).predict("show me flights from boston to denver")
    assert result.intent and len(result.words) == 7


# --------------------------------------------------------------------------------------------------------------------
# GPU readiness


def test_mixed_precision_keeps_outputs_and_loss_in_float32_and_exports_a_float32_copy():
    import keras

    from models.slot_filling import build_slot_filler
    from pipelines.training import float32_model

    def build():
        return build_slot_filler(30, 5, 3, embed_dim=8, units=8, layers=1)

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build()
        model.compile(optimizer=keras.optimizers.Adam(1e-2, clipnorm=1.0),
                      loss="sparse_categorical_crossentropy")
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        assert model.get_layer("embedding").compute_dtype == "float16"
        ids = np.array([[1, 2, 3, 0], [4, 5, 0, 0]], dtype=np.int32)
        out = model(ids)
        assert out["slot_probs"].dtype == "float32" and out["intent_probs"].dtype == "float32"
        history = model.fit(ids, {"slot_probs": np.ones((2, 4), np.int32), "intent_probs": np.array([0, 1])},
                            epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"]).all()
        copy = float32_model(build, model)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert copy is not model and copy.get_layer("embedding").compute_dtype == "float32"
    np.testing.assert_allclose(copy(ids)["slot_probs"], model(ids)["slot_probs"], atol=2e-3)


def test_cudnn_check_names_each_layer_that_rules_out_the_kernel():
    import keras

    from models.slot_filling import build_slot_filler
    from pipelines.cudnn import cudnn_blockers, left_padded, warn_cudnn

    assert cudnn_blockers(build_slot_filler(30, 5, 3, embed_dim=8, units=8, layers=2)) == {}
    x = keras.Input((None, 4))
    y = keras.layers.LSTM(4, activation="relu", return_sequences=True, name="relu_lstm")(x)
    y = keras.layers.Bidirectional(keras.layers.GRU(4, reset_after=False, return_sequences=True), name="old_gru")(y)
    y = keras.layers.LSTM(4, recurrent_dropout=0.2, return_sequences=True, name="dropout_lstm")(y)
    y = keras.layers.SimpleRNN(4, name="plain_rnn")(y)
    blockers = cudnn_blockers(keras.Model(x, y))
    assert blockers == {
        "relu_lstm": ["activation=relu (cuDNN needs tanh)"],
        "old_gru": ["reset_after=False (cuDNN needs reset_after=True)"],
        "dropout_lstm": ["recurrent_dropout=0.2 (cuDNN needs 0; use dropout between layers)"],
        "plain_rnn": ["SimpleRNN has no cuDNN kernel"],
    }
    assert not left_padded([[3, 4, 0], [5, 0, 0]]) and left_padded([[0, 3, 4], [5, 6, 7]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        messages = warn_cudnn(keras.Model(x, y), sample_ids=[[0, 0, 1]], gpu=True)
    assert [str(w.message) for w in caught] == messages and len(messages) == 5
    assert messages[0].startswith("recurrent layer 'relu_lstm' cannot use the cuDNN kernel: activation=relu")
    assert "left-padded" in messages[-1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_cudnn(keras.Model(x, y), gpu=False)
    assert caught == []
