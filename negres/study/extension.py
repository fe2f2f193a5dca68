"""``--extend``: more seeds for a finished study, checked against it before anything
compiles; each extension is a look of the study's sequential statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ml_collections import ConfigDict

from negres.errors import ConfigError
from negres.files import read_json, write_json_atomic
from negres.results import REPORT_FILE, RESULTS_FILE, Results, load_results_file
from negres.sharding import barrier, is_main_process
from negres.study.prepare import what_is_computed
from negres.study.workdir import (
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    WorkdirError,
    check_workdir_name,
    disk_full_explained,
    make_writable,
    overwrite_pending,
)


def without_seed_counts(config: dict[str, Any]) -> dict[str, Any]:
    """What a study computes less its seed counts: what an extension must keep."""
    config = what_is_computed(config)
    config.pop("num_seeds", None)
    config["conditions"] = [{k: v for k, v in c.items() if k != "num_seeds"}
                            for c in config.get("conditions") or ()]
    return config


def first_difference(old: Any, new: Any, where: str = "") -> tuple[str, Any, Any] | None:
    """The first field (dotted) whose value differs between two configs as dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            found = first_difference(old.get(key), new.get(key),
                                     f"{where}.{key}" if where else str(key))
            if found:
                return found
        return None
    if (isinstance(old, list) and isinstance(new, list) and len(old) == len(new)
            and old != new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            found = first_difference(a, b, f"{where}[{i}]")
            if found:
                return found
    return None if old == new else (where, old, new)


def prepare_extension(workdir: str, config: ConfigDict, counts: dict[str, int],
                      overwrite: bool) -> tuple[Path, list[dict[str, int]], bool]:
    """Check that ``config`` extends the finished study in ``workdir``, before anything
    compiles, and record it in ``config.json``.

    Args:
      workdir: holds the finished study (its ``results.json``).
      config: the study's completed config with more seeds; nothing else may differ.
      counts: condition -> its seed count in ``config``.
      overwrite: must be False (``--extend`` keeps what ``--overwrite`` would replace).

    Returns:
      ``(path, looks, report_missing)``: every condition's seed count at each look, this
      one last, and whether the extension is done but for its report (rerun after a full
      disk).
    """
    path = check_workdir_name(workdir)
    if overwrite:
        raise WorkdirError("--extend and --overwrite exclude each other: --extend keeps the "
                           "finished seeds, --overwrite replaces them")
    if overwrite_pending(path):
        raise WorkdirError(f"--workdir={str(path)!r} holds an unfinished --overwrite; rerun it "
                           "or undo it with --rollback before --extend")
    if not (path / RESULTS_FILE).exists():
        raise WorkdirError(f"--workdir={str(path)!r} holds no finished study ({RESULTS_FILE}) "
                           "to extend; run it without --extend first")
    previous = load_results_file(path)
    difference = first_difference(without_seed_counts(previous.config),
                                  without_seed_counts(config.to_dict()))
    if difference:
        field, old, new = difference
        raise ConfigError(field, new, f"{old!r}, the value of the study in {str(path)!r}: --extend "
                          "adds seeds to the same study, so only num_seeds may change")
    # Results.from_json gives a study of one look (written before looks were) its seeds.
    looks = list(previous.looks) or [
        {name: int(c.num_seeds) for name, c in previous.conditions.items()}]
    last = looks[-1]
    for name, count in counts.items():
        if count < last[name]:
            raise ConfigError(_seeds_field(config, name), count,
                              f"at least the {last[name]} seeds the study in {str(path)!r} "
                              "has: --extend adds seeds, it never removes them")
    if counts == last and not (path / REPORT_FILE).exists():
        return path, looks, True  # this extension finished but for its report (disk full)
    if counts == last:
        raise ConfigError("num_seeds", config.num_seeds,
                          f"more than the {max(last.values())} seeds the study in "
                          f"{str(path)!r} has: --extend adds seeds")
    check_unfinished_extension(path, previous, config, len(looks) + 1)
    make_writable(path)
    barrier("negres: workdir read")
    if is_main_process():
        with disk_full_explained(path, f"writing {CONFIG_FILE}", "free some space"):
            write_json_atomic(path / CONFIG_FILE, config.to_dict())
    barrier("negres: workdir checked")
    return path, [*looks, counts], False


def _seeds_field(config: ConfigDict, condition: str) -> str:
    """The field that sets ``condition``'s seed count: its own override or the top level."""
    for c in config.get("conditions") or ():
        if c.get("name") == condition and "num_seeds" in c:
            return f"conditions[{condition!r}].num_seeds"
    return "num_seeds"


def check_unfinished_extension(path: Path, previous: Results, config: ConfigDict,
                               look: int) -> None:
    """Refuse an ``--extend`` to another seed count while an earlier ``--extend`` of the
    same study is unfinished: its ``config.json`` records it and its look's checkpoints
    exist. Nothing is rewritten before this check."""
    try:
        saved = read_json(path / CONFIG_FILE)
    except (OSError, ValueError):
        return
    if not isinstance(saved, dict) or first_difference(
            without_seed_counts(saved), without_seed_counts(previous.config)):
        return  # not an extension of this study: the checkpoints' own check refuses
    if what_is_computed(saved) in (what_is_computed(previous.config),
                                   what_is_computed(config.to_dict())):
        return  # no extension began, or this is it again (it resumes)
    started = sorted(path.glob(f"{CHECKPOINTS_DIR}/*_look{look}"))
    if not started:
        return  # it began but saved nothing: nothing to lose
    raise WorkdirError(
        f"--workdir={str(path)!r} holds an unfinished --extend of its study to "
        f"num_seeds={saved.get('num_seeds')!r} (its {CONFIG_FILE}, with checkpoints in "
        f"{started[0].relative_to(path)}): rerun it (--config.num_seeds="
        f"{saved.get('num_seeds')!r} --extend) to finish it, or delete "
        f"{CHECKPOINTS_DIR}/*_look{look} to extend to num_seeds={config.num_seeds!r} instead; "
        f"the finished study ({RESULTS_FILE}) is kept either way")
