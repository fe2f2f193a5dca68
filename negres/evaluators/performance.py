"""Each seed's score and loss on the test and the training set, and which seeds collapsed.

The score is accuracy for classification and mean squared error for regression; the loss
is the task kind's training loss (:mod:`negres.measures.losses`). Every study runs this
evaluator first: the report's headline numbers and the robustness sweep's clean point
are these.

A seed *collapses* when its training loss ends above its loss at initialisation while
staying finite (Adam at a learning rate of 1e6 ends at chance accuracy with a loss of
1e6 to 1e9): nothing non-finite flags it as diverged, so it stays in the statistics, and
the report and the terminal name it instead.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from negres.evaluators.protocol import (
    Evaluation,
    EvaluationContext,
    Evaluator,
    MemoryUse,
    Metric,
)
from negres.measures.losses import LOSSES, PER_EXAMPLE, SCORE_NAMES
from negres.results import ConditionResults
from negres.seeds import over_seeds, stream_key

# Which way each score is better.
SCORE_DIRECTIONS = {"accuracy": "higher", "mse": "lower"}
# What one unit of each score and loss is, for metrics.csv.
UNITS = {"accuracy": "fraction of examples", "mse": "squared target units",
         "classification_loss": "nats per example", "regression_loss": "squared target units",
         "ece": "probability"}

# Collapsed seeds named one by one in the report; past these, a count (thousands of seeds
# at a runaway learning rate would fill pages).
REPORT_SEEDS = 20


def evaluate(context: EvaluationContext) -> Evaluation:
    """``test_<score>``, ``test_loss``, ``train_<score>``, ``train_loss``, each ``(S,)``;
    ``per_seed`` ``per_example/test_<score>`` and ``per_example/test_loss`` ``(S, N)``, each
    test example's values, which the test metrics declare (their intervals cover the test
    examples' sampling too); with ``context.init``, ``per_seed`` ``initial_train_loss``
    ``(S,)`` and ``collapsed`` ``(S,)`` bool (see :func:`collapsed_of`). The training set's
    metrics are about the training set the seeds saw: independent per seed."""
    task = context.task
    score = SCORE_NAMES[task.kind]
    loss_fn, per_example_fn = LOSSES[task.kind], PER_EXAMPLE[task.kind]
    scored = jax.jit(over_seeds(lambda p, x, y: loss_fn(context.apply(p, x), y)))

    def scored_and_per_example(p: Any, x: Any, y: Any) -> tuple[Any, Any]:
        outputs = context.apply(p, x)  # one forward pass for both
        return loss_fn(outputs, y), per_example_fn(outputs, y)

    scored_test = jax.jit(over_seeds(scored_and_per_example))
    out = Evaluation(per_seed={"per_example": {}})
    for split, x, y in (("test", task.x_test, task.y_test),
                        ("train", task.x_train, task.y_train)):
        by_example = {}
        if split == "test":
            (loss, value), (losses, values) = jax.device_get(
                scored_test(context.params, x, y))
            by_example = {"score": f"per_example/test_{score}", "loss": "per_example/test_loss"}
            out.per_seed["per_example"][f"test_{score}"] = np.asarray(values)
            out.per_seed["per_example"]["test_loss"] = np.asarray(losses)
        else:
            loss, value = scored(context.params, x, y)
        out.metrics[f"{split}_{score}"] = Metric(
            jax.device_get(value), SCORE_DIRECTIONS[score], {"split": split, "measure": score},
            units=UNITS[score], per_example=by_example.get("score"))
        out.metrics[f"{split}_loss"] = Metric(
            jax.device_get(loss), "lower", {"split": split, "measure": "loss"},
            units=UNITS[f"{task.kind}_loss"], per_example=by_example.get("loss"))
    if context.init is not None:
        # Seed i's initial parameters, re-drawn: the built-in program initialises with
        # model.init(stream_key(seed_key, "init"), ...) (negres.training.builtin), and
        # context.seed_keys[i] is that seed_key, so this reproduces them exactly as long as
        # init draws only from its key and the input's shape (flax's initialisers do; the
        # example input's values are never read). A library user whose own init draws from
        # another stream gets the loss of a fresh initialisation of the same model instead.
        # Not jitted: a new jit per condition would compile init again (seconds for a
        # small MLP on a CPU, mostly its truncated normal draws), while op by op the random
        # draws' own compiled functions are cached by shape and conditions of one model
        # share them.
        initial_params = over_seeds(lambda k: context.init(stream_key(k, "init")))(
            context.seed_keys)
        # The same compiled function as the final loss: a seed that did not move compares
        # equal, not above by rounding.
        initial, _ = scored(initial_params, task.x_train, task.y_train)
        initial = np.asarray(jax.device_get(initial), dtype=np.float64)
        final = np.asarray(out.metrics["train_loss"].values, dtype=np.float64)
        kept = (np.ones(context.num_seeds, bool) if context.kept is None
                else np.asarray(context.kept, bool))
        out.per_seed["initial_train_loss"] = initial
        out.per_seed["collapsed"] = collapsed_of(initial, final, kept)
    return out


def collapsed_of(initial: np.ndarray, final: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """``(S,)`` bool: the seeds whose final training loss is finite and above their loss at
    initialisation. A diverged seed (not ``kept``) is never counted: it is flagged and left
    out already, and its loss is that of the state it was frozen at."""
    with np.errstate(invalid="ignore"):  # a NaN initial loss compares False, as it should
        return kept & np.isfinite(final) & (final > initial)


def collapsed_seeds(condition: ConditionResults) -> list[tuple[int, float, float]]:
    """``(seed index, initial training loss, final training loss)`` of every collapsed seed
    of one condition's results; empty for a ``results.json`` written before seeds were
    checked for collapse, or by a study whose model could not be re-initialised."""
    per_seed = condition.saved_by("performance").per_seed
    flags, initial = per_seed.get("collapsed"), per_seed.get("initial_train_loss")
    seeds = condition.seed_indices
    final = condition.metrics.get("train_loss")
    if flags is None or initial is None or seeds is None or final is None:
        return []
    # Saved as JSON booleans, or as 0/1 once seeds were left out (statistics cast to float).
    flags = np.asarray(flags, dtype=float) > 0
    if not (len(flags) == len(initial) == len(seeds) == len(final)):
        return []
    return [(int(seeds[i]), float(initial[i]), float(final[i])) for i in np.flatnonzero(flags)]


def seed_list(collapsed: list[tuple[int, float, float]], limit: int) -> str:
    """``"seeds 3 (2.303 → 9.15e+08), 7 (...)"``: the first ``limit`` of
    :func:`collapsed_seeds`, each with its training loss at initialisation and at the end."""
    named = ", ".join(f"{seed} ({initial:.4g} → {final:.4g})"
                      for seed, initial, final in collapsed[:limit])
    more = f" and {len(collapsed) - limit} more" if len(collapsed) > limit else ""
    return f"seed{'s' if len(collapsed) > 1 else ''} {named}{more}"


def memory(settings: Any, task: Any, num_seeds: int) -> MemoryUse:
    """Each test example's score and loss per seed: ``2 S N`` numbers, held and saved."""
    del settings
    numbers = 2 * num_seeds * int(np.shape(task.y_test)[0])
    return MemoryUse(held=8 * numbers, saved=numbers)


EVALUATOR = Evaluator(
    name="performance",
    fields=(),
    evaluate=evaluate,
    memory=memory,
    doc="each seed's score (accuracy or MSE) and loss on the test and the training set",
)
