"""The workdir under faults: overwrites that finish whole or roll back, a full disk, kills.

Each fault leaves a workdir that holds either the earlier run's outputs or the new run's,
never a mix, and the same command run again completes the work. Disk-full cases run on a
small tmpfs mounted in a private user and mount namespace (``unshare``); they are skipped
with the reason where the machine does not allow one.
"""

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import KILL_AFTER_CHECKPOINT, MAIN, REPO, run_python, subprocess_env
from tests_configs import LIGHT, tiny_config

from negres.results import INSTANCES_DIR
from negres.study.lifecycle import prepare_workdir
from negres.study.workdir import (
    OUTPUTS,
    REPLACED_DIR,
    WorkdirError,
    overwrite_pending,
    roll_back,
    set_aside,
)


def error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("negres: error:")]
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return lines[0]


def snapshot(workdir: Path) -> dict[str, bytes]:
    """Every file under ``workdir`` (relative path -> bytes)."""
    return {str(p.relative_to(workdir)): p.read_bytes()
            for p in sorted(workdir.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """A workdir holding a finished run of LIGHT, and a snapshot of it."""
    workdir = tmp_path_factory.mktemp("finished") / "w"
    proc = run_python(MAIN, *LIGHT, "--workdir", str(workdir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir, snapshot(workdir)


def copy_of(finished, tmp_path: Path) -> Path:
    workdir = tmp_path / "w"
    shutil.copytree(finished[0], workdir)
    return workdir


def test_a_study_writes_only_its_outputs_with_the_usual_file_modes(finished):
    workdir, _ = finished
    # instances/ holds what evaluators run under names of their own write; this study has none.
    assert {p.name for p in workdir.iterdir()} == set(OUTPUTS) - {INSTANCES_DIR}
    umask = os.umask(0)
    os.umask(umask)
    for name in ("results.json", "config.json", "report.md"):
        assert stat.S_IMODE((workdir / name).stat().st_mode) == 0o666 & ~umask, name


def test_a_killed_overwrite_sets_the_earlier_run_aside_and_the_same_command_completes(
        finished, tmp_path):
    workdir = copy_of(finished, tmp_path)
    argv = [MAIN, *LIGHT, "--config.seed=1", "--workdir", str(workdir), "--overwrite"]
    killed = run_python("-c", KILL_AFTER_CHECKPOINT.format(kill_step=20, argv=argv))
    assert killed.returncode == -9, killed.stderr[-3000:]
    # Not a mix: the top holds the new run's config and checkpoints only; the earlier
    # results wait, whole, in the set-aside directory.
    assert not (workdir / "results.json").exists() and not (workdir / "report.md").exists()
    assert json.loads((workdir / "config.json").read_text())["seed"] == 1
    aside = snapshot(workdir / REPLACED_DIR)
    for name, content in finished[1].items():
        assert aside[name] == content, name
    # Rerunning without --overwrite (the other natural reaction) resumes the same way.
    shutil.copytree(workdir, tmp_path / "w2")
    argv2 = [MAIN, *LIGHT, "--config.seed=1", "--workdir", str(tmp_path / "w2")]
    for command in (argv, argv2):
        again = run_python(*command)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "resumed from the checkpoint at step 20 of 40" in again.stderr
    first, second = (json.loads((w / "results.json").read_text())
                     for w in (workdir, tmp_path / "w2"))
    assert first["config"]["seed"] == 1 and first["metrics"] == second["metrics"]
    assert not (workdir / REPLACED_DIR).exists() and not (tmp_path / "w2" / REPLACED_DIR).exists()


def test_a_killed_overwrite_rolls_back_to_the_earlier_run(finished, tmp_path, main_forked):
    workdir = copy_of(finished, tmp_path)
    argv = [MAIN, *LIGHT, "--config.seed=1", "--workdir", str(workdir), "--overwrite"]
    assert run_python("-c", KILL_AFTER_CHECKPOINT.format(kill_step=10, argv=argv)).returncode == -9
    proc = main_forked("--workdir", str(workdir), "--rollback")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert snapshot(workdir) == finished[1]
    assert "no unfinished --overwrite" in error_line(main_forked("--workdir", str(workdir),
                                                                 "--rollback"))


def set_aside_stopped_after_two_moves(workdir: Path, monkeypatch) -> None:
    """set_aside, interrupted between its second and third move."""
    real_replace, moves = os.replace, []

    def replace_then_fail(src, dst):
        if len(moves) == 2:
            raise KeyboardInterrupt
        moves.append(src)
        real_replace(src, dst)

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", replace_then_fail)
        with pytest.raises(KeyboardInterrupt):
            set_aside(workdir)


def test_a_move_aside_stopped_half_way_continues_or_rolls_back(tmp_path, monkeypatch):
    workdir = tmp_path / "w"
    workdir.mkdir()
    for name in ("results.json", "report.md", "config.json"):
        (workdir / name).write_text(name)
    (workdir / "checkpoints").mkdir()
    (workdir / "checkpoints" / "step").write_text("state")
    (workdir / "notes.txt").write_text("the user's own file")
    before = snapshot(workdir)
    set_aside_stopped_after_two_moves(workdir, monkeypatch)
    assert overwrite_pending(workdir)
    assert not (workdir / "results.json").exists()  # results go first
    roll_back(workdir)
    assert snapshot(workdir) == before
    # Stopped again, then continued: everything of the study's is aside, nothing else.
    set_aside_stopped_after_two_moves(workdir, monkeypatch)
    set_aside(workdir)
    assert {p.name for p in workdir.iterdir()} == {REPLACED_DIR, "notes.txt"}
    roll_back(workdir)
    assert snapshot(workdir) == before
    # Stopped half-way, then a study run into the workdir without --overwrite: it finishes
    # setting the earlier outputs aside before anything else (here, before it finds
    # nothing of its own to resume).
    set_aside_stopped_after_two_moves(workdir, monkeypatch)
    _, report_missing = prepare_workdir(str(workdir), tiny_config(), overwrite=False)
    assert not report_missing
    assert {p.name for p in workdir.iterdir()} == {REPLACED_DIR, "notes.txt", "config.json"}
    assert json.loads((workdir / "config.json").read_text())["seed"] == tiny_config().seed
    roll_back(workdir)
    assert snapshot(workdir) == before
    with pytest.raises(WorkdirError, match="no unfinished --overwrite"):
        roll_back(workdir)


def test_a_missing_report_is_written_by_the_same_command_without_retraining(finished, tmp_path):
    workdir = copy_of(finished, tmp_path)
    (workdir / "report.md").unlink()
    shutil.rmtree(workdir / "plots")
    proc = run_python(MAIN, *LIGHT, "--workdir", str(workdir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "train: step" not in proc.stderr
    assert (workdir / "report.md").read_bytes() == finished[1]["report.md"]
    assert (workdir / "results.json").read_bytes() == finished[1]["results.json"]


def test_a_corrupt_config_json_beside_checkpoints_is_one_line(finished, tmp_path, main_forked):
    workdir = copy_of(finished, tmp_path)
    (workdir / "results.json").unlink()
    (workdir / "config.json").write_text('{"num_seeds": 2, "tra')
    before = snapshot(workdir)
    line = error_line(main_forked(*LIGHT, "--workdir", str(workdir)))
    assert "holds checkpoints of a run of a config its config.json no longer records" in line
    assert "--overwrite" in line
    assert snapshot(workdir) == before


def _can_mount_tmpfs(tmp_path: Path) -> str | None:
    """Why a private tmpfs cannot be mounted here, or None when it can."""
    if shutil.which("unshare") is None:
        return "no unshare command"
    target = tmp_path / "probe"
    target.mkdir()
    proc = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
         f"mount -t tmpfs -o size=64k tmpfs {target}"], capture_output=True, text=True)
    return None if proc.returncode == 0 else f"cannot mount a tmpfs: {proc.stderr.strip()}"


def on_small_disk(tmp_path: Path, size_kb: int, commands: list[list[str]],
                  bigger_kb: int) -> tuple[list[subprocess.CompletedProcess], Path]:
    """Run ``commands[0]`` on a tmpfs of ``size_kb``, then the rest after growing it to
    ``bigger_kb``; the workdir is copied out at the end. Each ``{disk}`` in a command is
    the tmpfs."""
    reason = _can_mount_tmpfs(tmp_path)
    if reason:
        pytest.skip(reason)
    disk, out = tmp_path / "disk", tmp_path / "out"
    disk.mkdir()
    out.mkdir()
    script = [f"mount -t tmpfs -o size={size_kb}k tmpfs {disk}"]
    for number, command in enumerate(commands):
        if number == 1:
            script.append(f"mount -o remount,size={bigger_kb}k {disk}")
        quoted = " ".join("'" + arg.replace("{disk}", str(disk)) + "'" for arg in command)
        script.append(f"{quoted} > {out}/{number}.out 2> {out}/{number}.err; "
                      f"echo $? > {out}/{number}.rc")
    script.append(f"cp -a {disk}/w {out}/w 2>/dev/null; true")
    subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                    "; ".join(script)], cwd=REPO, env=subprocess_env(), timeout=600, check=True)
    procs = [subprocess.CompletedProcess(command, int((out / f"{n}.rc").read_text()),
                                         (out / f"{n}.out").read_text(),
                                         (out / f"{n}.err").read_text())
             for n, command in enumerate(commands)]
    return procs, out / "w"


def _size_kb(*paths: Path) -> int:
    """Space taken (whole blocks, as a tmpfs counts it) by ``paths``, in kB."""
    return sum(p.stat().st_blocks * 512 for path in paths
               for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file()) // 1024


def test_a_full_disk_while_checkpointing_is_one_line_and_the_rerun_completes(tmp_path):
    command = [sys.executable, MAIN, *LIGHT, "--workdir", "{disk}/w"]
    (full, rerun), workdir = on_small_disk(tmp_path, 24, [command, command], bigger_kb=8192)
    line = error_line(full)
    assert "no space left on the device of" in line and "checkpoint" in line
    assert "it needs about" in line and "rerun the same command" in line
    assert not (workdir / "results.json").exists() or rerun.returncode == 0
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (workdir / "report.md").exists()
    assert json.loads((workdir / "results.json").read_text())["num_seeds"] == 2


def test_a_full_disk_while_writing_the_report_keeps_results_and_the_rerun_writes_it(
        finished, tmp_path):
    workdir = finished[0]
    # Room for what a run writes before its report, and less than the plots need.
    checkpoint = max((p for p in (workdir / "checkpoints").rglob("*") if p.name.isdigit()),
                     key=lambda p: int(p.name))
    before_report = _size_kb(workdir / "results.json", workdir / "config.json",
                             workdir / "attributions", checkpoint)
    # 128 kB to spare for the run's small files and what a loaded machine leaves in
    # flight (48 kB ran short once in a full parallel suite), still far below the plots.
    spare = 128
    assert _size_kb(workdir / "plots") > 2 * spare
    command = [sys.executable, MAIN, *LIGHT, "--config.train.checkpoint_every=40",
               "--workdir", "{disk}/w"]
    (full, rerun), copied = on_small_disk(tmp_path, before_report + spare, [command, command],
                                          bigger_kb=8192)
    line = error_line(full)
    assert "while writing the report" in line and "results.json is complete" in line
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "train: step" not in rerun.stderr  # nothing retrained
    assert (copied / "report.md").exists()


def test_report_only_during_an_unfinished_overwrite_names_the_set_aside_results(
        finished, tmp_path, main_forked):
    workdir = copy_of(finished, tmp_path)
    set_aside(workdir)  # as an --overwrite killed before its results
    line = error_line(main_forked("--workdir", str(workdir), "--report_only"))
    assert f"set the earlier run's results aside in {REPLACED_DIR}/" in line
    assert "--rollback" in line and "holds no results.json to report on" not in line
    assert main_forked("--workdir", str(workdir), "--rollback").returncode == 0
    assert snapshot(workdir) == finished[1]


def test_rollback_and_report_only_on_a_read_only_workdir_are_one_line(finished, tmp_path):
    workdir = copy_of(finished, tmp_path)
    set_aside(workdir)  # an unfinished overwrite: --rollback has something to do
    before = snapshot(workdir)
    reason = _can_mount_tmpfs(tmp_path)
    if reason:
        pytest.skip(reason)
    out = tmp_path / "out"
    out.mkdir()
    script = [f"mount --bind {workdir} {workdir}", f"mount -o remount,bind,ro {workdir}"]
    for number, flag in enumerate(("--rollback", "--report_only")):
        script.append(f"'{sys.executable}' '{MAIN}' --workdir '{workdir}' {flag} "
                      f"> {out}/{number}.out 2> {out}/{number}.err; echo $? > {out}/{number}.rc")
    subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                    "; ".join(script)], cwd=REPO, env=subprocess_env(), timeout=300, check=True)
    for number, doing in enumerate(("--rollback", "--report_only")):
        proc = subprocess.CompletedProcess([], int((out / f"{number}.rc").read_text()),
                                           (out / f"{number}.out").read_text(),
                                           (out / f"{number}.err").read_text())
        line = error_line(proc)
        assert "is not writable (Read-only file system)" in line and doing in line
    assert snapshot(workdir) == before
