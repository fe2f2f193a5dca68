"""The study config's fields, defaults and validation, assembled from where they are declared.

Each task, model, optimizer and evaluator declares its fields next to its code
(:class:`negres.fields.Field`); the study adds its own top-level, ``train`` and ``stats``
fields here. Each evaluator's fields form its own section below ``evaluation``
(``evaluation.<name>.<field>``), so two evaluators may name fields alike; a field set
directly in ``evaluation`` (the flat layout of earlier versions) is refused with where it
lives now. From these declarations come the validation below (every field's type and
range, before anything is loaded or compiled), :func:`default_config` (which
``configs/default.py`` is generated from) and the docs' field table
(:func:`reference_table`), so a default is written once.
"""

from __future__ import annotations

import contextlib
import json
import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ml_collections import ConfigDict

from negres import fields
from negres.errors import ArgumentError, ConfigError
from negres.evaluators import (
    INSTANCE_FIELD,
    REGISTRY,
    default_evaluators,
    evaluator_fields,
    get_evaluator,
    instance_kinds,
    moved_field,
    resolve,
)
from negres.fields import Field
from negres.models import FIELDS as MODEL_FIELDS
from negres.seeds import DESIGN_FIELDS, configured_design
from negres.statistics.claims import Claim
from negres.tasks import COMMON_FIELDS as TASK_COMMON_FIELDS
from negres.tasks import TASKS, fields_named, task_fields
from negres.training.checks import INPUT_NOISE, LABEL_NOISE, check_training_arguments
from negres.training.layout import LAYOUTS
from negres.training.optimizers import FIELDS as OPTIMIZER_FIELDS
from negres.training.step import SAMPLINGS

# Bounds on sizes that drive memory or time, so that a typo fails now, not after training.
MAX_SEEDS = 1 << 20
MAX_STEPS = 1 << 31
MAX_RESAMPLES = 1_000_000

TOP_FIELDS = (
    fields.integer("seed", 0, "root seed; seed i trains with fold_in(PRNGKey(seed), i)"),
    fields.integer("num_seeds", 16, "S: seeds trained together in one compiled call",
                   minimum=1, maximum=MAX_SEEDS),
    fields.text("title", "digits MLP", "heading of report.md (the seed counts follow it)"),
    fields.Field("claims", (), "the claims the study tests, each a dict of a "
                 "negres.statistics.claims.Claim's fields: their verdicts open report.md",
                 "a tuple of dicts, each a claim (name, text, metric, condition, direction, "
                 "and one of versus_condition, versus_metric, versus_value)",
                 lambda v: isinstance(v, (tuple, list)) and all(
                     isinstance(c, Mapping | ConfigDict) for c in v)),
    fields.Field("conditions", (), "e.g. ({'name': 'mlp'}, {'name': 'linear', "
                 "'model.name': 'linear'})", "a tuple of dicts, each with a 'name'",
                 lambda v: isinstance(v, (tuple, list)) and all(
                     isinstance(c, Mapping) and isinstance(c.get("name"), str) for c in v)),
    fields.text("baseline", "", "condition compared against; '' is the first"),
    fields.integer("tensorboard_seed_curves", 8, "seeds per condition whose own curves the "
                   "TensorBoard logs hold (the mean and min-max band cover every seed)",
                   minimum=0),
)
TRAIN_FIELDS = (
    fields.integer("steps", 500, "optimizer steps per seed", minimum=1, maximum=MAX_STEPS),
    fields.integer("batch_size", 128, "examples per step", minimum=1),
    fields.choice("sampling", "replacement", f"{' | '.join(SAMPLINGS)}: batches drawn "
                  "uniformly with replacement, or each epoch a permutation per seed", SAMPLINGS),
    fields.integer("eval_every", 50, "steps between learning-curve points; divides steps",
                   minimum=1),
    LABEL_NOISE,
    INPUT_NOISE,
    fields.integer("seeds_per_chunk", 0, "seeds per compiled call; 0: all that fit in memory"),
    fields.choice("layout", "auto", f"{' | '.join(LAYOUTS)}: seeds side by side or in sequence",
                  LAYOUTS),
    fields.integer("seeds_per_map_step", 1, "map: seeds vmapped together at each step",
                   minimum=1),
    fields.integer("checkpoint_every", 0, "steps between checkpoints; 0: about one a minute"),
)
STATS_FIELDS = (
    fields.number("level", 0.95, "confidence level of intervals and tests", 0.5, 1.0,
                  high_open=True),
    fields.integer("num_resamples", 2000, "bootstrap resamples", minimum=100,
                   maximum=MAX_RESAMPLES),
    fields.integer("num_permutations", 2000, "permutation-test permutations", minimum=100,
                   maximum=MAX_RESAMPLES),
    fields.boolean("paired_conditions", False,
                   "compare conditions seed by seed (same seed index)"),
    fields.choice("estimand", "distribution", "distribution | test_set: what intervals of "
                  "metrics over test examples are about (the data distribution: seeds and "
                  "examples both sampled; this test set: seeds only)",
                  ("distribution", "test_set")),
    fields.number("first_look_share", 0.8, "share of 1 - level the verdicts spend at a "
                  "study's first look; the rest stays for looks after --extend (1: one look, "
                  "an extended study's verdicts stay inconclusive)", 0.0, 1.0, low_open=True),
)
EVALUATORS_FIELD = fields.Field(
    "evaluators", default_evaluators(), "evaluators run after training, in order, names in "
    "negres.evaluators.REGISTRY or of instance sections (performance always runs first)",
    f"a tuple of names in negres.evaluators.REGISTRY ({', '.join(REGISTRY)}) or of "
    "sections evaluation.<name> with an 'evaluator' field, without repeats",
    # Names are resolved by negres.evaluators.resolve, which knows the instance sections.
    lambda v: isinstance(v, (tuple, list)) and len(set(v)) == len(v)
    and all(isinstance(n, str) for n in v))
INSTANCE_KIND_FIELD = fields.Field(
    INSTANCE_FIELD, "", "an instance section evaluation.<name>: the registered evaluator "
    "run once more under <name>, with this section's settings (its fields)",
    "a name in negres.evaluators.REGISTRY", lambda v: v in REGISTRY)


EVALUATION = "evaluation"


def evaluation_fields() -> tuple[Field, ...]:
    """The ``evaluation`` section's own fields: which evaluators run. Each evaluator's
    fields are in its own section below it (:func:`evaluator_sections`)."""
    return (EVALUATORS_FIELD,)


def evaluator_sections(config: ConfigDict | None = None) -> dict[str, tuple[Field, ...]]:
    """``evaluation.<name>`` -> the fields of the registered evaluator ``name``, for each
    one that declares fields (one without has no section), in registry order; then, for
    each instance section of ``config`` (``evaluation.<name>.evaluator`` naming a
    registered evaluator), that field and its evaluator's fields."""
    sections = {f"{EVALUATION}.{name}": declared
                for name, declared in evaluator_fields().items()}
    evaluation = None if config is None else config.get(EVALUATION)
    for name, kind in instance_kinds(evaluation if isinstance(evaluation, ConfigDict)
                                     else None).items():
        sections[f"{EVALUATION}.{name}"] = (INSTANCE_KIND_FIELD,
                                            *get_evaluator(kind).fields)
    return sections


def section_node(config: ConfigDict, section: str, create: bool = False) -> Any:
    """The node of ``config`` at the dotted ``section`` (``''``: the top level); None where
    it is missing, unless ``create`` (then an empty ConfigDict is set there)."""
    node: Any = config
    for part in section.split(".") if section else ():
        if not isinstance(node, ConfigDict):
            return None
        if part not in node and create:
            with node.unlocked():
                node[part] = ConfigDict()
        node = node.get(part)
    return node


def all_task_fields() -> dict[str, Field]:
    """Every field some task declares (a study may sweep tasks, so a task section may hold
    fields of another task; the named task reads its own), first declaration first."""
    declared: dict[str, Field] = {f.name: f for f in TASK_COMMON_FIELDS}
    for name in TASKS:
        for field in task_fields(name):
            declared.setdefault(field.name, field)
    return declared


def section_fields(config: ConfigDict | None = None) -> dict[str, tuple[Field, ...]]:
    """Section -> its fields ("" is the top level; ``task``'s are those of every task;
    ``evaluation.<name>``: the evaluator ``name``'s own section, and the instance sections
    of ``config``)."""
    return {
        "": TOP_FIELDS,
        "task": tuple(all_task_fields().values()),
        "model": MODEL_FIELDS,
        "optimizer": OPTIMIZER_FIELDS,
        "train": TRAIN_FIELDS,
        EVALUATION: evaluation_fields(),
        **evaluator_sections(config),
        "stats": STATS_FIELDS,
        "randomness": DESIGN_FIELDS,
    }


SECTIONS = ("task", "model", "optimizer", "train", "evaluation", "stats", "randomness")


def default_config(task: str = "digits") -> ConfigDict:
    """Every field at its default; the task section holds ``task``'s fields."""
    config = ConfigDict({f.name: f.default for f in TOP_FIELDS})
    config.task = ConfigDict({f.name: f.default for f in task_fields(task)})
    config.task.name = task
    for section, declared in section_fields().items():
        if section and section != "task":
            node = section_node(config, section, create=True)
            fields.fill_defaults(node, declared)
    return config


def complete(config: ConfigDict) -> ConfigDict:
    """A copy of ``config`` with every field it lacks set to its default (the task
    section: the named task's fields)."""
    completed = ConfigDict(config.to_dict())
    declared = section_fields(config)
    with completed.unlocked():
        for section in SECTIONS:
            if section not in completed:
                completed[section] = ConfigDict()
        fields.fill_defaults(completed, TOP_FIELDS)
        name = completed.task.get("name", TASK_COMMON_FIELDS[0].default)
        if isinstance(name, str) and name in TASKS:
            fields.fill_defaults(completed.task, task_fields(name))
        for section, section_declared in declared.items():
            if section and section != "task":
                node = section_node(completed, section, create=True)
                if isinstance(node, ConfigDict):
                    fields.fill_defaults(node, section_declared)
    return completed


def validate_config(config: ConfigDict) -> ConfigDict:
    """Raise :class:`ConfigError` for the first field that is unknown or not allowed;
    return ``config`` completed with every default (:func:`complete`), the one completed
    config the study works from.

    Checks what can be checked without data: every field against its declaration
    (unknown names, types, ranges, finiteness), names against the registries, the
    evaluators' order, and the training arguments. Checks that need the data (batch size
    against the training set, a shift the task cannot take) run right after the task is
    loaded, still before any compile.
    """
    for section in SECTIONS:
        node = config.get(section)
        if node is not None and not isinstance(node, ConfigDict):
            raise ConfigError(section, node, "a ConfigDict section")
    declared = section_fields(config)
    evaluators = {s.removeprefix(f"{EVALUATION}."): f
                  for s, f in evaluator_sections(config).items()}
    for section, section_declared in declared.items():
        node = section_node(config, section)
        if node is None:
            continue
        if section.startswith(f"{EVALUATION}.") and not isinstance(node, ConfigDict):
            raise ConfigError(section, node, "a ConfigDict section: the evaluator's fields")
        names = {f.name for f in section_declared}
        for key in node:
            if section == "" and key in SECTIONS:
                continue
            if section == EVALUATION and key in evaluators:
                continue
            if key not in names:
                field = f"{section}.{key}" if section else key
                moved = moved_field(key, evaluators) if section == EVALUATION else None
                if section == EVALUATION:
                    names = names | set(evaluators)
                raise ConfigError(field, node[key], moved or (
                    f"a known field; this section takes {sorted(names)}"))
        if section == "task":
            name = node.get("name", TASK_COMMON_FIELDS[0].default)
            TASK_COMMON_FIELDS[0].check(name, "task")
            own = {f.name: f for f in task_fields(name)}
            # A field of this task is checked by its own declaration; another task's field
            # passes if a task declaring it accepts the value (load_task decides the rest).
            for key in node:
                if key in own:
                    own[key].check(node[key], "task")
                    continue
                declaring = fields_named(key)
                if not any(f.accepts(node[key]) for f in declaring):
                    declaring[0].check(node[key], "task")
        else:
            fields.check_section(node, section_declared, section)
    completed = complete(config)
    resolve(completed.evaluation.evaluators, completed.evaluation)
    claims_of(completed)
    with as_config_fields():
        check_training_arguments(
            num_seeds=completed.num_seeds, steps=completed.train.steps,
            batch_size=completed.train.batch_size, eval_every=completed.train.eval_every,
            num_train=None)
    # negres's own training draws input noise only where there is some (builtin_program).
    noisy = ("input_noise",) if completed.train.input_noise > 0 else ()
    configured_design(completed.randomness, completed.num_seeds,
                      sources=("init", "data", "dropout", *noisy))
    return completed


def claims_of(config: ConfigDict) -> list[Claim]:
    """The config's claims (``config.claims``), each checked: :class:`ConfigError` naming
    e.g. ``claims[0].margin`` for one that is not allowed."""
    with as_config_fields():
        return [Claim.from_config(entry.to_dict() if isinstance(entry, ConfigDict) else entry,
                                  f"claims[{i}]")
                for i, entry in enumerate(config.get("claims") or ())]


def reference_rows() -> list[tuple[str, Field]]:
    """``(name as written in a config, field)`` of every field; a task's own fields once
    per task (``task.num_train`` of ``rule_shortcut`` and of ``shape_color`` differ)."""
    rows: list[tuple[str, Field]] = []
    for section, section_declared in section_fields().items():
        if section == "task":
            rows += [(f"task.{f.name}", f) for f in TASK_COMMON_FIELDS]
            for name in TASKS:
                own = task_fields(name)[len(TASK_COMMON_FIELDS):]
                rows += [(f"task.{f.name} ({name})", f) for f in own]
            continue
        rows += [(f"{section}.{f.name}" if section else f.name, f) for f in section_declared]
    return rows


def reference_table() -> list[str]:
    """The docs' table of every field: name, default, allowed values, meaning."""
    lines = ["| field | default | allowed | meaning |", "| --- | --- | --- | --- |"]
    for name, field in reference_rows():
        allowed = field.allowed.replace("|", "\\|")
        doc = field.doc.replace("|", "\\|")
        lines.append(f"| `{name}` | `{field.default!r}` | {allowed} | {doc} |")
    return lines


def _literal(value: Any) -> str:
    """``value`` as Python source, strings in double quotes (the repository's style)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (tuple, list)):
        items = ", ".join(_literal(v) for v in value)
        return f"({items},)" if len(value) == 1 else f"({items})"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


def default_config_source() -> str:
    """The text of ``configs/default.py``: every field at its default, with its meaning."""
    config = default_config()
    lines = ['"""The default study: an MLP on scikit-learn\'s bundled digits, 16 seeds, on a '
             'CPU in seconds.', "",
             "Generated from the fields' declarations (negres.study.config): edit those, "
             "then run", "``python -m negres.study.config --write-default``.", '"""', "",
             "from ml_collections import ConfigDict", "", "",
             "def get_config() -> ConfigDict:", "    config = ConfigDict()"]
    task_declared = {f.name: f for f in task_fields(config.task.name)}
    for section, section_declared in section_fields().items():
        if section:
            lines += ["", f"    config.{section} = ConfigDict()"]
        if section == "task":
            section_declared = tuple(task_declared.values())
        for field in section_declared:
            target = f"config.{section}.{field.name}" if section else f"config.{field.name}"
            value = section_node(config, section)[field.name]
            line = f"    {target} = {_literal(value)}  # {field.doc}"
            if len(line) > 100:  # the comment goes above, wrapped
                lines += [f"    # {part}" for part in textwrap.wrap(field.doc, 94)]
                line = f"    {target} = {_literal(value)}"
            if len(line) > 100:
                line = f"    {target} = (\n        {_literal(value)[1:]}"
            lines.append(line)
    lines += ["    return config", ""]
    return "\n".join(lines)


# A library argument -> the config field that sets it, for messages on the command line:
# every top-level and ``train`` field sets the library argument of its name; these others
# are named apart.
ARGUMENT_FIELDS = {
    **{f.name: f.name for f in TOP_FIELDS},
    **{f.name: f"train.{f.name}" for f in TRAIN_FIELDS},
    # negres.train's options name their fields: negres.Scale's (scale.layout, ...) and
    # negres.Checkpointing's every.
    **{f"scale.{f.name}": f"train.{f.name}" for f in TRAIN_FIELDS},
    "checkpointing.every": "train.checkpoint_every",
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


def main(argv: list[str] | None = None) -> None:
    """``--write-default``: regenerate configs/default.py; ``--write-docs``: the fields
    table of docs/config.md (between its markers)."""
    args = sys.argv[1:] if argv is None else argv
    root = Path(__file__).resolve().parents[2]
    if "--write-default" in args:
        (root / "configs" / "default.py").write_text(default_config_source())
    if "--write-docs" in args:
        path = root / "docs" / "config.md"
        text = path.read_text()
        start, end = "<!-- fields:start -->", "<!-- fields:end -->"
        head, rest = text.split(start)
        _, tail = rest.split(end)
        path.write_text(head + start + "\n" + "\n".join(reference_table()) + "\n" + end + tail)


if __name__ == "__main__":
    main()


__all__ = ["ARGUMENT_FIELDS", "as_config_fields", "complete", "default_config",
           "default_config_source", "evaluator_sections", "reference_table", "section_fields",
           "validate_config"]
