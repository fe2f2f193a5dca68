"""Attributions against the truth, for worlds whose generating function is known.

A task whose target is ``f(x) = sum_j c_j x_j + sum_(i,j) a_ij x_i x_j`` declares
``Task.coefficients`` (``c``, ``(D,)``) and ``Task.interactions`` (name ->
``(i, j, a_ij)``). Relative to the all-zero baseline the truth is then exact:

* additive contributions (the Shapley values of ``f``): ``phi_j = c_j x_j +
  sum_(terms with j) a_ij x_i x_j / 2``, each product split evenly between its features;
* the mixed partial derivative ``d^2 f / dx_i dx_j = a_ij``;
* the Shapley interaction index of ``(i, j)``: ``a_ij x_i x_j``;
* each feature's main effect ``m_j(x) = f(x_j, 0 elsewhere) - f(0)`` and so how much of
  its Shapley value depends on the other features, ``phi_j - m_j`` (the products it
  shares, halved): the non-additivity an additive attribution folds into one number per
  feature.

Per seed this gives each method's error against ``phi``, the attribution per feature, and
the interaction the model learned, so that one can see what an additive attribution does
with an interaction: it cannot show it, only split it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from negres.evaluators.attributions import REFERENCE_METHODS, method_families
from negres.evaluators.protocol import Evaluation, EvaluationContext, Evaluator, Metric
from negres.measures import saliency
from negres.results import ConditionResults
from negres.seeds import over_seeds
from negres.tasks import Task

# Methods that attribute f(x) - f(baseline) and so are comparable with phi; the gradient
# and SmoothGrad measure local slope, in other units.
TRUTH_METHODS = ("gradient_x_input", "integrated_gradients", "deeplift", "kernel_shap",
                 "shapley")


def has_truth(task: Task) -> bool:
    """Whether ``task`` declares the coefficients (and interactions) of its target."""
    return task.coefficients is not None and task.kind == "regression"


def true_contributions(
    x: np.ndarray, coefficients: np.ndarray, interactions: Mapping[str, Sequence[float]]
) -> np.ndarray:
    """The Shapley values of the true function against the zero baseline, ``(N, D)``."""
    phi = x * np.asarray(coefficients)[None, :]
    for i, j, a in interactions.values():
        half = 0.5 * a * x[:, int(i)] * x[:, int(j)]
        phi[:, int(i)] += half
        phi[:, int(j)] += half
    return phi


def main_effects(apply_fn: Any, params: Any, x: jax.Array) -> jax.Array:
    """Each feature's main effect against the zero baseline, ``(N, D)`` for one seed:
    ``f(x_j e_j) - f(0)``, the model's output with only feature ``j`` kept (output 0: a
    regression's)."""
    n, d = x.shape
    alone = (jnp.eye(d, dtype=x.dtype)[None] * x[:, None, :]).reshape(n * d, d)
    outputs = apply_fn(params, jnp.concatenate([alone, jnp.zeros((1, d), x.dtype)]))[:, 0]
    return outputs[:-1].reshape(n, d) - outputs[-1]


def non_additivity(phi: np.ndarray, main: np.ndarray) -> np.ndarray:
    """The share of Shapley attribution mass that depends on the other features:
    ``sum_(n,j) |phi_nj - m_nj| / sum_(n,j) |phi_nj|`` over the last two axes of ``phi`` and
    ``main`` ``(..., N, D)``; 0 for an additive function, whatever its shape per feature."""
    return (np.abs(phi - main).sum(axis=(-2, -1))
            / np.maximum(np.abs(phi).sum(axis=(-2, -1)), 1e-12))


def evaluate(context: EvaluationContext) -> Evaluation:
    """Every seed's attributions and interactions against the truth.

    Reads what the ``attributions`` evaluator passes on: its attributions (method -> ``(S,
    N, D)`` of the first ``N`` test examples), ``examples`` (``N``) and
    ``shapley_background``. Shapley values, Kernel SHAP and DeepLIFT against a background
    set (its ``shapley_background`` > 0) are left out: their reference is not the zero
    baseline.

    Returns an :class:`Evaluation` with metrics ``<method>_truth_error`` (``sum_j |a_j -
    phi_j| / sum_j |phi_j|``, averaged over examples; lower is better), per interaction
    ``interaction_<name>_mixed_partial`` (mean over examples; no direction: its truth is a
    value, not an end), ``interaction_<name>_shapley_error`` and, from the exact Shapley
    values, ``shapley_non_additivity`` (:func:`non_additivity` against each seed's
    :func:`main_effects`; no direction), each ``(S,)``; per seed
    each method's mean ``|a|`` and mean ``|a - phi|`` per feature ``(S, D)`` and each
    interaction's learned mean ``|I|`` ``(S,)``; shared the feature names, the true mean
    ``|phi|``, each method's across-seed standard deviation per feature (mean over
    examples, over the seeds that stayed finite) and each interaction's true values.
    """
    task, params = context.task, context.params
    if not has_truth(task):
        return Evaluation()
    passed = context.earlier["attributions"].passed_on
    attributions = passed["attributions"]
    n = int(passed["examples"])
    x = np.asarray(task.x_test[:n], np.float64)
    coefficients = np.asarray(task.coefficients, np.float64)
    interactions = dict(task.interactions)
    phi = true_contributions(x, coefficients, interactions)
    names = list(task.feature_names or [f"x{i}" for i in range(x.shape[1])])
    out = Evaluation(
        per_seed={"methods": {}, "interactions": {}},
        shared={"features": names, "examples": n, "true_mean_abs": np.abs(phi).mean(axis=0),
                "seed_std": {}, "interactions": {},
                "true_non_additivity": float(non_additivity(phi, x * coefficients[None]))})
    kept = slice(None) if context.kept is None else np.asarray(context.kept)
    background = int(passed["shapley_background"]) > 0
    for method, values in attributions.items():
        # Against shapley_background's rows, a reference method's truth is not phi.
        if method not in TRUTH_METHODS or (method in REFERENCE_METHODS and background):
            continue
        a = np.asarray(values, np.float64).reshape(values.shape[0], n, -1)
        error = np.abs(a - phi[None]).sum(-1) / np.maximum(np.abs(phi).sum(-1)[None], 1e-12)
        out.metrics[f"{method}_truth_error"] = Metric(
            error.mean(axis=1), "lower", {"method": method, "measure": "truth_error"})
        out.per_seed["methods"][method] = {
            "mean_abs": np.abs(a).mean(axis=1),
            "mean_abs_error": np.abs(a - phi[None]).mean(axis=1),
        }
        finite = a[kept]
        out.shared["seed_std"][method] = (finite.std(axis=0, ddof=1).mean(axis=0)
                                          if finite.shape[0] > 1
                                          else np.full(a.shape[-1], np.nan))
    xj = jnp.asarray(x, jnp.float32)
    apply_fn = context.apply
    if "shapley" in attributions and not background:
        shapley = np.asarray(attributions["shapley"], np.float64).reshape(-1, n, x.shape[1])
        main = np.asarray(jax.jit(over_seeds(lambda p: main_effects(apply_fn, p, xj)))(params))
        out.metrics["shapley_non_additivity"] = Metric(
            non_additivity(shapley, main), "none",
            {"method": "shapley", "measure": "non_additivity"})
    for name, (i, j, a) in interactions.items():
        i, j = int(i), int(j)
        partial = jax.jit(over_seeds(
            lambda p, _i=i, _j=j: saliency.mixed_partial(apply_fn, p, xj, 0, _i, _j)))(params)
        interaction = jax.jit(over_seeds(
            lambda p, _i=i, _j=j: saliency.shapley_interaction(apply_fn, p, xj, 0, _i, _j)))(
            params)
        true_interaction = a * x[:, i] * x[:, j]
        labels = {"interaction": name}
        out.metrics[f"interaction_{name}_mixed_partial"] = Metric(
            np.asarray(partial).mean(axis=1), "none", labels | {"measure": "mixed_partial"})
        out.metrics[f"interaction_{name}_shapley_error"] = Metric(
            np.abs(np.asarray(interaction) - true_interaction[None]).mean(axis=1), "lower",
            labels | {"measure": "shapley_error"})
        out.per_seed["interactions"][name] = {
            "learned_shapley_mean_abs": np.abs(np.asarray(interaction)).mean(axis=1)}
        out.shared["interactions"][name] = {
            "features": [names[i], names[j]], "mixed_partial": float(a),
            "shapley_mean_abs": float(np.abs(true_interaction).mean())}
    return out


def statistics(condition: ConditionResults, compare: Any) -> dict[str, dict[str, Any]]:
    """Each method's error against the truth compared with the first method's, paired."""
    return method_families(condition, compare, "truth")


EVALUATOR = Evaluator(
    name="truth",
    fields=(),
    evaluate=evaluate,
    requires=("attributions",),
    statistics=statistics,
    doc="attributions and learned interactions against a known generating function",
)
