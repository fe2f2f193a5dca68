"""Conditions expand into independent configs; bad declarations name the field."""

import pytest
from ml_collections import ConfigDict

from negres.errors import ConfigError
from negres.study.conditions import expand_conditions


def base() -> ConfigDict:
    return ConfigDict({
        "num_seeds": 4,
        "model": {"name": "mlp", "hidden_sizes": (8,)},
        "optimizer": {"name": "adam", "learning_rate": 0.01},
        "conditions": (),
        "baseline": "",
    })


def test_no_conditions_is_one_condition_named_after_the_model():
    conditions, baseline = expand_conditions(base())
    assert [name for name, _ in conditions] == ["mlp"] and baseline == "mlp"


def test_overrides_apply_to_copies_and_baseline_defaults_to_first():
    config = base()
    config.conditions = (
        {"name": "wide", "model.hidden_sizes": (32,)},
        {"name": "slow", "optimizer.learning_rate": 0.001, "num_seeds": 2},
    )
    conditions, baseline = expand_conditions(config)
    by_name = dict(conditions)
    assert baseline == "wide"
    assert tuple(by_name["wide"].model.hidden_sizes) == (32,)
    assert by_name["slow"].optimizer.learning_rate == 0.001 and by_name["slow"].num_seeds == 2
    assert tuple(by_name["slow"].model.hidden_sizes) == (8,)
    assert tuple(config.model.hidden_sizes) == (8,) and config.num_seeds == 4


@pytest.mark.parametrize(
    "conditions,baseline,field",
    [
        (({"name": "a", "model.widths": 3},), "", "conditions['a'].model.widths"),
        (({"name": "a", "nope.x": 3},), "", "conditions['a'].nope.x"),
        (({"model.name": "linear"},), "", "conditions[0]"),
        (({"name": "a"}, {"name": "a"}), "", "conditions[1].name"),
        (({"name": "a"},), "b", "baseline"),
        (({"name": "a", "stats.level": 0.9},), "", "conditions['a'].stats.level"),
    ],
)
def test_bad_conditions_name_the_field(conditions, baseline, field):
    config = base()
    config.conditions = conditions
    config.baseline = baseline
    with pytest.raises(ConfigError) as err:
        expand_conditions(config)
    assert err.value.field == field


def test_a_condition_overrides_a_declared_field_the_base_leaves_at_its_default():
    """The documented studies set only what differs from the defaults: a condition may
    still override a declared field they leave out; a name nobody declares is refused."""
    config = base()
    config.conditions = ({"name": "a"}, {"name": "b", "model.dropout_rate": 0.1})
    conditions, _ = expand_conditions(config)
    assert dict(conditions)["b"].model.dropout_rate == 0.1
    assert "dropout_rate" not in dict(conditions)["a"].model  # the default, filled later
    config.conditions = ({"name": "a"}, {"name": "b", "model.dropout": 0.1})
    with pytest.raises(ConfigError) as err:
        expand_conditions(config)
    assert err.value.field == "conditions['b'].model.dropout"


def test_a_bad_override_names_its_condition():
    from tests_configs import tiny_config

    from negres.study.prepare import prepare_study

    config = tiny_config()
    config.conditions = ({"name": "a"}, {"name": "b", "optimizer.learning_rate": "fast"})
    with pytest.raises(ConfigError) as err:
        prepare_study(config)
    assert err.value.field == "conditions['b'].optimizer.learning_rate"
    config.conditions = ({"name": "a"},
                         {"name": "b", "optimizer.learning_rate": float("nan")})
    with pytest.raises(ConfigError) as err:
        prepare_study(config)
    assert err.value.field == "conditions['b'].optimizer.learning_rate"
    assert "finite" in str(err.value) and "\n" not in str(err.value)
