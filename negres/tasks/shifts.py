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
import numpy as np

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


def contrast(key: jax.Array, x: jax.Array, severity: jax.Array | float) -> jax.Array:
    """Contrast reduced by ``severity``: each value pulled toward its example's mean.

    ``x' = (1 - s) * x + s * mean`` with ``s = clip(severity, 0, 1)``, a share (unitless):
    0 is the identity, 1 a flat example holding its mean. The mean is per example and
    channel for images ``(N, H, W, C)`` and signals ``(N, L, C)`` (over the spatial axes),
    and per example for flat inputs ``(N, D)``; it is kept, and every deviation from it
    scales by ``1 - s``. Returns ``x``'s shape and dtype.

    Severities above 1 would flip the sign of every deviation (an inverted image, not
    less contrast) and negative ones would raise contrast; a traced severity cannot be
    refused here, so it is clipped: past 1 every example stays flat.
    """
    del key
    # Spatial axes for (N, *spatial, C); the whole example for (N, D).
    axes = tuple(range(1, x.ndim - 1)) if x.ndim >= 3 else tuple(range(1, x.ndim))
    mean = jnp.mean(x, axis=axes, keepdims=True)
    s = jnp.clip(jnp.asarray(severity, x.dtype), 0.0, 1.0)
    # The convex combination, not mean + (1 - s) * (x - mean): its ends are exact in
    # floating point (1 * x + 0 * mean is x, 0 * x + 1 * mean is the mean).
    return (1.0 - s) * x + s * mean


def _reflect_blur_matrix(n: int, sigma: jax.Array, dtype: jnp.dtype) -> jax.Array:
    """``(n, n)`` matrix ``M`` with ``M @ v`` the Gaussian blur of ``v`` along its axis.

    Radius ``n - 1``: the widest kernel one reflection of the axis covers. With the
    half-sample reflection ``... c b a | a b c ... | ... c b a`` (scipy's ``reflect``,
    numpy's ``symmetric``), the source of offset ``d`` from output ``i`` folds onto input
    ``j`` through one of ``d = i - j``, ``i + j + 1`` (left edge), ``2n - 1 - i - j``
    (right edge); each offset in ``[-(n-1), n-1]`` lands on exactly one of them, so every
    row sums to the kernel's sum, 1, and ``M`` is symmetric, so columns do too.
    """
    i, j = np.arange(n)[:, None], np.arange(n)[None, :]
    radius = n - 1
    offsets = jnp.arange(-radius, radius + 1, dtype=dtype)
    positive = sigma > 0
    # A stand-in sigma where it is 0 keeps 0 / 0 out of the traced graph (and its gradient).
    safe = jnp.where(positive, sigma, 1.0).astype(dtype)
    # (d / sigma)^2, not d^2 / sigma^2: a tiny sigma's square underflows to 0 and d = 0
    # would give 0 / 0.
    kernel = jnp.exp(-0.5 * jnp.square(offsets / safe))
    kernel = jnp.where(positive, kernel / jnp.sum(kernel), (offsets == 0).astype(dtype))

    def weight(d: np.ndarray) -> jax.Array:
        inside = np.abs(d) <= radius  # static: which folds reach this far
        return jnp.where(inside, kernel[np.clip(d + radius, 0, 2 * radius)], 0.0)

    return weight(i - j) + weight(i + j + 1) + weight(2 * n - 1 - i - j)


def gaussian_blur(key: jax.Array, x: jax.Array, severity: jax.Array | float) -> jax.Array:
    """A Gaussian blur of standard deviation ``severity`` pixels (samples, for signals).

    ``x``: images ``(N, H, W, C)`` (blurred over ``H`` and ``W``) or signals ``(N, L, C)``
    (over ``L``), any number of spatial axes between ``N`` and ``C``; channels are blurred
    independently. Returns ``x``'s shape and dtype. Severity 0 (or below) is the identity.

    Each spatial axis of size ``n`` is blurred in turn (the Gaussian is separable) with a
    kernel of radius ``n - 1``, normalised to sum 1, and half-sample reflected edges
    (scipy's ``mode="reflect"``: the edge pixel repeats): equal to
    ``scipy.ndimage.gaussian_filter(x, sigma, mode="reflect", radius=n - 1)`` per axis,
    and for ``sigma <= (n - 1) / 4`` at least as wide as scipy's default truncation
    (4 sigma). Constant images stay constant and each example's per-channel mean is kept.

    Raises:
      ValueError: for ``x`` with fewer than 3 axes (flat ``(N, D)`` inputs have no
        neighbouring pixels to blur over).
    """
    del key
    if x.ndim < 3:
        raise ValueError(
            f"gaussian_blur needs images (N, H, W, C) or signals (N, L, C), got shape {x.shape}")
    sigma = jnp.asarray(severity, x.dtype)
    blurred = x
    for axis in range(1, x.ndim - 1):
        matrix = _reflect_blur_matrix(x.shape[axis], sigma, x.dtype)
        # A dense (n, n) product rather than an XLA convolution, which is slow on CPU;
        # HIGHEST so that GPUs and TPUs do not round the float32 product to TF32 or bf16.
        out = jnp.tensordot(blurred, matrix, axes=([axis], [1]),
                            precision=jax.lax.Precision.HIGHEST)
        blurred = jnp.moveaxis(out, -1, axis)
    # Exactly x at sigma 0, even where x holds inf or NaN (0 * inf in the product is NaN).
    return jnp.where(sigma > 0, blurred, x)


# Built-in shifts that need spatial axes: the smallest number of axes of one input.
_MIN_INPUT_AXES: dict[str, int] = {"gaussian_blur": 2}


SHIFTS: dict[str, ShiftFn] = {
    "gaussian_noise": gaussian_noise,
    "covariate_scale": covariate_scale,
    "occlusion": occlusion,
    "channel_shift": channel_shift,
    "contrast": contrast,
    "gaussian_blur": gaussian_blur,
}


def shift_names(task: Task | None = None) -> list[str]:
    """Built-in shift names and those of ``task``."""
    return sorted(SHIFTS) + sorted(task.shifts if task is not None else ())


def get_shift(name: str, task: Task | None = None) -> ShiftFn:
    """The shift named ``name``: a task's own shift first, then the built-ins.

    Raises :class:`negres.errors.ConfigError` for an unknown name, and for a built-in that
    needs spatial axes (``gaussian_blur``) on a task whose inputs are flat ``(D,)``.
    """
    if task is not None and name in task.shifts:
        return task.shifts[name]
    if name in SHIFTS:
        needed = _MIN_INPUT_AXES.get(name, 0)
        if task is not None and len(task.input_shape) < needed:
            raise ConfigError(
                "evaluation.robustness.shifts", name,
                f"{name} only on tasks with images (H, W, C) or signals (L, C); task "
                f"{task.name!r} has flat inputs {task.input_shape}")
        return SHIFTS[name]
    raise ConfigError("evaluation.robustness.shifts", name, f"names among {shift_names(task)}")
