"""The command line end to end: results files, refusals, and one-line errors before any compile.

Runs refused before anything compiles use conftest's ``main_forked``: main.py, each run a
process of its own, forked from one that has imported what main.py imports."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = ["--config.num_seeds=2", "--config.train.steps=20", "--config.train.eval_every=10"]


def run_main(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run(
        [sys.executable, str(REPO / "main.py"), *args],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=300,
    )


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The error lines the user sees (absl's INFO log lines aside)."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("negres: error:")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("runs") / "tiny"
    proc = run_main("--config", "configs/default.py", "--workdir", str(workdir), *TINY)
    assert proc.returncode == 0, proc.stderr
    return workdir, proc


def test_results_json_holds_every_per_seed_number(tiny_run):
    workdir, proc = tiny_run
    results = json.loads((workdir / "results.json").read_text())
    assert results["num_seeds"] == 2
    assert results["seed_indices"] == [0, 1]
    for name in ("test_accuracy", "test_loss", "train_accuracy", "train_loss"):
        values = results["metrics"][name]
        assert len(values) == 2 and all(isinstance(v, float) for v in values)
    assert results["curves"]["step"] == [10, 20]
    for name in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
        assert len(results["curves"][name]) == 2 and len(results["curves"][name][0]) == 2
    assert results["config"]["num_seeds"] == 2
    assert results["device"]["platform"] == "cpu"
    assert results["wall_time_s"] > results["train_time_s"] > 0
    config = json.loads((workdir / "config.json").read_text())
    assert config["train"]["steps"] == 20 and config["model"]["hidden_sizes"] == [64]
    # The terminal summary names every seed and the spread.
    for token in ("test_accuracy", "mean", "std", "min", "max"):
        assert token in proc.stdout
    assert "train: step 20/20" in proc.stderr
    # The heading and the line under it say how many seeds this run has.
    report = (workdir / "report.md").read_text()
    assert "16 seeds" not in report.split("\n\n## ")[0] and "(2 seeds)" in report


def test_existing_results_are_refused_and_kept(tiny_run, main_forked):
    workdir, _ = tiny_run
    before = (workdir / "results.json").read_bytes()
    proc = main_forked("--config", "configs/default.py", "--workdir", str(workdir), *TINY)
    assert proc.returncode != 0
    assert "--overwrite" in error_line(proc)
    assert (workdir / "results.json").read_bytes() == before


def test_overwrite_replaces_results(tiny_run):
    workdir, _ = tiny_run
    proc = run_main("--config", "configs/default.py", "--workdir", str(workdir), *TINY,
                    "--config.seed=3", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((workdir / "results.json").read_text())["config"]["seed"] == 3


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (["--config.num_seeds=0"], "config.num_seeds=0"),
        (["--config.train.steps=0"], "config.train.steps=0"),
        (["--config.train.batch_size=5000"], "config.train.batch_size=5000"),
        (["--config.model.name=resnet"], "config.model.name='resnet'"),
        (["--config.task.name=imagenet"], "config.task.name='imagenet'"),
        (["--config.optimizer.name=lbfgs"], "config.optimizer.name='lbfgs'"),
        (["--config.model.widths=3"], "widths"),
    ],
)
def test_bad_config_is_one_line_before_anything_is_written(tmp_path, main_forked, overrides,
                                                          expected):
    workdir = tmp_path / "w"
    proc = main_forked("--config", "configs/default.py", "--workdir", str(workdir), *overrides)
    assert proc.returncode != 0
    line = error_line(proc)
    assert expected in line
    assert not workdir.exists()


def test_missing_and_broken_config_files(tmp_path, main_forked):
    proc = main_forked("--config", str(tmp_path / "nope.py"), "--workdir", str(tmp_path / "w"))
    assert "no such file" in error_line(proc)
    broken = tmp_path / "broken.py"
    broken.write_text("def get_config(:\n")
    proc = main_forked("--config", str(broken), "--workdir", str(tmp_path / "w"))
    assert "SyntaxError" in error_line(proc)
    without = tmp_path / "without.py"
    without.write_text("x = 1\n")
    proc = main_forked("--config", str(without), "--workdir", str(tmp_path / "w"))
    assert f"--config={str(without)!r} defines no get_config()" in error_line(proc)
    none = tmp_path / "none.py"
    none.write_text("def get_config():\n    return None\n")
    proc = main_forked("--config", str(none), "--workdir", str(tmp_path / "w"))
    assert "get_config() returned None; it must return an ml_collections.ConfigDict" \
        in error_line(proc)
    proc = main_forked("--config", "configs/default.py", "--workdir=")
    assert "--workdir='' is not allowed" in error_line(proc)
    assert not (tmp_path / "w").exists() and not (REPO / "results.json").exists()


def test_unwritable_workdir(tmp_path, main_forked):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    proc = main_forked("--config", "configs/default.py", "--workdir", str(blocker / "w"))
    assert "not writable" in error_line(proc)
    assert blocker.read_text() == "not a directory"


def test_config_variant_after_a_colon_reaches_get_config(tmp_path, main_forked):
    # "configs/NAME.py:variant" is ml_collections' way to pass get_config an argument; the
    # file check must look at the path before the colon, and a bad variant must say so.
    proc = main_forked("--config", "configs/rule_shortcut.py:nope", "--workdir",
                       str(tmp_path / "w"))
    line = error_line(proc)
    assert "no such file" not in line
    assert "'tabular' (default) or 'image'" in line
    assert not (tmp_path / "w").exists()


def test_an_extra_positional_argument_is_one_line_not_the_usage(tmp_path):
    # A real `python main.py` process: nothing it imports or starts says more than the line.
    proc = run_main("--config", "configs/default.py", "--workdir", str(tmp_path / "w"), "extra")
    assert "unexpected argument(s) 'extra'" in error_line(proc)
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr  # no 30 lines of usage
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("flags", [
    ["--extend", "--report_only"], ["--rollback", "--report_only"], ["--rollback", "--extend"],
    ["--overwrite", "--report_only"], ["--overwrite", "--rollback"],
])
def test_flags_that_exclude_each_other_are_refused_in_one_line(tmp_path, main_forked, flags):
    workdir = tmp_path / "w"
    workdir.mkdir()
    (workdir / "results.json").write_text("{}")
    proc = main_forked("--config", "configs/default.py", "--workdir", str(workdir), *TINY, *flags)
    line = error_line(proc)
    assert "exclude each other" in line and all(flag in line for flag in flags)
    assert [p.name for p in workdir.iterdir()] == ["results.json"]


def test_a_dangling_symlink_or_a_symlink_loop_as_workdir_is_named_as_such(tmp_path,
                                                                          main_forked):
    dangling, loop = tmp_path / "dangling", tmp_path / "loop"
    dangling.symlink_to(tmp_path / "nowhere")
    loop.symlink_to(loop)
    for workdir, said in ((dangling, f"to {str(tmp_path / 'nowhere')!r}, which does not exist"),
                          (loop, "leads back to itself (a loop"),
                          (loop / "sub", "leads back to itself (a loop")):
        for flags in (TINY, ["--report_only"]):
            proc = main_forked("--config", "configs/default.py", "--workdir", str(workdir), *flags)
            line = error_line(proc)
            assert said in line and "File exists" not in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "loop"]


@pytest.mark.parametrize("name,said", [
    ("x" * 300, "has 300 bytes, and the file system takes names of at most 255"),
    ("/".join(["ab"] * 2500), "its absolute path has"),
], ids=["name", "path"])
def test_a_workdir_name_or_path_too_long_is_one_line(tmp_path, main_forked, name, said):
    for flags in (TINY, ["--report_only"], ["--rollback"]):
        proc = main_forked("--config", "configs/default.py", "--workdir", str(tmp_path / name),
                           *flags)
        assert said in error_line(proc)
    assert list(tmp_path.iterdir()) == []


def test_one_seed_runs_to_a_report_that_says_what_one_seed_cannot_tell(tmp_path):
    from negres.statistics.sequential import nominal_alphas, seeds_for_next_look

    # A look of one seed tests nothing and spends nothing: the next look is the design's first.
    assert nominal_alphas([1]) == [0.0]
    assert nominal_alphas([1, 16]) == [0.0, nominal_alphas([16])[0]]
    assert seeds_for_next_look(0.1, 0.1, [1]) < seeds_for_next_look(0.1, 0.1, [2])
    workdir = tmp_path / "w"
    proc = run_main("--config", "configs/default.py", "--workdir", str(workdir),
                    "--config.num_seeds=1", "--config.train.steps=20",
                    "--config.train.eval_every=10", "--config.evaluation.attributions.ig_steps=4",
                    "--config.evaluation.attributions.attribution_examples=4",
                    "--config.evaluation.attributions.randomization_check=False",
                    "--config.stats.num_resamples=200", "--config.stats.num_permutations=200")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (workdir / "report.md").exists()
    statistics = json.loads((workdir / "results.json").read_text())["statistics"]
    assert statistics["settings"]["sequential"]["alpha"] == 0.0
    (note,) = statistics["notes"]
    assert "`mlp` has 1 seed: one seed has no spread across seeds" in note
    for summary in statistics["summaries"]["mlp"].values():
        assert summary["n"] == 1 and summary["reason"] == note
        assert summary["ci"] == [None, None] or all(v != v for v in summary["ci"])  # NaN
    within = [c for evaluator in statistics["within_conditions"].values()
              for families in evaluator.values() for family in families.values()
              for c in family.values()]
    assert within and all(c["verdict"] == "inconclusive" and c["reason"] == note
                          for c in within)
    assert statistics["settings"]["sequential"]["alpha_spent"] == 0.0
    report = (workdir / "report.md").read_text()
    assert f"**What these seeds cannot tell.** {note}" in report
    assert "this look tests nothing and spends none of the 0.05" in report
