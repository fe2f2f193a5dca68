"""Which rows a training call trains: seeds, times the points of a hyperparameter grid.

Rows are the flat seed axis the engine lifts over. Without a grid, row ``r`` is seed
``seed_indices[r]`` with its own hyperparameter values (``hyperparams``, one per row).
With a grid, every seed is trained at every point of the product of the grid's axes,
point-major: row ``p * S + s`` is seed ``s`` at point ``p``, so results reshape to
``(H_1, ..., H_k, S, ...)``. Seed ``i`` draws the same at every point.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from negres.errors import ArgumentError
from negres.training.checks import check_hyperparameter_range, is_int, real_numbers


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
    """The rows of a call from :func:`negres.train`'s arguments, checked."""
    if seed_indices is None:
        if num_seeds is None:
            raise ArgumentError("num_seeds", None, "an integer >= 1 (or pass seed_indices)")
        if not is_int(num_seeds) or num_seeds < 1:
            raise ArgumentError("num_seeds", num_seeds, "an integer >= 1")
        seed_indices = np.arange(num_seeds)
    seeds = np.asarray(seed_indices)
    if seeds.ndim != 1 or seeds.size == 0 or not np.issubdtype(seeds.dtype, np.integer) \
            or seeds.min() < 0:
        raise ArgumentError("seed_indices", seed_indices, "a non-empty 1-D list of integers >= 0")
    seeds = seeds.astype(np.int64)
    dtype = float_dtype()
    if grid and hyperparams:
        raise ArgumentError("hyperparams", sorted(hyperparams),
                            "empty when a grid is given (put fixed values in the program)")
    for argument, given in (("grid", grid), ("hyperparams", hyperparams)):
        if given is not None and not isinstance(given, Mapping):
            raise ArgumentError(argument, given, "a dict of hyperparameter name -> numbers")
    if not grid:
        hyper = {}
        for name, values in (hyperparams or {}).items():
            argument = f"hyperparams[{name!r}]"
            allowed = f"{seeds.size} finite numbers, one per seed"
            if not isinstance(name, str):
                raise ArgumentError("hyperparams", sorted(map(repr, hyperparams)),
                                    "string names (the names the optimizer or loss reads)")
            array = real_numbers(argument, values, allowed)
            if array.shape != seeds.shape:
                raise ArgumentError(argument, values, allowed)
            check_hyperparameter_range(argument, name, values, array)
            hyper[name] = array.astype(dtype)
        return Rows(seeds, hyper, {}, ())
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
    return Rows(np.tile(seeds, len(points)), hyper, axes,
                 tuple(len(v) for v in axes.values()))
