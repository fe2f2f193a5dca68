"""Measures of learning curves, one number per seed: how steadily a seed trained.

A curve is a metric recorded at the evaluation points of training, ``(S, P)`` with the
seed axis first (``TrainResult.curves``); a seed that diverged holds NaN from then on.
"""

from __future__ import annotations

import math

import numpy as np


def points_measured(points: int, last_share: float) -> int:
    """How many of ``points`` evaluation points, counted from the end, :func:`oscillation`
    measures: ``ceil(last_share * points)``, at least 3, at most ``points``."""
    return min(points, max(3, math.ceil(last_share * points)))


def oscillation(curves: np.ndarray, last_share: float = 0.5) -> np.ndarray:
    """How much each seed's curve moves without getting anywhere, late in training.

    Over the last ``ceil(last_share * P)`` points (at least 3, at most ``P``):
    ``(sum_t |c_(t+1) - c_t| - |c_last - c_first|) / (n - 1)``, the mean movement per
    evaluation interval beyond the net change. 0 for a curve that only rises, only falls or
    stays flat; a curve that alternates ``a, b, a, b`` gets ``|a - b| (n - 2) / (n - 1)``.
    In the curve's units per interval.

    Args:
      curves: ``(S, P)`` one curve per seed, ``P >= 3`` points.
      last_share: the share of the points, counted from the end, that is measured, in
        ``(0, 1]``.

    Returns:
      ``(S,)``; NaN for a seed with a non-finite point among those measured.
    """
    curves = np.asarray(curves, dtype=np.float64)
    if curves.ndim != 2 or curves.shape[1] < 3:
        raise ValueError(f"curves must have shape (S, P) with P >= 3 points; got "
                         f"{curves.shape}")
    if not (isinstance(last_share, int | float) and 0 < last_share <= 1):
        raise ValueError(f"last_share={last_share!r} is not allowed: a number in (0, 1]")
    n = points_measured(curves.shape[1], last_share)
    late = curves[:, -n:]
    travelled = np.abs(np.diff(late, axis=1)).sum(axis=1)
    net = np.abs(late[:, -1] - late[:, 0])
    return (travelled - net) / (n - 1)
