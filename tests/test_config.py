"""Config validation: every shipped config is valid; each bad field is named with its value."""

import importlib.util
from pathlib import Path

import pytest

from negres.errors import ConfigError
from negres.study.config import (
    complete,
    default_config,
    default_config_source,
    reference_rows,
    reference_table,
    section_fields,
    validate_config,
)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in REPO.glob("configs/*.py") if p.stem != "__init__")
DEFAULT = REPO / "configs" / "default.py"


def load(path: Path):
    spec = importlib.util.spec_from_file_location(f"config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_are_valid(path):
    validate_config(load(path))


@pytest.mark.parametrize(
    "field,value",
    [
        ("num_seeds", 0),
        ("num_seeds", -3),
        ("seed", -1),
        ("train.steps", 0),
        ("train.batch_size", 0),
        ("train.eval_every", 0),
        ("model.name", "resnet"),
        ("task.name", "imagenet"),
        ("optimizer.name", "lbfgs"),
        ("task.test_fraction", 1.5),
    ],
)
def test_bad_values_name_field_and_value(field, value):
    config = load(DEFAULT)
    section, _, key = field.rpartition(".")
    node = config[section] if section else config
    node[key] = value
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    assert err.value.field == field
    assert repr(value) in str(err.value)


def test_unknown_field_is_a_typo_not_ignored():
    config = load(DEFAULT)
    config.optimizer.unlock()
    config.optimizer.learning_rat = 0.1
    with pytest.raises(ConfigError, match=r"optimizer\.learning_rat"):
        validate_config(config)


def test_a_missing_field_takes_its_declared_default():
    from negres.evaluators.attributions import FIELDS

    config = load(DEFAULT)
    del config.evaluation.attributions["ig_steps"]
    validate_config(config)
    declared = next(f.default for f in FIELDS if f.name == "ig_steps")
    assert complete(config).evaluation.attributions.ig_steps == declared


def test_configs_default_is_generated_from_the_declarations():
    """configs/default.py holds every field at its declared default with its meaning; a
    changed default or a new field makes this fail until the file is regenerated."""
    assert DEFAULT.read_text() == default_config_source(), (
        "regenerate: python -m negres.study.config --write-default")
    assert load(DEFAULT).to_dict() == default_config().to_dict()


def test_the_docs_list_every_field_with_its_default():
    text = (REPO / "docs" / "config.md").read_text()
    table = text.split("<!-- fields:start -->")[1].split("<!-- fields:end -->")[0]
    assert table.strip().splitlines() == reference_table(), (
        "regenerate: python -m negres.study.config --write-docs")
    for section, declared in section_fields().items():
        for field in declared:  # every field of every section, each task's own included
            name = f"{section}.{field.name}" if section else field.name
            assert f"| `{name}" in table, name
    for name, field in reference_rows():
        assert f"| `{name}` | `{field.default!r}` |" in table, name
