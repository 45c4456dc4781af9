"""Resumable training: the whole training state saved after every epoch, so that a killed run (``kill -9``, a
preempted machine) started again with the same command carries on from its last saved epoch.

The state is every model variable (weights and the dropout layers' random-seed states), every optimizer variable
(moments, step count, averaged weights) and the loop's own counters (epoch, best score, epochs without progress).
Each save writes a new ``variables-<epoch>.npz`` (through a temporary file and a rename), then replaces
``state.json``, which names that file and its checksum, and only then removes the older file: a process killed at
any moment leaves the previous complete state or the new one, never a half-written one read as complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from pipelines.readers import DataError

STATE_FILE = "state.json"


IGNORED = ("epochs", "out", "resume", "workers", "task_index", "strategy", "max_minutes", "export")


def fingerprint(config, ignore: tuple = IGNORED) -> dict:
    """The settings that must match for a saved state to be resumed (all of the config but ``ignore``)."""
    import dataclasses

    return {k: v for k, v in dataclasses.asdict(config).items() if k not in ignore}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ResumeState:
    """The saved state of one training run, in ``folder``.

    Args:
      folder: where the state lives (created on first save).
      config: the run's config; its :func:`fingerprint` is stored and checked on load.
      extra: more settings the saved state must match (e.g. the training phase).
    """

    def __init__(self, folder: str | Path, config, extra: dict | None = None):
        self.folder = Path(folder)
        self.fingerprint = {**fingerprint(config), **(extra or {})}

    def _variables(self, model) -> list:
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        return list(model.variables) + list(model.optimizer.variables)

    def save(self, model, loop: dict) -> None:
        """Saves the model and optimizer variables and ``loop`` (JSON: epoch, best, wait, ...), atomically."""
        self.folder.mkdir(parents=True, exist_ok=True)
        arrays = {f"v{i}": np.asarray(v.numpy()) for i, v in enumerate(self._variables(model))}
        name = f"variables-{loop['epoch']}.npz"
        tmp = self.folder / f".{name}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        digest = _sha256(tmp)
        os.replace(tmp, self.folder / name)
        state = {"loop": loop, "config": self.fingerprint, "variables": name, "variables_sha256": digest}
        _write_atomic(self.folder / STATE_FILE, json.dumps(state, indent=2, default=str).encode())
        for old in self.folder.glob("variables-*.npz"):
            if old.name != name:
                old.unlink()

    def load(self, model) -> dict | None:
        """Restores the saved variables into ``model`` (built and compiled the same way) and returns the loop
        counters; None when there is no saved state.

        Raises:
          DataError: the state belongs to a different configuration, or its files do not match each other
            (then delete the folder, or run with ``--no-resume``).
        """
        state_path = self.folder / STATE_FILE
        if not state_path.is_file():
            return None
        try:
            state = json.loads(state_path.read_text())
        except ValueError as err:
            raise DataError(f"{state_path} is not valid JSON ({err}); delete {self.folder} or use --no-resume") from None
        saved = json.loads(json.dumps(state.get("config"), default=str))
        wanted = json.loads(json.dumps(self.fingerprint, default=str))
        if saved != wanted:
            diff = sorted(k for k in set(saved or {}) | set(wanted) if (saved or {}).get(k) != wanted.get(k))
            raise DataError(f"the saved training state in {self.folder} is from a different configuration "
                            f"(differs in: {', '.join(diff)}); delete it or run with --no-resume")
        variables_path = self.folder / str(state.get("variables", ""))
        if not variables_path.is_file() or _sha256(variables_path) != state.get("variables_sha256"):
            raise DataError(f"{variables_path} does not match {state_path} (an interrupted save); "
                            f"delete {self.folder} or run with --no-resume")
        variables = self._variables(model)
        with np.load(variables_path) as arrays:
            if len(arrays.files) != len(variables):
                raise DataError(f"{variables_path} holds {len(arrays.files)} variables, the model has "
                                f"{len(variables)}; delete {self.folder} or run with --no-resume")
            for i, variable in enumerate(variables):
                variable.assign(arrays[f"v{i}"])
        return state["loop"]

    def clear(self) -> None:
        """Removes the saved state (after the run has completed)."""
        shutil.rmtree(self.folder, ignore_errors=True)
