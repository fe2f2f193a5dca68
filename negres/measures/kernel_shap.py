"""Kernel SHAP: Shapley values estimated from sampled coalitions by weighted least squares.

:func:`kernel_shap` has the form of the methods in :mod:`negres.measures.saliency`, with a
PRNG key because it samples: ``kernel_shap(apply_fn, params, x, target, key, *, samples,
baseline, background)`` returns attributions ``(N, *input_shape)`` for inputs
``x: (N, *input_shape)``; lifted over seeds (params ``(S, ...)``, keys ``(S, 2)``) it gives
``(S, N, *input_shape)``. Targets, baselines and background rows mean what they mean for
:func:`negres.measures.saliency.exact_shapley`, and so does the value of a coalition
``z`` in ``{0, 1}^d`` of the ``d = prod(input_shape)`` flattened features (interventional):
``v(z) = mean_r f_t(x on z, background row r elsewhere)``.

The estimator (Lundberg & Lee 2017; ``shap.KernelExplainer``, ``shap/explainers/_kernel.py``):
the Shapley values are the solution of the weighted least squares

    min_phi  sum_z pi(z) (v(z) - v(0) - z . phi)^2   subject to   sum(phi) = v(1) - v(0),

over the coalitions ``0 < |z| < d``, with the Shapley kernel ``pi(z) ∝ (d - 1) /
(C(d, |z|) |z| (d - |z|))``. Kernel SHAP replaces the sum over all ``2^d - 2`` coalitions by
a weighted sample of them. As in shap:

- Coalition sizes are grouped into levels ``{s, d - s}``. Going from small ``s`` up, a
  level is enumerated completely (every coalition, with its exact kernel weight) while the
  remaining budget times the level's share of the remaining kernel mass covers it (shap's
  greedy rule, same ``1e-8`` slack). ``samples >= 2^d - 2`` therefore enumerates every
  coalition and gives the exact Shapley values.
- The rest of the budget is drawn from the kernel restricted to the levels left: a size
  with probability ``∝ (d - 1) / (s (d - s))``, then a uniform coalition of that size,
  together with its complement (paired sampling); every drawn coalition has weight
  ``(kernel mass left) / (coalitions drawn)``.
- The constraint is imposed exactly by eliminating the last feature's coefficient:
  ``phi_{d-1} = v(1) - v(0) - sum(others)``, so efficiency holds to rounding for any
  sample count.

Where this differs from shap:

- No deduplication. shap redraws until it has ``nsamples`` distinct coalitions and adds
  weight to repeats; here a repeat is just evaluated twice. Both give the same weighted
  regression for the coalitions drawn, but a repeat spends budget here.
- Every drawn coalition is paired with its complement, the middle size ``d/2`` included
  (shap pairs only sizes below ``d/2``); ``samples`` must therefore be even.
- No L1 feature selection (shap's default ``l1_reg="num_features(10)"`` when fewer than a
  fifth of the coalitions are evaluated). Compare with shap at ``l1_reg=False``.
- The regression is solved by ``jnp.linalg.lstsq`` (an SVD; the minimum-norm solution
  when the sampled design is rank deficient) instead of normal equations with an lstsq
  fallback. The design is rank deficient when the drawn coalitions do not span the
  features: a coalition and its complement give the same row up to sign, so fewer than
  ``2 (d - 1)`` sampled coalitions never determine ``phi`` (and more may not). Once the
  singleton level is enumerated the design has full rank and an additive model's Kernel
  SHAP is exact.
- One draw of coalitions (from ``key``) serves every example, so a call solves a single
  least squares with one right-hand side per example. The examples' estimation errors
  are therefore correlated; draw different keys to get independent estimates.

Cost: ``N * (samples + 2) * R`` model rows (``R`` background rows; the two extra
coalitions are the empty and the full one), evaluated in calls of at most
``saliency._SHAPLEY_ROWS_PER_CALL`` rows and ``saliency._ELEMENTS_PER_CALL`` input elements
(but at least the ``R`` rows of one example's coalition; saliency's ``_coalition_values``,
which the exact methods share), and one SVD of a ``(samples, d - 1)`` design.
shap's default budget is ``nsamples = 2 d + 2048``.
``d`` is limited to :data:`MAX_KERNEL_SHAP_FEATURES` (4096: 64 x 64 images, CIFAR's 3072):
the SVD costs ``O(samples d^2)`` and a determined regression needs ``samples >~ 2 d``
coalitions, each costing ``N * R`` model rows, so far larger ``d`` is better served by
grouping features.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from negres.measures.saliency import (
    ApplyFn,
    Target,
    _as_float,
    _background,
    _coalition_values,
    _resolve,
)

MAX_KERNEL_SHAP_FEATURES = 4096


# --------------------------------------------------------------------------- plan


def _level_sizes(d: int, level: int) -> tuple[int, ...]:
    """The coalition sizes of a level: ``(s, d - s)``, or ``(s,)`` at the middle."""
    return (level,) if 2 * level == d else (level, d - level)


def _plan(d: int, samples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Which coalitions are enumerated and how the rest are drawn, for ``d >= 2`` features.

    Returns:
      ``(masks (E, d) bool, weights (E,), sizes (L,), size_probs (L,), weight_left)``: the
      enumerated coalitions and their kernel weights; the sizes the drawn coalitions take
      and their probabilities (empty when nothing is drawn); the kernel mass of the drawn
      sizes (weights are normalised to total 1 over all ``2^d - 2`` coalitions).
    """
    levels = range(1, d // 2 + 1)
    # Kernel mass of each level: (d-1)/(s(d-s)) per size, summed over the level's sizes.
    level_mass = np.array([sum((d - 1) / (s * (d - s)) for s in _level_sizes(d, lv))
                           for lv in levels])
    level_mass /= level_mass.sum()
    masks: list[np.ndarray] = []
    weights: list[float] = []
    left = samples
    remaining = level_mass.copy()
    full = 0
    for i, lv in enumerate(levels):
        count = sum(math.comb(d, s) for s in _level_sizes(d, lv))
        # shap's test samples_left * share / count >= 1 - 1e-8, without dividing by a count
        # that can exceed a float for large d.
        if left * remaining[i] < (1.0 - 1e-8) * count:
            break
        full += 1
        left -= count
        if remaining[i] < 1.0:
            remaining = remaining / (1.0 - remaining[i])
        for s in _level_sizes(d, lv):
            for members in _combinations_masks(d, s):
                masks.append(members)
                weights.append(level_mass[i] / count)
    drawn_levels = list(levels)[full:]
    if drawn_levels and left > 0:
        sizes = np.array([s for lv in drawn_levels for s in _level_sizes(d, lv)])
        probs = (d - 1) / (sizes * (d - sizes))
        probs = probs / probs.sum()
        weight_left = float(level_mass[full:].sum())
    else:
        sizes, probs, weight_left = np.zeros(0, int), np.zeros(0), 0.0
    enumerated = np.array(masks, bool).reshape(len(masks), d)
    return enumerated, np.array(weights, float), sizes, probs, weight_left


def _combinations_masks(d: int, s: int) -> list[np.ndarray]:
    """Every coalition of size ``s`` as a boolean row ``(d,)``."""
    rows = []
    for members in itertools.combinations(range(d), s):
        row = np.zeros(d, bool)
        row[list(members)] = True
        rows.append(row)
    return rows


def _draw(key: jax.Array, d: int, pairs: int, sizes: np.ndarray, probs: np.ndarray) -> jax.Array:
    """``pairs`` coalitions from the restricted kernel and their complements, ``(2 pairs, d)``."""
    size_key, order_key = jax.random.split(key)
    size = jax.random.choice(size_key, jnp.asarray(sizes), (pairs,), p=jnp.asarray(probs))
    # A uniform coalition of size k: the k features with the smallest uniform draws.
    ranks = jnp.argsort(jnp.argsort(jax.random.uniform(order_key, (pairs, d)), axis=1), axis=1)
    first = ranks < size[:, None]
    return jnp.concatenate([first, ~first], axis=0)


# --------------------------------------------------------------------------- estimator


def _check_finite(name: str, value: Any) -> None:
    """Reject NaN/inf in a concrete reference (a traced one cannot be read)."""
    if value is None or isinstance(value, jax.core.Tracer):
        return
    array = np.asarray(value)
    if np.issubdtype(array.dtype, np.number) and not np.all(np.isfinite(array)):
        bad = int(array.size - np.isfinite(array).sum())
        raise ValueError(f"{name} has {bad} NaN or inf value(s); it is not allowed: finite "
                         "numbers only")


def _check_key(key: Any) -> None:
    typed = isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    if typed:
        if key.shape != ():
            raise ValueError(f"key of shape {key.shape} is not allowed: one PRNG key (use "
                             "over_seeds to map per-seed keys)")
        return
    raw = np.asarray(key) if not isinstance(key, jax.Array) else key
    if raw.ndim != 1 or not jnp.issubdtype(raw.dtype, jnp.unsignedinteger):
        raise ValueError(f"key={key!r} is not allowed: one PRNG key (jax.random.key(seed) or "
                         "jax.random.PRNGKey(seed))")


def kernel_shap(
    apply_fn: ApplyFn,
    params: Any,
    x: jax.Array,
    target: Target,
    key: jax.Array,
    *,
    samples: int = 64,
    baseline: jax.Array | float | None = None,
    background: jax.Array | None = None,
) -> jax.Array:
    """Kernel SHAP estimate of the interventional Shapley values (module docstring).

    Args:
      apply_fn, params, x, target: as in :mod:`negres.measures.saliency`;
        ``x: (N, *input_shape)`` with ``d = prod(input_shape) <= 4096`` features.
      key: PRNG key of the coalitions drawn (one seed's ``evaluation`` stream); the same
        coalitions serve every example.
      samples: coalitions evaluated besides the empty and the full one: an even integer
        ``>= 2``. Small sizes are enumerated as the budget allows, the rest drawn in
        complementary pairs; ``samples >= 2^d - 2`` gives the exact Shapley values.
        Static under ``jit``.
      baseline: one reference example broadcastable to ``input_shape``; zeros by default.
      background: reference rows ``(R, *input_shape)`` averaged over (instead of
        ``baseline``); cost is ``N * (samples + 2) * R`` model rows.

    Returns:
      Attributions ``(N, *input_shape)`` with ``sum(phi_n) = f_t(x_n) - mean_r f_t(b_r)``
      exactly (up to rounding), for any ``samples``.
    """
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) \
            or samples < 2 or samples % 2:
        raise ValueError(f"samples={samples!r} is not allowed: an even integer >= 2 "
                         "(coalitions are drawn with their complements)")
    _check_key(key)
    _check_finite("baseline", baseline)
    _check_finite("background", background)
    x = _as_float(x)
    d = math.prod(x.shape[1:])
    if d > MAX_KERNEL_SHAP_FEATURES:
        raise ValueError(f"x has d={d} flattened features; Kernel SHAP allows at most "
                         f"{MAX_KERNEL_SHAP_FEATURES} (group features to explain more)")
    bg = _background(x, baseline, background)
    idx = _resolve(apply_fn, params, x, target)

    ends = np.zeros((2, d), bool)
    ends[1] = True  # the empty and the full coalition: v(0) and v(1)
    if d == 1:  # no coalition between them: the one feature gets everything
        v = _coalition_values(apply_fn, params, x, idx, bg, jnp.asarray(ends))
        return (v[:, 1] - v[:, 0]).reshape(x.shape)

    enumerated, enum_weights, sizes, probs, weight_left = _plan(d, int(samples))
    pairs = (int(samples) - len(enumerated)) // 2 if len(sizes) else 0
    parts = [jnp.asarray(ends), jnp.asarray(enumerated)]
    weights = [jnp.asarray(enum_weights, x.dtype)]
    if pairs:
        parts.append(_draw(key, d, pairs, sizes, probs))
        weights.append(jnp.full((2 * pairs,), weight_left / (2 * pairs), x.dtype))
    masks = jnp.concatenate(parts, axis=0)
    values = _coalition_values(apply_fn, params, x, idx, bg, masks)  # (N, 2 + M)
    v_empty, v_full, v = values[:, 0], values[:, 1], values[:, 2:]
    delta = v_full - v_empty
    z = masks[2:].astype(x.dtype)  # (M, d)
    w_sqrt = jnp.sqrt(jnp.concatenate(weights))

    # Eliminate the last coefficient with the constraint (as shap does): with
    # phi_last = delta - sum(phi_rest), the residual is linear in phi_rest alone.
    design = (z[:, :-1] - z[:, -1:]) * w_sqrt[:, None]  # (M, d - 1), shared by all examples
    response = (v - v_empty[:, None] - z[None, :, -1] * delta[:, None]) * w_sqrt[None]  # (N, M)
    rest, *_ = jnp.linalg.lstsq(design, response.T)  # (d - 1, N)
    last = delta - rest.sum(axis=0)
    return jnp.concatenate([rest.T, last[:, None]], axis=1).reshape(x.shape)
