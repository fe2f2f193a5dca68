"""Config validation: every shipped config is valid; each bad field is named with its value."""

import importlib.util
from pathlib import Path

import pytest

from negres.errors import ConfigError
from negres.study.config import validate_config

CONFIGS = sorted(p for p in Path(__file__).resolve().parents[1].glob("configs/*.py")
                 if p.stem != "__init__")


DEFAULT = Path(__file__).resolve().parents[1] / "configs" / "default.py"


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


def test_missing_evaluation_field_is_named():
    config = load(DEFAULT)
    del config.evaluation["ig_steps"]
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    assert err.value.field == "evaluation.ig_steps"
