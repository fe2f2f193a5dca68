"""What negres's own calibration found its intervals cover, and the shape of a sample.

``bench/stats_calibration.py`` simulates thousands of studies per seed count and shape
of per-seed values and measures how often each interval method covers the true mean (or
difference of means); :data:`COVERAGE` holds its numbers for the 95% level, so that a
report can say where an interval is known to fall short of what it promises. A sample's
shape is read from its values by :func:`shape_of`: symmetric (the calibration's normal
seeds), skewed (its lognormal ones) or split (its bimodal ones: a share of seeds that
failed to train).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

# Seed counts the calibration ran at.
CALIBRATED_SEEDS = (4, 8, 16, 32, 64)
# Shape read from a sample -> the calibration's distribution of that shape.
SHAPES = {"symmetric": "normal", "skewed": "lognormal", "split": "bimodal"}
SHAPE_TEXT = {
    "symmetric": "roughly symmetric",
    "skewed": "skewed (|skewness| >= 1)",
    "split": "split: a few seeds far from the rest (seeds that failed to train?)",
}
# |adjusted sample skewness| from which a sample counts as skewed.
SKEWED = 1.0
# A sample is split when its widest gap between sorted values spans at least this share
# of its range and the smaller side holds at most MINORITY of its seeds.
SPLIT_GAP = 0.5
MINORITY = 0.25

# bench/stats_calibration.py, level 0.95: kind -> method -> distribution -> coverage at
# CALIBRATED_SEEDS, 4000 simulated studies per cell (2026-11-29 18:48 UTC; the run
# docs/statistics.md reports), kept as data beside this module (calibration_coverage.json).
# Mean, bootstrap_t, accuracy at S = 4 is recomputed from the same draws with the fallback
# of the undefined studentized bootstrap (0.956 in that run, with 888 unbounded intervals).
_TABLE = resources.files(__package__).joinpath("calibration_coverage.json")
COVERAGE: dict[str, dict[str, dict[str, tuple[float, ...]]]] = {
    kind: {method: {distribution: tuple(row) for distribution, row in rows.items()}
           for method, rows in methods.items()}
    for kind, methods in json.loads(_TABLE.read_text(encoding="utf-8")).items()
}


def shape_of(values: Any) -> str:
    """``"symmetric"``, ``"skewed"`` or ``"split"`` for the finite values of ``values (S,)``
    (``"symmetric"`` with fewer than 4 values: too few to tell)."""
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    x = x[np.isfinite(x)]
    spread = float(x[-1] - x[0]) if x.size else 0.0
    if x.size < 4 or spread == 0.0:
        return "symmetric"
    gaps = np.diff(x)
    widest = int(np.argmax(gaps))
    minority = min(widest + 1, x.size - widest - 1)
    if gaps[widest] >= SPLIT_GAP * spread and minority <= MINORITY * x.size:
        return "split"
    if abs(float(scipy_stats.skew(x, bias=False))) >= SKEWED:
        return "skewed"
    return "symmetric"


def known_coverage(method: str, shape: str, num_seeds: int,
                   kind: str = "mean") -> tuple[float, int] | None:
    """The calibration's coverage of a 95% ``method`` interval of a ``kind`` (``"mean"`` or
    ``"difference"``) for seeds of ``shape``, at the calibrated seed count nearest below
    ``num_seeds`` (the largest above 64): ``(coverage, seeds)``, or None if not calibrated."""
    table = COVERAGE.get(kind, {}).get(method, {}).get(SHAPES.get(shape, ""))
    if table is None or num_seeds < CALIBRATED_SEEDS[0]:
        return None
    position = max(i for i, s in enumerate(CALIBRATED_SEEDS) if s <= num_seeds)
    return table[position], CALIBRATED_SEEDS[position]
