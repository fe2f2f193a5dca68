"""Attributions against the truth, for worlds whose generating function is known.

A task whose target is ``f(x) = sum_j c_j x_j + sum_(i,j) a_ij x_i x_j`` declares
``Task.coefficients`` (``c``, ``(D,)``) and ``Task.interactions`` (name ->
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

import jax
import jax.numpy as jnp
import numpy as np

from negres.evaluators.attributions import method_comparison_lines, method_families
from negres.evaluators.protocol import Evaluation, EvaluationContext, Evaluator, Metric, saved_by
from negres.measures import saliency
from negres.reporting.tables import fmt, table, with_range
from negres.seeds import over_seeds
from negres.tasks import Task

# Methods that attribute f(x) - f(baseline) and so are comparable with phi; the gradient
# and SmoothGrad measure local slope, in other units.
TRUTH_METHODS = ("gradient_x_input", "integrated_gradients", "shapley")


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


def evaluate(context: EvaluationContext) -> Evaluation:
    """Every seed's attributions and interactions against the truth.

    Reads the attributions the ``attributions`` evaluator passes on (method -> ``(S, N,
    D)`` of the first ``N`` test examples). Shapley values against a background set
    (``shapley_background`` > 0) are left out: their reference is not the zero baseline.

    Returns an :class:`Evaluation` with metrics ``<method>_truth_error`` (``sum_j |a_j -
    phi_j| / sum_j |phi_j|``, averaged over examples; lower is better), per interaction
    ``interaction_<name>_mixed_partial`` (mean over examples; no direction: its truth is a
    value, not an end) and ``interaction_<name>_shapley_error``, each ``(S,)``; per seed
    each method's mean ``|a|`` and mean ``|a - phi|`` per feature ``(S, D)`` and each
    interaction's learned mean ``|I|`` ``(S,)``; shared the feature names, the true mean
    ``|phi|``, each method's across-seed standard deviation per feature (mean over
    examples, over the seeds that stayed finite) and each interaction's true values.
    """
    task, settings, params = context.task, context.settings, context.params
    if not has_truth(task):
        return Evaluation()
    attributions = context.earlier["attributions"].passed_on["attributions"]
    n = int(settings.attribution_examples)
    x = np.asarray(task.x_test[:n], np.float64)
    coefficients = np.asarray(task.coefficients, np.float64)
    interactions = dict(task.interactions)
    phi = true_contributions(x, coefficients, interactions)
    names = list(task.feature_names or [f"x{i}" for i in range(x.shape[1])])
    out = Evaluation(
        per_seed={"methods": {}, "interactions": {}},
        shared={"features": names, "examples": n, "true_mean_abs": np.abs(phi).mean(axis=0),
                "seed_std": {}, "interactions": {}})
    kept = slice(None) if context.kept is None else np.asarray(context.kept)
    background = int(settings.shapley_background) > 0
    for method, values in attributions.items():
        if method not in TRUTH_METHODS or (method == "shapley" and background):
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


def condition_report(condition: Mapping[str, Any]) -> list[str]:
    """Attributions per feature against the true contributions, and learned interactions."""
    saved = saved_by(condition, "truth")
    methods = saved["per_seed"].get("methods") or {}
    learned = saved["per_seed"].get("interactions") or {}
    if not methods and not learned:
        return []
    shared = saved["shared"]
    features = shared["features"]
    lines = ["Mean |attribution| per feature (mean over seeds, with the seeds' range) against "
             "the true contribution's mean |phi|, and the across-seed standard deviation of "
             "each example's attribution (mean over examples):", ""]
    rows = [["truth", *[fmt(float(v), 3) for v in shared["true_mean_abs"]]]]
    for method, values in methods.items():
        mean_abs = np.asarray(values["mean_abs"], dtype=float)
        if mean_abs.shape[0] == 0:
            continue
        rows.append([method, *[with_range(float(mean_abs[:, d].mean()),
                                          float(mean_abs[:, d].min()),
                                          float(mean_abs[:, d].max()))
                               for d in range(len(features))]])
        rows.append([f"{method}: seed std",
                     *[fmt(float(v), 3) for v in shared["seed_std"][method]]])
    lines += table(["", *features], rows)
    if learned:
        rows = []
        for name, true in shared["interactions"].items():
            values = np.asarray(learned[name]["learned_shapley_mean_abs"], dtype=float)
            if values.size == 0:
                continue
            rows.append([name, fmt(true["mixed_partial"], 3), fmt(true["shapley_mean_abs"], 3),
                         with_range(float(values.mean()), float(values.min()),
                                    float(values.max()), range_digits=3)])
        lines += ["Interactions: the true mixed partial derivative and mean |Shapley "
                  "interaction| against the models' (the per-seed mixed partials are in the "
                  "tables above, `interaction_*`):", ""]
        lines += table(["pair", "true d²f/dxᵢdxⱼ", "true mean |I|",
                        "learned mean |I| (seed range)"], rows)
    return lines


def statistics(condition: Mapping[str, Any], compare: Any) -> dict[str, dict[str, Any]]:
    """Each method's error against the truth compared with the first method's, paired."""
    return method_families(condition, compare, "truth")


def report(results: Mapping[str, Any], names: Sequence[str]) -> list[str]:
    """The methods' errors against the truth compared, per condition."""
    compared = method_comparison_lines(results, names, "truth")
    if not compared:
        return []
    return ["## Attribution methods against the truth, compared", "",
            "Each method's error against the true contributions minus the first method's, "
            "on the same trained seeds (paired), Holm across the methods.", "", *compared]


EVALUATOR = Evaluator(
    name="truth",
    fields=(),
    evaluate=evaluate,
    requires=("attributions",),
    condition_report=condition_report,
    report=report,
    statistics=statistics,
    doc="attributions and learned interactions against a known generating function",
)
