"""A workdir belongs to one process: an OS file lock taken before anything is written and
held for the whole run, which the kernel releases when the process ends (kill -9 too).

Real processes: two runs of ``main.py`` started together into one workdir, a run killed
with SIGKILL and run again, and every kind of run (``--overwrite``, ``--extend``,
``--report_only``, ``--rollback``) against a workdir another process holds.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import KILL_AFTER_CHECKPOINT, MAIN, REPO, run_python, subprocess_env
from tests_configs import LIGHT

from negres.study.workdir import (
    LOCK_FILE,
    WorkdirError,
    remove_orbax_temps,
    workdir_lock,
)

# Holds the workdir argv[1] until killed, and says so on stdout once it does.
HOLD = """
import sys, time
from negres.study.workdir import workdir_lock
with workdir_lock(sys.argv[1], doing="a test"):
    print("held", flush=True)
    time.sleep(600)
"""


def error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("negres: error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


def stale(workdir: Path) -> list[Path]:
    """What a run must not leave behind: its lock file, orbax's temporary directories."""
    return [*workdir.glob(LOCK_FILE), *workdir.rglob("*.orbax-checkpoint-tmp*")]


def snapshot(workdir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(workdir)): p.read_bytes()
            for p in sorted(workdir.rglob("*")) if p.is_file()}


def test_two_runs_started_together_one_runs_and_the_other_is_refused_in_one_line(tmp_path):
    workdir = tmp_path / "w"
    processes = [subprocess.Popen([sys.executable, MAIN, *LIGHT, "--workdir", str(workdir)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  cwd=REPO, env=subprocess_env()) for _ in range(2)]
    try:
        outputs = [p.communicate(timeout=300) for p in processes]
    finally:
        for p in processes:
            p.kill()
    codes = [p.returncode for p in processes]
    assert sorted(codes) == [0, 1], [err[-2000:] for _, err in outputs]
    winner = processes[codes.index(0)]
    line = error_line(outputs[codes.index(1)][1])
    assert f"is in use by another negres run (process {winner.pid})" in line
    assert str(workdir) in line
    # The refused run wrote nothing; the one that ran finished whole and left nothing stale.
    assert (workdir / "results.json").exists() and (workdir / "report.md").exists()
    assert stale(workdir) == []


def test_a_run_killed_with_sigkill_leaves_no_lock_that_blocks_the_next(tmp_path):
    workdir = tmp_path / "w"
    argv = [MAIN, *LIGHT, "--workdir", str(workdir)]
    killed = run_python("-c", KILL_AFTER_CHECKPOINT.format(kill_step=10, argv=argv))
    assert killed.returncode == -9, killed.stderr[-3000:]
    # The killed run's lock file is still there, naming it; the kernel released its lock.
    assert (workdir / LOCK_FILE).read_text().split()[0].isdigit()
    # As a save killed half-way leaves it: orbax's temporary directory of step 30.
    temp = workdir / "checkpoints" / "0_mlp" / "30.orbax-checkpoint-tmp"
    (temp / "metadata.orbax-checkpoint-tmp").mkdir(parents=True)
    again = run_python(*argv)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from the checkpoint at step 10 of 40" in again.stderr
    assert (workdir / "report.md").exists()
    assert stale(workdir) == []


@pytest.mark.parametrize("flags", [
    ["--report_only"], ["--rollback"], [*LIGHT, "--overwrite"],
    [*LIGHT, "--config.num_seeds=3", "--extend"], LIGHT,
], ids=["report_only", "rollback", "overwrite", "extend", "same command"])
def test_every_kind_of_run_is_refused_while_another_process_holds_the_workdir(tmp_path, flags,
                                                                              main_forked):
    workdir = tmp_path / "w"
    workdir.mkdir()
    (workdir / "results.json").write_text("{}")  # what each would read or replace
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(workdir)],
                              stdout=subprocess.PIPE, text=True, cwd=REPO, env=subprocess_env())
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(workdir)
        proc = main_forked("--workdir", str(workdir), *flags)
        line = error_line(proc.stderr)
        assert f"is in use by another negres run (process {holder.pid})" in line
        assert snapshot(workdir) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # Its holder gone (killed), the workdir is free: the lock is taken and given back.
    with workdir_lock(workdir, doing="a test"):
        pass
    assert not (workdir / LOCK_FILE).exists()


def test_the_lock_names_its_holder_is_released_and_a_refused_run_leaves_no_workdir(tmp_path):
    workdir = tmp_path / "new" / "w"
    with workdir_lock(workdir, doing="a test") as path:
        assert path == workdir and (workdir / LOCK_FILE).read_text().startswith(
            f"{os.getpid()} ")
        holder = f"in use by another negres run \\(process {os.getpid()}\\)"
        with pytest.raises(WorkdirError, match=holder) as err, workdir_lock(workdir,
                                                                            doing="a test"):
            pass
        assert "\n" not in str(err.value)
    assert list(workdir.iterdir()) == []
    # A run refused while it holds a workdir it created leaves no empty workdir behind.
    other = tmp_path / "other"
    with pytest.raises(WorkdirError), workdir_lock(other, doing="a test"):
        raise WorkdirError("refused")
    assert not other.exists()
    # Without create, a missing workdir is not made (the caller refuses it).
    with workdir_lock(tmp_path / "missing", doing="--report_only", create=False):
        pass
    assert not (tmp_path / "missing").exists()


def test_stale_orbax_temporary_directories_are_removed_and_nothing_else(tmp_path):
    checkpoints = tmp_path / "checkpoints" / "0_mlp"
    (checkpoints / "20" / "state").mkdir(parents=True)
    (checkpoints / "40.orbax-checkpoint-tmp" / "metadata.orbax-checkpoint-tmp").mkdir(
        parents=True)
    (checkpoints / "40.orbax-checkpoint-tmp-1234").mkdir()
    (tmp_path / "notes.orbax-checkpoint-tmp.txt").write_text("the user's own")
    with workdir_lock(tmp_path, doing="a test"):
        assert sorted(p.name for p in checkpoints.iterdir()) == ["20"]
    assert (checkpoints / "20" / "state").is_dir()
    assert (tmp_path / "notes.orbax-checkpoint-tmp.txt").exists()
    assert remove_orbax_temps(tmp_path) == []
