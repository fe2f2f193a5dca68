"""Saliency across seeds: attributions of every seed, their agreement, and sanity checks.

For each configured method: attributions ``(S, N, *input_shape)`` of the first ``N`` test
examples, the completeness gap where the method promises completeness, cross-seed
agreement matrices ``(S, S)``, and optionally max-sensitivity, the cascading
parameter-randomisation check and shortcut diagnostics. Per-seed numbers go into
``metrics`` so that conditions can be compared on them.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from negres.errors import ConfigError
from negres.measures import agreement, interpretability, saliency
from negres.seeds import over_seeds, stream_key
from negres.tasks import Task

# Measures whose per-seed mean agreement becomes a metric (all five are kept as matrices).
AGREEMENT_METRICS = ("spearman_abs", "top_k")
# Methods whose attributions should add up to f(x) - f(baseline).
_COMPLETE_METHODS = ("integrated_gradients", "shapley")


def method_options(method: str, evaluation: ConfigDict, task: Task) -> dict[str, Any]:
    """The keyword options of ``method`` taken from the ``evaluation`` config section."""
    if method == "integrated_gradients":
        return {"steps": int(evaluation.ig_steps)}
    if method == "smoothgrad":
        return {"samples": int(evaluation.smoothgrad_samples),
                "noise_level": float(evaluation.smoothgrad_noise)}
    if method == "shapley":
        num_features = int(np.prod(task.input_shape))
        if num_features > saliency.MAX_SHAPLEY_FEATURES:
            raise ConfigError(
                "evaluation.attribution_methods", "shapley",
                f"exact Shapley values only for inputs of at most "
                f"{saliency.MAX_SHAPLEY_FEATURES} features; task {task.name} has {num_features}",
            )
        rows = int(evaluation.shapley_background)
        return {"background": jnp.asarray(task.x_train[:rows])} if rows > 0 else {}
    return {}


def top_k_used(top_k: int, num_features: int) -> int:
    """``top_k`` capped at half the features: a top-k set covering (nearly) every feature
    agrees between any two seeds by construction and would report agreement that means
    nothing (for 5 features, k = 10 would always give 1)."""
    return max(1, min(top_k, num_features // 2))


def check_attribution_config(evaluation: ConfigDict, task: Task) -> None:
    """Raise :class:`ConfigError` for a method or setting the task cannot take."""
    for method in evaluation.attribution_methods:
        if method not in saliency.ATTRIBUTION_METHODS:
            raise ConfigError("evaluation.attribution_methods", method,
                              f"names in {sorted(saliency.ATTRIBUTION_METHODS)}")
        method_options(method, evaluation, task)
    target = evaluation.attribution_target
    if target not in ("predicted", "label"):
        raise ConfigError("evaluation.attribution_target", target, "'predicted' or 'label'")
    if not 1 <= evaluation.attribution_examples <= task.num_test:
        raise ConfigError("evaluation.attribution_examples", evaluation.attribution_examples,
                          f"an integer from 1 to the test set size ({task.num_test})")


def _target(evaluation: ConfigDict, task: Task, n: int) -> Any:
    if evaluation.attribution_target == "label" and task.kind == "classification":
        return jnp.asarray(task.y_test[:n], jnp.int32)
    return saliency.PREDICTED


def attribution_study(
    model: nn.Module,
    task: Task,
    params: Any,
    seed_keys: jax.Array,
    evaluation: ConfigDict,
    shared_key: jax.Array,
) -> dict[str, Any]:
    """Attributions and their diagnostics for every configured method and every seed.

    Args:
      model: the trained model.
      task: supplies the test examples and, where declared, the shortcut features.
      params: ``(S, ...)`` trained parameters.
      seed_keys: ``(S, 2)`` the seeds' keys; noise is drawn from their ``evaluation`` stream.
      evaluation: the config's ``evaluation`` section.
      shared_key: one key for the noise of noisy methods inside max-sensitivity and the
        randomisation check, the same for every seed so that no seed's result depends on
        which other seeds are in the run.

    Returns:
      ``metrics`` (name -> ``(S,)``: completeness gap, agreement, Gini sparsity of |a|, and the
      optional checks), ``attributions`` (method -> ``(S, N, *input_shape)``),
      ``agreement`` (method -> measure -> ``(S, S)``), ``agreement_summary``,
      ``randomization`` (method -> ``{"layers", "spearman" (S, L)}``).
    """

    def apply_fn(p: Any, x: jax.Array) -> jax.Array:
        return model.apply({"params": p}, x, train=False)

    n = int(evaluation.attribution_examples)
    x = jnp.asarray(task.x_test[:n])
    target = _target(evaluation, task, n)
    eval_keys = jax.vmap(lambda k: stream_key(k, "evaluation"))(seed_keys)
    num_seeds = int(seed_keys.shape[0])
    out: dict[str, Any] = {"metrics": {}, "attributions": {}, "agreement": {},
                           "agreement_summary": {}, "randomization": {}}
    predictions = jax.jit(over_seeds(lambda p: jnp.argmax(apply_fn(p, x), -1)))(params)
    for method in evaluation.attribution_methods:
        options = method_options(method, evaluation, task)

        def attribution_fn(p, xs, k=None, _method=method, _options=options):
            return saliency.attribute(_method, apply_fn, p, xs, target, k, **_options)

        lifted = jax.jit(over_seeds(attribution_fn, seeded_args=(0, 2)))
        attributions = lifted(params, x, eval_keys)
        out["attributions"][method] = np.asarray(attributions)
        metrics = out["metrics"]
        metrics[f"{method}_sparsity"] = np.asarray(
            interpretability.attribution_sparsity_over_seeds(attributions))
        if method in _COMPLETE_METHODS:
            reference = {k: v for k, v in options.items() if k in ("baseline", "background")}
            gap = jax.jit(over_seeds(
                lambda p, a, _r=reference: jnp.abs(saliency.completeness_gap(
                    apply_fn, p, x, target, a, **_r)).mean(),
                seeded_args=(0, 1)))(params, attributions)
            metrics[f"{method}_completeness_gap"] = np.asarray(gap)
        if num_seeds > 1:
            top_k = top_k_used(int(evaluation.top_k), int(np.prod(task.input_shape)))
            matrices = agreement.cross_seed_agreement(attributions, top_k=top_k)
            out["agreement_top_k"] = top_k
            out["agreement"][method] = {k: np.asarray(v) for k, v in matrices.items()}
            out["agreement_summary"][method] = {}
            for measure, matrix in matrices.items():
                summary = agreement.summarize_agreement(matrix)
                out["agreement_summary"][method][measure] = {
                    "mean": float(summary["mean"]), "std": float(summary["std"])}
                if measure in AGREEMENT_METRICS:
                    metrics[f"{method}_agreement_{measure}"] = np.asarray(summary["per_seed"])
        fixed_fn = functools.partial(attribution_fn, k=shared_key)
        if evaluation.max_sensitivity:
            sensitivity = agreement.max_sensitivity_over_seeds(
                fixed_fn, params, x, eval_keys,
                radius=float(evaluation.sensitivity_radius),
                num_samples=int(evaluation.sensitivity_samples),
            )
            metrics[f"{method}_max_sensitivity"] = np.asarray(jnp.nanmean(sensitivity, axis=1))
        if evaluation.randomization_check:
            layers = agreement.layer_order(model, x[:1], train=False)
            init = jax.jit(over_seeds(
                lambda k: model.init(jax.random.fold_in(k, 1), x[:1], train=False)["params"]))
            random_params = init(eval_keys)
            spearman = agreement.cascading_randomization_over_seeds(
                fixed_fn, params, random_params, x, layer_names=layers)
            out["randomization"][method] = {
                "layers": list(agreement.randomization_layer_names(params, layers)),
                "spearman": np.asarray(spearman)}
            metrics[f"{method}_randomization_spearman"] = np.asarray(spearman[:, -1])
        if task.shortcut_features:
            shortcuts = tuple(task.shortcut_features)
            metrics[f"{method}_shortcut_share"] = np.asarray(
                agreement.shortcut_share_over_seeds(attributions, shortcuts))
            if task.kind == "classification":
                correct = predictions == jnp.asarray(task.y_test[:n])[None, :]
                metrics[f"{method}_right_for_wrong_reasons"] = np.asarray(
                    agreement.right_for_wrong_reasons_rate_over_seeds(
                        attributions, shortcuts, correct))
    return out
