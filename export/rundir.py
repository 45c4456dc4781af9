"""Atomic run dirs: everything is written into a temporary sibling folder, which replaces the run dir only when
the whole run (training, evaluation, export and its parity check) has succeeded."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def staged(run_dir: str | Path, copy_existing: bool = False):
    """Yields a temporary folder beside ``run_dir``; on success it becomes ``run_dir``.

    Args:
      run_dir: the final folder. An existing one is replaced only after the new one is complete.
      copy_existing: start from a copy of the existing run dir (to rewrite part of it, e.g. a re-export).

    On an exception the temporary folder is removed and ``run_dir`` is left as it was.
    """
    run_dir = Path(run_dir).absolute()
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.partial-", dir=run_dir.parent))
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
