"""Reading and writing the workdir's JSON files: atomic, and never silently over earlier results."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_FILE = "results.json"
CONFIG_FILE = "config.json"


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


def write_json_atomic(path: str | os.PathLike[str], payload: Any) -> None:
    """Write ``payload`` as JSON via a temporary file and a rename: no reader sees half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(to_jsonable(payload), f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path) as f:
        return json.load(f)


def prepare_workdir(workdir: str | os.PathLike[str], overwrite: bool) -> Path:
    """Create ``workdir`` if needed and check it can take new results, before any work is done.

    Refuses a workdir that already holds ``results.json`` unless ``overwrite``, and a
    workdir that cannot be written, with a message that says what to do instead.
    """
    path = Path(workdir)
    if (path / RESULTS_FILE).exists() and not overwrite:
        raise WorkdirError(
            f"--workdir={str(path)!r} already holds {RESULTS_FILE}; pass --overwrite to replace "
            "it, or choose another --workdir"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write_probe"):
            pass
    except OSError as e:
        raise WorkdirError(
            f"--workdir={str(path)!r} is not writable ({e.strerror}); "
            "choose a directory you can write"
        ) from None
    return path
