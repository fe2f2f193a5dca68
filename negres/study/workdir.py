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
import fcntl
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from negres.errors import WorkdirError
from negres.files import (
    free_space,
    is_disk_full,
    readable_size,
)
from negres.results import INSTANCES_DIR, PLOTS_DIR, REPORT_FILE, RESULTS_FILE

CONFIG_FILE = "config.json"
# Training checkpoints, one directory per group of conditions and look.
CHECKPOINTS_DIR = "checkpoints"
REPLACED_DIR = ".negres_replaced"
# Held (an OS file lock, flock) by the one process that uses the workdir: it names that
# process, and the kernel releases it when the process ends, killed or not.
LOCK_FILE = ".negres_lock"
# What orbax names a checkpoint directory until its save is complete.
ORBAX_TEMP = ".orbax-checkpoint-tmp"
# Room kept under the system's path limit for what a study writes inside its workdir
# (checkpoints/0_NAME_look2/STEP.orbax-checkpoint-tmp/..., .negres_replaced/...).
_ROOM_INSIDE = 512
# Written into REPLACED_DIR once every earlier output is in it: from then on what sits at
# the top of the workdir belongs to the new run.
_MOVED_MARKER = "moved"
# Everything a study writes at the top of its workdir, results first: once results.json
# is moved the workdir no longer claims finished results. Files of the user's own (a log
# they tee into the workdir) are never moved or deleted. tests/test_workdir.py checks a
# study writes nothing else.
OUTPUTS = (RESULTS_FILE, REPORT_FILE, PLOTS_DIR, "metrics.csv", "metrics.parquet", "tensorboard",
           "attributions", INSTANCES_DIR, CONFIG_FILE, CHECKPOINTS_DIR)


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
    """``workdir`` as a path, refused in one line when it cannot be one: empty (it would
    write into the current directory), a name or path longer than the file system takes
    (with room for what a study writes inside), a symbolic link that leads nowhere or to
    itself."""
    if workdir is None or not str(workdir).strip():
        raise WorkdirError(f"--workdir={str(workdir or '')!r} is not allowed: a directory path "
                           "(e.g. runs/default); an empty one would write into the current "
                           "directory")
    path = Path(workdir)
    shown = _shortened(str(path))
    absolute = Path(os.path.abspath(path))
    name_max, path_max = _name_limits(absolute)
    for part in absolute.parts:
        if len(os.fsencode(part)) > name_max:
            raise WorkdirError(
                f"--workdir={shown!r} is not allowed: its name {_shortened(part)!r} has "
                f"{len(os.fsencode(part))} bytes, and the file system takes names of at most "
                f"{name_max}; choose a shorter --workdir")
    if len(os.fsencode(str(absolute))) > path_max - _ROOM_INSIDE:
        raise WorkdirError(
            f"--workdir={shown!r} is not allowed: its absolute path has "
            f"{len(os.fsencode(str(absolute)))} bytes, and the files a study writes inside it "
            f"need it to have at most {path_max - _ROOM_INSIDE} (the system's limit is "
            f"{path_max}); choose a shorter --workdir")
    _check_links(path, shown)
    return path


def _shortened(text: str, keep: int = 200) -> str:
    """``text``, or its start and end around an ellipsis when it is long."""
    return text if len(text) <= keep else f"{text[:keep // 2]}…{text[-keep // 2:]}"


def _name_limits(path: Path) -> tuple[int, int]:
    """``(longest file name, longest path)`` in bytes on the file system of ``path``'s
    nearest existing parent."""
    existing = path
    while not os.path.exists(existing) and existing != existing.parent:
        existing = existing.parent
    try:
        return os.pathconf(existing, "PC_NAME_MAX"), os.pathconf(existing, "PC_PATH_MAX")
    except (OSError, ValueError):
        return 255, 4096


def _check_links(path: Path, shown: str) -> None:
    """Refuse a workdir whose path passes through a symbolic link that leads nowhere (a
    dangling link) or to itself (a loop), naming the link."""
    parts = path.parts
    current, rest = (Path(parts[0]), parts[1:]) if path.is_absolute() else (Path(), parts)
    for part in rest:
        current = current / part
        if not os.path.islink(current):
            if not os.path.exists(current):
                return  # nothing further exists: it is created
            continue
        try:
            current.stat()
        except OSError as e:
            target = os.readlink(current)
            if e.errno == errno.ELOOP:
                raise WorkdirError(
                    f"--workdir={shown!r} is not usable: {str(current)!r} is a symbolic link "
                    f"that leads back to itself (a loop, through {target!r}); remove the "
                    "link or choose another --workdir") from None
            if e.errno == errno.ENOENT:
                raise WorkdirError(
                    f"--workdir={shown!r} is not usable: {str(current)!r} is a symbolic link "
                    f"to {target!r}, which does not exist (a dangling link); create "
                    f"{target!r}, remove the link, or choose another --workdir") from None
            raise WorkdirError(f"--workdir={shown!r} is not usable: {str(current)!r} is a "
                               f"symbolic link that cannot be followed ({e.strerror})") from None


def make_writable(path: Path) -> None:
    """Create ``path`` if needed and check that files can be written into it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write_probe"):
            pass
    except OSError as e:
        raise WorkdirError(
            f"--workdir={_shortened(str(path))!r} is not writable ({e.strerror}); "
            "choose a directory you can write"
        ) from None


def _holder(lock: Path) -> str:
    """Who holds ``lock``, as its file says (``process PID on HOST``); it writes that just
    after taking the lock, so a moment's wait covers a run that is starting."""
    for _ in range(20):
        try:
            pid, _, host = lock.read_text().strip().partition(" ")
        except OSError:
            pid, host = "", ""
        if pid:
            here = socket.gethostname()
            return f"process {pid}" + (f" on {host}" if host and host != here else "")
        time.sleep(0.05)
    return "a process that is starting"


@contextlib.contextmanager
def workdir_lock(workdir: str | os.PathLike[str], *, doing: str,
                 create: bool = True) -> Iterator[Path]:
    """Hold ``workdir`` for this process alone while the block runs.

    An OS file lock (``flock``) on ``LOCK_FILE`` inside the workdir, taken before anything
    is written there, holding this process's id; the kernel releases it when the process
    ends, so a killed run leaves nothing that blocks the next one. A second process is
    refused with a :class:`WorkdirError` naming the one that holds it. With ``create``,
    a missing workdir is created first; without, a missing one is not locked (the caller
    refuses it). Stale orbax temporary directories of a save that was killed are removed
    once the lock is held.

    Args:
      workdir: the directory.
      doing: what this process does there, for the messages (e.g. ``"--report_only"``).
      create: create the workdir if it does not exist.

    Yields:
      The workdir as a :class:`Path`.
    """
    path = check_workdir_name(workdir)
    if not create and not path.is_dir():
        yield path
        return
    lock = path / LOCK_FILE
    created = not path.exists()
    while True:
        try:
            if create:
                path.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise WorkdirError(
                f"--workdir={_shortened(str(path))!r} is not writable ({e.strerror}), and "
                f"{doing} writes there; choose a directory you can write") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise WorkdirError(
                f"--workdir={_shortened(str(path))!r} is in use by another negres run "
                f"({_holder(lock)}); wait for it to end, or choose another --workdir") from None
        # The lock file is removed at the end of a run: a lock taken on a file that was
        # removed meanwhile (or replaced) locks nothing; take the new one.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        remove_orbax_temps(path)
        yield path
    except BaseException:
        with contextlib.suppress(OSError):
            lock.unlink()
        if created:  # refused before it wrote anything: leave no empty workdir behind
            with contextlib.suppress(OSError):
                path.rmdir()
        raise
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()  # while still held: a process that opened it retries the new file
        os.close(fd)


def remove_orbax_temps(path: Path) -> list[Path]:
    """Remove orbax's temporary checkpoint directories (``STEP.orbax-checkpoint-tmp...``)
    under ``path``'s checkpoints: a save killed half-way leaves one, and orbax would trip
    over it. Called with the workdir's lock held, so no save of another run is under way.
    Returns what was removed."""
    removed = []
    root = path / "checkpoints"
    if not root.is_dir():
        return removed
    for found in sorted(root.rglob(f"*{ORBAX_TEMP}*")):
        if any(parent in removed for parent in found.parents):
            continue
        with contextlib.suppress(FileNotFoundError):
            _remove(found)
        removed.append(found)
    return removed


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
