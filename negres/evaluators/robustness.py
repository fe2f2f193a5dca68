"""Shift robustness across seeds: every shift at every severity, for every seed at once.

For one seed and one shift, the whole severity sweep is one vmapped computation; the
seeds are lifted with :func:`negres.seeds.over_seeds`. When every seed sees the same
shifted test set (``shared_shift_noise``, the default) the shifted inputs do not depend
on the seed, so JAX computes them once and the seeds' results are paired: seed-to-seed
differences are differences of models, not of noise draws.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from negres.measures import metrics
from negres.seeds import over_seeds, stream_key
from negres.tasks import Task
from negres.tasks.shifts import get_shift


def check_robustness_config(evaluation: ConfigDict, task: Task) -> None:
    """Raise :class:`negres.errors.ConfigError` for a shift name the task cannot use."""
    for name in evaluation.shifts:
        get_shift(name, task)


def _evaluate_outputs(outputs: jax.Array, y: jax.Array, kind: str) -> dict[str, jax.Array]:
    if kind == "regression":
        mse = metrics.mean_squared_error(outputs, y)
        return {"mse": mse, "loss": mse}
    return {
        "accuracy": metrics.accuracy(outputs, y),
        "loss": metrics.cross_entropy(outputs, y),
        "ece": metrics.expected_calibration_error(outputs, y),
    }


def robustness_study(
    model: nn.Module,
    task: Task,
    params: Any,
    seed_keys: jax.Array,
    evaluation: ConfigDict,
    shared_key: jax.Array,
) -> dict[str, Any]:
    """Clean calibration and confusion, and every configured shift's severity sweep.

    Args:
      model: the trained model.
      task: supplies the test set and any task-specific shifts.
      params: ``(S, ...)`` trained parameters.
      seed_keys: ``(S, 2)`` the seeds' keys (their ``evaluation`` stream draws the shift
        noise when ``evaluation.shared_shift_noise`` is off).
      evaluation: the config's ``evaluation`` section (``shifts``, ``severities``).
      shared_key: the key of the shift noise shared by every seed.

    Returns:
      ``metrics``: ``test_ece`` (classification) and ``<shift>_mean_<score>`` (the score
      averaged over the non-zero severities), each ``(S,)``; ``robustness``: shift ->
      ``{"severities": (K,), <score>, "loss", ["ece"], "gap": (S, K)}`` where ``gap`` is
      clean minus shifted accuracy (shifted minus clean MSE for regression), so a larger gap
      is always a larger loss of performance; ``confusion``: ``"clean"`` and each shift at
      its largest severity, ``(S, C, C)``.
    """
    kind = task.kind
    score = "mse" if kind == "regression" else "accuracy"
    x = jnp.asarray(task.x_test)
    y = jnp.asarray(task.y_test)
    severities = jnp.asarray(evaluation.severities, jnp.float32)
    eval_keys = jax.vmap(lambda k: stream_key(k, "evaluation"))(seed_keys)
    shared = bool(evaluation.shared_shift_noise)

    def apply_fn(p: Any, xs: jax.Array) -> jax.Array:
        return model.apply({"params": p}, xs, train=False)

    def clean_one(p: Any) -> dict[str, jax.Array]:
        outputs = apply_fn(p, x)
        result = _evaluate_outputs(outputs, y, kind)
        if kind == "classification":
            result["confusion"] = metrics.confusion_matrix(outputs, y, task.num_outputs)
        return result

    clean = jax.jit(over_seeds(clean_one))(params)
    out: dict[str, Any] = {"metrics": {}, "robustness": {}, "confusion": {}}
    if kind == "classification":
        out["metrics"]["test_ece"] = np.asarray(clean["ece"])
        out["confusion"]["clean"] = np.asarray(clean["confusion"])
    for index, name in enumerate(evaluation.shifts):
        shift = get_shift(name, task)

        def sweep_one(p: Any, seed_key: jax.Array, _shift=shift, _index=index):
            noise_key = jax.random.fold_in(shared_key if shared else seed_key, _index)

            def at(severity: jax.Array) -> dict[str, jax.Array]:
                outputs = apply_fn(p, _shift(noise_key, x, severity))
                result = _evaluate_outputs(outputs, y, kind)
                if kind == "classification":
                    result["confusion"] = metrics.confusion_matrix(outputs, y, task.num_outputs)
                return result

            # Severities one after another: memory of one shifted test set, not K of them.
            return jax.lax.map(at, severities)

        swept = jax.jit(over_seeds(sweep_one, seeded_args=(0, 1)))(params, eval_keys)
        values = {k: np.asarray(v) for k, v in swept.items()}
        clean_score = np.asarray(clean[score])[:, None]
        gap = values[score] - clean_score if kind == "regression" else clean_score - values[score]
        curves = {"severities": np.asarray(evaluation.severities, float), score: values[score],
                  "loss": values["loss"], "gap": gap}
        if kind == "classification":
            curves["ece"] = values["ece"]
            out["confusion"][name] = values["confusion"][:, int(np.argmax(evaluation.severities))]
        out["robustness"][name] = curves
        nonzero = np.asarray(evaluation.severities) > 0
        if nonzero.any():
            out["metrics"][f"{name}_mean_{score}"] = values[score][:, nonzero].mean(axis=1)
    for name, shift_set in task.known.get("shift_sets", {}).items():
        key = f"corrupted_{name}"
        values = _evaluate_shift_set(apply_fn, params, shift_set, kind, task.num_outputs)
        clean_score = np.asarray(clean[score])[:, None]
        out["robustness"][key] = {
            "severities": np.asarray(shift_set["severities"], float), score: values[score],
            "loss": values["loss"], "ece": values["ece"], "gap": clean_score - values[score]}
        out["confusion"][key] = values["confusion"][:, -1]
        out["metrics"][f"{key}_mean_{score}"] = values[score].mean(axis=1)
    return out


def _evaluate_shift_set(
    apply_fn: Any, params: Any, shift_set: dict[str, np.ndarray], kind: str, num_classes: int
) -> dict[str, np.ndarray]:
    """Every seed on every level of a real shifted test set; ``(S, K)`` per metric.

    The set's images stay ``uint8`` on the host and are scaled on the device, one level at
    a time, since a full CIFAR-10-C in float32 would need gigabytes.
    """

    def one_seed(p: Any, xs: jax.Array, ys: jax.Array) -> dict[str, jax.Array]:
        def at(level: tuple[jax.Array, jax.Array]) -> dict[str, jax.Array]:
            x, y = level
            outputs = apply_fn(p, x.astype(jnp.float32) / 255.0)
            result = _evaluate_outputs(outputs, y, kind)
            result["confusion"] = metrics.confusion_matrix(outputs, y, num_classes)
            return result

        return jax.lax.map(at, (xs, ys))

    swept = jax.jit(over_seeds(one_seed))(params, jnp.asarray(shift_set["x"]),
                                          jnp.asarray(shift_set["y"]))
    return {k: np.asarray(v) for k, v in swept.items()}
