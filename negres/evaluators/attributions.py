"""Saliency across seeds: attributions of every seed, their agreement, and sanity checks.

For each configured method: attributions ``(S, N, *input_shape)`` of the first ``N`` test
examples, the completeness gap where the method promises completeness, cross-seed
agreement matrices ``(S, S)`` placed on a scale (between the agreement of untrained
networks or of randomly permuted maps, and for a noisy method the agreement of one seed
measured twice), and optionally max-sensitivity, the cascading
parameter-randomisation check and shortcut diagnostics. Per-seed numbers become metrics
labelled with their method and measure, so that conditions, and methods within a
condition, can be compared on them. The attributions themselves are passed on to
evaluators that require this one (``truth``) and to its presentation, which saves the
first ``save_attributions`` examples' as ``.npy`` files for the report's saliency plots
(:mod:`negres.reporting.sections.attributions`): this module writes no file.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from negres import fields
from negres.errors import ArgumentError, ConfigError
from negres.evaluators import protocol
from negres.measures import agreement, interpretability, kernel_shap, saliency
from negres.results import ConditionResults, pairwise_row_means
from negres.seeds import over_seeds, stream_key
from negres.tasks import Task

FIELDS = (
    fields.names("attribution_methods", ("integrated_gradients",),
                 "attribution methods, names in negres.measures.saliency.ATTRIBUTION_METHODS",
                 saliency.ATTRIBUTION_METHODS),
    fields.integer("attribution_examples", 64, "first N test examples attributed per seed",
                   minimum=1),
    fields.choice("attribution_target", "predicted",
                  "predicted | label: the output explained", ("predicted", "label")),
    fields.integer("ig_steps", 32, "integrated gradients: midpoint-rule steps", minimum=1,
                   maximum=100_000),
    fields.integer("smoothgrad_samples", 16, "smoothgrad: noisy copies per example",
                   minimum=1, maximum=100_000),
    fields.number("smoothgrad_noise", 0.15, "smoothgrad: noise std as a share of input range",
                  0.0, low_open=True),
    fields.choice("noise_draws", "shared",
                  "methods that draw noise (smoothgrad, kernel_shap): shared (every seed "
                  "draws the same, so seeds differ by their models alone) | per_seed (each "
                  "seed draws its own)",
                  ("shared", "per_seed")),
    fields.integer("kernel_shap_samples", 64, "kernel_shap: sampled coalitions per example "
                   "(even; 2^d - 2 or more enumerates them all: exact Shapley values)",
                   minimum=2, maximum=100_000),
    fields.integer("shapley_background", 0, "shapley, kernel_shap, deeplift: background rows "
                   "of the training set averaged over as the reference (0: zero baseline)"),
    fields.integer("top_k", 10, "top-k agreement between seeds (capped at half the features)",
                   minimum=1),
    fields.boolean("max_sensitivity", False, "stability of attributions under perturbation"),
    fields.number("sensitivity_radius", 0.05,
                  "max-sensitivity: L-inf radius of perturbations", 0.0, low_open=True),
    fields.integer("sensitivity_samples", 8, "max-sensitivity: perturbations per example",
                   minimum=1, maximum=100_000),
    fields.boolean("randomization_check", True, "cascading parameter-randomisation check"),
    fields.integer("save_attributions", 16, "examples whose attributions are saved as .npy"),
)

# Measures whose per-seed mean agreement becomes a metric (all five are kept as matrices).
AGREEMENT_METRICS = ("spearman_abs", "top_k")
# Methods whose attributions should add up to f(x) - f(baseline).
_COMPLETE_METHODS = ("integrated_gradients", "shapley", "kernel_shap", "deeplift")
# Which way each per-seed measure is better. Sparser attributions count as more
# interpretable (the proxy's premise); a randomisation correlation near 0 passes.
MEASURE_DIRECTIONS: dict[str, protocol.Direction] = {
    "sparsity": "higher",
    "completeness_gap": "lower",
    "agreement_spearman_abs": "higher",
    "agreement_top_k": "higher",
    "agreement_spearman_abs_scaled": "higher",
    "agreement_top_k_scaled": "higher",
    "max_sensitivity": "lower",
    "randomization_spearman": "lower",
    "shortcut_share": "lower",
    "right_for_wrong_reasons": "lower",
}
ATTRIBUTIONS_DIR = "attributions"
# The no-signal baselines of cross-seed agreement, in the order the scale prefers them:
# agreement between untrained networks (needs ``context.init``), then between random maps
# with each example's values (agreement.permuted_attributions).
BASELINES = ("untrained", "permuted")
# fold_in numbers of each seed's evaluation key: the re-initialised network (shared with
# the randomisation check), a noisy method's repeat, the permutations of the baseline.
_FRESH_INIT, _REPEAT, _PERMUTATION = 1, 2, 3
# fold_in number of the shared key for the noise every seed draws alike (noise_draws).
_SHARED_NOISE = 4


def stochastic(method: str) -> bool:
    """Whether an attribution method draws noise (takes a key: SmoothGrad), so that one
    seed measured twice can disagree with itself."""
    return "key" in inspect.signature(saliency.ATTRIBUTION_METHODS[method]).parameters


# Methods that explain f(x) against a reference (the zero baseline or shapley_background's
# rows), with the most features each takes and what it is called in the refusal.
REFERENCE_METHODS = {
    "shapley": (saliency.MAX_SHAPLEY_FEATURES, "exact Shapley values"),
    "kernel_shap": (kernel_shap.MAX_KERNEL_SHAP_FEATURES, "Kernel SHAP"),
    "deeplift": (float("inf"), "DeepLIFT"),
}


def method_options(method: str, settings: ConfigDict, task: Task) -> dict[str, Any]:
    """The keyword options of ``method`` taken from the ``evaluation.attributions`` config
    section."""
    if method == "integrated_gradients":
        return {"steps": int(settings.ig_steps)}
    if method == "smoothgrad":
        return {"samples": int(settings.smoothgrad_samples),
                "noise_level": float(settings.smoothgrad_noise)}
    if method in REFERENCE_METHODS:
        num_features = int(np.prod(task.input_shape))
        limit, what = REFERENCE_METHODS[method]
        if num_features > limit:
            raise ConfigError(
                "evaluation.attributions.attribution_methods", method,
                f"{what} only for inputs of at most {limit} features; task {task.name} has "
                f"{num_features}")
        rows = int(settings.shapley_background)
        options = {"background": jnp.asarray(task.x_train[:rows])} if rows > 0 else {}
        if method == "kernel_shap":
            options["samples"] = int(settings.kernel_shap_samples)
        return options
    return {}


def check(settings: ConfigDict, task: Task) -> None:
    """Raise :class:`ConfigError` for a method or setting the task cannot take."""
    for method in settings.attribution_methods:
        method_options(method, settings, task)
    if settings.attribution_examples > task.num_test:
        raise ConfigError("evaluation.attributions.attribution_examples",
                          settings.attribution_examples,
                          f"an integer from 1 to the test set size ({task.num_test})")
    if "kernel_shap" in settings.attribution_methods and settings.kernel_shap_samples % 2:
        raise ConfigError("evaluation.attributions.kernel_shap_samples",
                          settings.kernel_shap_samples, "an even integer >= 2 (each sampled "
                          "coalition is paired with its complement)")
    if settings.shapley_background > task.num_train:
        raise ConfigError("evaluation.attributions.shapley_background",
                          settings.shapley_background,
                          f"an integer from 0 to the training set size ({task.num_train})")


def memory(settings: ConfigDict, task: Task, num_seeds: int) -> protocol.MemoryUse:
    """What :func:`evaluate`'s arrays take for ``num_seeds`` seeds.

    Held per method: its attributions ``(S, N, *input_shape)`` float32 (passed on), five
    agreement matrices ``(S, S)`` float32 and their scale (:func:`_place_on_scale`): two
    baselines of each (float32) and the scaled matrices (float64). Working on one method:
    the cross-seed agreement, whose temporaries XLA's memory analysis on CPU puts at about
    5 per-example matrices ``(S, S, N)`` float32 and 16 copies of the attributions (ranks,
    sorts): 4 to 5 and 14 to 16 for 50 to 3,000 seeds and 4 to 256 examples; the scale
    adds one more stack of attributions beside it (the untrained networks', the permuted
    ones or a noisy method's repeat, one at a time), as its agreements run one after
    another; with ``max_sensitivity``, every perturbed copy of the attributions at once.
    The untrained networks' parameters are not counted (nor are the trained ones). Saved:
    the agreement matrices, their baselines and scaled matrices (20 ``(S, S)`` a method).
    """
    examples = min(int(settings.attribution_examples), task.num_test)
    one = 4 * num_seeds * examples * int(np.prod(task.input_shape))
    methods = len(settings.attribution_methods)
    pairs = num_seeds * num_seeds if num_seeds > 1 else 0
    working = 5 * 4 * pairs * examples + 17 * one if pairs else one
    if settings.max_sensitivity:
        working = max(working, int(settings.sensitivity_samples) * one)
    # Matrices a method: 5 agreements and 10 baselines in float32, 5 scaled in float64.
    matrix_bytes = (5 + 10) * 4 * pairs + 5 * 8 * pairs
    # Beside the matrices, a few numbers per seed and method: metrics, the randomisation
    # check's correlation at every layer and the ceilings of a noisy method.
    return protocol.MemoryUse(held=methods * (one + matrix_bytes) + working,
                              saved=methods * (20 * pairs + 15 * num_seeds))


def _target(settings: ConfigDict, task: Task, n: int) -> Any:
    if settings.attribution_target == "label" and task.kind == "classification":
        return jnp.asarray(task.y_test[:n], jnp.int32)
    return saliency.PREDICTED


def _metric(method: str, measure: str, values: Any,
            pairwise: str | None = None) -> protocol.Metric:
    return protocol.Metric(np.asarray(values), MEASURE_DIRECTIONS[measure],
                           {"method": method, "measure": measure}, pairwise)


def evaluate(context: protocol.EvaluationContext) -> protocol.Evaluation:
    """Attributions and their diagnostics for every configured method and every seed.

    Returns an :class:`Evaluation` with metrics ``<method>_<measure>`` (each ``(S,)``,
    labelled ``{"method", "measure"}``: completeness gap, agreement, Gini sparsity of |a|
    and the optional checks; ``<method>_<measure>_agreement_scaled``, agreement between
    its no-signal baseline and its repeat ceiling); pairwise ``agreement``: method ->
    measure -> ``(S, S)``, and its scale ``agreement_baseline``: method -> measure ->
    baseline -> ``(S, S)`` and ``agreement_scaled``: method -> measure -> ``(S, S)``; per
    seed ``randomization``: method -> ``(S, L)`` with the layer names shared, and
    ``agreement_ceiling``: method -> measure -> ``(S,)`` for noisy methods
    (:func:`_place_on_scale`); passed on ``attributions``: method -> ``(S, N,
    *input_shape)``, ``examples`` (``N``) and ``shapley_background`` (the rows Shapley
    values were taken against; 0: the zero baseline), for evaluators that require it.
    """
    task, settings, params, apply_fn = context.task, context.settings, context.params, \
        context.apply
    n = int(settings.attribution_examples)
    x = jnp.asarray(task.x_test[:n])
    target = _target(settings, task, n)
    eval_keys = jax.vmap(lambda k: stream_key(k, "evaluation"))(context.seed_keys)
    noise_keys = _noise_keys(settings, context.shared_key, eval_keys)
    out = protocol.Evaluation(pairwise={"agreement": {}}, per_seed={"randomization": {}},
                              shared={"methods": list(settings.attribution_methods),
                                      "randomization_layers": {}},
                              passed_on={"attributions": {}, "examples": n,
                                         "shapley_background": int(settings.shapley_background)})
    # The randomisation check's steps, top layer first, checked before anything is computed.
    randomized = None
    if settings.randomization_check and context.init is not None:
        randomized = _randomization_steps(params, context.layers)
    # Each seed's freshly initialised network: the randomisation check re-draws layers
    # from it, and the agreement's untrained baseline explains it whole.
    fresh = None
    if context.init is not None and (settings.randomization_check or context.num_seeds > 1):
        fresh = jax.jit(over_seeds(lambda k: context.init(jax.random.fold_in(k, _FRESH_INIT))))(
            eval_keys)
        # Laid out as the trained seeds are, so that explaining them reuses the compiled
        # attributions and agreement (an array's sharding, and whether it is committed to
        # it, are part of what jit compiles for).
        leaves, structure = jax.tree_util.tree_flatten(params)
        if structure == jax.tree_util.tree_structure(fresh) and all(
                isinstance(leaf, jax.Array) and getattr(leaf, "committed", False)
                for leaf in leaves):
            fresh = jax.device_put(fresh, jax.tree_util.tree_map(lambda a: a.sharding, params))
    if context.num_seeds > 1:
        out.pairwise |= {"agreement_baseline": {}, "agreement_scaled": {}}
        out.per_seed["agreement_ceiling"] = {}
        out.shared["agreement_scale"] = {
            "baseline": BASELINES[0] if fresh is not None else BASELINES[1],
            "baseline_mean": {}, "ceiling": {}}
    predictions = jax.jit(over_seeds(lambda p: jnp.argmax(apply_fn(p, x), -1)))(params)
    # Read outside jit, where the params' devices are known: each device's seeds one at a
    # time on a CPU (saliency.seeds_per_step_for).
    num_devices, platform = saliency.seed_devices(params)
    per_step = saliency.seeds_per_step_for("auto", platform)
    for method in settings.attribution_methods:
        options = method_options(method, settings, task)

        def attribution_fn(p, xs, k=None, _method=method, _options=options):
            return saliency.attribute(_method, apply_fn, p, xs, target, k, **_options)

        def over_seeds_fn(p, k, _method=method, _options=options):
            return saliency.attribute_over_seeds(
                _method, apply_fn, p, x, target, k, seeds_per_step=per_step,
                num_devices=num_devices, **_options)

        attribute_all = jax.jit(over_seeds_fn)
        attributions = attribute_all(params, noise_keys)
        out.passed_on["attributions"][method] = np.asarray(attributions)
        metrics = out.metrics
        metrics[f"{method}_sparsity"] = _metric(
            method, "sparsity", interpretability.attribution_sparsity_over_seeds(attributions))
        if method in _COMPLETE_METHODS:
            reference = {k: v for k, v in options.items() if k in ("baseline", "background")}
            gap = jax.jit(over_seeds(
                lambda p, a, _r=reference: jnp.abs(saliency.completeness_gap(
                    apply_fn, p, x, target, a, **_r)).mean(),
                seeded_args=(0, 1)))(params, attributions)
            metrics[f"{method}_completeness_gap"] = _metric(method, "completeness_gap", gap)
        if context.num_seeds > 1:
            top_k = agreement.top_k_used(int(settings.top_k), int(np.prod(task.input_shape)))
            matrices = agreement.cross_seed_agreement(attributions, top_k=top_k)
            out.shared["agreement_top_k"] = top_k
            out.pairwise["agreement"][method] = {k: np.asarray(v) for k, v in matrices.items()}
            for measure in AGREEMENT_METRICS:
                summary = agreement.summarize_agreement(matrices[measure])
                metrics[f"{method}_agreement_{measure}"] = _metric(
                    method, f"agreement_{measure}", summary["per_seed"],
                    pairwise=f"agreement/{method}/{measure}")
            _place_on_scale(out, context, method, attributions, matrices, top_k,
                            attribute_all, fresh, eval_keys, noise_keys)
        fixed_fn = functools.partial(attribution_fn, k=context.shared_key)
        if settings.max_sensitivity:
            sensitivity = agreement.max_sensitivity_over_seeds(
                fixed_fn, params, x, eval_keys,
                radius=float(settings.sensitivity_radius),
                num_samples=int(settings.sensitivity_samples),
            )
            metrics[f"{method}_max_sensitivity"] = _metric(
                method, "max_sensitivity", jnp.nanmean(sensitivity, axis=1))
        if randomized is not None:
            spearman = agreement.cascading_randomization_over_seeds(
                fixed_fn, params, fresh, x, layer_names=randomized[::-1])
            out.shared["randomization_layers"][method] = list(randomized)
            out.per_seed["randomization"][method] = np.asarray(spearman)
            metrics[f"{method}_randomization_spearman"] = _metric(
                method, "randomization_spearman", spearman[:, -1])
        if task.shortcut_features:
            shortcuts = tuple(task.shortcut_features)
            metrics[f"{method}_shortcut_share"] = _metric(
                method, "shortcut_share",
                agreement.shortcut_share_over_seeds(attributions, shortcuts))
            if task.kind == "classification":
                correct = predictions == jnp.asarray(task.y_test[:n])[None, :]
                metrics[f"{method}_right_for_wrong_reasons"] = _metric(
                    method, "right_for_wrong_reasons",
                    agreement.right_for_wrong_reasons_rate_over_seeds(
                        attributions, shortcuts, correct))
    return out


def _noise_keys(settings: ConfigDict, shared_key: jax.Array, eval_keys: jax.Array) -> jax.Array:
    """The keys a noisy method draws with, ``(S, ...)`` like ``eval_keys``: each seed's own,
    or (``noise_draws='shared'``) one key from ``shared_key`` repeated for every seed
    and laid out as ``eval_keys``, so that the seeds' maps average the same noisy inputs and
    their disagreement is not Monte-Carlo noise."""
    if settings.noise_draws == "per_seed":
        return eval_keys
    shared = jax.random.fold_in(shared_key, _SHARED_NOISE)
    keys = jnp.broadcast_to(shared, eval_keys.shape)
    if isinstance(eval_keys, jax.Array) and getattr(eval_keys, "committed", False):
        keys = jax.device_put(keys, eval_keys.sharding)
    return keys


def _randomization_steps(params: Any, layers: Sequence[str] | None) -> tuple[str, ...]:
    """The layers the randomisation check re-draws, top first
    (:func:`agreement.randomization_layer_names`), its error naming ``layers`` (the
    argument of :func:`negres.evaluate` and field of :class:`EvaluationContext` that gives
    them) rather than the measure's own ``layer_names``."""
    try:
        return agreement.randomization_layer_names(params, layers)
    except ArgumentError as e:
        if e.field != "layer_names" or isinstance(e, ConfigError):
            raise
        raise ArgumentError("layers", e.value, e.allowed) from None


def _place_on_scale(out: protocol.Evaluation, context: protocol.EvaluationContext,
                    method: str, attributions: jax.Array, matrices: Mapping[str, jax.Array],
                    top_k: int, attribute_all: Any, fresh: Any, eval_keys: jax.Array,
                    noise_keys: jax.Array) -> None:
    """Cross-seed agreement of ``method`` between a no-signal baseline and a repeat ceiling.

    Saves, for every measure of :data:`negres.measures.agreement.AGREEMENT_MEASURES`:
    pairwise ``agreement_baseline/<method>/<measure>/<baseline>`` ``(S, S)`` for each of
    :data:`BASELINES` (``untrained`` only where ``context.init`` is given), per seed
    ``agreement_ceiling/<method>/<measure>`` ``(S,)`` for a noisy method only (a
    deterministic one repeats itself exactly: its ceiling is 1), and pairwise
    ``agreement_scaled/<method>/<measure>`` :func:`agreement.scaled_agreement` against the
    first baseline available, whose mean over the pairs of seeds that stayed finite is kept
    in ``shared["agreement_scale"]``. Measures of :data:`AGREEMENT_METRICS` become metrics
    ``<method>_<measure>_agreement_scaled``, the row means of the scaled matrix.
    """
    seed_stream = jax.vmap(jax.random.fold_in, in_axes=(0, None))
    baselines = {}
    if fresh is not None:
        # The same method on the same examples, explaining S networks nobody trained.
        baselines["untrained"] = agreement.cross_seed_agreement(
            attribute_all(fresh, noise_keys), top_k=top_k)
    baselines["permuted"] = agreement.cross_seed_agreement(
        agreement.permuted_attributions(attributions, seed_stream(eval_keys, _PERMUTATION)),
        top_k=top_k)
    ceilings = None
    if stochastic(method):  # the same seeds again with independent noise (drawn as before)
        repeat = attribute_all(context.params, seed_stream(noise_keys, _REPEAT))
        ceilings = agreement.paired_agreement(attributions, repeat, top_k=top_k)
        out.per_seed["agreement_ceiling"][method] = {
            m: np.asarray(v) for m, v in ceilings.items()}
    scale = out.shared["agreement_scale"]
    scale["ceiling"][method] = "repeat" if ceilings is not None else "1 (deterministic)"
    used = scale["baseline"]
    out.pairwise["agreement_baseline"][method] = {
        m: {name: np.asarray(b[m]) for name, b in baselines.items()}
        for m in agreement.AGREEMENT_MEASURES}
    out.pairwise["agreement_scaled"][method], scale["baseline_mean"][method] = {}, {}
    for measure in agreement.AGREEMENT_MEASURES:
        mean = agreement.off_diagonal_mean(baselines[used][measure], context.kept)
        scaled = agreement.scaled_agreement(
            matrices[measure], mean, None if ceilings is None else ceilings[measure])
        out.pairwise["agreement_scaled"][method][measure] = scaled
        scale["baseline_mean"][method][measure] = mean
        if measure in AGREEMENT_METRICS:
            out.metrics[f"{method}_{measure}_agreement_scaled"] = _metric(
                method, f"agreement_{measure}_scaled", pairwise_row_means(scaled),
                pairwise=f"agreement_scaled/{method}/{measure}")


def method_families(condition: ConditionResults, compare: protocol.Compare,
                    evaluator: str) -> dict[str, dict[str, Any]]:
    """Each attribution method against the condition's first, per measure, paired by seed
    (the methods explain the same trained seeds, so seed ``i``'s numbers are a pair), for
    the metrics ``evaluator`` labelled with a ``method`` and a ``measure``."""
    by_measure: dict[str, dict[str, str]] = {}
    directions: dict[str, str] = {}
    for metric, info in condition.metric_info.items():
        labels = info.labels
        if info.evaluator == evaluator and "method" in labels:
            by_measure.setdefault(labels["measure"], {})[labels["method"]] = metric
            directions[labels["measure"]] = info.direction
    families = {}
    for measure, metrics in by_measure.items():
        methods = list(metrics)
        if len(methods) < 2:
            continue
        reference = methods[0]
        # Each as it was sampled: agreement is a mean over pairs of seeds, compared as such.
        y = condition.sample(metrics[reference])
        families[measure] = {
            method: compare(condition.sample(metrics[method]), y,
                            directions[measure]) | {"reference": reference}
            for method in methods[1:]}
    return families


def statistics(condition: ConditionResults,
               compare: protocol.Compare) -> dict[str, dict[str, Any]]:
    """The attribution methods compared per measure (:func:`method_families`)."""
    return method_families(condition, compare, "attributions")


EVALUATOR = protocol.Evaluator(
    name="attributions",
    fields=FIELDS,
    evaluate=evaluate,
    check=check,
    memory=memory,
    statistics=statistics,
    doc="saliency maps of every seed, their agreement across seeds and sanity checks",
)
