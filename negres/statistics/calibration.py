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
# docs/statistics.md reports).
COVERAGE: dict[str, dict[str, dict[str, tuple[float, ...]]]] = {
    "mean": {
        "bootstrap_t": {
            "normal": (0.951, 0.944, 0.945, 0.951, 0.954),
            "lognormal": (0.909, 0.900, 0.913, 0.923, 0.932),
            "t3": (0.963, 0.938, 0.920, 0.911, 0.935),
            "bimodal": (0.437, 0.575, 0.817, 0.950, 0.979),
            # S = 4 recomputed from the same draws with the fallback of the undefined
            # studentized bootstrap (0.956 in that run, with 888 unbounded intervals).
            "accuracy": (0.954, 0.946, 0.952, 0.951, 0.954),
        },
        "t": {
            "normal": (0.944, 0.950, 0.946, 0.950, 0.953),
            "lognormal": (0.826, 0.830, 0.863, 0.887, 0.906),
            "t3": (0.963, 0.961, 0.952, 0.951, 0.959),
            "bimodal": (0.340, 0.575, 0.817, 0.833, 0.917),
            "accuracy": (0.953, 0.946, 0.950, 0.950, 0.954),
        },
        "bca": {
            "normal": (0.794, 0.877, 0.912, 0.938, 0.948),
            "lognormal": (0.685, 0.808, 0.858, 0.890, 0.915),
            "t3": (0.786, 0.848, 0.878, 0.884, 0.920),
            "bimodal": (0.338, 0.535, 0.806, 0.950, 0.956),
            "accuracy": (0.816, 0.883, 0.922, 0.935, 0.947),
        },
        "percentile": {
            "normal": (0.797, 0.880, 0.915, 0.937, 0.949),
            "lognormal": (0.675, 0.780, 0.843, 0.880, 0.905),
            "t3": (0.804, 0.880, 0.903, 0.916, 0.943),
            "bimodal": (0.336, 0.541, 0.807, 0.833, 0.939),
            "accuracy": (0.823, 0.881, 0.923, 0.936, 0.947),
        },
    },
    "difference": {
        "bootstrap_t": {
            "normal": (0.964, 0.952, 0.945, 0.951, 0.949),
            "lognormal": (0.978, 0.920, 0.914, 0.911, 0.914),
            "t3": (0.968, 0.926, 0.927, 0.929, 0.935),
            "bimodal": (0.984, 0.939, 0.914, 0.910, 0.928),
            "accuracy": (0.954, 0.952, 0.946, 0.950, 0.949),
        },
        "t": {
            "normal": (0.965, 0.955, 0.947, 0.949, 0.952),
            "lognormal": (0.982, 0.969, 0.970, 0.959, 0.955),
            "t3": (0.973, 0.956, 0.958, 0.955, 0.952),
            "bimodal": (0.983, 0.986, 0.965, 0.950, 0.944),
            "accuracy": (0.956, 0.952, 0.949, 0.951, 0.951),
        },
        "bca": {
            "normal": (0.857, 0.912, 0.926, 0.941, 0.947),
            "lognormal": (0.825, 0.822, 0.863, 0.880, 0.896),
            "t3": (0.835, 0.859, 0.898, 0.911, 0.926),
            "bimodal": (0.802, 0.800, 0.822, 0.900, 0.923),
            "accuracy": (0.857, 0.912, 0.930, 0.940, 0.948),
        },
        "percentile": {
            "normal": (0.859, 0.914, 0.927, 0.941, 0.947),
            "lognormal": (0.842, 0.874, 0.917, 0.926, 0.930),
            "t3": (0.853, 0.887, 0.927, 0.936, 0.943),
            "bimodal": (0.841, 0.890, 0.893, 0.923, 0.932),
            "accuracy": (0.860, 0.916, 0.931, 0.943, 0.949),
        },
    },
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
