"""Cross-seed agreement of attributions, and sanity checks of an attribution method.

Three questions about attributions (saliency maps), asked of every seed at once:

* **Do the seeds agree?** :func:`cross_seed_agreement` turns a stack of attributions
  ``(S, N, *input_shape)`` into ``(S, S)`` matrices (Spearman of absolute and of signed
  values, top-k overlap with ``k`` at most half the features (:func:`top_k_used`), sign
  agreement, cosine), each averaged over examples;
  :func:`summarize_agreement` reduces one matrix to its off-diagonal mean and spread.
* **Is that agreement much?** A scale for it: a no-signal baseline (the same measures
  between untrained networks, or between :func:`permuted_attributions`, random maps with
  each example's values), a repeat ceiling for noisy methods (:func:`paired_agreement` of
  one seed measured twice) and :func:`scaled_agreement` between the two.
* **Is the method stable and does it depend on the model?** :func:`max_sensitivity`
  (Yeh et al. 2019) and the cascading model-parameter randomisation check of
  Adebayo et al. (2018), :func:`cascading_randomization`.
* **Is the model right for the wrong reasons?** :func:`shortcut_share` and
  :func:`right_for_wrong_reasons_rate` for tasks that declare shortcut features.

Attribution methods are passed in as ``attribution_fn(params, x) -> (N, *input_shape)``
for one seed, so this module does not depend on how attributions are computed.
One-seed functions are pure and compiled with ``jax.jit``, ``attribution_fn`` and the
settings being static: reuse one ``attribution_fn`` object (not a fresh lambda per call)
to reuse the compilation. The ``*_over_seeds`` forms lift them with
:func:`negres.seeds.over_seeds`.

Undefined per-example values (a constant or all-zero attribution has no rank
correlation or direction) are NaN and are left out of averages over examples; an
average over no defined example is NaN.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from negres.errors import ArgumentError, ConfigError
from negres.seeds import over_seeds

# attribution_fn(params_one_seed, x (N, *input_shape)) -> (N, *input_shape)
AttributionFn = Callable[[Any, jax.Array], jax.Array]

# Sums over features are matrix products; ask for full float32 so that TF32/bfloat16
# matmul defaults on accelerators do not move correlations of identical maps off 1.
_HIGHEST = jax.lax.Precision.HIGHEST

AGREEMENT_MEASURES = ("spearman_abs", "spearman", "top_k", "sign", "cosine")


# --------------------------------------------------------------------------- ranks


@jax.jit
def average_ranks(values: jax.Array) -> jax.Array:
    """Ranks along the last axis, 1-based, ties given the average of their ranks.

    This is ``scipy.stats.rankdata(values, method="average", axis=-1)``: a value's rank
    is ``(#smaller + #smaller-or-equal + 1) / 2``, found by binary search in the sorted
    row, so ties need no special case and nothing loops over rows.

    Args:
      values: ``(..., D)``.

    Returns:
      ``(..., D)`` float32 ranks in ``[1, D]``.
    """
    values = jnp.asarray(values)
    flat = values.reshape((-1, values.shape[-1]))

    def ranks_of_row(row: jax.Array) -> jax.Array:
        ordered = jnp.sort(row)
        below = jnp.searchsorted(ordered, row, side="left")
        at_or_below = jnp.searchsorted(ordered, row, side="right")
        return (below + at_or_below + 1).astype(jnp.float32) / 2.0

    return jax.vmap(ranks_of_row)(flat).reshape(values.shape)


def _unit_rows(values: jax.Array, center: bool) -> jax.Array:
    """Rows scaled to unit L2 norm (centred first when ``center``); NaN rows where norm is 0."""
    values = values.astype(jnp.float32)
    if center:
        values = values - values.mean(axis=-1, keepdims=True)
    norm = jnp.sqrt(jnp.sum(values * values, axis=-1, keepdims=True))
    return jnp.where(norm > 0, values / jnp.where(norm > 0, norm, 1.0), jnp.nan)


def _flatten_features(attributions: jax.Array, lead: int) -> jax.Array:
    """Keep ``lead`` leading axes and flatten the rest into one feature axis."""
    attributions = jnp.asarray(attributions)
    if attributions.ndim < lead + 1:
        raise ConfigError(
            "attributions",
            f"array of shape {attributions.shape}",
            f"an array with {lead} leading axes and at least one feature axis",
        )
    return attributions.reshape((*attributions.shape[:lead], -1))


@functools.partial(jax.jit, static_argnames=("absolute",))
def spearman_per_example(a: jax.Array, b: jax.Array, *, absolute: bool = True) -> jax.Array:
    """Spearman rank correlation of two attributions of the same examples, per example.

    Args:
      a: ``(N, *input_shape)``.
      b: ``(N, *input_shape)``.
      absolute: rank ``|a|`` and ``|b|`` (magnitude of importance), else signed values.

    Returns:
      ``(N,)``; NaN for an example whose attribution is constant over features.
    """
    a, b = _flatten_features(a, 1), _flatten_features(b, 1)
    if absolute:
        a, b = jnp.abs(a), jnp.abs(b)
    za = _unit_rows(average_ranks(a), center=True)
    zb = _unit_rows(average_ranks(b), center=True)
    return jnp.sum(za * zb, axis=-1)


# ------------------------------------------------------------------ cross-seed matrices


def _pairwise_mean(za: jax.Array) -> jax.Array:
    """``(S, N, D)`` unit rows -> ``(S, S)`` inner products averaged over defined examples."""
    per_example = jnp.einsum("snd,tnd->stn", za, za, precision=_HIGHEST)
    return jnp.nanmean(per_example, axis=-1)


@functools.partial(jax.jit, static_argnames=("absolute",))
def pairwise_spearman(attributions: jax.Array, *, absolute: bool = True) -> jax.Array:
    """Spearman correlation between every pair of seeds, averaged over examples.

    Args:
      attributions: ``(S, N, *input_shape)``.
      absolute: rank absolute values (importance magnitude) instead of signed values.

    Returns:
      ``(S, S)``, symmetric, 1 on the diagonal.
    """
    flat = _flatten_features(attributions, 2)
    if absolute:
        flat = jnp.abs(flat)
    return _pairwise_mean(_unit_rows(average_ranks(flat), center=True))


@jax.jit
def pairwise_cosine(attributions: jax.Array) -> jax.Array:
    """Cosine similarity between every pair of seeds, averaged over examples.

    Args:
      attributions: ``(S, N, *input_shape)``.

    Returns:
      ``(S, S)``.
    """
    return _pairwise_mean(_unit_rows(_flatten_features(attributions, 2), center=False))


def _top_k_mask(flat: jax.Array, k: int) -> jax.Array:
    """``(..., D)`` -> ``(..., D)`` float mask of the ``k`` largest ``|values|`` per row.

    ``lax.top_k`` breaks ties by taking the lower feature index first, so the mask is
    that of ``np.argsort(-abs(v), kind="stable")[:k]``.
    """
    _, idx = jax.lax.top_k(jnp.abs(flat), k)
    rows, num_features = idx.reshape((-1, k)), flat.shape[-1]
    # A scatter per row, not a one-hot (..., k, D) that would cost k times the memory.
    mask = jax.vmap(lambda i: jnp.zeros((num_features,), jnp.float32).at[i].set(1.0))(rows)
    return mask.reshape(flat.shape)


@functools.partial(jax.jit, static_argnames=("k",))
def pairwise_top_k_agreement(attributions: jax.Array, k: int) -> jax.Array:
    """Share of the ``k`` most important features (by ``|attribution|``) two seeds share.

    ``|top_k(a) ∩ top_k(b)| / k`` per example, averaged over examples.

    Args:
      attributions: ``(S, N, *input_shape)``.
      k: how many features, ``1 <= k <= D`` with ``D`` the number of features.

    Returns:
      ``(S, S)`` in ``[0, 1]``.
    """
    flat = _flatten_features(attributions, 2)
    _check_top_k(k, flat.shape[-1])
    mask = _top_k_mask(flat, k)
    overlap = jnp.einsum("snd,tnd->stn", mask, mask, precision=_HIGHEST)
    return overlap.mean(axis=-1) / k


@functools.partial(jax.jit, static_argnames=("nonzero_only",))
def pairwise_sign_agreement(attributions: jax.Array, *, nonzero_only: bool = False) -> jax.Array:
    """Share of features whose attributions have the same sign in two seeds.

    Args:
      attributions: ``(S, N, *input_shape)``.
      nonzero_only: count only features that are non-zero in both seeds (exact zeros,
        e.g. from dead ReLUs or zero pixels under gradient x input, then neither agree
        nor disagree); otherwise every feature counts and ``0`` has its own sign.

    Returns:
      ``(S, S)`` in ``[0, 1]``; examples with no feature non-zero in both seeds are left
      out of the mean when ``nonzero_only``.
    """
    flat = _flatten_features(attributions, 2)
    positive = (flat > 0).astype(jnp.float32)
    negative = (flat < 0).astype(jnp.float32)
    both = functools.partial(jnp.einsum, "snd,tnd->stn", precision=_HIGHEST)
    same_nonzero = both(positive, positive) + both(negative, negative)
    if nonzero_only:
        nonzero = positive + negative
        counted = both(nonzero, nonzero)
        share = jnp.where(counted > 0, same_nonzero / jnp.where(counted > 0, counted, 1.0), jnp.nan)
        return jnp.nanmean(share, axis=-1)
    zero = 1.0 - positive - negative
    return ((same_nonzero + both(zero, zero)) / flat.shape[-1]).mean(axis=-1)


def _check_top_k(k: int, num_features: int | None = None) -> None:
    """Refuse a ``k`` that is not an integer ``>= 1`` (nor ``<= num_features`` when given)."""
    if num_features is None:
        upper, allowed = math.inf, "an integer >= 1"
    else:
        upper, allowed = num_features, f"an integer in [1, {num_features}] (the number of features)"
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= upper:
        raise ConfigError("top_k", k, allowed)


def top_k_used(top_k: int, num_features: int) -> int:
    """``top_k`` capped at half the features: ``max(1, min(top_k, num_features // 2))``.

    A top-k set covering (nearly) every feature agrees between any two seeds by
    construction and would report agreement that means nothing (for 10 features, k = 10
    always gives 1; random attributions give ``k / D`` in expectation).
    """
    return max(1, min(top_k, num_features // 2))


@functools.partial(jax.jit, static_argnames=("top_k", "nonzero_only"))
def _cross_seed_agreement(
    attributions: jax.Array, top_k: int, nonzero_only: bool
) -> dict[str, jax.Array]:
    return {
        "spearman_abs": pairwise_spearman(attributions, absolute=True),
        "spearman": pairwise_spearman(attributions, absolute=False),
        "top_k": pairwise_top_k_agreement(attributions, top_k),
        "sign": pairwise_sign_agreement(attributions, nonzero_only=nonzero_only),
        "cosine": pairwise_cosine(attributions),
    }


def cross_seed_agreement(
    attributions: jax.Array, *, top_k: int = 10, nonzero_only: bool = False
) -> dict[str, jax.Array]:
    """Every agreement measure between every pair of seeds, averaged over examples.

    Args:
      attributions: ``(S, N, *input_shape)``, or ``(S, N, D)`` already flat; seed ``s``
        and example ``n`` must be the same input for every seed.
      top_k: ``k`` of the top-k overlap, an integer ``>= 1``, capped at half the ``D``
        features (:func:`top_k_used`: ``k = max(1, min(top_k, D // 2))``). Uncapped, a
        ``k`` near ``D`` makes any two seeds agree by construction: random attributions
        overlap by ``k / D`` in expectation, 1 at ``k = D`` (the default 10 on 10
        features). For an uncapped ``k`` call :func:`pairwise_top_k_agreement`.
      nonzero_only: sign agreement only among features non-zero in both seeds.

    Returns:
      name -> ``(S, S)`` matrix, names in :data:`AGREEMENT_MEASURES`:
      ``spearman_abs`` (ranks of ``|a|``), ``spearman`` (ranks of signed ``a``),
      ``top_k`` (``|top_k(|a|) ∩ top_k(|b|)| / k`` with the capped ``k``), ``sign``
      (share of equal signs), ``cosine``. Every diagonal is 1.
    """
    flat = _flatten_features(attributions, 2)
    _check_top_k(top_k)
    k = top_k_used(int(top_k), flat.shape[-1])
    return _cross_seed_agreement(flat, k, bool(nonzero_only))


@jax.jit
def summarize_agreement(matrix: jax.Array) -> dict[str, jax.Array]:
    """The off-diagonal of a seed-by-seed agreement matrix, reduced.

    Args:
      matrix: ``(S, S)``.

    Returns:
      ``mean`` ``()``: mean over pairs of distinct seeds; ``std`` ``()``: their standard
      deviation (population, ``ddof=0``); ``per_seed`` ``(S,)``: each seed's mean
      agreement with the other seeds (a low value flags an outlier seed). NaN entries
      (pairs with no defined example) are left out; all NaN when ``S == 1``.
    """
    num_seeds = matrix.shape[0]
    off_diagonal = ~jnp.eye(num_seeds, dtype=bool)
    values = jnp.where(off_diagonal, matrix, jnp.nan)
    return {
        "mean": jnp.nanmean(values),
        "std": jnp.nanstd(values),
        "per_seed": jnp.nanmean(values, axis=1),
    }


# ------------------------------------------------- the scale: no-signal baseline and ceiling


def permuted_attributions(attributions: jax.Array, keys: jax.Array) -> jax.Array:
    """Random attributions with the same support: each example's features shuffled.

    Seed ``s`` shuffles the feature axis of each of its examples by its own uniformly
    random permutation, drawn from ``keys[s]`` (independent across examples and seeds). Each
    example keeps exactly its values (their magnitudes, signs, zeros and sum); only which
    feature holds which value is lost. The agreement of such maps between seeds is the
    agreement that the values' distribution alone gives by chance: about 0 for rank
    correlations of maps of either sign, ``k / D`` for the top-k overlap, and for cosine
    and sign agreement whatever the maps' mean and sign shares give (positive maps agree
    by chance).

    Args:
      attributions: ``(S, N, *input_shape)``.
      keys: ``(S, 2)`` one key per seed (e.g. each seed's ``evaluation`` stream); row
        ``s`` of the result depends on ``attributions[s]`` and ``keys[s]`` alone.

    Returns:
      ``(S, N, *input_shape)``.
    """
    attributions = jnp.asarray(attributions)
    return _permuted(_flatten_features(attributions, 2), keys).reshape(attributions.shape)


@jax.jit
def _permuted(flat: jax.Array, keys: jax.Array) -> jax.Array:
    # Each row sorted by 32 random bits per feature: a uniform shuffle (ties, about D^2 /
    # 2^33 a row, keep their order), one sort, which compiles faster than
    # jax.random.permutation's rounds.
    def one_seed(rows: jax.Array, key: jax.Array) -> jax.Array:
        _, shuffled = jax.lax.sort_key_val(jax.random.bits(key, rows.shape), rows)
        return shuffled

    return jax.vmap(one_seed)(flat, keys)


@functools.partial(jax.jit, static_argnames=("top_k", "nonzero_only"))
def _paired_agreement(first: jax.Array, second: jax.Array, top_k: int,
                      nonzero_only: bool) -> dict[str, jax.Array]:
    def inner(za: jax.Array, zb: jax.Array) -> jax.Array:  # (S, N, D) unit rows -> (S,)
        return jnp.nanmean(jnp.einsum("snd,snd->sn", za, zb, precision=_HIGHEST), axis=-1)

    def spearman(absolute: bool) -> jax.Array:
        a, b = (jnp.abs(first), jnp.abs(second)) if absolute else (first, second)
        return inner(_unit_rows(average_ranks(a), center=True),
                     _unit_rows(average_ranks(b), center=True))

    overlap = jnp.sum(_top_k_mask(first, top_k) * _top_k_mask(second, top_k), axis=-1)
    positive = (first > 0) & (second > 0)
    negative = (first < 0) & (second < 0)
    same_nonzero = jnp.sum(positive | negative, axis=-1).astype(jnp.float32)
    if nonzero_only:
        counted = jnp.sum((first != 0) & (second != 0), axis=-1).astype(jnp.float32)
        share = jnp.where(counted > 0, same_nonzero / jnp.where(counted > 0, counted, 1.0),
                          jnp.nan)
        sign = jnp.nanmean(share, axis=-1)
    else:
        zero = jnp.sum((first == 0) & (second == 0), axis=-1).astype(jnp.float32)
        sign = ((same_nonzero + zero) / first.shape[-1]).mean(axis=-1)
    return {
        "spearman_abs": spearman(True),
        "spearman": spearman(False),
        "top_k": overlap.mean(axis=-1) / top_k,
        "sign": sign,
        "cosine": inner(_unit_rows(first, center=False), _unit_rows(second, center=False)),
    }


def paired_agreement(
    first: jax.Array, second: jax.Array, *, top_k: int = 10, nonzero_only: bool = False
) -> dict[str, jax.Array]:
    """Every agreement measure between ``first[s]`` and ``second[s]``, seed by seed.

    The measures of :func:`cross_seed_agreement`, with the same ``k`` (capped at half the
    features), between two attributions of the same seed, e.g. a noisy method's two
    repeats with independent noise (the repeat ceiling of cross-seed agreement). Entry
    ``s`` equals ``cross_seed_agreement(stack([first[s], second[s]]))[measure][0, 1]``
    without computing the pairs of different seeds.

    Args:
      first: ``(S, N, *input_shape)``.
      second: ``(S, N, *input_shape)``, the same seeds and examples.
      top_k, nonzero_only: as in :func:`cross_seed_agreement`.

    Returns:
      name -> ``(S,)``, names in :data:`AGREEMENT_MEASURES`; 1 (up to float rounding)
      where ``first[s]`` and ``second[s]`` are equal.
    """
    a, b = _flatten_features(first, 2), _flatten_features(second, 2)
    if a.shape != b.shape:
        raise ConfigError("second", f"array of shape {jnp.shape(second)}",
                          f"the shape of first, {jnp.shape(first)}")
    _check_top_k(top_k)
    k = top_k_used(int(top_k), a.shape[-1])
    return _paired_agreement(a, b, k, bool(nonzero_only))


def off_diagonal_mean(matrix: Any, keep: Any = None) -> float:
    """Mean of a seed-by-seed matrix over pairs of distinct seeds, both in ``keep``.

    Args:
      matrix: ``(S, S)``.
      keep: ``(S,)`` bool, the seeds to count (e.g. those whose training stayed finite);
        None: all.

    Returns:
      The mean; NaN entries are left out; NaN with no defined pair.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    keep = np.ones(len(matrix), bool) if keep is None else np.asarray(keep, bool)
    pairs = np.outer(keep, keep) & ~np.eye(len(matrix), dtype=bool)
    values = matrix[pairs]
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else math.nan


def scaled_agreement(matrix: Any, baseline: float, ceiling: Any = None) -> np.ndarray:
    """Cross-seed agreement placed between a no-signal baseline and a repeat ceiling.

    ``(A[i, j] - baseline) / (C[i, j] - baseline)``: 0 where two seeds agree no more than
    the baseline (e.g. untrained networks), 1 where they agree as much as one seed agrees
    with itself measured again. ``C[i, j]`` is the mean of seeds ``i`` and ``j``'s repeat
    ceilings, 1 for a deterministic method (a seed measured again gives the same map).

    Args:
      matrix: ``(S, S)`` cross-seed agreement of one measure.
      baseline: one number, e.g. :func:`off_diagonal_mean` of a baseline matrix.
      ceiling: ``(S,)`` each seed's agreement with its own repeat; None: 1 (deterministic).

    Returns:
      ``(S, S)`` float64: 1 on the diagonal (a seed against itself), NaN where
      ``C[i, j] <= baseline`` (no room between baseline and ceiling) or an input is NaN.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    num_seeds = len(matrix)
    if ceiling is None:
        pair_ceiling = np.ones_like(matrix)
    else:
        ceiling = np.asarray(ceiling, dtype=np.float64)
        pair_ceiling = (ceiling[:, None] + ceiling[None, :]) / 2
    room = pair_ceiling - baseline
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = np.where(room > 0, (matrix - baseline) / np.where(room > 0, room, 1.0), np.nan)
    scaled[np.eye(num_seeds, dtype=bool)] = 1.0
    return scaled


# ---------------------------------------------------------------- max-sensitivity


def _is_single_key(key: jax.Array) -> bool:
    """True for one key (raw ``(2,)`` or typed ``()``), False for a stack of keys."""
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key.ndim == 0
    return key.ndim == 1


def max_sensitivity(
    attribution_fn: AttributionFn,
    params: Any,
    x: jax.Array,
    key: jax.Array,
    *,
    radius: float = 0.05,
    num_samples: int = 10,
    sample_batch_size: int | None = None,
) -> jax.Array:
    """Largest relative change of each example's attribution under small input noise.

    ``max_j ||attr(x + delta_j) - attr(x)|| / ||attr(x)||`` (L2 over all features) with
    ``deltas = jax.random.uniform(key, (num_samples, *x.shape), minval=-radius,
    maxval=radius)``, i.e. uniform in the L-inf ball; the same deltas perturb the whole
    batch at once, example ``n`` by ``deltas[:, n]``.

    Args:
      attribution_fn: ``(params, x) -> (N, *input_shape)`` for one seed.
      params: one seed's parameters.
      x: ``(N, *input_shape)``.
      key: one key.
      radius: L-inf radius of the perturbations.
      num_samples: perturbations per example.
      sample_batch_size: perturbations evaluated at once (``lax.map`` batch size);
        ``None`` evaluates all ``num_samples`` at once.

    Returns:
      ``(N,)``; 0 where attributions do not move; where ``attr(x)`` is all zero, 0 if it
      stays zero and ``inf`` otherwise.
    """
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ConfigError("num_samples", num_samples, "a positive integer")
    if not radius >= 0:
        raise ConfigError("radius", radius, "a non-negative number")
    batch = sample_batch_size or num_samples
    return _max_sensitivity(attribution_fn, params, x, key, float(radius), num_samples, batch)


@functools.partial(jax.jit, static_argnums=(0, 4, 5, 6))
def _max_sensitivity(
    attribution_fn: AttributionFn,
    params: Any,
    x: jax.Array,
    key: jax.Array,
    radius: float,
    num_samples: int,
    sample_batch_size: int,
) -> jax.Array:
    base = _flatten_features(attribution_fn(params, x), 1)
    deltas = jax.random.uniform(
        key, (num_samples, *x.shape), dtype=x.dtype, minval=-radius, maxval=radius
    )

    def change(delta: jax.Array) -> jax.Array:
        moved = _flatten_features(attribution_fn(params, x + delta), 1)
        return jnp.linalg.norm(moved - base, axis=-1)

    changes = jax.lax.map(change, deltas, batch_size=sample_batch_size)
    largest = changes.max(axis=0)
    scale = jnp.linalg.norm(base, axis=-1)
    safe_scale = jnp.where(scale > 0, scale, 1.0)
    return jnp.where(scale > 0, largest / safe_scale, jnp.where(largest > 0, jnp.inf, 0.0))


def max_sensitivity_over_seeds(
    attribution_fn: AttributionFn, params: Any, x: jax.Array, keys: jax.Array, **settings: Any
) -> jax.Array:
    """:func:`max_sensitivity` for every seed.

    Args:
      attribution_fn: ``(params, x) -> (N, *input_shape)`` for one seed.
      params: ``(S, ...)``.
      x: ``(N, *input_shape)``, shared by all seeds.
      keys: ``(S, 2)`` one key per seed (row ``s`` gives seed ``s`` the result of the
        one-seed call with ``keys[s]``), or a single key shared by all seeds, so that
        every seed sees the same perturbations.
      **settings: ``radius``, ``num_samples``, ``sample_batch_size`` of
        :func:`max_sensitivity` (same defaults), shared by all seeds.

    Returns:
      ``(S, N)``.
    """
    one_seed = functools.partial(max_sensitivity, attribution_fn, **settings)
    seeded = (0,) if _is_single_key(keys) else (0, 2)
    return over_seeds(one_seed, seeded_args=seeded)(params, x, keys)


# ------------------------------------------------- model-parameter randomisation (Adebayo)


def layer_order(model: nn.Module, x: jax.Array, **init_kwargs: Any) -> tuple[str, ...]:
    """Names of the top-level parameter layers of a linen model in creation order.

    These are the entries of the model's ``params`` collection (``Dense_0``,
    ``BatchNorm_0``, ...), never the collections themselves (``params``, ``batch_stats``).
    Linen's ``init`` returns a dict whose insertion order is the order in which the
    submodules were created (``Dense_0, ..., Dense_10`` or ``Conv_0, Conv_1, Dense_0``).
    That order is lost as soon as the dict passes through ``jit``/``vmap`` (JAX rebuilds
    dicts with sorted keys, so ``Dense_10`` comes before ``Dense_2``), which is the case
    for every stacked ``params``. This function reads the order during an abstract
    ``init`` (``jax.eval_shape``: nothing is computed) before any rebuild.

    Args:
      model: the linen module.
      x: ``(B, *input_shape)``; only shapes are used.
      **init_kwargs: extra keyword arguments of ``model.__call__`` (e.g. ``train=False``).

    Returns:
      Layer names, bottom (input side) first.
    """
    names: list[str] = []

    def init(key: jax.Array) -> Any:
        params = model.init(key, x[:1], **init_kwargs)["params"]
        names.extend(params.keys())  # a side effect at trace time, before any rebuild
        return params

    jax.eval_shape(init, jax.random.PRNGKey(0))
    return tuple(names)


def _natural_key(name: Any) -> tuple[Any, ...]:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(name)))


def _is_variables(params: Any) -> bool:
    """Whether ``params`` is a model's whole variables rather than its parameter layers.

    Linen's ``{"params": ..., "batch_stats": ...}`` (or ``{"params": ...}`` alone), the
    ``{"params": ..., "model_state": ...}`` of :func:`negres.nnx_apply`, or a
    :class:`negres.LossState` (``result.state``): anything with a ``params`` entry, the
    rule :func:`negres.linen_apply` follows too (so a model with a top-level layer named
    ``params`` is read as variables).
    """
    if isinstance(params, Mapping):
        return "params" in params
    return isinstance(params, tuple) and "params" in getattr(params, "_fields", ())


def _layers_of(params: Any, argument: str = "params") -> Mapping[Any, Any]:
    """The parameter layers of ``params``: the entries of its ``params`` collection when it
    is a model's whole variables (see :func:`_is_variables`), else its own entries."""
    layers = params
    if _is_variables(params):
        layers = params["params"] if isinstance(params, Mapping) else params.params
    if not isinstance(layers, Mapping) or not layers:
        raise ArgumentError(
            argument, type(params).__name__,
            "a non-empty dict of parameter layers (linen params, or a model's variables "
            "whose 'params' collection holds the layers, e.g. {'params': ..., "
            "'batch_stats': ...})")
    return layers


def _with_layers(params: Any, layers: Mapping[Any, Any]) -> Any:
    """``params`` with its layers replaced; a model's other collections are kept as they are."""
    if not _is_variables(params):
        return layers
    if isinstance(params, Mapping):
        return {**params, "params": layers}
    return params._replace(params=layers)


def _cascade_axes(params: Any) -> Any:
    """``vmap``'s ``in_axes`` over a :func:`cascade_params` result of ``params``' structure:
    the layers along the cascade axis, a model's other collections shared."""
    if not _is_variables(params):
        return 0
    if isinstance(params, Mapping):
        return {name: 0 if name == "params" else None for name in params}
    return type(params)(*(0 if name == "params" else None for name in params._fields))


def resolve_layer_names(
    params: Any, layer_names: Sequence[str] | None = None
) -> tuple[str, ...]:
    """The layers of ``params`` bottom-first: ``layer_names`` checked, or the dict order.

    ``params`` is one seed's (or every seed's) parameter layers, a linen params dict, or a
    model's whole variables: linen's ``{"params": ..., "batch_stats": ...}``, NNX's
    ``{"params": ..., "model_state": ...}`` or a :class:`negres.LossState`, whose layers are
    the entries of ``params`` (the other collections are not layers).

    Without ``layer_names`` the insertion order of the layers is taken as the creation
    order. That holds for the dict straight from ``model.init``; after ``jit``/``vmap``
    keys are sorted, which is still the creation order for the models of
    :mod:`negres.models` (``Conv_*`` before ``Dense_*``, at most 10 of a kind) but not in
    general: the one case that is certainly wrong (``Dense_10`` before ``Dense_2``) is
    refused; otherwise pass ``layer_names=layer_order(model, x)``.

    Returns:
      Layer names, bottom first.

    Raises:
      ArgumentError: naming ``layer_names``, when they are not a permutation of the layers,
        or when they are left out and the layers' order is certainly not their creation
        order.
    """
    keys = tuple(_layers_of(params).keys())
    if layer_names is None:
        ordered = sorted(keys, key=str)
        if list(keys) == ordered and ordered != sorted(keys, key=_natural_key):
            raise ArgumentError(
                "layer_names",
                None,
                f"explicit names in creation order: the layers {keys} are sorted as strings, "
                "which loses the creation order; pass layer_order(model, x)",
            )
        return keys
    allowed = f"a permutation of the parameter layers {keys}, bottom (input side) first"
    try:
        names = tuple(layer_names)
    except TypeError:
        names = None
    if names is None or isinstance(layer_names, (str, bytes)):
        raise ArgumentError("layer_names", layer_names, allowed)
    names = tuple(str(n) if isinstance(n, str) else n for n in names)  # NumPy strings too
    try:
        permutation = len(names) == len(keys) and set(names) == set(keys)
    except TypeError:  # unhashable names
        permutation = False
    if not permutation:
        raise ArgumentError("layer_names", names, allowed)
    return names


def cascade_params(
    params: Any,
    random_params: Any,
    layer_names: Sequence[str],
) -> Any:
    """The cascade of Adebayo et al. (2018): step ``k`` has the top ``k`` layers re-drawn.

    Args:
      params: one seed's trained parameters: its layers (a linen params dict) or a model's
        whole variables (see :func:`resolve_layer_names`).
      random_params: re-initialised parameters with the same layers (its layers alone or
        whole variables; only its layers are read).
      layer_names: the layers bottom-first (see :func:`resolve_layer_names`), ``L`` of them.

    Returns:
      ``params`` with a leading cascade axis ``(L, ...)`` on each of its layers: row
      ``k - 1`` has layers ``layer_names[L - k:]`` taken from ``random_params``, the rest
      from ``params``. Layers alone in, layers out (those named); variables in, the same
      variables out, their other collections (``batch_stats``, ``model_state``, ...)
      carried through unchanged, without the cascade axis (``vmap`` them with
      ``in_axes=None``).
    """
    layers = _layers_of(params, "params")
    fresh = _layers_of(random_params, "random_params")
    missing = [name for name in layer_names if name not in layers or name not in fresh]
    if missing:
        raise ArgumentError("layer_names", tuple(layer_names),
                            f"names of layers of both params {tuple(layers)} and random_params "
                            f"{tuple(fresh)}; {missing} are not")
    num_layers = len(layer_names)
    steps = jnp.arange(1, num_layers + 1)
    cascade: dict[str, Any] = {}
    for position, name in enumerate(layer_names):  # over layers (static), not examples
        randomised = position >= num_layers - steps  # (L,) for this layer

        def pick(
            trained: jax.Array, new: jax.Array, randomised: jax.Array = randomised
        ) -> jax.Array:
            mask = randomised.reshape((num_layers,) + (1,) * trained.ndim)
            return jnp.where(mask, new[None], trained[None])

        cascade[name] = jax.tree_util.tree_map(pick, layers[name], fresh[name])
    return _with_layers(params, cascade)


def cascading_randomization(
    attribution_fn: AttributionFn,
    params: Any,
    random_params: Any,
    x: jax.Array,
    *,
    layer_names: Sequence[str] | None = None,
    absolute: bool = True,
) -> jax.Array:
    """Model-parameter randomisation check, cascading from the top layer, for one seed.

    Re-draws the top ``k`` layers for ``k = 1..L``, recomputes the attributions and
    compares them with the trained model's by Spearman rank correlation averaged over
    examples. A method that explains the model (rather than the input) falls towards 0;
    one that stays near 1 ignores the parameters.

    Args:
      attribution_fn: ``(params, x) -> (N, *input_shape)`` for one seed; it is given
        ``params``' structure (whole variables when ``params`` is).
      params: one seed's trained parameters: a linen params dict, or a model's whole
        variables (linen ``{"params": ..., "batch_stats": ...}``, NNX ``{"params": ...,
        "model_state": ...}`` or a :class:`negres.LossState`), whose layers are the entries
        of ``params``; the other collections are kept as trained at every step.
      random_params: the same layers re-initialised (e.g. ``model.init`` with another key;
        its layers alone or whole variables, of which only the layers are read).
      x: ``(N, *input_shape)``.
      layer_names: layers bottom-first; default the dict order, see
        :func:`resolve_layer_names` (the name of step ``k`` is
        :func:`randomization_layer_names` ``[k - 1]``).
      absolute: correlate ``|attributions|`` (as in the paper) rather than signed values.

    Returns:
      ``(L,)``: entry ``k - 1`` is the correlation after re-drawing the top ``k`` layers.

    Raises:
      ArgumentError: naming the argument at fault (``layer_names``, ``params``, ...).
    """
    names = resolve_layer_names(params, layer_names)
    return _cascading_randomization(attribution_fn, names, bool(absolute), params, random_params, x)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _cascading_randomization(
    attribution_fn: AttributionFn,
    names: tuple[str, ...],
    absolute: bool,
    params: Any,
    random_params: Any,
    x: jax.Array,
) -> jax.Array:
    trained = attribution_fn(params, x)
    cascade = cascade_params(params, random_params, names)
    randomised = jax.vmap(attribution_fn, in_axes=(_cascade_axes(params), None))(
        cascade, x
    )  # (L, N, ...)
    per_example = jax.vmap(lambda a: spearman_per_example(trained, a, absolute=absolute))(
        randomised
    )
    return jnp.nanmean(per_example, axis=-1)


def randomization_layer_names(
    params: Any, layer_names: Sequence[str] | None = None
) -> tuple[str, ...]:
    """Names of the cascade steps, top first: step ``k`` newly re-draws entry ``k - 1``.

    ``params`` and ``layer_names`` as for :func:`resolve_layer_names`.
    """
    return tuple(reversed(resolve_layer_names(params, layer_names)))


def cascading_randomization_over_seeds(
    attribution_fn: AttributionFn,
    params: Any,
    random_params: Any,
    x: jax.Array,
    **settings: Any,
) -> jax.Array:
    """:func:`cascading_randomization` for every seed.

    Args:
      attribution_fn: ``(params, x) -> (N, *input_shape)`` for one seed.
      params: ``(S, ...)`` trained parameters, layers or a model's whole variables (see
        :func:`cascading_randomization`).
      random_params: ``(S, ...)`` one re-initialisation per seed, or one seed's
        re-initialisation shared by all seeds.
      x: ``(N, *input_shape)``.
      **settings: ``layer_names`` and ``absolute`` of :func:`cascading_randomization`
        (same defaults), shared by all seeds; the layer names are resolved once here,
        before ``vmap`` sorts the keys.

    Returns:
      ``(S, L)``.
    """
    names = resolve_layer_names(params, settings.pop("layer_names", None))
    stacked = jax.tree_util.tree_leaves(_layers_of(params, "params"))[0].ndim
    fresh = jax.tree_util.tree_leaves(_layers_of(random_params, "random_params"))[0].ndim
    shared = fresh == stacked - 1
    one_seed = functools.partial(
        cascading_randomization, attribution_fn, layer_names=names, **settings
    )
    seeded = (0,) if shared else (0, 1)
    return over_seeds(one_seed, seeded_args=seeded)(params, random_params, x)


# ------------------------------------------------------------- shortcut diagnostics


def _shortcut_mask(shortcut_features: Any, num_features: int) -> jax.Array:
    """Boolean ``(D,)`` mask of the flat shortcut feature indices."""
    if isinstance(shortcut_features, (tuple, list, np.ndarray)):
        indices = np.asarray(shortcut_features)
        if indices.size == 0 or indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
            raise ConfigError("shortcut_features", shortcut_features, "a non-empty tuple of ints")
        if indices.min() < 0 or indices.max() >= num_features:
            raise ConfigError(
                "shortcut_features", shortcut_features, f"flat indices in [0, {num_features})"
            )
    indices = jnp.asarray(shortcut_features, dtype=jnp.int32)
    return jnp.zeros((num_features,), dtype=bool).at[indices].set(True)


def shortcut_share(
    attributions: jax.Array, shortcut_features: Sequence[int] | jax.Array
) -> jax.Array:
    """Share of absolute attribution mass on the shortcut features, averaged over examples.

    Args:
      attributions: ``(N, *input_shape)`` of one seed.
      shortcut_features: flat feature indices (``Task.shortcut_features``).

    Returns:
      ``()`` in ``[0, 1]``; all-zero examples are left out.
    """
    flat = jnp.abs(_flatten_features(attributions, 1))
    mask = _shortcut_mask(shortcut_features, flat.shape[-1])
    total = flat.sum(axis=-1)
    on_shortcut = jnp.where(mask, flat, 0.0).sum(axis=-1)
    share = jnp.where(total > 0, on_shortcut / jnp.where(total > 0, total, 1.0), jnp.nan)
    return jnp.nanmean(share)


def right_for_wrong_reasons_rate(
    attributions: jax.Array,
    shortcut_features: Sequence[int] | jax.Array,
    correct: jax.Array,
) -> jax.Array:
    """Among correctly classified examples, how often the top feature is a shortcut.

    The top feature is ``argmax |attribution|`` over flat features (ties: lowest index).

    Args:
      attributions: ``(N, *input_shape)`` of one seed.
      shortcut_features: flat feature indices.
      correct: ``(N,)`` bool, the seed's correctly classified examples.

    Returns:
      ``()`` in ``[0, 1]``; NaN when no example is correct.
    """
    flat = jnp.abs(_flatten_features(attributions, 1))
    mask = _shortcut_mask(shortcut_features, flat.shape[-1])
    top_is_shortcut = mask[jnp.argmax(flat, axis=-1)]
    correct = jnp.asarray(correct, dtype=bool)
    count = correct.sum()
    hits = jnp.sum(top_is_shortcut & correct)
    return jnp.where(count > 0, hits / jnp.maximum(count, 1), jnp.nan)


# attributions (S, N, ...), shared shortcut indices -> (S,)
shortcut_share_over_seeds = over_seeds(shortcut_share, seeded_args=(0,))
# attributions (S, N, ...), shared shortcut indices, correct (S, N) -> (S,)
right_for_wrong_reasons_rate_over_seeds = over_seeds(
    right_for_wrong_reasons_rate, seeded_args=(0, 2)
)
