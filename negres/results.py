"""What a study writes for people and programs: ``results.json``, its layout's version,
and its check when read back.

A foundation: what every layer may read (the report, tidy tables, TensorBoard logs and a
library user's :func:`negres.load_results`) without importing the study that wrote it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from negres.errors import WorkdirError
from negres.files import read_json

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
PLOTS_DIR = "plots"
# The version of results.json's layout; --report_only refuses another.
SCHEMA_VERSION = 2


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


__all__ = ["PLOTS_DIR", "REPORT_FILE", "RESULTS_FILE", "SCHEMA_VERSION", "load_results_file",
           "results_problem"]
