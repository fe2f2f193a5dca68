"""One training call per group of conditions, look by look, through the public
:func:`negres.train`: the same path a library user takes."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
from absl import logging

from negres.errors import DiskFullError, ResumeError
from negres.files import to_jsonable
from negres.reporting.progress import progress_reporter
from negres.seeds import configured_design, take_rows
from negres.sharding import is_main_process
from negres.study.config import as_config_fields
from negres.study.prepare import (
    Condition,
    condition_program,
    graph_signature,
    scale_settings,
    what_is_computed,
)
from negres.study.workdir import (
    WorkdirError,
)
from negres.training.builtin import (
    builtin_data,
)
from negres.training.checkpoint import Checkpointing, TrainingCheckpoints
from negres.training.driver import TrainResult, train
from negres.training.optimizers import VMAPPABLE_HYPERPARAMS, hyperparams_of
from negres.training.plan import Scale


def train_group(group: list[Condition], checkpoint_dir: Path | None = None,
                seed_ranges: list[range] | None = None) -> list[TrainResult]:
    """Train every seed of every condition in ``group`` in one call; split per condition.

    Rows of different conditions differ only in their learning rate and weight decay,
    which sit in the per-seed optimizer state; seed ``i`` of each condition draws what
    it would draw alone. With ``checkpoint_dir``, the run saves checkpoints there and
    resumes from the newest one it finds. ``seed_ranges`` (one per condition, by default
    ``range(num_seeds)``) names the seeds to train: an extended study trains its new
    seeds apart from those it already has.
    """
    first = group[0]
    config, task = first.config, first.task
    if seed_ranges is None:
        seed_ranges = [range(c.config.num_seeds) for c in group]
    seed_indices = np.concatenate([np.arange(r.start, r.stop) for r in seed_ranges])
    hyperparams = {
        name: np.concatenate([np.full(len(r), hyperparams_of(c.config.optimizer)[name])
                              for c, r in zip(group, seed_ranges, strict=True)])
        for name in VMAPPABLE_HYPERPARAMS
    }
    logging.info(
        "negres: condition(s) %s: task %s (%d train, %d test, input %s), model %s, "
        "%d seeds x %d steps in one call on %s",
        ", ".join(c.name for c in group), task.name, task.num_train, task.num_test,
        task.input_shape, config.model.name, seed_indices.size, config.train.steps,
        jax.devices()[0].platform,
    )
    settings = scale_settings(config)
    checkpoint_every = settings.pop("checkpoint_every")
    checkpoints = TrainingCheckpoints(checkpoint_dir) if checkpoint_dir is not None else None
    fingerprint = json.dumps({"graph": what_is_computed(json.loads(graph_signature(config))),
                              "seed": config.seed, "hyperparams": to_jsonable(hyperparams)},
                             sort_keys=True)
    label_noise = config.train.label_noise
    program = condition_program(first)
    # A source design (config.randomness): seed index i is row i of the crossed design.
    design = configured_design(config.randomness, int(config.num_seeds))
    try:
        with as_config_fields():
            trained = train(
                program, builtin_data(task.x_train, task.y_train, label_noise=label_noise),
                eval_data=builtin_data(task.x_test, task.y_test), seed_indices=seed_indices,
                steps=config.train.steps, batch_size=config.train.batch_size,
                sampling=config.train.sampling,
                seed=config.seed, eval_every=config.train.eval_every,
                progress=progress_reporter(interactive=None if is_main_process() else False),
                hyperparams=hyperparams, scale=Scale(**settings),
                checkpointing=None if checkpoints is None else Checkpointing(
                    checkpoints, every=checkpoint_every, fingerprint=fingerprint),
                stream_seeds=None if design is None else design.take(seed_indices),
            )
    except ResumeError as e:
        raise WorkdirError(f"{e} (pass --overwrite to start over, or choose another "
                           "--workdir)") from None
    except DiskFullError as e:
        raise WorkdirError(f"{e}; free some space and rerun the same command: it resumes "
                           "from the last complete checkpoint") from None
    finally:
        if checkpoints is not None:
            checkpoints.close()
    parts, start = [], 0
    for seeds in seed_ranges:
        rows = slice(start, start + len(seeds))
        start = rows.stop
        parts.append(trained._replace(
            state=take_rows(trained.state, rows),
            seed_indices=trained.seed_indices[rows],
            curves={k: v[rows] for k, v in trained.curves.items()},
            diverged_at=trained.diverged_at[rows],
            hyperparams={k: v[rows] for k, v in trained.hyperparams.items()},
            stream_seeds={k: v[rows] for k, v in trained.stream_seeds.items()},
        ))
    return parts


def joined(parts: list[TrainResult]) -> TrainResult:
    """One condition's seeds trained in several calls (the looks of an extended study) as
    one result, in seed order."""
    if len(parts) == 1:
        return parts[0]
    rows = [np.asarray(p.seed_indices) for p in parts]
    return parts[-1]._replace(
        state=jax.tree_util.tree_map(
            lambda *leaves: np.concatenate([np.asarray(leaf) for leaf in leaves]),
            *[p.state for p in parts]),
        seed_indices=np.concatenate(rows),
        curves={k: np.concatenate([p.curves[k] for p in parts]) for k in parts[0].curves},
        diverged_at=np.concatenate([p.diverged_at for p in parts]),
        hyperparams={k: np.concatenate([p.hyperparams[k] for p in parts])
                     for k in parts[0].hyperparams},
        stream_seeds={k: np.concatenate([p.stream_seeds[k] for p in parts])
                      for k in parts[0].stream_seeds},
        train_time_s=sum(p.train_time_s for p in parts),
        # The newest call's plan, with how many seeds each look's call trained.
        plan={**parts[-1].plan, "seeds_per_look": [len(r) for r in rows]},
    )


def train_looks(group: list[Condition], group_dir: Path,
                looks: list[dict[str, int]]) -> list[TrainResult]:
    """Train ``group`` look by look: the seeds each look added train in their own call and
    checkpoint directory (the first look's is ``group_dir``), so that extending a study
    restores the seeds it has and trains only the new ones."""
    parts: list[list[TrainResult]] = [[] for _ in group]
    before = dict.fromkeys(looks[0], 0)
    for number, counts in enumerate(looks):
        ranges = [range(before[c.name], counts[c.name]) for c in group]
        before = counts
        if not any(ranges):
            continue
        directory = group_dir if number == 0 else group_dir.with_name(
            f"{group_dir.name}_look{number + 1}")
        for part, trained in zip(parts, train_group(group, directory, ranges), strict=True):
            part.append(trained)
    return [joined(p) for p in parts]
