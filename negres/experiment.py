"""config -> task, model, training, evaluation, results: the only glue in negres."""

from __future__ import annotations

import os
import platform
import time
from typing import Any

import jax
import numpy as np
from absl import logging
from ml_collections import ConfigDict

from negres.config import validate_config
from negres.engine import check_training_arguments, make_evaluate, train_seeds
from negres.losses import SCORE_NAMES
from negres.models import build_model
from negres.optimizers import build_optimizer
from negres.results_io import (
    CONFIG_FILE,
    RESULTS_FILE,
    prepare_workdir,
    write_json_atomic,
)
from negres.seeds import over_seeds
from negres.summary import seed_table
from negres.tasks import load_task


def log_progress(steps_done: int, total_steps: int, num_seeds: int, elapsed: float) -> None:
    logging.info(
        "train: step %d/%d (%3.0f%%), %d seeds, %.1fs elapsed",
        steps_done, total_steps, 100.0 * steps_done / total_steps, num_seeds, elapsed,
    )


def device_description() -> dict[str, Any]:
    devices = jax.devices()
    return {
        "platform": devices[0].platform,
        "kind": devices[0].device_kind,
        "count": len(devices),
        "host": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "jax_version": jax.__version__,
    }


def run(config: ConfigDict, workdir: str, *, overwrite: bool = False) -> dict[str, Any]:
    """Run the study that ``config`` describes and write its results into ``workdir``.

    Every check on the config and the workdir happens before anything is compiled,
    and nothing is written into the workdir until the results exist.

    Returns:
      The contents of ``results.json``: per-seed metrics as lists of length ``S``,
      curves as ``(S, T)`` nested lists.
    """
    start = time.perf_counter()
    validate_config(config)
    model = build_model(config.model, num_outputs=1)  # validates model fields early
    optimizer = build_optimizer(config.optimizer)
    task = load_task(config.task)
    model = build_model(config.model, num_outputs=task.num_outputs)
    check_training_arguments(
        num_seeds=config.num_seeds,
        steps=config.train.steps,
        batch_size=config.train.batch_size,
        eval_every=config.train.eval_every,
        num_train=task.num_train,
    )
    path = prepare_workdir(workdir, overwrite)

    logging.info(
        "negres: task %s (%d train, %d test, input %s), model %s, %d seeds x %d steps on %s",
        task.name, task.num_train, task.num_test, task.input_shape, config.model.name,
        config.num_seeds, config.train.steps, jax.devices()[0].platform,
    )
    trained = train_seeds(
        model,
        optimizer,
        task.x_train,
        task.y_train,
        num_seeds=config.num_seeds,
        steps=config.train.steps,
        batch_size=config.train.batch_size,
        seed=config.seed,
        kind=task.kind,
        eval_every=config.train.eval_every,
        x_eval=task.x_test,
        y_eval=task.y_test,
        progress=log_progress,
    )
    score = SCORE_NAMES[task.kind]
    evaluate = jax.jit(over_seeds(make_evaluate(model, task.kind)))
    metrics: dict[str, Any] = {}
    for split, x, y in (("test", task.x_test, task.y_test), ("train", task.x_train, task.y_train)):
        loss, value = evaluate(trained.params, x, y)
        metrics[f"{split}_{score}"] = np.asarray(value)
        metrics[f"{split}_loss"] = np.asarray(loss)
    curves = {
        name.replace("eval_", "test_"): values for name, values in trained.curves.items()
    }
    results = {
        "config": config.to_dict(),
        "task": {"name": task.name, "kind": task.kind, "num_train": task.num_train,
                 "num_test": task.num_test, "input_shape": list(task.input_shape)},
        "num_seeds": int(trained.seed_indices.size),
        "seed_indices": trained.seed_indices,
        "metrics": metrics,
        "curves": {"step": trained.curve_steps, **curves},
        "train_time_s": trained.train_time_s,
        "wall_time_s": time.perf_counter() - start,
        "device": device_description(),
    }
    write_json_atomic(path / CONFIG_FILE, config.to_dict())
    write_json_atomic(path / RESULTS_FILE, results)
    print(
        f"\n{task.name} / {config.model.name}: {results['num_seeds']} seeds, "
        f"{config.train.steps} steps, trained in {trained.train_time_s:.1f}s "
        f"on {jax.devices()[0].platform}\n"
    )
    print(seed_table(trained.seed_indices, {k: metrics[k] for k in (f"test_{score}", "test_loss")}))
    print(f"\nresults: {path / RESULTS_FILE}")
    return results
