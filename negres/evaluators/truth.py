"""Attributions against the truth, for worlds whose generating function is known.

A task whose target is ``f(x) = sum_j c_j x_j + sum_(i,j) a_ij x_i x_j`` declares
``known["coefficients"]`` (``c``, ``(D,)``) and ``known["interactions"]`` (name ->
``(i, j, a_ij)``). Relative to the all-zero baseline the truth is then exact:

* additive contributions (the Shapley values of ``f``): ``phi_j = c_j x_j +
  sum_(terms with j) a_ij x_i x_j / 2``, each product split evenly between its features;
* the mixed partial derivative ``d^2 f / dx_i dx_j = a_ij``;
* the Shapley interaction index of ``(i, j)``: ``a_ij x_i x_j``.

Per seed this gives each method's error against ``phi``, the attribution per feature, and
the interaction the model learned, so that one can see what an additive attribution does
with an interaction: it cannot show it, only split it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from negres.measures import saliency
from negres.seeds import over_seeds
from negres.tasks import Task

# Methods that attribute f(x) - f(baseline) and so are comparable with phi; the gradient
# and SmoothGrad measure local slope, in other units.
TRUTH_METHODS = ("gradient_x_input", "integrated_gradients", "shapley")


def has_truth(task: Task) -> bool:
    """Whether ``task`` declares the coefficients (and interactions) of its target."""
    return "coefficients" in task.known and task.kind == "regression"


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


def truth_study(
    model: nn.Module,
    task: Task,
    params: Any,
    attributions: Mapping[str, np.ndarray],
    evaluation: ConfigDict,
) -> dict[str, Any]:
    """Every seed's attributions and interactions against the truth.

    Args:
      model: the trained model.
      task: declares ``coefficients`` and ``interactions`` in ``known``.
      params: ``(S, ...)`` trained parameters.
      attributions: method -> ``(S, N, D)`` attributions of the first ``N`` test examples.
      evaluation: the config's ``evaluation`` section (``attribution_examples``;
        ``shapley_background`` > 0 leaves Shapley out, its reference is not the zero baseline).

    Returns:
      ``metrics``: ``<method>_truth_error`` (``sum_j |a_j - phi_j| / sum_j |phi_j|``,
      averaged over examples), per interaction ``interaction_<name>_mixed_partial`` (mean
      over examples) and ``interaction_<name>_shapley_error`` (mean ``|I - a x_i x_j|``),
      each ``(S,)``; ``truth``: per feature the true mean ``|phi|``, per method the mean
      ``|a|`` per seed ``(S, D)``, the across-seed standard deviation per feature (mean over
      examples), and each interaction's true values.
    """
    if not has_truth(task):
        return {"metrics": {}, "truth": {}}
    n = int(evaluation.attribution_examples)
    x = np.asarray(task.x_test[:n], np.float64)
    coefficients = np.asarray(task.known["coefficients"], np.float64)
    interactions = dict(task.known.get("interactions", {}))
    phi = true_contributions(x, coefficients, interactions)
    names = list(task.feature_names or [f"x{i}" for i in range(x.shape[1])])
    out: dict[str, Any] = {"metrics": {}, "truth": {
        "features": names,
        "examples": n,
        "true_mean_abs": np.abs(phi).mean(axis=0),
        "methods": {},
        "interactions": {},
    }}
    # Shapley values against a background set answer another question than the zero-baseline
    # truth; they are left out of the comparison rather than reported as errors.
    background = int(evaluation.get("shapley_background", 0)) > 0
    for method, values in attributions.items():
        if method not in TRUTH_METHODS or (method == "shapley" and background):
            continue
        a = np.asarray(values, np.float64).reshape(values.shape[0], n, -1)
        error = np.abs(a - phi[None]).sum(-1) / np.maximum(np.abs(phi).sum(-1)[None], 1e-12)
        out["metrics"][f"{method}_truth_error"] = error.mean(axis=1)
        out["truth"]["methods"][method] = {
            "mean_abs": np.abs(a).mean(axis=1),
            "mean_abs_error": np.abs(a - phi[None]).mean(axis=1),
            "seed_std": a.std(axis=0, ddof=1).mean(axis=0) if a.shape[0] > 1
            else np.full(a.shape[-1], np.nan),
        }
    xj = jnp.asarray(x, jnp.float32)

    def apply_fn(p: Any, xs: jax.Array) -> jax.Array:
        return model.apply({"params": p}, xs, train=False)

    for name, (i, j, a) in interactions.items():
        i, j = int(i), int(j)
        partial = jax.jit(over_seeds(
            lambda p, _i=i, _j=j: saliency.mixed_partial(apply_fn, p, xj, 0, _i, _j)))(params)
        interaction = jax.jit(over_seeds(
            lambda p, _i=i, _j=j: saliency.shapley_interaction(apply_fn, p, xj, 0, _i, _j)))(
            params)
        true_interaction = a * x[:, i] * x[:, j]
        out["metrics"][f"interaction_{name}_mixed_partial"] = np.asarray(partial).mean(axis=1)
        out["metrics"][f"interaction_{name}_shapley_error"] = np.abs(
            np.asarray(interaction) - true_interaction[None]).mean(axis=1)
        out["truth"]["interactions"][name] = {
            "features": [names[i], names[j]], "mixed_partial": float(a),
            "shapley_mean_abs": float(np.abs(true_interaction).mean()),
            "learned_shapley_mean_abs": np.abs(np.asarray(interaction)).mean(axis=1),
        }
    return out
