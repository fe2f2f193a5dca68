"""Shift robustness across seeds: every shift at every severity, for every seed at once.

For one seed and one shift, the whole severity sweep is one vmapped computation; the
seeds are lifted with :func:`negres.seeds.over_seeds`. When every seed sees the same
shifted test set (``shared_shift_noise``, the default) the shifted inputs do not depend
on the seed, so JAX computes them once and the seeds' results are paired: seed-to-seed
differences are differences of models, not of noise draws. Real shifted test sets a task
brings (CIFAR-10-C) are swept level by level. Every seed's predicted classes on every
shifted set are passed on to evaluators that require this one (``multiplicity``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from negres import fields
from negres.errors import ConfigError
from negres.evaluators.performance import SCORE_DIRECTIONS, UNITS
from negres.evaluators.protocol import (
    Compare,
    Evaluation,
    EvaluationContext,
    Evaluator,
    MemoryUse,
    Metric,
)
from negres.measures import metrics
from negres.measures.losses import SCORE_NAMES
from negres.results import ConditionResults, Sample
from negres.seeds import over_seeds, stream_key
from negres.tasks import ShiftSet, Task
from negres.tasks.shifts import SHIFTS, contrast, get_shift, occlusion

FIELDS = (
    fields.names("shifts", ("gaussian_noise",),
                 f"names in {sorted(SHIFTS)} or the task's own shifts"),
    fields.sequence("severities", (0.0, 0.1, 0.2, 0.3, 0.5), "severity sweep of every shift",
                    lambda v: fields.is_number(v) and v >= 0, "finite severities >= 0",
                    min_len=1, unique=True),
    fields.boolean("shared_shift_noise", True, "every seed sees the same shifted test set"),
    fields.boolean("per_subset", False, "also each shift's mean score on each test subset the "
                   "task declares (<shift>_<subset>_mean_<score>)"),
)


def check(settings: ConfigDict, task: Task) -> None:
    """Raise :class:`negres.errors.ConfigError` for a shift name the task cannot use, or a
    severity the built-in occlusion or contrast cannot take (a share of the features
    occluded, of the contrast taken away)."""
    for name in settings.shifts:
        shift = get_shift(name, task)
        # A task's own shift of the same name is the task's to bound.
        if shift in (occlusion, contrast) and any(s > 1 for s in settings.severities):
            raise ConfigError("evaluation.robustness.severities", tuple(settings.severities),
                              f"severities in [0, 1] when {name} is among the shifts")


def memory(settings: ConfigDict, task: Task, num_seeds: int) -> MemoryUse:
    """What :func:`evaluate`'s arrays take for ``num_seeds`` seeds.

    Held: per set and level (clean, each shift at each severity, each of the task's
    shifted sets) every seed's predicted classes ``(S, K, N)`` int32, passed on to
    ``multiplicity``, and confusion matrices ``(S, K, C, C)`` int32; for the level being
    computed, the outputs ``(S, N, C)`` float32 and, without ``shared_shift_noise``, every
    seed's own shifted test set ``(S, N, *input_shape)``. Saved: four curves ``(S, K)``
    per shifted set, one confusion matrix per seed and set, one metric per seed and set;
    with ``per_subset``, per shift each subset example's mean score and one metric a subset.
    """
    classes = int(task.num_outputs)
    shifted = [len(settings.severities)] * len(settings.shifts) + [
        len(s.severities) for s in task.shift_sets.values()]
    examples = [task.num_test] * (1 + len(settings.shifts)) + [
        int(np.shape(s.y)[-1]) for s in task.shift_sets.values()]
    confusion = classes * classes if task.kind == "classification" else 0
    # Per level: score, loss, gap and ece, and for classification every example's
    # predicted class and the confusion matrix.
    per_seed = sum(4 * k * (4 + (n + confusion if confusion else 0))
                   for k, n in zip([1, *shifted], examples, strict=True))
    per_seed += 4 * task.num_test * classes
    if not settings.shared_shift_noise:
        per_seed += 4 * task.num_test * int(np.prod(task.input_shape))
    # One metric and one confusion matrix per set (the clean one and each shifted one).
    saved = sum(4 * k for k in shifted) + (1 + len(shifted)) * (confusion + 1)
    if settings.get("per_subset", False):  # each subset example's mean score, per shift
        in_subsets = sum(int(np.asarray(m, bool).sum()) for m in task.test_subsets.values())
        per_seed += 8 * len(settings.shifts) * in_subsets
        saved += len(settings.shifts) * (in_subsets + len(task.test_subsets))
    return MemoryUse(held=num_seeds * per_seed, saved=num_seeds * saved)


def _evaluate_outputs(outputs: jax.Array, y: jax.Array, kind: str) -> dict[str, jax.Array]:
    if kind == "regression":
        mse = metrics.mean_squared_error(outputs, y)
        return {"mse": mse, "loss": mse, "per_example": metrics.squared_error(outputs, y)}
    return {
        "accuracy": metrics.accuracy(outputs, y),
        "per_example": metrics.correct(outputs, y).astype(outputs.dtype),
        "loss": metrics.cross_entropy(outputs, y),
        "ece": metrics.expected_calibration_error(outputs, y),
        "confusion": metrics.confusion_matrix(outputs, y, outputs.shape[-1]),
        "predictions": jnp.argmax(outputs, -1).astype(jnp.int32),
    }


def evaluate(context: EvaluationContext) -> Evaluation:
    """Clean calibration and confusion, and every configured shift's severity sweep.

    Returns an :class:`Evaluation` with metrics ``test_ece`` (classification) and
    ``<shift>_mean_<score>`` (the score averaged over the non-zero severities), each
    ``(S,)``; per seed ``curves``: shift -> ``{<score>, "loss", ["ece"], "gap": (S, K)}``
    where ``gap`` is clean minus shifted accuracy (shifted minus clean MSE for
    regression), so a larger gap is always a larger loss of performance, and
    ``confusion``: ``"clean"`` and each shift at its largest severity, ``(S, C, C)``;
    ``per_example``: shift -> each test example's score ``(S, K, N)`` at each severity, and
    ``<shift>_mean_<score>`` -> ``(S, N)`` its mean over the non-zero severities, which the
    metric declares (its interval covers the test examples too); with ``per_subset``, for
    each of the task's test subsets also ``<shift>_<subset>_mean_<score>`` ``(S,)``, the
    same mean over the subset's examples (e.g. rule compliance under a distortion), with
    its ``per_example`` entry ``(S, n)``; shared ``severities``:
    shift -> ``(K,)``. Passed on: ``predictions`` set -> ``(S, K, N)``, ``labels`` set ->
    ``(K, N)``, ``severities`` set -> ``(K,)`` (classification).
    """
    task, settings, params = context.task, context.settings, context.params
    kind = task.kind
    score = SCORE_NAMES[kind]
    x = jnp.asarray(task.x_test)
    y = jnp.asarray(task.y_test)
    severities = jnp.asarray(settings.severities, jnp.float32)
    eval_keys = jax.vmap(lambda k: stream_key(k, "evaluation"))(context.seed_keys)
    shared = bool(settings.shared_shift_noise)
    shared_key = context.shared_key
    apply_fn = context.apply

    clean = jax.jit(over_seeds(lambda p: _evaluate_outputs(apply_fn(p, x), y, kind)))(params)
    # Which way is better, and units, for each measure of the sweeps (metrics.csv).
    loss_units = UNITS[f"{kind}_loss"]
    # The score's sweeps keep each example's value (per_example[shift], (S, K, N)).
    curve_info = {score: {"direction": SCORE_DIRECTIONS[score], "units": UNITS[score],
                          "sampling": "examples"},
                  "loss": {"direction": "lower", "units": loss_units},
                  "gap": {"direction": "lower", "units": UNITS[score]},
                  "ece": {"direction": "lower", "units": UNITS["ece"]}}
    out = Evaluation(per_seed={"curves": {}, "confusion": {}, "per_example": {}},
                     shared={"severities": {}, "curve_info": curve_info})
    classification = kind == "classification"
    if classification:
        out.metrics["test_ece"] = Metric(np.asarray(clean["ece"]), "lower",
                                         {"set": "clean", "measure": "ece"}, units=UNITS["ece"])
        out.per_seed["confusion"]["clean"] = np.asarray(clean["confusion"])
        out.passed_on = {"predictions": {"clean": np.asarray(clean["predictions"])[:, None]},
                         "labels": {"clean": np.asarray(task.y_test)[None]},
                         "severities": {"clean": np.zeros(1)}}
    clean_score = np.asarray(clean[score])[:, None]
    nonzero = np.asarray(settings.severities) > 0
    for index, name in enumerate(settings.shifts):
        shift = get_shift(name, task)

        def sweep_one(p: Any, seed_key: jax.Array, _shift=shift, _index=index):
            noise_key = jax.random.fold_in(shared_key if shared else seed_key, _index)

            def at(severity: jax.Array) -> dict[str, jax.Array]:
                return _evaluate_outputs(apply_fn(p, _shift(noise_key, x, severity)), y, kind)

            # Severities one after another: memory of one shifted test set, not K of them.
            return jax.lax.map(at, severities)

        swept = jax.jit(over_seeds(sweep_one, seeded_args=(0, 1)))(params, eval_keys)
        values = {k: np.asarray(v) for k, v in swept.items()}
        gap = values[score] - clean_score if kind == "regression" else clean_score - values[score]
        curves = {score: values[score], "loss": values["loss"], "gap": gap}
        if classification:
            curves["ece"] = values["ece"]
            out.per_seed["confusion"][name] = values["confusion"][
                :, int(np.argmax(settings.severities))]
            _pass_on(out, name, values["predictions"], np.broadcast_to(
                np.asarray(task.y_test), (len(settings.severities), task.num_test)),
                settings.severities)
        out.per_seed["curves"][name] = curves
        out.per_seed["per_example"][name] = values["per_example"]
        out.shared["severities"][name] = np.asarray(settings.severities, float)
        if nonzero.any():
            metric = f"{name}_mean_{score}"
            out.per_seed["per_example"][metric] = values["per_example"][:, nonzero].mean(axis=1)
            out.metrics[metric] = Metric(
                values[score][:, nonzero].mean(axis=1), SCORE_DIRECTIONS[score],
                {"set": name, "measure": f"mean_{score}"}, units=UNITS[score],
                per_example=f"per_example/{metric}")
            if settings.per_subset:
                _subset_means(out, name, out.per_seed["per_example"][metric], task, score)
    for name, shift_set in task.shift_sets.items():
        key = f"corrupted_{name}"
        values = _evaluate_shift_set(apply_fn, params, shift_set, kind)
        gap = values[score] - clean_score if kind == "regression" else clean_score - values[score]
        out.per_seed["curves"][key] = {score: values[score], "loss": values["loss"], "gap": gap}
        out.shared["severities"][key] = np.asarray(shift_set.severities, float)
        # A real shifted set's levels hold other examples than the clean test set (and than
        # each other): its metric is independent per seed over those levels' examples.
        out.metrics[f"{key}_mean_{score}"] = Metric(
            values[score].mean(axis=1), SCORE_DIRECTIONS[score],
            {"set": key, "measure": f"mean_{score}"}, units=UNITS[score])
        if classification:
            out.per_seed["curves"][key]["ece"] = values["ece"]
            out.per_seed["confusion"][key] = values["confusion"][:, -1]
            _pass_on(out, key, values["predictions"], np.asarray(shift_set.y),
                     shift_set.severities)
    return out


def _subset_means(out: Evaluation, shift: str, per_example: np.ndarray, task: Task,
                  score: str) -> None:
    """``<shift>_<subset>_mean_<score>``: each example's mean over the shift's non-zero
    severities ``per_example`` ``(S, N)``, averaged over each test subset's examples."""
    for subset, mask in task.test_subsets.items():
        mask = np.asarray(mask, bool)
        if not mask.any():
            continue
        out.add_example_mean(
            f"{shift}_{subset}_mean_{score}", per_example[:, mask], SCORE_DIRECTIONS[score],
            {"set": shift, "subset": subset, "measure": f"mean_{score}"}, units=UNITS[score])


def _pass_on(out: Evaluation, name: str, predictions: np.ndarray, labels: np.ndarray,
             severities: Sequence[float]) -> None:
    out.passed_on["predictions"][name] = predictions
    out.passed_on["labels"][name] = labels
    out.passed_on["severities"][name] = np.asarray(severities, float)


def _evaluate_shift_set(
    apply_fn: Any, params: Any, shift_set: ShiftSet, kind: str
) -> dict[str, np.ndarray]:
    """Every seed on every level of a real shifted test set; ``(S, K)`` per metric.

    The set's images stay ``uint8`` on the host and are scaled on the device, one level at
    a time, since a full CIFAR-10-C in float32 would need gigabytes.
    """

    def one_seed(p: Any, xs: jax.Array, ys: jax.Array) -> dict[str, jax.Array]:
        def at(level: tuple[jax.Array, jax.Array]) -> dict[str, jax.Array]:
            x, y = level
            return _evaluate_outputs(apply_fn(p, x.astype(jnp.float32) / 255.0), y, kind)

        return jax.lax.map(at, (xs, ys))

    swept = jax.jit(over_seeds(one_seed))(params, jnp.asarray(shift_set.x),
                                          jnp.asarray(shift_set.y))
    return {k: np.asarray(v) for k, v in swept.items()}


def curves_of(condition: ConditionResults) -> tuple[dict[str, Any], dict[str, Any]]:
    """One condition's saved sweeps: ``(shift -> {measure: (S, K)}, shift -> (K,)
    severities)``; empty where robustness did not run."""
    saved = condition.saved_by("robustness")
    return saved.per_seed.get("curves") or {}, saved.shared.get("severities") or {}


def _per_example(condition: ConditionResults) -> Mapping[str, Any]:
    return condition.saved_by("robustness").per_seed.get("per_example") or {}


def severity_sample(condition: ConditionResults, shift: str, k: int, score: str) -> Sample:
    """Severity ``k`` of ``shift``: each seed's score, with each test example's where saved
    (a shift of the clean test set; a real shifted set's examples are its own)."""
    values = np.asarray(curves_of(condition)[0][shift][score], float)[:, k]
    saved = _per_example(condition).get(shift)
    return Sample(values, None if saved is None else np.asarray(saved, float)[:, k])


def statistics(condition: ConditionResults, compare: Compare) -> dict[str, dict[str, Any]]:
    """Each shift at each non-zero severity against the clean test set, paired by seed
    (and by test example, where the shift is of the clean test set's examples)."""
    curves, severities = curves_of(condition)
    score = "mse" if "test_mse" in condition.metrics else "accuracy"
    clean = condition.sample(f"test_{score}")
    family = {}
    for shift in curves:
        for k, severity in enumerate(severities[shift]):
            if severity != 0:
                family[f"{shift}@{severity:g}"] = compare(
                    severity_sample(condition, shift, k, score), clean,
                    SCORE_DIRECTIONS[score]) | {"shift": shift, "severity": float(severity)}
    return {"shift_vs_clean": family} if family else {}


EVALUATOR = Evaluator(
    name="robustness",
    fields=FIELDS,
    evaluate=evaluate,
    check=check,
    memory=memory,
    statistics=statistics,
    doc="every seed's score, loss and calibration under each shift, severity by severity",
)
