"""What a training call reports while it runs: one :class:`TrainingProgress` per segment.

``negres.train(..., progress=fn)`` calls ``fn(update)`` after every segment with the curve
points that segment computed, so a researcher watches each seed's metrics live (and
:mod:`negres.reporting.live` writes them to TensorBoard or a tidy table as they come).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np


class TrainingProgress(NamedTuple):
    """One segment of a training call, done.

    Attributes:
      step: optimizer steps done so far (of every seed).
      steps: the step the call trains to (its ``stop_at``, else its ``steps``).
      num_seeds: rows trained: seeds times grid points.
      elapsed_s: wall time since the call started (planning and compilation included).
      curve_steps: ``(P,)`` the step after which each new curve point was taken.
      curves: name -> ``(H..., S, P)`` the new points of every curve (grid axes, seeds,
        points), as in :attr:`negres.TrainResult.curves`.
      seed_indices: ``(S,)`` the seed index of each seed.
      grid: name -> the values of each grid axis; ``{}`` without a grid.
      diverged_at: ``(H..., S)`` the step each seed diverged at so far; -1: not.
      stopped_at: ``(H..., S)`` the step each seed was stopped early at so far; -1: not.
    """

    step: int
    steps: int
    num_seeds: int
    elapsed_s: float
    curve_steps: np.ndarray
    curves: dict[str, np.ndarray]
    seed_indices: np.ndarray
    grid: dict[str, tuple[float, ...]]
    diverged_at: np.ndarray
    stopped_at: np.ndarray


ProgressFn = Callable[[TrainingProgress], None]
