"""The workdir: atomic JSON files, and overwrites that finish whole or can be undone.

An ``--overwrite`` run first moves the earlier run's outputs into ``.negres_replaced/``
and deletes them only once its own results and report are written. Killed or failed
half-way, it leaves a workdir that holds either the earlier results (set aside) or the
new ones, never a mix: rerunning the same command resumes the new run from its
checkpoints, and :func:`roll_back` puts the earlier outputs back.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_FILE = "results.json"
CONFIG_FILE = "config.json"
REPLACED_DIR = ".negres_replaced"
# Written into REPLACED_DIR once every earlier output is in it: from then on what sits at
# the top of the workdir belongs to the new run.
_MOVED_MARKER = "moved"
# Everything a study writes at the top of its workdir, results first: once results.json
# is moved the workdir no longer claims finished results. Files of the user's own (a log
# they tee into the workdir) are never moved or deleted. tests/test_workdir.py checks a
# study writes nothing else.
OUTPUTS = (RESULTS_FILE, "report.md", "plots", "attributions", CONFIG_FILE, "checkpoints")


class WorkdirError(ValueError):
    """The workdir cannot be used as asked (already holds results, or is not writable)."""


def to_jsonable(value: Any) -> Any:
    """Arrays and NumPy scalars to nested lists and Python numbers; NaN/inf kept as floats."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "__array__") and not isinstance(value, (str, bytes)):
        return np.asarray(value).tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _default_file_mode() -> int:
    # mkstemp creates 0600 files; the workdir's other files follow the umask.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` via a temporary file and a rename: no reader sees half a file, and a
    failed write (disk full) leaves the earlier file or none."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | os.PathLike[str], payload: Any) -> None:
    """Write ``payload`` as JSON, atomically (:func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(to_jsonable(payload), indent=1))


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path) as f:
        return json.load(f)


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` says the disk is full (an OSError, or orbax's RESOURCE_EXHAUSTED)."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return says_disk_full(str(error))


def says_disk_full(text: str) -> bool:
    """Whether a message (an exception's, a log line's) says the disk is full."""
    return "No space left on device" in text or "Disk quota exceeded" in text


def free_space(path: str | os.PathLike[str]) -> int:
    """Bytes free on the file system holding ``path`` (or its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def readable_size(num_bytes: float) -> str:
    """``num_bytes`` in kB, MB or GB, two or three significant digits."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:.3g} {unit}"
    return f"{num_bytes:.0f} bytes"


def check_workdir_name(workdir: str | os.PathLike[str] | None) -> Path:
    """``workdir`` as a path; an empty one is refused (it would write into the current
    directory)."""
    if workdir is None or not str(workdir).strip():
        raise WorkdirError(f"--workdir={str(workdir or '')!r} is not allowed: a directory path "
                           "(e.g. runs/default); an empty one would write into the current "
                           "directory")
    return Path(workdir)


def make_writable(path: Path) -> None:
    """Create ``path`` if needed and check that files can be written into it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write_probe"):
            pass
    except OSError as e:
        raise WorkdirError(
            f"--workdir={str(path)!r} is not writable ({e.strerror}); "
            "choose a directory you can write"
        ) from None


def overwrite_pending(path: Path) -> bool:
    """Whether an ``--overwrite`` run into ``path`` began and has not finished."""
    return (path / REPLACED_DIR).is_dir()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def set_aside(path: Path) -> list[str]:
    """Move the earlier run's outputs into ``REPLACED_DIR``; returns the names moved.

    Idempotent: a move killed half-way continues where it stopped (every output still at
    the top is then the earlier run's, since the new run writes only after the marker).
    """
    replaced = path / REPLACED_DIR
    if (replaced / _MOVED_MARKER).exists():
        return []
    replaced.mkdir(exist_ok=True)
    moved = []
    for name in OUTPUTS:
        if (path / name).exists() and not (replaced / name).exists():
            os.replace(path / name, replaced / name)  # a rename: no copy, no extra space
            moved.append(name)
    (replaced / _MOVED_MARKER).write_text("")
    return moved


def finish_overwrite(path: Path) -> None:
    """Delete the outputs an ``--overwrite`` run set aside, once its own are written."""
    if overwrite_pending(path):
        shutil.rmtree(path / REPLACED_DIR)


def roll_back(workdir: str | os.PathLike[str]) -> list[str]:
    """Undo an unfinished ``--overwrite``: the workdir's outputs become the earlier run's.

    Returns:
      The names put back.

    Raises:
      WorkdirError: no ``--overwrite`` into ``workdir`` is unfinished.
    """
    path = check_workdir_name(workdir)
    replaced = path / REPLACED_DIR
    if not overwrite_pending(path):
        raise WorkdirError(f"--workdir={str(path)!r} holds no unfinished --overwrite to roll "
                           "back (nothing was set aside)")
    if (replaced / _MOVED_MARKER).exists():
        # Everything at the top is the new run's.
        for name in OUTPUTS:
            _remove(path / name)
    restored = []
    for name in OUTPUTS:
        if (replaced / name).exists():
            os.replace(replaced / name, path / name)
            restored.append(name)
    shutil.rmtree(replaced)
    return restored
