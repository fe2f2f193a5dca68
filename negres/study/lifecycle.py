"""The workdir's life around one study: set up (refusing another run's outputs),
completed after a full disk, its report rebuilt, an overwrite rolled back."""

from __future__ import annotations

from pathlib import Path

from ml_collections import ConfigDict

from negres.files import read_json, write_json_atomic
from negres.reporting import write as report
from negres.reporting.terminal import print_summary
from negres.results import REPORT_FILE, RESULTS_FILE, Results, load_results_file
from negres.sharding import barrier, is_main_process
from negres.statistics.claims import finding
from negres.study.extension import first_difference, prepare_extension, without_seed_counts
from negres.study.prepare import Study, what_is_computed
from negres.study.workdir import (
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    REPLACED_DIR,
    WorkdirError,
    check_workdir_name,
    discard_outputs,
    disk_full_explained,
    finish_overwrite,
    make_writable,
    overwrite_pending,
    set_aside,
    workdir_lock,
)
from negres.study.workdir import roll_back as roll_back_workdir


def prepare_workdir(workdir: str, config: ConfigDict, overwrite: bool) -> tuple[Path, bool]:
    """Check ``workdir`` can take this run, and set it up, before anything compiles.

    Refuses a workdir that holds finished results unless ``overwrite``, and checkpoints
    of another config (or beside an unreadable config.json) unless ``overwrite``. Earlier
    outputs an ``overwrite`` replaces are set aside, not deleted. ``config.json`` is
    written now, so that a killed run can be checked on resume.

    Returns:
      ``(path, report_missing)``: ``report_missing`` when the workdir holds this config's
      ``results.json`` but not its report (a run that failed while writing it).
    """
    path = check_workdir_name(workdir)
    pending = overwrite_pending(path)
    main = is_main_process()
    if pending:
        # An overwrite stopped while setting the earlier outputs aside is finished first,
        # with or without --overwrite this time: the top must hold one run's outputs.
        if main:
            set_aside(path)
        barrier("negres: earlier outputs set aside")
    if (path / RESULTS_FILE).exists() and (pending or not overwrite):
        if (not (path / REPORT_FILE).exists()
                and saved_config_matches(path, config)):
            return path, True
        if pending:
            # The new run wrote everything but was stopped before deleting what it
            # replaced; it stands as the workdir's finished run from here on.
            barrier("negres: workdir read")
            if main:
                finish_overwrite(path)
            pending = False
        if not overwrite:
            raise WorkdirError(
                f"--workdir={str(path)!r} already holds {RESULTS_FILE}; pass --overwrite to "
                f"replace it{extend_hint(path, config)}, or choose another --workdir")
    root = path / CHECKPOINTS_DIR
    matches = saved_config_matches(path, config)
    if not overwrite and root.exists() and not matches:
        what = ("another config (its config.json)" if matches is False else
                f"a config its {CONFIG_FILE} no longer records (missing or unreadable)")
        raise WorkdirError(
            f"--workdir={str(path)!r} holds checkpoints of a run of {what}; pass "
            "--overwrite to discard them, or choose another --workdir")
    make_writable(path)
    barrier("negres: workdir read")
    if main:
        if overwrite:
            set_aside(path)  # a no-op once an unfinished overwrite has set them aside
            if pending and not matches:
                # An unfinished overwrite of another config: its partial outputs go; the
                # earlier run's stay set aside.
                discard_outputs(path)
        with disk_full_explained(path, f"writing {CONFIG_FILE}", "free some space"):
            write_json_atomic(path / CONFIG_FILE, config.to_dict())
    barrier("negres: workdir checked")
    return path, False


def saved_config_matches(path: Path, config: ConfigDict) -> bool | None:
    """Whether ``path``'s config.json records ``config`` (scheduling knobs aside); ``None``
    when there is none or it cannot be read."""
    try:
        saved = read_json(path / CONFIG_FILE)
    except (OSError, ValueError):  # missing, unreadable, not JSON (a UnicodeDecodeError too)
        return None
    if not isinstance(saved, dict):
        return None
    return what_is_computed(saved) == what_is_computed(config.to_dict())


def extend_hint(path: Path, config: ConfigDict) -> str:
    """", or --extend to add seeds ..." when ``config`` differs from the finished study in
    ``path`` only by more seeds."""
    try:
        previous = load_results_file(path)
        same = not first_difference(without_seed_counts(previous.config),
                                    without_seed_counts(config.to_dict()))
        more = int(config.num_seeds) > int(previous.config["num_seeds"])
    except (WorkdirError, OSError, ValueError, KeyError, TypeError, AttributeError):
        return ""
    return (f", or --extend to add seeds {previous.config['num_seeds']}–"
            f"{int(config.num_seeds) - 1} to it" if same and more else "")


def complete_report(path: Path) -> Results:
    """Write the report of the finished ``results.json`` in ``path`` and end the run."""
    results = load_results_file(path)
    if is_main_process():
        write_report_or_explain(results, path)
        finish_overwrite(path)
        print_summary(results)
        print(f"\nresults: {path / RESULTS_FILE}\nreport:  {path / REPORT_FILE}")
    return results


def write_report_or_explain(results: Results, path: Path) -> None:
    """``report.md`` and the plots; a full disk is one line that says how to finish."""
    with disk_full_explained(
            path, "writing the report",
            f"{RESULTS_FILE} is complete; free some space and rerun the same command (or "
            "--report_only) to write report.md and the plots without retraining"):
        report.write_report(results, path)


def rebuild_report(workdir: str) -> Results:
    """Rewrite ``report.md`` and the plots from an existing ``results.json``, without training.

    The workdir is held by this process meanwhile (a run writing it refuses this, and the
    other way round)."""
    with workdir_lock(workdir, doing="--report_only", create=False) as path:
        return _rebuild_report(path)


def _rebuild_report(path: Path) -> Results:
    if not (path / RESULTS_FILE).exists() and overwrite_pending(path):
        raise WorkdirError(
            f"--workdir={str(path)!r} holds no {RESULTS_FILE} at its top: an unfinished "
            f"--overwrite set the earlier run's results aside in {REPLACED_DIR}/; rerun that "
            "--overwrite command to finish the new run, or --rollback to put the earlier "
            "results back, then --report_only")
    results = load_results_file(path)
    # The sentence's wording may have been improved since; a study of a version before
    # claims keeps the finding it wrote.
    results.finding = finding(results.statistics.claims) or results.finding
    try:
        write_report_or_explain(results, path)
    except WorkdirError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as e:
        # A results.json that passed the checks above but was edited or damaged inside.
        raise WorkdirError(
            f"--workdir={str(path)!r} holds a {RESULTS_FILE} the report cannot be built from "
            f"({type(e).__name__}: {' '.join(str(e).split())}); rerun the study with "
            "--overwrite") from None
    print(f"report: {path / REPORT_FILE}")
    return results


def roll_back(workdir: str) -> list[str]:
    """Undo an unfinished ``--overwrite`` in ``workdir``: the earlier run's outputs return
    and the new run's partial ones go. Returns the names put back."""
    with workdir_lock(workdir, doing="--rollback", create=False):
        restored = roll_back_workdir(workdir)
    print(f"restored in {workdir}: {', '.join(restored) or 'nothing (it held none)'}")
    return restored


def claim_workdir(workdir: str, study: Study, *, overwrite: bool, extend: bool
                  ) -> tuple[Path, list[dict[str, int]], bool]:
    """Set ``workdir`` up for ``study`` (:func:`prepare_workdir`), or for more seeds of the
    finished study it holds (``extend``: :func:`~negres.study.extension.prepare_extension`).

    Returns:
      ``(path, looks, report_missing)``: every condition's seed count at each look of the
      study, this run's last, and whether only the report is left to write.
    """
    counts = {c.name: int(c.config.num_seeds) for c in study.conditions}
    if extend:
        return prepare_extension(workdir, study.config, counts, overwrite)
    path, report_missing = prepare_workdir(workdir, study.config, overwrite)
    return path, [counts], report_missing
