"""Files written whole or not at all, JSON of arrays, and the disk's free space.

A foundation: imports nothing of negres, so that checkpoints (training), the report
(reporting) and the workdir (study) share one set of writers.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np


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


__all__ = ["free_space", "is_disk_full", "read_json", "readable_size", "says_disk_full",
           "to_jsonable", "write_atomic", "write_json_atomic", "write_text_atomic"]
