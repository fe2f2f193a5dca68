"""A condition's evaluators run on its trained seeds, and the condition's results."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import numpy as np

from negres.evaluators import (
    EvaluationContext,
    as_results,
    run_evaluators,
)
from negres.measures.agreement import layer_order
from negres.reporting.sections import save_files
from negres.results import ConditionResults, Diverged
from negres.seeds import seed_keys, stream_key
from negres.sharding import is_main_process
from negres.study.prepare import Condition
from negres.training.driver import TrainResult
from negres.training.linen import linen_apply
from negres.training.optimizers import hyperparams_of


def evaluate_condition(
    condition: Condition, trained: TrainResult, workdir: Path, shared_with: list[str]
) -> ConditionResults:
    """Run the condition's evaluators on its trained seeds; per-seed numbers as ``(S,)``."""
    config, task, model = condition.config, condition.task, condition.model
    start = time.perf_counter()
    example = task.x_test[:1]
    curves = {name.replace("eval_", "test_"): v for name, v in trained.curves.items()}
    context = EvaluationContext(
        apply=linen_apply(model), params=trained.params, task=task,
        settings=config.evaluation, seed_keys=seed_keys(config.seed, trained.seed_indices),
        shared_key=stream_key(jax.random.PRNGKey(config.seed), "evaluation"),
        init=lambda key: model.init(key, example, train=False)["params"],
        layers=layer_order(model, example, train=False),
        kept=np.asarray(trained.diverged_at) < 0,
        curves={"step": trained.curve_steps, **curves},
    )
    evaluations = run_evaluators(condition.evaluators, context)
    if is_main_process():  # the files its presentations save (the attributions' .npy)
        save_files(evaluations, workdir, condition.name, task, config.evaluation)
    diverged = trained.diverged_at >= 0
    return dataclasses.replace(
        as_results(evaluations),
        task=task.name,
        overrides=condition.overrides,
        num_seeds=int(trained.seed_indices.size),
        seed_indices=trained.seed_indices,
        curves={"step": trained.curve_steps, **curves},
        train_time_s=trained.train_time_s,
        trained_in_one_call_with=shared_with,
        training_plan=trained.plan,
        # Per seed: the step its loss or parameters stopped being finite (-1: never).
        diverged_at_step=trained.diverged_at,
        diverged=Diverged(count=int(diverged.sum()),
                          seed_indices=trained.seed_indices[diverged],
                          steps=trained.diverged_at[diverged]),
        hyperparams=hyperparams_of(config.optimizer),
        evaluation_time_s=time.perf_counter() - start,
    )
