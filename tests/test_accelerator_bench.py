"""bench/accelerator.sh: its dry run (CPU, tiny sizes) writes the files a GPU run writes, so
the one-shot accelerator benchmark cannot rot between the rare runs on a GPU."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import accelerator  # noqa: E402


def test_dry_run_writes_both_tables(tmp_path: Path) -> None:
    # PYTHON: the dry run must use this interpreter's environment, not install anything.
    env = os.environ | {"PYTHONPATH": str(REPO), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(REPO / "bench" / "accelerator.sh"), "--dry-run",
                           "--out", str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]

    out = json.loads((tmp_path / "results.json").read_text())
    assert out["dry_run"] and out["platform"] == "cpu" and out["jax_version"]
    assert set(out["workloads"]) == set(accelerator.WORKLOADS)
    for name, result in out["workloads"].items():
        rows = result["rows"]
        counts = [r["num_seeds"] for r in rows]
        assert len(rows) >= 2 and counts == [2**k for k in range(len(rows))], (name, counts)
        for row in rows:
            assert math.isfinite(row["seeds_per_s"]) and row["seeds_per_s"] > 0
            assert row["seeds_per_s"] == pytest.approx(row["num_seeds"] / row["wall_s"])
            assert row["wall_vs_one"] == pytest.approx(row["wall_s"] / rows[0]["wall_s"],
                                                       rel=1e-12)
            assert 0 < row["fraction_of_peak"] < 1.5, (name, row)
            plan = row["plan"]
            assert plan["num_chunks"] >= 1 and plan["num_devices"] >= 1 and plan["reason"]
            assert plan["num_chunks"] * plan["seeds_per_chunk"] >= row["num_seeds"]

    # Section 5: the CNN's convolutions both ways; on the CPU "auto" means matmul.
    conv = out["convolutions"]
    assert conv["workload"] == "cnn_mnist1d" and conv["auto_picks"] == "matmul"
    assert [r["num_seeds"] for r in conv["rows"]] == [2] and conv["not_reached"] == []
    assert conv["spent_s"] <= conv["share_s"] == pytest.approx(
        accelerator.CONV_SHARE * out["budget_s"])
    for row in conv["rows"]:
        for impl in accelerator.CONV_IMPLS:
            times = [row[impl]["wall_s"], row[impl]["first_call_s"],
                     *row[impl]["all_measured_s"]]
            assert all(math.isfinite(t) and t > 0 for t in times), (impl, row)
            assert len(row[impl]["all_measured_s"]) >= 1 and row[impl]["plan"]["reason"]
        # The workload's own (auto: matmul here) program and compiled code are reused.
        assert row["matmul"]["section_1_program"] and not row["lax"]["section_1_program"]
        assert row["matmul_over_lax"] == pytest.approx(
            row["matmul"]["wall_s"] / row["lax"]["wall_s"])
        assert row["auto_picks"] == "matmul"
        assert row["auto_picked_faster"] == (row["faster"] == "matmul")

    markdown = (tmp_path / "results.md").read_text()
    assert "UTC" in markdown and out["device_kind"] in markdown
    for name in accelerator.WORKLOADS:
        assert f"### {name}" in markdown
    assert markdown.count("| S | wall s | seeds/s | seed-steps/s | wall / wall(1) |") == 2
    assert "### convolutions" in markdown
    assert ("| S | lax s | matmul s | matmul / lax | auto picks | auto picked the faster |"
            in markdown)
    assert "| 2 |" in markdown.split("### convolutions")[1]


def test_seed_counts_stop_at_the_budget() -> None:
    assert accelerator.seed_counts(4096) == [2**k for k in range(13)]
    assert accelerator.seed_counts(5) == [1, 2, 4]
    now = [0.0]

    def measure(num_seeds: int, deadline: float) -> dict:
        assert deadline == 20.0
        now[0] += num_seeds  # S seeds cost S seconds
        return {"num_seeds": num_seeds}

    # Spent 7 s after S = 4: S = 8 (predicted 8 s) fits in 20; then 15 s spent, and
    # S = 16 (predicted 16 s) does not.
    rows, not_reached = accelerator.grow_seeds([1, 2, 4, 8, 16, 32], measure, 20.0,
                                               clock=lambda: now[0])
    assert [r["num_seeds"] for r in rows] == [1, 2, 4, 8]
    assert not_reached == [16, 32]
    # The first S is measured even with no time left.
    now[0] = 0.0
    rows, not_reached = accelerator.grow_seeds([1, 2], lambda s, d: {"num_seeds": s}, -1.0,
                                               clock=lambda: now[0])
    assert [r["num_seeds"] for r in rows] == [1] and not_reached == [2]


def test_convolution_cost_prediction() -> None:
    predict = accelerator.predicted_conv_cost
    # No basis: None (the first S is measured).
    assert predict(64, 3) is None and predict(64, 3, section_1=[]) is None
    # From section 1's row of the largest S up to 64, for each impl: its compilation
    # (first call - wall) and 1 + 3 calls, grown with S.
    section_1 = [{"num_seeds": s, "first_call_s": 10.0 + s, "wall_s": s / 32}
                 for s in (1, 2, 4, 32, 128)]
    assert predict(64, 3, section_1=section_1) == pytest.approx(
        2 * ((42.0 - 1.0) + 4 * 2 * 1.0))
    assert predict(32, 3, section_1=section_1) == pytest.approx(2 * (41.0 + 4 * 1.0))
    # Below section 1's smallest S: scaled down from it.
    assert predict(1, 3, section_1=section_1[3:]) == pytest.approx(2 * 41.0 + 2 * 4 / 32)
    # From the section's last S (section 1 then unused): compilation again, 1 + 3 calls
    # growing with S (8x); a first call faster than the median counts no compilation.
    last = {"num_seeds": 64, "lax": {"first_call_s": 3.0, "wall_s": 1.0},
            "matmul": {"first_call_s": 0.5, "wall_s": 1.0}}
    assert predict(512, 3, last=last, section_1=section_1) == pytest.approx(
        2.0 + 4 * 8 + 0.0 + 4 * 8)


# Run apart: importing compare_common calls negres.use_all_cores(), which would change the
# CPU device count of every later test in this process.
_SAME_WORKLOADS = """
import numpy as np
import accelerator
import compare_common

for name, workload in accelerator.WORKLOADS.items():
    reference = compare_common.WORKLOADS[name]
    assert repr(workload.model()) == repr(reference.flax_model()), name
    assert workload.description == reference.description, name
    x, y = workload.load()
    data = reference.load()
    np.testing.assert_array_equal(x, data.x_train)
    np.testing.assert_array_equal(y, data.y_train)
"""


def test_workloads_are_compare_commons() -> None:
    """accelerator.py restates compare_common.WORKLOADS without torch; they must agree."""
    pytest.importorskip("torch")
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO / "bench"), str(REPO)])}
    done = subprocess.run([sys.executable, "-c", _SAME_WORKLOADS], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
