"""Which rows a training call trains: seeds, times the points of a hyperparameter grid.

Rows are the flat seed axis the engine lifts over. Without a grid, row ``r`` is seed
``seed_indices[r]`` with its own hyperparameter values (``hyperparams``, one per row).
With a grid, every seed is trained at every point of the product of the grid's axes,
point-major: row ``p * S + s`` is seed ``s`` at point ``p``, so results reshape to
``(H_1, ..., H_k, S, ...)``. Seed ``i`` draws the same at every point. ``hyperparams``
may then still give per-seed values (``S`` of each, a per-seed teacher or data weight):
seed ``s`` has its value at every point, beside the point's grid values.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from negres.errors import ArgumentError
from negres.fields import is_int_in, real_numbers
from negres.training.optimizers import check_hyperparameter_range


def float_dtype() -> np.dtype:
    """The float dtype JAX computes in: float64 under ``jax_enable_x64``, else float32."""
    return np.dtype(jax.dtypes.canonicalize_dtype(np.float64))


class Rows(NamedTuple):
    """What each row of the flat seed axis trains: its seed index and hyperparameters."""

    seed_indices: np.ndarray  # (R,)
    hyper: dict[str, np.ndarray]  # name -> (R,)
    grid: dict[str, tuple[float, ...]]
    grid_shape: tuple[int, ...]


def expand_rows(num_seeds: int | None, seed_indices: Any,
                hyperparams: Mapping[str, Any] | None,
                grid: Mapping[str, Sequence[float]] | None) -> Rows:
    """The rows of a call from :func:`negres.train`'s arguments, checked.

    Args:
      num_seeds: ``S``, seeds ``0 .. S-1``; or None with ``seed_indices``.
      seed_indices: ``(S,)`` the seeds' indices (rows may repeat a seed without a grid).
      hyperparams: name -> ``S`` finite numbers, one per seed (per row without a grid);
        with a grid, seed ``s`` has ``hyperparams[name][s]`` at every grid point. A name
        may not also be a grid axis.
      grid: name -> the values of one axis; every seed trains at every point of the
        product of the axes.

    Returns:
      :class:`Rows` of ``R = H_1 * ... * H_k * S`` rows, point-major (row ``p * S + s`` is
      seed ``s`` at point ``p``); ``hyper`` holds every name, grid axes and
      ``hyperparams`` alike, ``grid`` the grid's axes only.
    """
    if seed_indices is None:
        if num_seeds is None:
            raise ArgumentError("num_seeds", None, "an integer >= 1 (or pass seed_indices)")
        if not is_int_in(num_seeds, 1):
            raise ArgumentError("num_seeds", num_seeds, "an integer >= 1")
        seed_indices = np.arange(num_seeds)
    seeds = np.asarray(seed_indices)
    if seeds.ndim != 1 or seeds.size == 0 or not np.issubdtype(seeds.dtype, np.integer) \
            or seeds.min() < 0:
        raise ArgumentError("seed_indices", seed_indices, "a non-empty 1-D list of integers >= 0")
    seeds = seeds.astype(np.int64)
    dtype = float_dtype()
    for argument, given in (("grid", grid), ("hyperparams", hyperparams)):
        if given is not None and not isinstance(given, Mapping):
            raise ArgumentError(argument, given, "a dict of hyperparameter name -> numbers")
    per_seed = {}  # name -> (S,), one value per seed (per row without a grid)
    for name, values in (hyperparams or {}).items():
        argument = f"hyperparams[{name!r}]"
        allowed = f"{seeds.size} finite numbers, one per seed"
        if not isinstance(name, str):
            raise ArgumentError("hyperparams", sorted(map(repr, hyperparams)),
                                "string names (the names the optimizer or loss reads)")
        if grid and name in grid:
            raise ArgumentError(argument, values,
                                f"{name!r} is already a grid axis: give its values in grid= "
                                "or hyperparams=, not both")
        array = real_numbers(argument, values, allowed)
        if array.shape != seeds.shape:
            raise ArgumentError(argument, values, allowed)
        check_hyperparameter_range(argument, name, values, array)
        per_seed[name] = array.astype(dtype)
    if not grid:
        return Rows(seeds, per_seed, {}, ())
    axes = {}
    for name, values in grid.items():
        argument = f"grid[{name!r}]"
        allowed = "a non-empty list of finite numbers"
        if not isinstance(name, str):
            raise ArgumentError("grid", sorted(map(repr, grid)),
                                "string names (the names the optimizer or loss reads)")
        array = real_numbers(argument, values, allowed)
        if array.ndim != 1 or array.size == 0:
            raise ArgumentError(argument, values, allowed)
        check_hyperparameter_range(argument, name, values, array)
        axes[name] = tuple(float(v) for v in array)
    points = list(itertools.product(*axes.values()))
    hyper = {name: np.repeat(np.asarray([p[i] for p in points], dtype), seeds.size)
             for i, name in enumerate(axes)}
    # Point-major rows: the seeds' own values repeat at every point.
    hyper |= {name: np.tile(values, len(points)) for name, values in per_seed.items()}
    return Rows(np.tile(seeds, len(points)), hyper, axes,
                 tuple(len(v) for v in axes.values()))
