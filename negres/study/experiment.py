"""config -> conditions -> one training call per group -> evaluators -> statistics -> report.

The command line's study, built on the public library like any other user: negres's own
models and losses become a :class:`negres.SeedProgram` (:func:`negres.builtin_program`),
:func:`negres.train` trains every seed of a group of conditions in one call, and the
evaluators the config names (:mod:`negres.evaluators`) run on the trained parameters
through an apply function.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import numpy as np
import optax
from absl import logging
from ml_collections import ConfigDict

from negres.errors import ConfigError, DiskFullError, ResumeError
from negres.evaluators import (
    EvaluationContext,
    Evaluator,
    as_results,
    resolve,
    run_evaluators,
)
from negres.files import read_json, to_jsonable, write_json_atomic
from negres.measures.agreement import layer_order
from negres.models import build_model, check_model_input
from negres.reporting import write as report
from negres.reporting.findings import finding_of
from negres.reporting.progress import progress_reporter
from negres.reporting.terminal import print_summary
from negres.seeds import configured_design, seed_keys, stream_key, take_rows
from negres.sharding import barrier, is_main_process
from negres.statistics.sources import analyze_sources
from negres.statistics.study import analyze, without_diverged
from negres.study.conditions import expand_conditions, references_of
from negres.study.config import as_config_fields, complete, validate_config
from negres.study.memory import check_memory
from negres.study.workdir import (
    CONFIG_FILE,
    REPLACED_DIR,
    REPORT_FILE,
    RESULTS_FILE,
    SCHEMA_VERSION,
    WorkdirError,
    check_workdir_name,
    discard_outputs,
    disk_full_explained,
    finish_overwrite,
    load_results_file,
    make_writable,
    overwrite_pending,
    set_aside,
    workdir_lock,
)
from negres.study.workdir import roll_back as roll_back_workdir
from negres.tasks import Task, load_task
from negres.training.builtin import (
    builtin_data,
    builtin_program,
    check_input_noise,
    check_label_noise,
    make_apply,
)
from negres.training.checkpoint import TrainingCheckpoints
from negres.training.checks import check_scale_arguments, check_training_arguments
from negres.training.contract import SeedProgram
from negres.training.driver import TrainResult, train
from negres.training.optimizers import VMAPPABLE_HYPERPARAMS, build_optimizer, hyperparams_of

CHECKPOINTS_DIR = "checkpoints"
# What to do when the disk fills after training: the final checkpoint holds every seed.
RERUN_RESUMES = ("free some space and rerun the same command: it resumes from the final "
                 "checkpoint and nothing is retrained")


class Condition(NamedTuple):
    """Everything one condition needs, built and checked before anything compiles."""

    name: str
    config: ConfigDict
    task: Task
    model: nn.Module
    optimizer: optax.GradientTransformation
    evaluators: list[Evaluator]
    overrides: dict[str, Any]
    reference: str | None  # the condition it is compared with; None: none


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


def prepare_conditions(config: ConfigDict) -> tuple[list[Condition], str]:
    """Expand, validate and build every condition: all config errors surface here."""
    validate_config(config)
    expanded, baseline = expand_conditions(complete(config))
    references = references_of(config, baseline)
    base_overrides = {c["name"]: {k: v for k, v in c.items() if k != "name"}
                      for c in (config.get("conditions") or ())}
    tasks: dict[str, Task] = {}
    # Tasks the conditions switch between share one task section: each reads its fields.
    swept = {variant.task.name for _, variant in expanded}
    prepared = []
    for name, variant in expanded:
        try:
            validate_config(variant)
        except ConfigError as e:  # the base passed: the condition's override is at fault
            if len(expanded) == 1 and not config.get("conditions"):
                raise
            raise ConfigError(f"conditions[{name!r}].{e.field}", e.value, e.allowed) from None
        task_key = json.dumps(variant.task.to_dict(), sort_keys=True, default=str)
        if task_key not in tasks:
            tasks[task_key] = load_task(variant.task, others=swept - {variant.task.name})
        task = tasks[task_key]
        with as_config_fields():
            check_training_arguments(
                num_seeds=variant.num_seeds, steps=variant.train.steps,
                batch_size=variant.train.batch_size, eval_every=variant.train.eval_every,
                num_train=task.num_train,
            )
            check_label_noise(variant.train.label_noise, task.kind, task.num_outputs)
            check_input_noise(variant.train.input_noise)
            check_scale_arguments(**scale_settings(variant))
        evaluators = resolve(variant.evaluation.evaluators)
        for evaluator in evaluators:
            evaluator.check(variant.evaluation, task)
        check_model_input(variant.model, task.input_shape)
        prepared.append(Condition(
            name=name, config=variant, task=task,
            model=build_model(variant.model, task.num_outputs),
            optimizer=build_optimizer(variant.optimizer), evaluators=evaluators,
            overrides=base_overrides.get(name, {}), reference=references[name],
        ))
    kinds = {c.task.kind for c in prepared}
    if len(kinds) > 1:
        mixed = {c.name: c.task.kind for c in prepared}
        raise ConfigError("conditions", mixed, "conditions whose tasks are all classification "
                          "or all regression (their scores, accuracy or MSE, are compared)")
    check_pairing(prepared)
    return prepared, baseline


def check_pairing(conditions: list[Condition]) -> None:
    """Paired conditions compare seed ``i`` of one with seed ``i`` of its reference: refuse
    ``stats.paired_conditions`` when a condition and its reference have different seed
    counts (the comparison would silently fall back to an unpaired one)."""
    if not conditions or not conditions[0].config.stats.get("paired_conditions", False):
        return
    counts = {c.name: int(c.config.num_seeds) for c in conditions}
    for c in conditions:
        if c.reference is not None and counts[c.name] != counts[c.reference]:
            raise ConfigError(
                "stats.paired_conditions", True,
                f"False while a condition and its reference have different seed counts "
                f"({c.name!r}: {counts[c.name]}, {c.reference!r}: {counts[c.reference]}): "
                "paired conditions compare seed i of one with seed i of the other; give them "
                "the same num_seeds, or compare them unpaired (Welch)")


def scale_settings(config: ConfigDict) -> dict[str, Any]:
    """The layout, chunking and checkpoint knobs of ``config.train``, with their defaults."""
    return {knob: config.train[knob] for knob in SCHEDULING_KNOBS}


# Knobs that change how seeds are scheduled, not what they compute: a run may resume under
# other values (for example smaller chunks after running out of memory).
SCHEDULING_KNOBS = ("seeds_per_chunk", "layout", "seeds_per_map_step", "checkpoint_every")


def what_is_computed(config: dict[str, Any]) -> dict[str, Any]:
    """A config as a dict, less its scheduling knobs: what a resumed run must match. Fields
    it lacks take their defaults: a study written before a field existed (``config.json``
    of an earlier version) computed what the default computes."""
    config = json.loads(json.dumps(to_jsonable(complete(ConfigDict(config)).to_dict())))
    for knob in SCHEDULING_KNOBS:
        config.get("train", {}).pop(knob, None)
    return config


def graph_signature(config: ConfigDict) -> str:
    """What decides the compiled training graph: the config less seed count and hyperparameters."""
    as_dict = config.to_dict()
    as_dict.pop("num_seeds")
    for name in VMAPPABLE_HYPERPARAMS:
        as_dict["optimizer"].pop(name, None)
    return json.dumps(as_dict, sort_keys=True, default=str)


def group_conditions(conditions: list[Condition]) -> list[list[Condition]]:
    """Conditions that can share one compiled call, in order of first appearance."""
    groups: dict[str, list[Condition]] = {}
    for condition in conditions:
        groups.setdefault(graph_signature(condition.config), []).append(condition)
    return list(groups.values())


def condition_program(condition: Condition) -> SeedProgram:
    """negres's own model and loss for ``condition`` as a program: the same public path a
    library user takes."""
    config, task = condition.config, condition.task
    return builtin_program(
        condition.model, condition.optimizer, kind=task.kind,
        label_noise=config.train.label_noise, input_noise=config.train.input_noise,
        num_classes=task.num_outputs if task.kind == "classification" else None)


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
                seed=config.seed, eval_every=config.train.eval_every,
                progress=progress_reporter(interactive=None if is_main_process() else False),
                hyperparams=hyperparams, checkpoints=checkpoints,
                checkpoint_every=checkpoint_every, fingerprint=fingerprint, **settings,
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


def evaluate_condition(
    condition: Condition, trained: TrainResult, workdir: Path, shared_with: list[str]
) -> dict[str, Any]:
    """Run the condition's evaluators on its trained seeds; per-seed numbers as ``(S,)``."""
    config, task, model = condition.config, condition.task, condition.model
    start = time.perf_counter()
    example = task.x_test[:1]
    context = EvaluationContext(
        apply=make_apply(model), params=trained.params, task=task,
        settings=config.evaluation, seed_keys=seed_keys(config.seed, trained.seed_indices),
        shared_key=stream_key(jax.random.PRNGKey(config.seed), "evaluation"),
        init=lambda key: model.init(key, example, train=False)["params"],
        layers=layer_order(model, example, train=False),
        workdir=workdir if is_main_process() else None, condition=condition.name,
        kept=np.asarray(trained.diverged_at) < 0,
    )
    evaluated = as_results(run_evaluators(condition.evaluators, context))
    curves = {name.replace("eval_", "test_"): v for name, v in trained.curves.items()}
    diverged = trained.diverged_at >= 0
    return {
        "task": task.name,
        "overrides": condition.overrides,
        "num_seeds": int(trained.seed_indices.size),
        "seed_indices": trained.seed_indices,
        **evaluated,
        "curves": {"step": trained.curve_steps, **curves},
        "train_time_s": trained.train_time_s,
        "trained_in_one_call_with": shared_with,
        "training_plan": trained.plan,
        # Per seed: the step its loss or parameters stopped being finite (-1: never).
        "diverged_at_step": trained.diverged_at,
        "diverged": {"count": int(diverged.sum()),
                     "seed_indices": trained.seed_indices[diverged],
                     "steps": trained.diverged_at[diverged]},
        "hyperparams": hyperparams_of(config.optimizer),
        "evaluation_time_s": time.perf_counter() - start,
    }


def run(
    config: ConfigDict, workdir: str, *, overwrite: bool = False, extend: bool = False
) -> dict[str, Any]:
    """Run the study that ``config`` describes and write its results into ``workdir``.

    Every check on the config and the workdir happens before anything is compiled.
    Training saves checkpoints under ``workdir/checkpoints`` and a run of the same config
    into the same workdir resumes from them; ``results.json`` is written once the results
    exist. With ``overwrite``, the earlier run's outputs are set aside and deleted only
    when this run has written its own (:mod:`negres.study.workdir`). A run whose results
    are written but whose report is not (disk full) is completed by running it again:
    the report is written, nothing is retrained. With ``extend``, the workdir's finished
    study gets the seeds past its ``num_seeds`` (``config`` may differ from it in
    ``num_seeds`` alone): only they are trained, and the statistics are those of the
    study's next look (:mod:`negres.statistics.sequential`). On several hosts every
    process trains its share of seeds and evaluates the gathered parameters; process 0
    alone writes.

    Returns:
      The contents of ``results.json``.
    """
    start = time.perf_counter()
    conditions, baseline = prepare_conditions(config)
    check_memory(conditions)
    config = complete(config)
    # The workdir is this process's from here on: nothing was written before, and a second
    # run into it is refused until this one ends (on several hosts, process 0 holds it).
    held = (workdir_lock(workdir, doing="this run", create=not extend) if is_main_process()
            else contextlib.nullcontext())
    with held:
        return _run_holding_workdir(config, workdir, conditions, baseline,
                                    overwrite=overwrite, extend=extend, start=start)


def _run_holding_workdir(config: ConfigDict, workdir: str, conditions: list[Condition],
                         baseline: str, *, overwrite: bool, extend: bool,
                         start: float) -> dict[str, Any]:
    """:func:`run` once its config is checked and its workdir held."""
    counts = {c.name: int(c.config.num_seeds) for c in conditions}
    if extend:
        path, looks, report_missing = prepare_extension(workdir, config, counts, overwrite)
    else:
        path, report_missing = prepare_workdir(workdir, config, overwrite)
        looks = [counts]
    if report_missing:
        return complete_report(path)
    checkpoint_root = path / CHECKPOINTS_DIR
    condition_results = {}
    train_time_s = 0.0
    for number, group in enumerate(group_conditions(conditions)):
        names = [c.name for c in group]
        group_dir = checkpoint_root / f"{number}_{report.safe_name(names[0])}"
        parts = train_looks(group, group_dir, looks)
        train_time_s += parts[0].train_time_s
        for condition, trained in zip(group, parts, strict=True):
            # An evaluator may write files of its own (saved attributions).
            with disk_full_explained(path, f"evaluating condition {condition.name!r}",
                                     RERUN_RESUMES):
                condition_results[condition.name] = evaluate_condition(
                    condition, trained, path, [n for n in names if n != condition.name])
    condition_results = {c.name: condition_results[c.name] for c in conditions}
    stats_config = config.stats
    finite_results, excluded = without_diverged(condition_results,
                                                paired=stats_config.paired_conditions)
    analysis = analyze_and_explain(
        condition_results, finite_results, baseline, level=stats_config.level,
        num_resamples=stats_config.num_resamples, num_permutations=stats_config.num_permutations,
        paired=stats_config.paired_conditions, seed=config.seed,
        references={c.name: c.reference for c in conditions},
        looks=[look[baseline] for look in looks],
        first_look_share=stats_config.first_look_share, estimand=stats_config.estimand,
    )
    analysis["excluded_diverged_seeds"] = excluded
    # How much of each metric's spread each source of randomness accounts for (a design).
    sources = analyze_sources(condition_results, config.randomness, level=stats_config.level,
                              seed=config.seed)
    if sources is not None:
        analysis["sources"] = sources
    first = condition_results[baseline]
    task = conditions[0].task
    # Plain lists and numbers, as results.json holds them: the finding reads the same.
    results = to_jsonable({
        "schema_version": SCHEMA_VERSION,
        "config": complete(config).to_dict(),
        "task": {"name": task.name, "kind": task.kind, "num_train": task.num_train,
                 "num_test": task.num_test, "input_shape": list(task.input_shape)},
        "baseline": baseline,
        # The baseline's numbers at the top level, for studies with one condition.
        "num_seeds": first["num_seeds"],
        "seed_indices": first["seed_indices"],
        "metrics": first["metrics"],
        "curves": first["curves"],
        "conditions": condition_results,
        # Every condition's seed count at each look (the first run, then each --extend).
        "looks": looks,
        "statistics": analysis,
        "train_time_s": train_time_s,
        "wall_time_s": time.perf_counter() - start,
        "device": device_description(),
    })
    results["finding"] = finding_of(results)
    if not is_main_process():
        return results
    with disk_full_explained(path, f"writing {RESULTS_FILE}", RERUN_RESUMES,
                             needed=lambda: len(json.dumps(results, indent=1))):
        write_json_atomic(path / RESULTS_FILE, results)
    return complete_report(path)


def analyze_and_explain(condition_results: dict[str, Any], finite_results: dict[str, Any],
                        baseline: str, **settings: Any) -> dict[str, Any]:
    """:func:`negres.statistics.study.analyze` of ``finite_results`` (the conditions less the
    seeds the statistics leave out), then what those seeds cannot tell, said in it:

    - every summary of fewer than 2 seeds has no interval, and says why (``reason``);
    - every comparison left with fewer than 2 seeds (or pairs) is inconclusive, and says why
      (``reason``);
    - a paired comparison left with fewer than 2 pairs by seeds that diverged (in one
      condition, they leave every paired condition) gets beside it the unpaired comparison
      of each condition's own finite seeds (``unpaired``);
    - ``notes``: each reason once, a sentence for the report.

    Args:
      condition_results: name -> every seed's results (diverged ones too).
      finite_results: the same less the seeds left out (``without_diverged``).
      baseline, settings: the arguments of ``analyze``.
    """
    analysis = analyze(finite_results, baseline, **settings)
    paired = bool(settings.get("paired"))
    notes: list[str] = []
    kept = {name: len(r["seed_indices"]) for name, r in finite_results.items()}
    for name, summaries in analysis["summaries"].items():
        if kept[name] < 2:
            why = _too_few_seeds(name, condition_results[name], kept[name], paired)
            for summary in summaries.values():
                summary["reason"] = why
            notes.append(why)
    unpaired = None
    for metric, family in analysis["comparisons"].items():
        for name, c in family.items():
            if min(c["n_x"], c["n_y"]) >= 2:
                continue
            reference = c.get("reference", baseline)
            seeds = min(int(condition_results[n]["num_seeds"]) for n in (name, reference))
            if not (paired and seeds >= 2):  # too few seeds, not too few left to pair
                c["reason"] = (f"{c['n_x']} seed(s) of `{name}` and {c['n_y']} of "
                               f"`{reference}`: a comparison needs at least 2 in each (one "
                               "seed has no spread), so it is inconclusive")
                continue
            if unpaired is None:
                unpaired = analyze(without_diverged(condition_results, paired=False)[0],
                                   baseline, **{**settings, "paired": False})["comparisons"]
            beside = (unpaired.get(metric) or {}).get(name)
            c["reason"] = _no_pairs(name, reference, condition_results, kept)
            if beside is not None and min(beside["n_x"], beside["n_y"]) >= 2:
                c["unpaired"] = beside
                c["reason"] += ("; the unpaired comparison of each condition's own finite "
                                "seeds stands beside it")
            notes.append(c["reason"])
    for evaluator in (analysis.get("within_conditions") or {}).values():
        for name, families in evaluator.items():
            for family in families.values():
                for c in family.values():
                    if min(c["n_x"], c["n_y"]) < 2:
                        c["reason"] = _too_few_seeds(name, condition_results[name], kept[name],
                                                     paired)
    analysis["notes"] = list(dict.fromkeys(notes))
    return analysis


def _too_few_seeds(name: str, result: dict[str, Any], kept: int, paired: bool) -> str:
    """Why condition ``name``'s statistics have no interval: it has fewer than 2 seeds."""
    total = int(result["num_seeds"])
    if total < 2:
        return (f"`{name}` has {total} seed: one seed has no spread across seeds, so its "
                "statistics have no interval and every comparison or test of it is "
                "inconclusive; add seeds with --extend to learn how much it varies")
    own = int((result.get("diverged") or {}).get("count") or 0)
    others = (" and diverged in another condition (paired conditions compare the same seed "
              "indices)" if paired and total - kept > own else "")
    return (f"`{name}` has {kept} of its {total} seeds left for statistics (the others "
            f"diverged{others}), too few for an interval: its statistics are inconclusive")


def _no_pairs(name: str, reference: str, condition_results: dict[str, Any],
              kept: dict[str, int]) -> str:
    """Why the paired comparison of ``name`` with ``reference`` has fewer than 2 pairs."""
    diverged = {n: r["diverged"]["seed_indices"] for n, r in condition_results.items()
                if (r.get("diverged") or {}).get("count")}

    def on(n: str, seeds: list[int]) -> str:
        count = ("every one of its" if len(seeds) == int(condition_results[n]["num_seeds"])
                 else str(len(seeds)))
        return (f"`{n}` on {count} {'seed' if len(seeds) == 1 else 'seeds'} "
                f"({', '.join(map(str, seeds))})")

    where = "; ".join(on(n, list(s)) for n, s in diverged.items())
    return (f"`{name}` − `{reference}` has {min(kept[name], kept[reference])} paired seeds: "
            "paired conditions leave out every seed index that diverged in any condition, "
            f"and seeds diverged in {where}")


def check_unfinished_extension(path: Path, previous: dict[str, Any], config: ConfigDict,
                               look: int) -> None:
    """Refuse an ``--extend`` to another seed count while an earlier ``--extend`` of the
    same study is unfinished: its ``config.json`` records it and its look's checkpoints
    exist. Nothing is rewritten before this check."""
    try:
        saved = read_json(path / CONFIG_FILE)
    except (OSError, ValueError):
        return
    if not isinstance(saved, dict) or first_difference(
            without_seed_counts(saved), without_seed_counts(previous["config"])):
        return  # not an extension of this study: the checkpoints' own check refuses
    if what_is_computed(saved) in (what_is_computed(previous["config"]),
                                   what_is_computed(config.to_dict())):
        return  # no extension began, or this is it again (it resumes)
    started = sorted(path.glob(f"{CHECKPOINTS_DIR}/*_look{look}"))
    if not started:
        return  # it began but saved nothing: nothing to lose
    raise WorkdirError(
        f"--workdir={str(path)!r} holds an unfinished --extend of its study to "
        f"num_seeds={saved.get('num_seeds')!r} (its {CONFIG_FILE}, with checkpoints in "
        f"{started[0].relative_to(path)}): rerun it (--config.num_seeds="
        f"{saved.get('num_seeds')!r} --extend) to finish it, or delete "
        f"{CHECKPOINTS_DIR}/*_look{look} to extend to num_seeds={config.num_seeds!r} instead; "
        f"the finished study ({RESULTS_FILE}) is kept either way")


def complete_report(path: Path) -> dict[str, Any]:
    """Write the report of the finished ``results.json`` in ``path`` and end the run."""
    results = load_results_file(path)
    if is_main_process():
        write_report_or_explain(results, path)
        finish_overwrite(path)
        print_summary(results)
        print(f"\nresults: {path / RESULTS_FILE}\nreport:  {path / REPORT_FILE}")
    return results


def write_report_or_explain(results: dict[str, Any], path: Path) -> None:
    """``report.md`` and the plots; a full disk is one line that says how to finish."""
    with disk_full_explained(
            path, "writing the report",
            f"{RESULTS_FILE} is complete; free some space and rerun the same command (or "
            "--report_only) to write report.md and the plots without retraining"):
        report.write_report(results, path)


def saved_config_matches(path: Path, config: ConfigDict) -> bool | None:
    """Whether ``path``'s config.json records ``config`` (scheduling knobs aside); ``None``
    when there is none or it cannot be read."""
    try:
        saved = read_json(path / CONFIG_FILE)
    except (OSError, ValueError):  # missing, unreadable, not JSON (a UnicodeDecodeError too)
        return None
    if not isinstance(saved, dict):
        return None
    return what_is_computed(saved) == what_is_computed(config.to_dict())


def extend_hint(path: Path, config: ConfigDict) -> str:
    """", or --extend to add seeds ..." when ``config`` differs from the finished study in
    ``path`` only by more seeds."""
    try:
        previous = read_json(path / RESULTS_FILE)
        same = not first_difference(without_seed_counts(previous["config"]),
                                    without_seed_counts(config.to_dict()))
        more = int(config.num_seeds) > int(previous["config"]["num_seeds"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ""
    return (f", or --extend to add seeds {previous['config']['num_seeds']}–"
            f"{int(config.num_seeds) - 1} to it" if same and more else "")


def prepare_workdir(workdir: str, config: ConfigDict, overwrite: bool) -> tuple[Path, bool]:
    """Check ``workdir`` can take this run, and set it up, before anything compiles.

    Refuses a workdir that holds finished results unless ``overwrite``, and checkpoints
    of another config (or beside an unreadable config.json) unless ``overwrite``. Earlier
    outputs an ``overwrite`` replaces are set aside, not deleted. ``config.json`` is
    written now, so that a killed run can be checked on resume.

    Returns:
      ``(path, report_missing)``: ``report_missing`` when the workdir holds this config's
      ``results.json`` but not its report (a run that failed while writing it).
    """
    path = check_workdir_name(workdir)
    pending = overwrite_pending(path)
    main = is_main_process()
    if pending:
        # An overwrite stopped while setting the earlier outputs aside is finished first,
        # with or without --overwrite this time: the top must hold one run's outputs.
        if main:
            set_aside(path)
        barrier("negres: earlier outputs set aside")
    if (path / RESULTS_FILE).exists() and (pending or not overwrite):
        if (not (path / REPORT_FILE).exists()
                and saved_config_matches(path, config)):
            return path, True
        if pending:
            # The new run wrote everything but was stopped before deleting what it
            # replaced; it stands as the workdir's finished run from here on.
            barrier("negres: workdir read")
            if main:
                finish_overwrite(path)
            pending = False
        if not overwrite:
            raise WorkdirError(
                f"--workdir={str(path)!r} already holds {RESULTS_FILE}; pass --overwrite to "
                f"replace it{extend_hint(path, config)}, or choose another --workdir")
    root = path / CHECKPOINTS_DIR
    matches = saved_config_matches(path, config)
    if not overwrite and root.exists() and not matches:
        what = ("another config (its config.json)" if matches is False else
                f"a config its {CONFIG_FILE} no longer records (missing or unreadable)")
        raise WorkdirError(
            f"--workdir={str(path)!r} holds checkpoints of a run of {what}; pass "
            "--overwrite to discard them, or choose another --workdir")
    make_writable(path)
    barrier("negres: workdir read")
    if main:
        if overwrite:
            set_aside(path)  # a no-op once an unfinished overwrite has set them aside
            if pending and not matches:
                # An unfinished overwrite of another config: its partial outputs go; the
                # earlier run's stay set aside.
                discard_outputs(path)
        with disk_full_explained(path, f"writing {CONFIG_FILE}", "free some space"):
            write_json_atomic(path / CONFIG_FILE, config.to_dict())
    barrier("negres: workdir checked")
    return path, False


def without_seed_counts(config: dict[str, Any]) -> dict[str, Any]:
    """What a study computes less its seed counts: what an extension must keep."""
    config = what_is_computed(config)
    config.pop("num_seeds", None)
    config["conditions"] = [{k: v for k, v in c.items() if k != "num_seeds"}
                            for c in config.get("conditions") or ()]
    return config


def first_difference(old: Any, new: Any, where: str = "") -> tuple[str, Any, Any] | None:
    """The first field (dotted) whose value differs between two configs as dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            found = first_difference(old.get(key), new.get(key),
                                     f"{where}.{key}" if where else str(key))
            if found:
                return found
        return None
    if (isinstance(old, list) and isinstance(new, list) and len(old) == len(new)
            and old != new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            found = first_difference(a, b, f"{where}[{i}]")
            if found:
                return found
    return None if old == new else (where, old, new)


def prepare_extension(workdir: str, config: ConfigDict, counts: dict[str, int],
                      overwrite: bool) -> tuple[Path, list[dict[str, int]], bool]:
    """Check that ``config`` extends the finished study in ``workdir``, before anything
    compiles, and record it in ``config.json``.

    Args:
      workdir: holds the finished study (its ``results.json``).
      config: the study's completed config with more seeds; nothing else may differ.
      counts: condition -> its seed count in ``config``.
      overwrite: must be False (``--extend`` keeps what ``--overwrite`` would replace).

    Returns:
      ``(path, looks, report_missing)``: every condition's seed count at each look, this
      one last, and whether the extension is done but for its report (rerun after a full
      disk).
    """
    path = check_workdir_name(workdir)
    if overwrite:
        raise WorkdirError("--extend and --overwrite exclude each other: --extend keeps the "
                           "finished seeds, --overwrite replaces them")
    if overwrite_pending(path):
        raise WorkdirError(f"--workdir={str(path)!r} holds an unfinished --overwrite; rerun it "
                           "or undo it with --rollback before --extend")
    if not (path / RESULTS_FILE).exists():
        raise WorkdirError(f"--workdir={str(path)!r} holds no finished study ({RESULTS_FILE}) "
                           "to extend; run it without --extend first")
    previous = load_results_file(path)
    difference = first_difference(without_seed_counts(previous["config"]),
                                  without_seed_counts(config.to_dict()))
    if difference:
        field, old, new = difference
        raise ConfigError(field, new, f"{old!r}, the value of the study in {str(path)!r}: --extend "
                          "adds seeds to the same study, so only num_seeds may change")
    looks = previous.get("looks") or [
        {name: int(c["num_seeds"]) for name, c in previous["conditions"].items()}]
    last = looks[-1]
    for name, count in counts.items():
        if count < last[name]:
            raise ConfigError(_seeds_field(config, name), count,
                              f"at least the {last[name]} seeds the study in {str(path)!r} "
                              "has: --extend adds seeds, it never removes them")
    if counts == last and not (path / REPORT_FILE).exists():
        return path, looks, True  # this extension finished but for its report (disk full)
    if counts == last:
        raise ConfigError("num_seeds", config.num_seeds,
                          f"more than the {max(last.values())} seeds the study in "
                          f"{str(path)!r} has: --extend adds seeds")
    check_unfinished_extension(path, previous, config, len(looks) + 1)
    make_writable(path)
    barrier("negres: workdir read")
    if is_main_process():
        with disk_full_explained(path, f"writing {CONFIG_FILE}", "free some space"):
            write_json_atomic(path / CONFIG_FILE, config.to_dict())
    barrier("negres: workdir checked")
    return path, [*looks, counts], False


def _seeds_field(config: ConfigDict, condition: str) -> str:
    """The field that sets ``condition``'s seed count: its own override or the top level."""
    for c in config.get("conditions") or ():
        if c.get("name") == condition and "num_seeds" in c:
            return f"conditions[{condition!r}].num_seeds"
    return "num_seeds"


def rebuild_report(workdir: str) -> dict[str, Any]:
    """Rewrite ``report.md`` and the plots from an existing ``results.json``, without training.

    The workdir is held by this process meanwhile (a run writing it refuses this, and the
    other way round)."""
    with workdir_lock(workdir, doing="--report_only", create=False) as path:
        return _rebuild_report(path)


def _rebuild_report(path: Path) -> dict[str, Any]:
    if not (path / RESULTS_FILE).exists() and overwrite_pending(path):
        raise WorkdirError(
            f"--workdir={str(path)!r} holds no {RESULTS_FILE} at its top: an unfinished "
            f"--overwrite set the earlier run's results aside in {REPLACED_DIR}/; rerun that "
            "--overwrite command to finish the new run, or --rollback to put the earlier "
            "results back, then --report_only")
    results = load_results_file(path)
    results["finding"] = finding_of(results)  # the finding's wording may have been improved
    try:
        write_report_or_explain(results, path)
    except WorkdirError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as e:
        # A results.json that passed the checks above but was edited or damaged inside.
        raise WorkdirError(
            f"--workdir={str(path)!r} holds a {RESULTS_FILE} the report cannot be built from "
            f"({type(e).__name__}: {' '.join(str(e).split())}); rerun the study with "
            "--overwrite") from None
    print(f"report: {path / REPORT_FILE}")
    return results


def roll_back(workdir: str) -> list[str]:
    """Undo an unfinished ``--overwrite`` in ``workdir``: the earlier run's outputs return
    and the new run's partial ones go. Returns the names put back."""
    with workdir_lock(workdir, doing="--rollback", create=False):
        restored = roll_back_workdir(workdir)
    print(f"restored in {workdir}: {', '.join(restored) or 'nothing (it held none)'}")
    return restored
