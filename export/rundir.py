"""Atomic run dirs: everything is written into a temporary sibling folder, which replaces the run dir only when
the whole run (training, evaluation, export and its parity check) has succeeded; a re-export rewrites the run dir's
model card there too (:func:`write_card`)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path


def _staging_prefix(name: str, pid: int | None = None) -> str:
    """``.NAME.partial-HOST-PID-``: whose staging folder it is, so a later run can tell a dead one."""
    host = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"
    return f".{name}.partial-{host}-{os.getpid() if pid is None else pid}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_dead_staging(run_dir: Path) -> list[Path]:
    """Removes the staging folders of ``run_dir`` left by processes of this host that are gone (a run killed with
    SIGKILL or by the OOM killer cannot clean up after itself); returns what it removed. Folders of live processes
    and of other hosts are left alone."""
    mine = re.compile(re.escape(_staging_prefix(run_dir.name, 0)[:-2]) + r"(\d+)-")
    removed = []
    for folder in run_dir.parent.glob(f".{run_dir.name}.partial-*"):
        match = mine.match(folder.name)
        if match and folder.is_dir() and not _alive(int(match.group(1))):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


@contextlib.contextmanager
def staged(run_dir: str | Path, copy_existing: bool = False):
    """Yields a temporary folder beside ``run_dir``; on success it becomes ``run_dir``.

    Args:
      run_dir: the final folder. An existing one is replaced only after the new one is complete.
      copy_existing: start from a copy of the existing run dir (to rewrite part of it, e.g. a re-export).

    On an exception the temporary folder is removed and ``run_dir`` is left as it was; staging folders that killed
    runs left behind are removed first (:func:`remove_dead_staging`).
    """
    run_dir = Path(run_dir).absolute()
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_staging(run_dir)
    tmp = Path(tempfile.mkdtemp(prefix=_staging_prefix(run_dir.name), dir=run_dir.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; a run dir is as readable as any folder
    try:
        if copy_existing:
            shutil.copytree(run_dir, tmp, dirs_exist_ok=True)
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, run_dir)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def replace_dir(new: Path, target: Path) -> None:
    """Moves ``new`` to ``target``, replacing an existing ``target`` with two renames."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / target.name)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_card(staging: Path, run_dir: str | Path) -> Path:
    """Rewrites the model card (``README.md``, ``tokenizer_conformance.json``) in the ``staging`` folder of a
    re-export of ``run_dir`` from its new ``metadata.json``, with the task's demo input, as
    ``pipelines.runner.run`` writes it; returns the README's path."""
    from pipelines import registry
    from serving import model_card

    task = json.loads((staging / "metadata.json").read_text(encoding="utf-8")).get("task")
    demo = registry.get(task).demo_input if task in registry.TASKS else None
    return model_card.write(staging, Path(run_dir).absolute().name, demo)
