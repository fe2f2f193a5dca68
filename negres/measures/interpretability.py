"""Interpretability proxies of one seed: attribution sparsity and linear-surrogate fidelity.

Two cheap, model-agnostic numbers for studies of capacity against interpretability:

* **How concentrated are the attributions?** :func:`attribution_sparsity` is the Gini
  coefficient of ``|attribution|`` over the features of each example (0: importance spread
  evenly; ``1 - 1/D``: all of it on one of ``D`` features).
* **How well does one linear model mimic the model?** For classifiers,
  :func:`logistic_surrogate_fidelity` fits a global multinomial logistic regression from
  inputs to the model's predicted classes and returns the share of held-out inputs where
  the surrogate's argmax is the model's class. :func:`linear_surrogate_r2` fits a ridge
  least-squares surrogate to real-valued outputs (regression outputs, or a classifier's
  logits) and returns its R^2. :func:`linear_surrogate_fidelity` is the closed-form
  least-squares variant of the classification fidelity, kept for comparison; it
  under-rates linear classifiers (below).

All surrogates see the features flattened and standardised with the fit set's mean and
(population) standard deviation, a constant feature being left at 0. The least-squares
ones are fitted in closed form: the weights minimise
``mean_n ||y_n - W z_n - b||^2 + ridge * ||W||^2`` (the bias ``b`` is not penalised), which
is ``sklearn.linear_model.Ridge(alpha=ridge * N)`` on ``StandardScaler``-transformed
features: ``ridge`` means the same at any feature scale and any ``N``. The logistic one
minimises ``mean_n CE(softmax(W z_n + b), one_hot(class_n)) + l2 * ||W||^2`` by a fixed
number of full-batch Adam steps (``sklearn.linear_model.LogisticRegression`` with
``C = 1 / (2 N l2)``, up to convergence).

Why logistic, not least squares, for classification: least squares onto one-hot labels is
the linear probability model, whose argmax can miss classes a linear classifier would
separate ("masking", Hastie et al., ESL section 4.2), so it reads even an exactly linear
classifier as partly non-linear, and the more so the more classes. For the argmax of a
random linear map on standard Gaussian inputs (D = 10, N = 2000 fit and 4000 test points,
3 draws), least squares gives held-out fidelity 0.98 / 0.91 / 0.70 at K = 2 / 4 / 10 and
levels off there with more data (masking is a property of the population fit: 0.69 at
K = 10 with N = 8000); the logistic surrogate gives 0.995 / 0.98 / 0.96 and approaches 1
as ``N`` grows. On the digits task (N = 1437 fit, 360 test, D = 64, K = 10), 16 seeds of
a linear softmax model (full-batch Adam, 1000 steps) score 0.93 with least squares and
0.98 with the logistic surrogate.

Every function is written for one seed, is pure and compiled with ``jax.jit`` (sizes,
``num_classes``, ``steps`` and ``apply_fn`` static; ``ridge``, ``learning_rate`` and ``l2``
traced, so a sweep over them does not recompile). Stacked forms:
:func:`attribution_sparsity_over_seeds` and :func:`surrogate_fidelity_over_seeds`; with
predictions already in hand, lift with :func:`negres.seeds.over_seeds`, e.g. for
predictions ``(S, N)`` and shared inputs::

    fidelity = functools.partial(logistic_surrogate_fidelity, num_classes=10)
    over_seeds(fidelity, seeded_args=(0, 2))(predict_fit, x_fit, predict_test, x_test)  # (S,)
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from negres.errors import ConfigError
from negres.seeds import over_seeds

# apply_fn(params_one_seed, x (N, *input_shape)) -> (N, K)
ApplyFn = Callable[[Any, jax.Array], jax.Array]

# Normal equations are matrix products; full float32 so that TF32/bfloat16 matmul
# defaults on accelerators do not move a least-squares fit.
_HIGHEST = jax.lax.Precision.HIGHEST


# ------------------------------------------------------------------ attribution sparsity


@jax.jit
def attribution_sparsity(attributions: jax.Array) -> jax.Array:
    """Gini coefficient of the absolute attributions of each example.

    For one example let ``v = |a|`` flattened to ``D`` features and sorted ascending,
    ``v_(1) <= ... <= v_(D)``. Then::

        G = sum_i (2 i - D - 1) v_(i) / (D * sum_i v_i)
          = sum_i sum_j |v_i - v_j| / (2 D sum_i v_i)

    ``G = 0`` when every feature has the same magnitude and ``G = 1 - 1/D`` when all mass
    is on one feature. ``G`` depends neither on signs nor on a common scale of ``a``.

    Args:
      attributions: ``(N, *input_shape)`` of one seed.

    Returns:
      ``(N,)`` in ``[0, 1 - 1/D]`` (up to rounding); 0 for an all-zero example.
    """
    flat = jnp.abs(attributions.reshape((attributions.shape[0], -1)).astype(jnp.float32))
    num_features = flat.shape[-1]
    ordered = jnp.sort(flat, axis=-1)
    weights = 2.0 * jnp.arange(1, num_features + 1, dtype=jnp.float32) - num_features - 1.0
    total = ordered.sum(axis=-1)
    # A sum of products rather than a matmul, which accelerators may run in low precision.
    spread = jnp.sum(weights * ordered, axis=-1)
    return jnp.where(total > 0, spread / (num_features * jnp.where(total > 0, total, 1.0)), 0.0)


@jax.jit
def attribution_sparsity_over_seeds(attributions: jax.Array) -> jax.Array:
    """:func:`attribution_sparsity` of every seed, averaged over examples.

    Args:
      attributions: ``(S, N, *input_shape)``.

    Returns:
      ``(S,)``; all-zero examples count as 0.
    """
    return over_seeds(attribution_sparsity)(attributions).mean(axis=-1)


# ------------------------------------------------------------------- linear surrogates


def _check_ridge(ridge: Any, name: str = "ridge") -> None:
    """Refuse a concrete negative or non-finite penalty (a traced one is taken as given)."""
    if isinstance(ridge, (int, float)) and not (math.isfinite(ridge) and ridge >= 0):
        raise ConfigError(name, ridge, "a finite number >= 0")


def _check_optimisation(steps: Any, learning_rate: Any, l2: Any) -> None:
    """Refuse a step count that is not an int ``>= 1``, or a concrete bad rate or penalty."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ConfigError("steps", steps, "an integer >= 1")
    if isinstance(learning_rate, (int, float)) and not (
        math.isfinite(learning_rate) and learning_rate > 0
    ):
        raise ConfigError("learning_rate", learning_rate, "a finite number > 0")
    _check_ridge(l2, "l2")


def _check_num_classes(num_classes: Any, *, zero_for_regression: bool) -> None:
    """Refuse anything but an int ``>= 2``, or 0 where that means regression."""
    is_int = isinstance(num_classes, int) and not isinstance(num_classes, bool)
    if zero_for_regression:
        if not is_int or not (num_classes >= 2 or num_classes == 0):
            raise ConfigError("num_classes", num_classes, "an integer >= 2, or 0 for regression")
    elif not is_int or num_classes < 2:
        raise ConfigError(
            "num_classes", num_classes, "an integer >= 2 (use linear_surrogate_r2 for regression)"
        )


def _check_inputs(x_fit: jax.Array, x_test: jax.Array, fit: jax.Array, test: jax.Array) -> None:
    if x_fit.shape[1:] != x_test.shape[1:]:
        raise ConfigError(
            "x_test", x_test.shape, f"inputs of the same shape as x_fit's, (M, *{x_fit.shape[1:]})"
        )
    for name, x, target in (("predict_fit", x_fit, fit), ("predict_test", x_test, test)):
        if target.shape[:1] != x.shape[:1]:
            raise ConfigError(name, target.shape, f"one prediction per input, ({x.shape[0]}, ...)")


def _flat(x: jax.Array) -> jax.Array:
    return x.reshape((x.shape[0], -1)).astype(jnp.float32)


def _standardise(x_fit: jax.Array, x_test: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Flattened ``(N, D)`` and ``(M, D)`` features, standardised with the fit set's moments.

    Mean and population standard deviation of ``x_fit``; a constant feature becomes 0.
    """
    x_fit, x_test = _flat(x_fit), _flat(x_test)
    mean = x_fit.mean(axis=0)
    std = x_fit.std(axis=0)
    scale = jnp.where(std > 0, std, 1.0)  # a constant feature standardises to 0
    return (x_fit - mean) / scale, (x_test - mean) / scale


def _fit_and_predict(
    x_fit: jax.Array, targets: jax.Array, x_test: jax.Array, ridge: jax.Array
) -> jax.Array:
    """The ridge surrogate fitted on ``(x_fit (N, ...), targets (N, K))``, evaluated at ``x_test``.

    Returns ``(M, K)``. Solves the ``(D + 1) x (D + 1)`` normal equations
    ``(A^T A / N + ridge * P) theta = A^T Y / N`` with ``A = [z, 1]`` and ``P`` the identity
    with the bias entry set to 0.
    """
    z_fit, z_test = _standardise(x_fit, x_test)
    num_examples, num_features = z_fit.shape

    def design(z: jax.Array) -> jax.Array:
        return jnp.concatenate([z, jnp.ones((z.shape[0], 1), jnp.float32)], axis=1)

    a = design(z_fit)
    penalty = jnp.concatenate([jnp.ones((num_features,)), jnp.zeros((1,))]).astype(jnp.float32)
    gram = jnp.matmul(a.T, a, precision=_HIGHEST) / num_examples + jnp.diag(ridge * penalty)
    moment = jnp.matmul(a.T, targets.astype(jnp.float32), precision=_HIGHEST) / num_examples
    theta = jnp.linalg.solve(gram, moment)
    return jnp.matmul(design(z_test), theta, precision=_HIGHEST)


def linear_surrogate_fidelity(
    predict_fit: jax.Array,
    x_fit: jax.Array,
    predict_test: jax.Array,
    x_test: jax.Array,
    num_classes: int,
    ridge: float | jax.Array = 1e-2,
) -> jax.Array:
    """Share of held-out inputs on which a global linear surrogate predicts the model's class.

    Fits the ridge surrogate of the module docstring from ``x_fit`` to
    ``one_hot(predict_fit, num_classes)`` and compares ``argmax`` of its outputs on
    ``x_test`` (ties: lowest class) with ``predict_test``. Closed form and fast, but
    least squares onto class indicators suffers from masking: it is below 1 even for a
    linear classifier, increasingly so with more classes, and levels off there however
    much data (module docstring). Prefer :func:`logistic_surrogate_fidelity`, which the
    from-parameters functions use; this one is kept as the least-squares reference.

    Args:
      predict_fit: ``(N,)`` int, the model's predicted classes on ``x_fit``, in
        ``[0, num_classes)`` (a class outside gets an all-zero target).
      x_fit: ``(N, *input_shape)``.
      predict_test: ``(M,)`` int, the model's predicted classes on ``x_test``.
      x_test: ``(M, *input_shape)``.
      num_classes: ``K >= 2``; for real-valued outputs use :func:`linear_surrogate_r2`.
      ridge: ``>= 0``, on standardised features and a mean (not summed) squared error;
        0 needs fit features that are neither collinear nor (if ``D >= N``) too many.

    Returns:
      ``()`` in ``[0, 1]``.
    """
    _check_num_classes(num_classes, zero_for_regression=False)
    _check_ridge(ridge)
    _check_inputs(x_fit, x_test, predict_fit, predict_test)
    return _linear_surrogate_fidelity(predict_fit, x_fit, predict_test, x_test, num_classes, ridge)


@functools.partial(jax.jit, static_argnums=(4,))
def _linear_surrogate_fidelity(
    predict_fit: jax.Array,
    x_fit: jax.Array,
    predict_test: jax.Array,
    x_test: jax.Array,
    num_classes: int,
    ridge: jax.Array,
) -> jax.Array:
    targets = jax.nn.one_hot(predict_fit, num_classes, dtype=jnp.float32)
    surrogate = _fit_and_predict(x_fit, targets, x_test, ridge)
    return jnp.mean(jnp.argmax(surrogate, axis=-1) == predict_test)


def logistic_surrogate_fidelity(
    predict_fit: jax.Array,
    x_fit: jax.Array,
    predict_test: jax.Array,
    x_test: jax.Array,
    num_classes: int,
    *,
    steps: int = 500,
    learning_rate: float | jax.Array = 0.1,
    l2: float | jax.Array = 1e-4,
) -> jax.Array:
    """Share of held-out inputs on which a logistic-regression surrogate predicts the model's class.

    The classification fidelity of choice: how much of the model's held-out behaviour one
    global *linear classifier* (``argmax_k w_k . z + b_k``) reproduces. Fits, on the
    standardised features ``z`` of the module docstring,
    ``mean_n CE(softmax(W z_n + b), one_hot(predict_fit_n)) + l2 * ||W||^2`` (``b`` not
    penalised) by ``steps`` full-batch Adam steps from ``W = 0, b = 0`` inside
    ``jax.lax.scan``, and compares ``argmax`` of ``W z + b`` on ``x_test`` (ties: lowest
    class) with ``predict_test``. Deterministic; a fixed step count keeps it vmappable.

    Why it replaces least squares (:func:`linear_surrogate_fidelity`): least squares onto
    one-hot classes can leave a class whose region lies between two others nowhere on top
    ("masking", ESL section 4.2), so it reads even an exactly linear classifier as partly
    non-linear; softmax cross-entropy has no masking, and its boundaries tend to the
    model's when the model is a linear classifier. Measured for the argmax of a random
    linear map on standard Gaussian inputs, held-out (least squares -> logistic):
    D = 10, N = 2000: 0.98 -> 0.995 (K = 2), 0.91 -> 0.98 (K = 4), 0.70 -> 0.96 (K = 10);
    D = 8, N = 8192: 0.99 -> 0.998, 0.88 -> 0.99, 0.72 -> 0.98. On the fit set itself
    (N = 512, D = 10 or 64) the logistic surrogate reproduces 0.98-1.0 of the classes at
    every K, least squares 0.84-0.93 at K = 4 and 0.66-0.87 at K = 10.

    What limits it below 1 for a linear model:

    * Finite ``N``: it is estimated from ``N`` labelled points, ``(D + 1) K`` parameters.
      Gaussian inputs, D = 64, K = 10: 0.66 at N = 500, 0.89 at N = 2000, 0.96 at
      N = 8000 (least squares 0.56, 0.74, 0.80), with fit-set fidelity >= 0.98. On
      digits (N = 1437, D = 64, K = 10) a trained linear model scores ~0.98 (least
      squares ~0.93); so does a 256-unit MLP (~0.98), whose decisions there are nearly
      linear too. Compare models at equal ``N`` and ``D`` and read differences.
    * ``l2``: the penalty keeps the weights, hence the softness of the boundaries,
      finite; with many thin classes (K = 10 on Gaussian inputs) this caps fidelity near
      0.98 at the defaults however large ``N``. ``l2=1e-5, steps=1000`` lifts that cap to
      ~0.99 but, where ``N`` is what limits (digits), lowers fidelity (0.98 -> 0.97).

    To ask whether a classifier's *scores* are linear, :func:`linear_surrogate_r2` on the
    logits has neither limit.

    Args:
      predict_fit: ``(N,)`` int, the model's predicted classes on ``x_fit``, in
        ``[0, num_classes)`` (a class outside gets an all-zero target, so no loss).
      x_fit: ``(N, *input_shape)``.
      predict_test: ``(M,)`` int, the model's predicted classes on ``x_test``.
      x_test: ``(M, *input_shape)``.
      num_classes: ``K >= 2``, static.
      steps: full-batch Adam steps from zero weights, an int ``>= 1``, static. At the
        defaults 500 is converged for fidelity (2000 changes it by < 0.002 on the shapes
        above).
      learning_rate: Adam step size ``> 0`` on standardised features (traced).
      l2: ``>= 0``, the penalty on ``||W||^2`` added to the mean (not summed) loss
        (traced). Keeps the weights finite when the fit classes are linearly separable,
        as they are for a linear model; smaller values draw the boundaries closer to the
        model's hard ones but need more steps (see above).

    Returns:
      ``()`` in ``[0, 1]``. With ``predict_fit``/``predict_test`` stacked ``(S, N)``/``(S, M)``,
      lift with :func:`negres.seeds.over_seeds` (``seeded_args=(0, 2)``).
    """
    _check_num_classes(num_classes, zero_for_regression=False)
    _check_optimisation(steps, learning_rate, l2)
    _check_inputs(x_fit, x_test, predict_fit, predict_test)
    return _logistic_surrogate_fidelity(
        predict_fit, x_fit, predict_test, x_test, num_classes, steps, learning_rate, l2
    )


@functools.partial(jax.jit, static_argnums=(4, 5))
def _logistic_surrogate_fidelity(
    predict_fit: jax.Array,
    x_fit: jax.Array,
    predict_test: jax.Array,
    x_test: jax.Array,
    num_classes: int,
    steps: int,
    learning_rate: jax.Array,
    l2: jax.Array,
) -> jax.Array:
    z_fit, z_test = _standardise(x_fit, x_test)
    targets = jax.nn.one_hot(predict_fit, num_classes, dtype=jnp.float32)

    def logits(theta: tuple[jax.Array, jax.Array], z: jax.Array) -> jax.Array:
        weights, bias = theta
        return jnp.matmul(z, weights, precision=_HIGHEST) + bias

    def loss(theta: tuple[jax.Array, jax.Array]) -> jax.Array:
        cross_entropy = optax.softmax_cross_entropy(logits(theta, z_fit), targets).mean()
        return cross_entropy + l2 * jnp.sum(theta[0] ** 2)

    optimiser = optax.adam(learning_rate)
    theta = (
        jnp.zeros((z_fit.shape[1], num_classes), jnp.float32),
        jnp.zeros((num_classes,), jnp.float32),
    )

    def step(carry: Any, _: None) -> tuple[Any, None]:
        theta, state = carry
        updates, state = optimiser.update(jax.grad(loss)(theta), state, theta)
        return (optax.apply_updates(theta, updates), state), None

    (theta, _), _ = jax.lax.scan(step, (theta, optimiser.init(theta)), None, length=steps)
    return jnp.mean(jnp.argmax(logits(theta, z_test), axis=-1) == predict_test)


def linear_surrogate_r2(
    predict_fit: jax.Array,
    x_fit: jax.Array,
    predict_test: jax.Array,
    x_test: jax.Array,
    ridge: float | jax.Array = 1e-2,
) -> jax.Array:
    """R^2 of a global linear surrogate of real-valued model outputs on held-out inputs.

    Fits the ridge surrogate of the module docstring from ``x_fit`` to ``predict_fit`` and
    scores it on ``x_test`` against ``predict_test``: per output ``k``,
    ``R^2_k = 1 - sum_m (y_mk - yhat_mk)^2 / sum_m (y_mk - mean_m y_mk)^2``
    (``sklearn.metrics.r2_score``), then the mean over outputs. 1 when the model is linear
    (and ``ridge = 0``); may be negative.

    Args:
      predict_fit: ``(N,)`` or ``(N, K)`` float, the model's outputs on ``x_fit``
        (regression outputs, or a classifier's logits).
      x_fit: ``(N, *input_shape)``.
      predict_test: same trailing shape as ``predict_fit``, the outputs on ``x_test``.
      x_test: ``(M, *input_shape)``.
      ridge: ``>= 0``, as in :func:`linear_surrogate_fidelity`.

    Returns:
      ``()``; an output that is constant on ``x_test`` has no R^2 and is left out of the
      mean over outputs (NaN if every output is constant).
    """
    _check_ridge(ridge)
    _check_inputs(x_fit, x_test, predict_fit, predict_test)
    if predict_fit.shape[1:] != predict_test.shape[1:] or predict_fit.ndim > 2:
        raise ConfigError(
            "predict_test",
            predict_test.shape,
            f"(M,) or (M, K) outputs like predict_fit's {predict_fit.shape}",
        )
    return _linear_surrogate_r2(predict_fit, x_fit, predict_test, x_test, ridge)


@jax.jit
def _linear_surrogate_r2(
    predict_fit: jax.Array,
    x_fit: jax.Array,
    predict_test: jax.Array,
    x_test: jax.Array,
    ridge: jax.Array,
) -> jax.Array:
    targets = predict_fit.reshape((predict_fit.shape[0], -1)).astype(jnp.float32)
    outputs = predict_test.reshape((predict_test.shape[0], -1)).astype(jnp.float32)
    surrogate = _fit_and_predict(x_fit, targets, x_test, ridge)
    residual = jnp.sum((outputs - surrogate) ** 2, axis=0)
    total = jnp.sum((outputs - outputs.mean(axis=0)) ** 2, axis=0)
    per_output = jnp.where(total > 0, 1.0 - residual / jnp.where(total > 0, total, 1.0), jnp.nan)
    return jnp.nanmean(per_output)


# --------------------------------------------------------------- from parameters


def surrogate_fidelity(
    apply_fn: ApplyFn,
    params: Any,
    x_fit: jax.Array,
    x_test: jax.Array,
    num_classes: int,
    ridge: float | jax.Array = 1e-2,
    *,
    steps: int = 500,
    learning_rate: float | jax.Array = 0.1,
    l2: float | jax.Array = 1e-4,
) -> jax.Array:
    """Linear-surrogate fidelity of one seed's model, from its parameters.

    Classifiers (``num_classes >= 2``): predictions are ``argmax apply_fn(params, x)``, and
    the score is :func:`logistic_surrogate_fidelity` (a multinomial logistic surrogate, not
    the least-squares one of :func:`linear_surrogate_fidelity`, which under-rates linear
    models). Regression (``num_classes == 0``): the raw outputs go to
    :func:`linear_surrogate_r2`.

    Args:
      apply_fn: ``(params, x (N, *input_shape)) -> (N, K)`` for one seed, applied to the
        whole of ``x_fit`` and of ``x_test`` at once.
      params: one seed's parameters.
      x_fit: ``(N, *input_shape)``, the inputs the surrogate is fitted on.
      x_test: ``(M, *input_shape)``, the inputs it is scored on.
      num_classes: ``K >= 2`` for classifiers, 0 for regression (R^2 of the outputs).
      ridge: ``>= 0``, the ridge of the regression surrogate (unused for classifiers).
      steps, learning_rate, l2: of the logistic surrogate, see
        :func:`logistic_surrogate_fidelity` (unused for regression).

    Returns:
      ``()``: fidelity in ``[0, 1]``, or R^2 when ``num_classes == 0``.
    """
    _check_num_classes(num_classes, zero_for_regression=True)
    if num_classes == 0:
        return linear_surrogate_r2(
            apply_fn(params, x_fit), x_fit, apply_fn(params, x_test), x_test, ridge
        )
    predict_fit = jnp.argmax(apply_fn(params, x_fit), axis=-1)
    predict_test = jnp.argmax(apply_fn(params, x_test), axis=-1)
    return logistic_surrogate_fidelity(
        predict_fit,
        x_fit,
        predict_test,
        x_test,
        num_classes,
        steps=steps,
        learning_rate=learning_rate,
        l2=l2,
    )


@functools.partial(jax.jit, static_argnums=(0, 4, 6))
def _surrogate_fidelity_over_seeds(
    apply_fn: ApplyFn,
    params: Any,
    x_fit: jax.Array,
    x_test: jax.Array,
    num_classes: int,
    ridge: jax.Array,
    steps: int,
    learning_rate: jax.Array,
    l2: jax.Array,
) -> jax.Array:
    def one_seed(
        params: Any, ridge: jax.Array, learning_rate: jax.Array, l2: jax.Array
    ) -> jax.Array:
        return surrogate_fidelity(
            apply_fn,
            params,
            x_fit,
            x_test,
            num_classes,
            ridge,
            steps=steps,
            learning_rate=learning_rate,
            l2=l2,
        )

    return over_seeds(one_seed, seeded_args=(0,))(params, ridge, learning_rate, l2)


def surrogate_fidelity_over_seeds(
    apply_fn: ApplyFn,
    params: Any,
    x_fit: jax.Array,
    x_test: jax.Array,
    num_classes: int,
    **settings: Any,
) -> jax.Array:
    """:func:`surrogate_fidelity` for every seed, one surrogate fitted per seed.

    One compiled call for all seeds (the logistic fits of all seeds run as one batched
    ``scan``). On 2 CPU cores, digits-sized data (N = 1437 fit, 360 test, D = 64, K = 10)
    and 16 seeds of a small MLP take about 1.3-2 s on the first call (compiling) and
    0.7-0.9 s on later ones.

    Args:
      apply_fn: ``(params, x) -> (N, K)`` for one seed; reuse one object (not a fresh
        lambda per call) to reuse the compilation.
      params: ``(S, ...)``.
      x_fit: ``(N, *input_shape)``, shared by all seeds.
      x_test: ``(M, *input_shape)``, shared by all seeds.
      num_classes: ``K >= 2`` for classifiers (logistic surrogate), 0 for regression (R^2).
      **settings: ``ridge`` (of the regression surrogate), ``steps``, ``learning_rate``
        and ``l2`` (of the logistic one) of :func:`surrogate_fidelity`, by keyword, with
        its defaults; shared by all seeds.

    Returns:
      ``(S,)``.
    """
    # The one-seed function's defaults, and its refusal of unknown names.
    bound = inspect.signature(surrogate_fidelity).bind(
        apply_fn, params, x_fit, x_test, num_classes, **settings
    )
    bound.apply_defaults()
    ridge, steps, learning_rate, l2 = (
        bound.arguments[name] for name in ("ridge", "steps", "learning_rate", "l2")
    )
    # Checked here, before compiling: inside the jit below the numbers are traced.
    _check_num_classes(num_classes, zero_for_regression=True)
    _check_ridge(ridge)
    _check_optimisation(steps, learning_rate, l2)
    return _surrogate_fidelity_over_seeds(
        apply_fn, params, x_fit, x_test, num_classes, ridge, steps, learning_rate, l2
    )
