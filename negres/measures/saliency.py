"""Gradient attributions of one seed: gradient, gradient x input, IG, SmoothGrad, exact Shapley.

Every method has the form ``method(apply_fn, params, x, target, **options)`` and returns
attributions ``(N, *input_shape)`` for inputs ``x: (N, *input_shape)``, where
``apply_fn(params, x_batch) -> (B, K)`` is a one-seed apply function. The functions are
pure and jit-able (close over ``apply_fn``, the method's options and a string target).
Lift them over the seed axis with :func:`attribute_over_seeds` (built on
:func:`negres.seeds.over_seeds`) to get ``(S, N, *input_shape)`` from params ``(S, ...)``.

Targets: the scalar explained for example ``n`` is ``apply_fn(params, x)[n, t_n]`` where
``t`` comes from :func:`target_indices`: an int (the same class for all examples), an
``(N,)`` int array (e.g. the true labels), or ``"predicted"`` (the argmax of the outputs
at ``x``, fixed before any path or noise is applied). With one output (regression,
``K == 1``) the target is always output 0 and ``target`` is ignored, so regression labels
may be passed where class labels would be.

Gradients are taken of the sum over the batch of the per-example target outputs; this
equals per-example gradients because an apply function at ``train=False`` treats examples
independently (true of every negres model).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from negres.seeds import lift_over_seeds, over_seeds

ApplyFn = Callable[[Any, jax.Array], jax.Array]
# An int class for every example, an (N,) int array, or "predicted".
Target = int | jax.Array | np.ndarray | str

PREDICTED = "predicted"
MAX_SHAPLEY_FEATURES = 12
# Rows of coalition-masked inputs evaluated in one model call by the Shapley methods
# (a memory bound; examples are grouped into calls of at most this many rows).
_SHAPLEY_ROWS_PER_CALL = 1 << 16
# Input elements (rows x d) of coalition-masked inputs per model call: the bound that
# matters once d is large (Kernel SHAP; the exact methods have d <= 12).
_ELEMENTS_PER_CALL = 1 << 22


# --------------------------------------------------------------------------- targets


def target_indices(outputs: jax.Array, target: Target) -> jax.Array:
    """The output index explained for each example, shape ``(N,)`` int32.

    Args:
      outputs: model outputs ``(N, K)`` at the inputs being explained.
      target: an int in ``[0, K)``, an ``(N,)`` integer array, or ``"predicted"``
        (``argmax`` over ``K``). Ignored when ``K == 1``: the target is output 0.
    """
    if outputs.ndim != 2:
        raise ValueError(f"apply_fn must return outputs (N, K); got shape {outputs.shape}")
    n, k = outputs.shape
    if k == 1:
        return jnp.zeros((n,), jnp.int32)
    if isinstance(target, str):
        if target != PREDICTED:
            raise ValueError(f"target={target!r} is not allowed: an int, an (N,) int array "
                             f"or {PREDICTED!r}")
        return jnp.argmax(outputs, axis=-1).astype(jnp.int32)
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        if not 0 <= int(target) < k:
            raise ValueError(f"target={int(target)} is not allowed: a class in [0, {k})")
        return jnp.full((n,), int(target), jnp.int32)
    t = jnp.asarray(target)
    if t.shape != (n,) or not jnp.issubdtype(t.dtype, jnp.integer):
        raise ValueError(f"target array must be integer with shape ({n},); "
                         f"got {t.dtype} {t.shape}")
    if not isinstance(target, jax.core.Tracer):
        values = np.asarray(target)
        if values.min() < 0 or values.max() >= k:
            raise ValueError(f"target array has classes outside [0, {k}): "
                             f"min {values.min()}, max {values.max()}")
    return t.astype(jnp.int32)


def _as_float(x: jax.Array) -> jax.Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def _resolve(apply_fn: ApplyFn, params: Any, x: jax.Array, target: Target) -> jax.Array:
    return target_indices(apply_fn(params, x), target)


def _target_output(apply_fn: ApplyFn, params: Any, xb: jax.Array, idx: jax.Array) -> jax.Array:
    """``apply_fn(params, xb)[n, idx[n]]`` for every example, shape ``(N,)``."""
    out = apply_fn(params, xb)
    return jnp.take_along_axis(out, idx[:, None], axis=1)[:, 0]


def _grad_fn(apply_fn: ApplyFn, params: Any, idx: jax.Array) -> Callable[[jax.Array], jax.Array]:
    """Per-example input gradient of the target output, ``(N, *s) -> (N, *s)``."""
    return jax.grad(lambda xb: jnp.sum(_target_output(apply_fn, params, xb, idx)))


def _baseline_like(x: jax.Array, baseline: jax.Array | float | None) -> jax.Array:
    """A baseline broadcast to ``x``: zeros, or one example ``(*s)`` / ``(N, *s)`` / scalar."""
    if baseline is None:
        return jnp.zeros_like(x)
    b = jnp.asarray(baseline, x.dtype)
    try:
        return jnp.broadcast_to(b, x.shape)
    except ValueError:
        raise ValueError(f"baseline of shape {b.shape} does not broadcast to one example "
                         f"{x.shape[1:]} (or to x {x.shape})") from None


# --------------------------------------------------------------------------- gradients


def vanilla_gradient(apply_fn: ApplyFn, params: Any, x: jax.Array, target: Target) -> jax.Array:
    """Input gradient of the target output ``d f_t / d x``, shape ``(N, *input_shape)``."""
    x = _as_float(x)
    return _grad_fn(apply_fn, params, _resolve(apply_fn, params, x, target))(x)


def gradient_x_input(apply_fn: ApplyFn, params: Any, x: jax.Array, target: Target) -> jax.Array:
    """Gradient times input ``x * d f_t / d x``, shape ``(N, *input_shape)``."""
    x = _as_float(x)
    return x * vanilla_gradient(apply_fn, params, x, target)


def _ig_nodes(steps: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Path positions ``alpha`` in [0, 1] and quadrature weights summing to 1."""
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps={steps!r} is not allowed: a positive integer")
    if rule == "midpoint":
        return (np.arange(steps) + 0.5) / steps, np.full(steps, 1.0 / steps)
    if rule == "trapezoid":
        weights = np.full(steps + 1, 1.0 / steps)
        weights[[0, -1]] *= 0.5
        return np.linspace(0.0, 1.0, steps + 1), weights
    raise ValueError(f"rule={rule!r} is not allowed: 'midpoint' or 'trapezoid'")


def integrated_gradients(
    apply_fn: ApplyFn,
    params: Any,
    x: jax.Array,
    target: Target,
    *,
    baseline: jax.Array | float | None = None,
    steps: int = 64,
    rule: str = "midpoint",
) -> jax.Array:
    """Integrated gradients ``(x - b) * integral_0^1 grad f_t(b + a (x - b)) da``.

    Args:
      apply_fn, params, x, target: as in the module docstring; ``x: (N, *input_shape)``.
      baseline: ``None`` (zeros), or an array broadcastable to one example
        ``input_shape`` (or to ``x``).
      steps: quadrature intervals. ``rule="midpoint"`` (default) evaluates the gradient
        at the ``steps`` midpoints ``(k + 1/2) / steps``; ``"trapezoid"`` evaluates it at
        the ``steps + 1`` points ``k / steps`` with half weight at both ends.
      rule: ``"midpoint"`` or ``"trapezoid"``.

    Returns:
      Attributions ``(N, *input_shape)``. Check the quadrature with
      :func:`completeness_gap` (``sum(attr) - (f(x) - f(b))`` per example); raise
      ``steps`` when it is not small.
    """
    x = _as_float(x)
    b = _baseline_like(x, baseline)
    alphas, weights = _ig_nodes(steps, rule)
    grad = _grad_fn(apply_fn, params, _resolve(apply_fn, params, x, target))
    delta = x - b

    # A scan keeps one gradient in memory at a time instead of (steps, N, *input_shape).
    def accumulate(total: jax.Array, node: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        alpha, weight = node
        return total + weight * grad(b + alpha * delta), None

    nodes = (jnp.asarray(alphas, x.dtype), jnp.asarray(weights, x.dtype))
    mean_grad, _ = jax.lax.scan(accumulate, jnp.zeros_like(x), nodes)
    return delta * mean_grad


def smoothgrad(
    apply_fn: ApplyFn,
    params: Any,
    x: jax.Array,
    target: Target,
    key: jax.Array,
    *,
    noise_level: float = 0.15,
    sigma: float | None = None,
    samples: int = 32,
) -> jax.Array:
    """SmoothGrad: the mean input gradient at ``x + eps``, ``eps ~ N(0, sigma_n^2)``.

    Args:
      apply_fn, params, x, target: as in the module docstring; ``x: (N, *input_shape)``.
        A ``"predicted"`` target is the class predicted at the clean ``x``.
      key: PRNG key of the noise (one seed's ``evaluation`` stream).
      noise_level: noise standard deviation as a fraction of each example's own value
        range, ``sigma_n = noise_level * (max(x_n) - min(x_n))`` (Smilkov et al. 2017,
        who recommend 0.1 to 0.2).
      sigma: an absolute standard deviation for every example; replaces
        ``noise_level`` when given.
      samples: number of noisy copies averaged.

    Returns:
      Attributions ``(N, *input_shape)``.
    """
    if not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"samples={samples!r} is not allowed: a positive integer")
    x = _as_float(x)
    if sigma is None:
        if noise_level < 0:
            raise ValueError(f"noise_level={noise_level!r} is not allowed: a number >= 0")
        axes = tuple(range(1, x.ndim))
        span = jnp.max(x, axis=axes, keepdims=True) - jnp.min(x, axis=axes, keepdims=True)
        scale = noise_level * span
    else:
        if sigma < 0:
            raise ValueError(f"sigma={sigma!r} is not allowed: a number >= 0")
        scale = jnp.asarray(sigma, x.dtype)
    grad = _grad_fn(apply_fn, params, _resolve(apply_fn, params, x, target))

    def accumulate(total: jax.Array, sample_key: jax.Array) -> tuple[jax.Array, None]:
        noise = scale * jax.random.normal(sample_key, x.shape, x.dtype)
        return total + grad(x + noise), None

    total, _ = jax.lax.scan(accumulate, jnp.zeros_like(x), jax.random.split(key, samples))
    return total / samples


# --------------------------------------------------------------------------- Shapley


def _coalitions(d: int) -> np.ndarray:
    """All ``2^d`` coalitions as a boolean matrix ``(2^d, d)``; row ``c`` has bits of ``c``."""
    return ((np.arange(2**d)[:, None] >> np.arange(d)[None, :]) & 1).astype(bool)


def _shapley_weights(d: int) -> np.ndarray:
    """``W (2^d, d)`` with ``phi = v @ W`` for coalition values ``v (2^d,)``.

    ``phi_i = sum_{S not i} |S|!(d-|S|-1)!/d! (v(S + i) - v(S))``: coalition ``T`` enters
    ``phi_i`` with ``+w(|T| - 1)`` if ``i`` is in ``T`` and with ``-w(|T|)`` otherwise.
    """
    masks = _coalitions(d)
    size = masks.sum(axis=1)
    w = np.array([math.factorial(s) * math.factorial(d - s - 1) / math.factorial(d)
                  for s in range(d)] + [0.0])
    return np.where(masks, w[np.maximum(size - 1, 0)][:, None], -w[size][:, None])


def _interaction_weights(d: int, i: int, j: int) -> np.ndarray:
    """``u (2^d,)`` with the Shapley interaction index ``I_ij = v @ u``.

    ``I_ij = sum_{S in D - {i,j}} |S|!(d-|S|-2)!/(d-1)! (v(S+ij) - v(S+i) - v(S+j) + v(S))``.
    """
    masks = _coalitions(d)
    inner = masks.sum(axis=1) - masks[:, i] - masks[:, j]  # |S| of T's inner coalition
    w = np.array([math.factorial(s) * math.factorial(d - s - 2) / math.factorial(d - 1)
                  for s in range(d - 1)])
    sign = np.where(masks[:, i] == masks[:, j], 1.0, -1.0)
    return sign * w[inner]


def _background(x: jax.Array, baseline: Any, background: Any) -> jax.Array:
    """Reference rows ``(R, *input_shape)``: the background set, or the one baseline."""
    if background is not None:
        if baseline is not None:
            raise ValueError("give either baseline or background, not both")
        bg = jnp.asarray(background, x.dtype)
        if bg.ndim != x.ndim or bg.shape[1:] != x.shape[1:] or bg.shape[0] < 1:
            raise ValueError(f"background must have shape (R, *{x.shape[1:]}); got {bg.shape}")
        return bg
    b = jnp.zeros(x.shape[1:], x.dtype) if baseline is None else jnp.asarray(baseline, x.dtype)
    try:
        return jnp.broadcast_to(b, x.shape[1:])[None]
    except ValueError:
        raise ValueError(f"baseline of shape {b.shape} does not broadcast to one example "
                         f"{x.shape[1:]}; use background for several rows") from None


def _coalition_values(
    apply_fn: ApplyFn, params: Any, x: jax.Array, idx: jax.Array, bg: jax.Array,
    masks: jax.Array | None = None,
) -> jax.Array:
    """``v[n, m] = mean_r f_t(x_n on masks[m], background row r elsewhere)``, ``(N, M)``.

    ``masks``: coalitions ``(M, d)`` bool; ``None``: all ``2^d`` (:func:`_coalitions`,
    for ``d <= MAX_SHAPLEY_FEATURES``), as the exact methods need. Model calls hold at
    most ``_SHAPLEY_ROWS_PER_CALL`` rows and ``_ELEMENTS_PER_CALL`` input elements (but at
    least the background rows of one example's coalition): a block of coalitions for a
    group of examples per call, blocks and groups mapped sequentially.
    """
    n, input_shape = x.shape[0], x.shape[1:]
    d = math.prod(input_shape)
    if masks is None:
        if d > MAX_SHAPLEY_FEATURES:
            raise ValueError(f"exact Shapley enumerates 2^d coalitions; d={d} flattened "
                             f"features exceeds the limit of {MAX_SHAPLEY_FEATURES}")
        masks = jnp.asarray(_coalitions(d))
    m, rows = masks.shape[0], bg.shape[0]
    bg_flat = bg.reshape(rows, d)
    budget = max(1, min(_SHAPLEY_ROWS_PER_CALL, _ELEMENTS_PER_CALL // d))
    per_block = min(m, max(1, budget // rows))
    per_group = min(n, max(1, budget // (per_block * rows)))
    blocks, groups = -(-m // per_block), -(-n // per_group)
    masks_b = jnp.pad(masks, ((0, blocks * per_block - m), (0, 0)))
    masks_b = masks_b.reshape(blocks, per_block, d)
    x_g = jnp.pad(x.reshape(n, d), ((0, groups * per_group - n), (0, 0)))
    x_g = x_g.reshape(groups, per_group, d)
    idx_g = jnp.pad(idx, (0, groups * per_group - n)).reshape(groups, per_group)

    def group_values(args: tuple[jax.Array, jax.Array]) -> jax.Array:
        xg, tg = args  # (per_group, d), (per_group,)

        def block_values(mk: jax.Array) -> jax.Array:
            masked = jnp.where(mk[None, :, None, :], xg[:, None, None, :], bg_flat[None, None])
            out = apply_fn(params, masked.reshape((per_group * per_block * rows, *input_shape)))
            out = out.reshape(per_group, per_block * rows, -1)
            values = jnp.take_along_axis(out, tg[:, None, None], axis=2)[..., 0]
            return values.reshape(per_group, per_block, rows).mean(axis=2)

        values = jax.lax.map(block_values, masks_b)  # (blocks, per_group, per_block)
        return jnp.moveaxis(values, 0, 1).reshape(per_group, blocks * per_block)

    values = jax.lax.map(group_values, (x_g, idx_g))
    return values.reshape(groups * per_group, blocks * per_block)[:n, :m]


def exact_shapley(
    apply_fn: ApplyFn,
    params: Any,
    x: jax.Array,
    target: Target,
    *,
    baseline: jax.Array | float | None = None,
    background: jax.Array | None = None,
) -> jax.Array:
    """Exact interventional Shapley values by enumerating all ``2^d`` coalitions.

    The value of coalition ``S`` for example ``x`` is ``mean_r f_t(x_S, b_r,notS)``: features
    in ``S`` from ``x``, the rest from background row ``b_r``. For ``d = prod(input_shape)
    <= 12`` features. Efficiency holds exactly: ``sum(phi) = f_t(x) - mean_r f_t(b_r)``.

    Args:
      apply_fn, params, x, target: as in the module docstring; ``x: (N, *input_shape)``.
      baseline: one reference example broadcastable to ``input_shape``; zeros by default.
      background: reference rows ``(R, *input_shape)`` averaged over (instead of
        ``baseline``); cost is ``N * 2^d * R`` model rows.

    Returns:
      Attributions ``(N, *input_shape)``.
    """
    x = _as_float(x)
    bg = _background(x, baseline, background)
    values = _coalition_values(apply_fn, params, x, _resolve(apply_fn, params, x, target), bg)
    d = values.shape[1].bit_length() - 1
    phi = values @ jnp.asarray(_shapley_weights(d), values.dtype)
    return phi.reshape(x.shape)


# --------------------------------------------------------------------------- interactions


def shapley_interaction(
    apply_fn: ApplyFn,
    params: Any,
    x: jax.Array,
    target: Target,
    i: int,
    j: int,
    *,
    baseline: jax.Array | float | None = None,
    background: jax.Array | None = None,
) -> jax.Array:
    """Exact Shapley interaction index of flattened features ``i != j``, shape ``(N,)``.

    ``I_ij = sum_S |S|!(d-|S|-2)!/(d-1)! [v(S+ij) - v(S+i) - v(S+j) + v(S)]`` over
    ``S`` not containing ``i, j``, with the coalition values of :func:`exact_shapley`.
    Zero for an additive model; for ``f = a x_i x_j`` (baseline 0) it is ``a x_i x_j``,
    which the Shapley values split as half to ``i`` and half to ``j``.
    """
    x = _as_float(x)
    d = math.prod(x.shape[1:])
    if not (0 <= i < d and 0 <= j < d and i != j):
        raise ValueError(f"features i={i}, j={j} must be distinct flat indices in [0, {d})")
    bg = _background(x, baseline, background)
    values = _coalition_values(apply_fn, params, x, _resolve(apply_fn, params, x, target), bg)
    return values @ jnp.asarray(_interaction_weights(d, i, j), values.dtype)


def mixed_partial(
    apply_fn: ApplyFn, params: Any, x: jax.Array, target: Target, i: int, j: int
) -> jax.Array:
    """Mixed second derivative ``d^2 f_t / dx_i dx_j`` per example, shape ``(N,)``.

    ``i`` and ``j`` index the flattened input (``np.ravel_multi_index`` converts a
    multi-index). Computed as a forward-mode derivative of the gradient (one
    Hessian-vector product), not a full Hessian. Piecewise-linear models (ReLU) give 0
    almost everywhere; use a smooth activation to measure interactions this way.
    """
    x = _as_float(x)
    d = math.prod(x.shape[1:])
    if not (0 <= i < d and 0 <= j < d):
        raise ValueError(f"features i={i}, j={j} must be flat indices in [0, {d})")
    grad = _grad_fn(apply_fn, params, _resolve(apply_fn, params, x, target))
    # Examples are independent, so the same direction e_j in every example gives each
    # example's own Hessian column.
    direction = jnp.zeros((x.shape[0], d), x.dtype).at[:, j].set(1.0).reshape(x.shape)
    _, hessian_column = jax.jvp(grad, (x,), (direction,))
    return hessian_column.reshape(x.shape[0], d)[:, i]


def completeness_gap(
    apply_fn: ApplyFn,
    params: Any,
    x: jax.Array,
    target: Target,
    attributions: jax.Array,
    *,
    baseline: jax.Array | float | None = None,
    background: jax.Array | None = None,
) -> jax.Array:
    """``sum(attributions_n) - (f_t(x_n) - f_t(reference))`` per example, shape ``(N,)``.

    The reference is ``baseline`` (zeros by default) or the mean over ``background`` rows,
    as for the method that produced the attributions. Zero for exact Shapley; for
    integrated gradients it is the quadrature error, so a large gap means too few steps.
    """
    x = _as_float(x)
    idx = _resolve(apply_fn, params, x, target)
    f_x = _target_output(apply_fn, params, x, idx)
    if background is None:
        f_ref = _target_output(apply_fn, params, _baseline_like(x, baseline), idx)
    else:
        bg = _background(x, baseline, background)
        out = apply_fn(params, bg)  # (R, K); the reference value is per target class
        f_ref = jnp.take(out.mean(axis=0), idx)
    total = jnp.sum(attributions.reshape(x.shape[0], -1), axis=1)
    return total - (f_x - f_ref)


# --------------------------------------------------------------------------- registry

ATTRIBUTION_METHODS: dict[str, Callable[..., jax.Array]] = {
    "gradient": vanilla_gradient,
    "gradient_x_input": gradient_x_input,
    "integrated_gradients": integrated_gradients,
    "smoothgrad": smoothgrad,
    "shapley": exact_shapley,
}


def attribute(
    method: str,
    apply_fn: ApplyFn,
    params: Any,
    x: jax.Array,
    target: Target,
    key: jax.Array | None = None,
    **options: Any,
) -> jax.Array:
    """Attributions ``(N, *input_shape)`` of one seed by the method named ``method``.

    Args:
      method: a name in :data:`ATTRIBUTION_METHODS`.
      apply_fn, params, x, target: as in the module docstring.
      key: PRNG key for methods that draw noise (``smoothgrad``); ignored by the others.
      **options: the method's keyword options (e.g. ``steps``, ``baseline``); an option
        the method does not take raises ``ValueError`` naming it.
    """
    if method not in ATTRIBUTION_METHODS:
        raise ValueError(f"attribution method {method!r} is not allowed: one of "
                         f"{sorted(ATTRIBUTION_METHODS)}")
    fn = ATTRIBUTION_METHODS[method]
    signature = inspect.signature(fn).parameters
    allowed = [n for n, p in signature.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"option(s) {unknown} not taken by attribution method {method!r}; "
                         f"its options: {allowed}")
    if "key" in signature:
        if key is None:
            raise ValueError(f"attribution method {method!r} needs a PRNG key")
        return fn(apply_fn, params, x, target, key, **options)
    return fn(apply_fn, params, x, target, **options)


def seed_devices(tree: Any) -> tuple[int, str]:
    """How many devices the seed rows of ``tree`` are split over, and their platform:
    read from concrete arrays; traced ones (inside a caller's ``jit``) give one device of
    the default backend."""
    leaf = jax.tree_util.tree_leaves(tree)[0]
    if isinstance(leaf, jax.Array) and not isinstance(leaf, jax.core.Tracer):
        devices = leaf.sharding.device_set
        return len(devices), next(iter(devices)).platform
    return 1, jax.default_backend()


def seeds_per_step_for(seeds_per_step: int | str | None, platform: str) -> int | None:
    """Resolve ``"auto"``: one seed at a time on a CPU, every seed side by side elsewhere.

    On a CPU a seed's integrated gradients (256 examples x 32 path points of the digits
    MLP) already fill the caches; seeds side by side outgrow them. Measured on 2 cores
    (2026-11-30, 2 JAX devices, against a loop of single-seed calls on one): one seed at a
    time per device 1.65-1.95x the loop at 2-64 seeds, all side by side 1.23-1.87x.
    """
    if seeds_per_step == "auto":
        return 1 if platform == "cpu" else None
    return seeds_per_step


def attribute_over_seeds(
    method: str,
    apply_fn: ApplyFn,
    params: Any,
    x: jax.Array,
    target: Target,
    keys: jax.Array | None = None,
    *,
    seeds_per_step: int | str | None = "auto",
    num_devices: int | None = None,
    **options: Any,
) -> jax.Array:
    """:func:`attribute` for every seed: attributions ``(S, N, *input_shape)``.

    Args:
      params: stacked parameters ``(S, ...)``.
      x, target: shared by all seeds; ``"predicted"`` is each seed's own prediction.
      keys: per-seed keys ``(S, 2)`` for noisy methods (e.g. each seed's ``evaluation``
        stream), or ``None``.
      seeds_per_step: how the seeds are scheduled. ``None``: all side by side (one
        ``vmap``); an integer ``k``: each device's seeds ``k`` at a time (``lax.map`` over
        groups of ``k`` vmapped seeds; ``S`` must be a multiple of ``k``); ``"auto"``
        (default): 1 on a CPU, ``None`` elsewhere (:func:`seeds_per_step_for`).
      num_devices: the devices the seed rows are split over, for ``lax.map`` to keep each
        device's seeds on it. ``None``: read from ``params`` (one device inside a caller's
        ``jit``, where that cannot be read: pass it there). Any count gives the same
        numbers.
      **options: shared by all seeds, as for :func:`attribute`.

    Row ``s`` equals ``attribute(method, apply_fn, take_seed(params, s), x, target,
    keys[s], **options)``.
    """

    def one_seed(p: Any, k: jax.Array | None) -> jax.Array:
        return attribute(method, apply_fn, p, x, target, k, **options)

    found_devices, platform = seed_devices(params)
    per_step = seeds_per_step_for(seeds_per_step, platform)
    if keys is None:
        fn, seeded, args = (lambda p: one_seed(p, None)), (0,), (params,)
    else:
        fn, seeded, args = one_seed, (0, 1), (params, keys)
    if per_step is None:
        return over_seeds(fn, seeded)(*args)
    if isinstance(per_step, bool) or not isinstance(per_step, int) or per_step < 1:
        raise ValueError(f"seeds_per_step={seeds_per_step!r} is not allowed: None, 'auto' or "
                         "an integer >= 1")
    num_seeds = jax.tree_util.tree_leaves(params)[0].shape[0]
    if num_seeds % per_step:
        raise ValueError(f"seeds_per_step={per_step} is not allowed for {num_seeds} seeds: a "
                         "divisor of the seed count")
    devices = found_devices if num_devices is None else int(num_devices)
    if num_seeds % (devices * per_step):
        devices = 1  # the rows cannot be split evenly: lax.map over all of them
    return lift_over_seeds(fn, seeded, "map", num_devices=devices,
                           seeds_per_map_step=per_step)(*args)
