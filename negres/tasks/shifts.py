"""Distribution shifts as pure functions ``(key, x, severity) -> x'``.

``x`` is a whole evaluation set ``(N, *input_shape)``; ``severity`` is a scalar (it may be
traced, so a severity sweep is one vmapped computation). Severity 0 is the identity for
every built-in shift. Tasks add shifts that only they can define (e.g. flipping the
shortcut feature they planted) through ``Task.shifts``, with the same signature.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from negres.errors import ConfigError
from negres.tasks import Task

ShiftFn = Callable[[jax.Array, jax.Array, jax.Array | float], jax.Array]


def gaussian_noise(key: jax.Array, x: jax.Array, severity: jax.Array | float) -> jax.Array:
    """Additive noise ``x + severity * N(0, 1)``, independent per feature."""
    return x + severity * jax.random.normal(key, x.shape, x.dtype)


def covariate_scale(key: jax.Array, x: jax.Array, severity: jax.Array | float) -> jax.Array:
    """Covariate shift: every feature scaled by ``1 + severity`` and offset by ``severity``."""
    del key
    return x * (1.0 + severity) + severity


def occlusion(key: jax.Array, x: jax.Array, severity: jax.Array | float) -> jax.Array:
    """A random share ``severity`` of each example's features set to 0 (independent draws)."""
    keep = jax.random.uniform(key, x.shape) >= severity
    return jnp.where(keep, x, jnp.zeros_like(x))


def channel_shift(key: jax.Array, x: jax.Array, severity: jax.Array | float) -> jax.Array:
    """Each example's channels offset by a draw from U(-severity, severity) (a color cast).

    For images ``(N, H, W, C)`` and signals ``(N, L, C)`` the offset is per example and
    channel; for one channel it is a brightness shift.
    """
    shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
    return x + severity * jax.random.uniform(key, shape, x.dtype, -1.0, 1.0)


SHIFTS: dict[str, ShiftFn] = {
    "gaussian_noise": gaussian_noise,
    "covariate_scale": covariate_scale,
    "occlusion": occlusion,
    "channel_shift": channel_shift,
}


def shift_names(task: Task | None = None) -> list[str]:
    """Built-in shift names and those of ``task``."""
    return sorted(SHIFTS) + sorted(task.shifts if task is not None else ())


def get_shift(name: str, task: Task | None = None) -> ShiftFn:
    """The shift named ``name``: a task's own shift first, then the built-ins."""
    if task is not None and name in task.shifts:
        return task.shifts[name]
    if name in SHIFTS:
        return SHIFTS[name]
    raise ConfigError("evaluation.robustness.shifts", name, f"names among {shift_names(task)}")
