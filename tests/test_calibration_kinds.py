"""bench/stats_calibration_kinds.py (Tables 5-7 of docs/calibration.md): its simulated data
have the stated truths, and the bench's quick mode runs end to end at tiny counts.

The acceptance checks themselves (coverage and false positives at 16 seeds) are in
tests/test_sampling.py; the bench measures them at 4-64 seeds with many more studies.
"""

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import stats_calibration as calibration
import stats_calibration_kinds as kinds
import stats_calibration_sources as sources

TINY = {"coverage": 20, "fpr": 3, "fpr_chunk": 3, "test_sets": 2, "check": 1,
        "pair_seeds": (8,), "example_seeds": (4,), "example_counts": (50,),
        "num_resamples": 200, "num_permutations": 200}


@pytest.fixture
def small_cosine_truth(monkeypatch):
    """The cosine case's truth from 10^5 pairs instead of 10^6 (seconds saved)."""
    monkeypatch.setattr(kinds, "COSINE_TRUTH_PAIRS", 100_000)
    kinds.cosine_truth.cache_clear()
    yield
    kinds.cosine_truth.cache_clear()


@pytest.mark.parametrize("case", list(kinds.PAIR_CASES))
def test_pair_matrices_are_similarities_with_the_stated_mean(case, small_cosine_truth):
    rng = np.random.default_rng(0)
    m = kinds.pair_matrices(case, 8, 400, rng)
    assert m.shape == (400, 8, 8)
    np.testing.assert_allclose(m, m.swapaxes(1, 2), atol=1e-12)
    np.testing.assert_allclose(np.diagonal(m, axis1=1, axis2=2), 1.0, atol=1e-12)
    off = m[:, ~np.eye(8, dtype=bool)]
    # 400 studies: the mean off-diagonal value within about 5 Monte Carlo SE of the truth.
    assert abs(off.mean() - kinds.pair_truth(case)) < 0.02
    if case == "cosine":
        assert np.all(np.abs(off) <= 1.0)
    x, y = kinds.paired_pair_matrices(case, 8, rng)
    assert x.shape == y.shape == (8, 8) and not np.array_equal(x, y)
    np.testing.assert_allclose(kinds.row_means(x), (x.sum(1) - 1.0) / 7)


def test_the_accuracy_truths_agree_with_monte_carlo():
    rng = np.random.default_rng(1)
    logits = kinds.difficulty_logits(rng, 400_000)
    skill = rng.normal(0.0, kinds.SKILL_SD, logits.size)
    mc = 1.0 / (1.0 + np.exp(-(logits + skill)))
    assert kinds.distribution_accuracy() == pytest.approx(mc.mean(), abs=4 * mc.std() / 630)
    fixed = logits[:5]
    many = 1.0 / (1.0 + np.exp(-(fixed[:, None] + rng.normal(0.0, kinds.SKILL_SD, 200_000))))
    np.testing.assert_allclose(kinds.seed_averaged(fixed), many.mean(axis=1), atol=2e-3)


@pytest.mark.parametrize("design", kinds.DESIGNS)
def test_designs_draw_two_conditions(design):
    x, y, paired = kinds.draw_design(design, 6, 40, np.random.default_rng(2))
    assert x.shape == (6, 40) and y.shape == (6, 20 if design == "separate N/2" else 40)
    assert paired == design.startswith("paired")
    assert set(np.unique(np.concatenate([x.ravel(), y.ravel()]))) <= {0.0, 1.0}


def test_quick_mode_writes_tables_5_to_7(tmp_path, monkeypatch, small_cosine_truth):
    """``--quick --tables kinds`` end to end, at tiny counts, in this process."""
    monkeypatch.setattr(kinds, "QUICK", TINY)
    out = tmp_path / "kinds.md"
    calibration.main(["--quick", "--tables", "kinds", "--workers", "1", "--out", str(out)])
    text = out.read_text()
    for title in ("## Table 5", "## Table 6", "## Table 7"):
        assert title in text
    assert "compare_pairwise" in text and "estimand test_set" in text
    result = json.loads(out.with_suffix(".json").read_text())
    cells = result["kinds"]
    assert set(cells["pair_coverage"]) == {f"{c}/8" for c in kinds.PAIR_CASES}
    assert cells["example_fpr"]["paired/4/50"]["pairs"] == 3
    for c in cells["pair_coverage"].values():
        assert 0.0 <= c["new"] <= 1.0 and math.isfinite(c["width_new_over_old"])
    assert isinstance(cells["outside"], list)


def test_the_sources_table_runs_at_tiny_counts_with_a_row_per_design(capsys):
    """Table 8 (the variance decomposition by source): one row per design, every coverage
    a share of the simulated studies."""
    sources.main(["--quick"])
    rows = [line for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and not line.startswith(("| design", "| ---"))]
    assert len(rows) == len(sources.DESIGNS)
    for line in rows:
        coverages = [float(v) for cell in line.split("|")[3:5]
                     for v in re.findall(r"\d\.\d+", cell)]
        assert coverages and all(0.0 <= c <= 1.0 for c in coverages)
