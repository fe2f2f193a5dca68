"""The workdir: atomic files, checked results, and overwrites that finish whole or roll back.

An ``--overwrite`` run first moves the earlier run's outputs into ``.negres_replaced/``
and deletes them only once its own results and report are written. Killed or failed
half-way, it leaves a workdir that holds either the earlier results (set aside) or the
new ones, never a mix: rerunning the same command resumes the new run from its
checkpoints, and :func:`roll_back` puts the earlier outputs back.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
PLOTS_DIR = "plots"
# The version of results.json's layout; --report_only refuses another.
SCHEMA_VERSION = 2
CONFIG_FILE = "config.json"
REPLACED_DIR = ".negres_replaced"
# Written into REPLACED_DIR once every earlier output is in it: from then on what sits at
# the top of the workdir belongs to the new run.
_MOVED_MARKER = "moved"
# Everything a study writes at the top of its workdir, results first: once results.json
# is moved the workdir no longer claims finished results. Files of the user's own (a log
# they tee into the workdir) are never moved or deleted. tests/test_workdir.py checks a
# study writes nothing else.
OUTPUTS = (RESULTS_FILE, REPORT_FILE, PLOTS_DIR, "metrics.csv", "metrics.parquet", "tensorboard",
           "attributions", CONFIG_FILE, "checkpoints")


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


def write_atomic(path: str | os.PathLike[str], write: Callable[[IO[Any]], None], *,
                 binary: bool = False) -> None:
    """Write ``path`` whole or not at all: ``write`` fills a temporary file beside it (a
    text stream, or a binary one with ``binary``), which is then renamed into place, so no
    reader sees half a file and a failed write (disk full) leaves the earlier file or none."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` whole or not at all (a temporary file renamed into place)."""
    write_atomic(path, lambda f: f.write(text))


def write_json_atomic(path: str | os.PathLike[str], payload: Any) -> None:
    """Write ``payload`` as JSON whole or not at all, streamed: never the whole text in
    memory (results.json of thousands of seeds holds millions of numbers)."""
    write_atomic(path, lambda f: json.dump(to_jsonable(payload), f, indent=1))


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
    """Bytes in decimal units, two significant digits: ``58 kB``, ``1.3 TB``."""
    for scale, unit in ((1e15, "PB"), (1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if num_bytes >= scale:
            return f"{float(f'{num_bytes / scale:.2g}'):g} {unit}"
    return f"{int(num_bytes)} bytes"


@contextlib.contextmanager
def disk_full_explained(path: Path, doing: str, then: str,
                        needed: Callable[[], int] | None = None) -> Iterator[None]:
    """A full disk inside the block becomes one :class:`WorkdirError` line: the workdir,
    what was being written (``doing``), the space needed or the file, the space free, and
    what to do (``then``). Other errors pass through."""
    try:
        yield
    except OSError as e:
        if not is_disk_full(e):
            raise
        detail = (f"about {readable_size(needed())} needed, " if needed is not None
                  else f"{e.filename}; " if e.filename else "")
        raise WorkdirError(
            f"no space left on the device of --workdir={str(path)!r} while {doing} "
            f"({detail}{readable_size(free_space(path))} free); {then}") from None


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


def discard_outputs(path: Path) -> None:
    """Delete every output of a study at the top of ``path`` (not the set-aside ones)."""
    for name in OUTPUTS:
        _remove(path / name)


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
        discard_outputs(path)  # everything at the top is the new run's
    restored = []
    for name in OUTPUTS:
        if (replaced / name).exists():
            os.replace(replaced / name, path / name)
            restored.append(name)
    shutil.rmtree(replaced)
    return restored


# What --report_only needs of results.json, and the type each holds.
_REQUIRED = {"config": dict, "task": dict, "baseline": str, "conditions": dict,
             "statistics": dict, "device": dict, "wall_time_s": (int, float)}
_REQUIRED_PER_CONDITION = {"num_seeds": int, "metrics": dict, "evaluations": dict,
                           "curves": dict}


def results_problem(results: Any) -> str | None:
    """What makes ``results`` (a parsed results.json) unfit to report on; ``None``: nothing."""
    if not isinstance(results, dict):
        return f"that is a JSON {type(results).__name__}, not an object"
    if "schema_version" not in results:  # results of negres before version 2, or not negres's
        return "without 'schema_version'"
    version = results["schema_version"]
    if version != SCHEMA_VERSION:
        return (f"of schema version {version}; this negres reports on version "
                f"{SCHEMA_VERSION}")
    for key, kind in _REQUIRED.items():
        if not isinstance(results.get(key), kind):
            return f"without a valid {key!r}" if key in results else f"without {key!r}"
    if results["baseline"] not in results["conditions"]:
        return f"whose baseline {results['baseline']!r} is not among its conditions"
    for name, condition in results["conditions"].items():
        if not isinstance(condition, dict):
            return f"whose condition {name!r} is not an object"
        for key, kind in _REQUIRED_PER_CONDITION.items():
            if not isinstance(condition.get(key), kind):
                return f"whose condition {name!r} lacks a valid {key!r}"
    if not isinstance(results["statistics"].get("settings"), dict):
        return "without statistics settings"
    return None


def load_results_file(path: Path) -> dict[str, Any]:
    """``path``'s results.json, checked; anything wrong with it is one line."""
    file = path / RESULTS_FILE
    if not file.is_file():
        raise WorkdirError(f"--workdir={str(path)!r} holds no {RESULTS_FILE} to report on")
    try:
        results = read_json(file)
    except UnicodeDecodeError:
        problem = "that is not text"
    except json.JSONDecodeError as e:
        problem = f"that is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})"
    else:
        problem = results_problem(results)
    if problem is not None:
        raise WorkdirError(
            f"--workdir={str(path)!r} holds a {RESULTS_FILE} {problem}: it cannot be reported "
            "on (rerun the study with --overwrite)")
    return results
