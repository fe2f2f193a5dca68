"""Validation of a study config, once, before anything is loaded or compiled."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ml_collections import ConfigDict

from negres.errors import ArgumentError, ConfigError
from negres.models import MODELS
from negres.reporting.findings import FINDINGS
from negres.tasks import TASKS
from negres.training.checks import check_training_arguments
from negres.training.optimizers import OPTIMIZERS

# Fields each section may hold; a name outside these is a typo, and a typo silently
# ignored would run a different study than the one the user wrote.
KNOWN_FIELDS: dict[str, frozenset[str]] = {
    "": frozenset({"seed", "num_seeds", "task", "model", "optimizer", "train", "evaluation",
                   "stats", "conditions", "baseline", "title", "finding"}),
    "task": frozenset(
        {"name", "test_fraction", "split_seed", "num_train", "num_test", "noise_std",
         "interaction", "data_seed", "num_samples", "train_split", "shuffle_seq",
         "train_subset", "subset_seed", "data_dir", "corruptions", "corruption_severities",
         # rule_shortcut, digits_shortcut
         "num_distractors", "rule_threshold", "shortcut_agreement", "shortcut_scale",
         "shortcut_noise",
         # shape_color
         "target", "image_size", "correlation", "color_jitter", "background_noise"}
    ),
    "model": frozenset(
        {"name", "hidden_sizes", "activation", "dropout_rate", "channels", "kernel_size",
         "strides", "dense_size", "patch_size", "embed_dim", "num_heads", "mlp_dim",
         "attention", "freeze_embeddings", "conv_impl"}
    ),
    "optimizer": frozenset(
        {"name", "learning_rate", "momentum", "weight_decay", "grad_clip_norm"}
    ),
    "train": frozenset({"steps", "batch_size", "eval_every", "label_noise", "input_noise",
                        "seeds_per_chunk", "layout", "seeds_per_map_step", "checkpoint_every"}),
    "evaluation": frozenset(
        {"shifts", "severities", "shared_shift_noise", "attribution_methods",
         "attribution_examples", "attribution_target", "ig_steps", "smoothgrad_samples",
         "smoothgrad_noise", "shapley_background", "top_k", "max_sensitivity",
         "sensitivity_radius", "sensitivity_samples", "randomization_check", "save_attributions",
         "surrogate_fidelity"}
    ),
    "stats": frozenset({"level", "num_resamples", "num_permutations", "paired_conditions"}),
}

REQUIRED_SECTIONS = ("task", "model", "optimizer", "train", "evaluation", "stats")
# Sections whose every field must be present (they have no per-name defaults).
FULLY_REQUIRED = ("evaluation", "stats")


def _check_known_fields(config: ConfigDict) -> None:
    for section, allowed in KNOWN_FIELDS.items():
        node = config if not section else config.get(section)
        if node is None:
            continue
        for key in node:
            if key not in allowed:
                field = f"{section}.{key}" if section else key
                allowed_text = f"a known field; this section takes {sorted(allowed)}"
                raise ConfigError(field, node[key], allowed_text)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_config(config: ConfigDict) -> None:
    """Raise :class:`ConfigError` for the first field that is missing or not allowed.

    Checks what can be checked without data: names against the registries, counts
    and ranges. Checks that need the data (batch size against the training set) are
    made by the engine right after the task is loaded, still before any compile.
    """
    for section in REQUIRED_SECTIONS:
        if not isinstance(config.get(section), ConfigDict):
            raise ConfigError(section, config.get(section), "a ConfigDict section")
    _check_known_fields(config)
    for section in FULLY_REQUIRED:
        missing = sorted(KNOWN_FIELDS[section] - set(config[section]))
        if missing:
            raise ConfigError(f"{section}.{missing[0]}", None,
                              "a value; every field of this section is required, "
                              "see configs/default.py")
    if not _is_int(config.get("seed")) or config.seed < 0:
        raise ConfigError("seed", config.get("seed"), "an integer >= 0")
    registries = {"task": TASKS, "model": MODELS, "optimizer": OPTIMIZERS}
    for section, registry in registries.items():
        name = config[section].get("name")
        if name not in registry:
            raise ConfigError(f"{section}.name", name, f"one of {sorted(registry)}")
    with as_config_fields():
        check_training_arguments(
            num_seeds=config.get("num_seeds"), steps=config.train.get("steps"),
            batch_size=config.train.get("batch_size"),
            eval_every=config.train.get("eval_every"), num_train=None,
        )
    finding = config.get("finding", "")
    if finding and finding not in FINDINGS:
        raise ConfigError("finding", finding, f"'' or one of {sorted(FINDINGS)}")
    _validate_evaluation(config.evaluation)
    _validate_stats(config.stats)
    test_fraction = config.task.get("test_fraction", 0.2)
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError("task.test_fraction", test_fraction, "a number in (0, 1)")


def _positive_int(field: str, value: object, minimum: int = 1) -> None:
    if not _is_int(value) or value < minimum:
        raise ConfigError(field, value, f"an integer >= {minimum}")


def _validate_evaluation(evaluation: ConfigDict) -> None:
    """Ranges of the evaluation knobs; names are checked against the task later."""
    for name in ("attribution_examples", "ig_steps", "smoothgrad_samples", "top_k",
                 "sensitivity_samples"):
        _positive_int(f"evaluation.{name}", evaluation.get(name))
    for name in ("shapley_background", "save_attributions"):
        _positive_int(f"evaluation.{name}", evaluation.get(name), minimum=0)
    severities = evaluation.get("severities")
    if not isinstance(severities, (tuple, list)) or not severities or any(
        not isinstance(s, (int, float)) or s < 0 for s in severities
    ):
        raise ConfigError("evaluation.severities", severities,
                          "a non-empty tuple of severities >= 0")
    for name in ("shared_shift_noise", "max_sensitivity", "randomization_check",
                 "surrogate_fidelity"):
        if not isinstance(evaluation.get(name), bool):
            raise ConfigError(f"evaluation.{name}", evaluation.get(name), "True or False")
    for name in ("smoothgrad_noise", "sensitivity_radius"):
        value = evaluation.get(name)
        if not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"evaluation.{name}", value, "a number > 0")


def _validate_stats(stats_config: ConfigDict) -> None:
    level = stats_config.get("level")
    if not isinstance(level, float) or not 0.5 <= level < 1.0:
        raise ConfigError("stats.level", level, "a confidence level in [0.5, 1), e.g. 0.95")
    _positive_int("stats.num_resamples", stats_config.get("num_resamples"), minimum=100)
    _positive_int("stats.num_permutations", stats_config.get("num_permutations"), minimum=100)


# A library argument -> the config field that sets it, for messages on the command line.
ARGUMENT_FIELDS = {
    "num_seeds": "num_seeds",
    "steps": "train.steps",
    "batch_size": "train.batch_size",
    "eval_every": "train.eval_every",
    "label_noise": "train.label_noise",
    "input_noise": "train.input_noise",
    "seeds_per_chunk": "train.seeds_per_chunk",
    "layout": "train.layout",
    "seeds_per_map_step": "train.seeds_per_map_step",
    "checkpoint_every": "train.checkpoint_every",
    "kind": "task.kind",
}


@contextlib.contextmanager
def as_config_fields() -> Iterator[None]:
    """Turn a library :class:`ArgumentError` into a :class:`ConfigError` naming the config
    field that set the argument."""
    try:
        yield
    except ConfigError:
        raise
    except ArgumentError as e:
        raise ConfigError(ARGUMENT_FIELDS.get(e.field, e.field), e.value, e.allowed) from None
