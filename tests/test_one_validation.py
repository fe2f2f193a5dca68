"""One validation system: the config's fields and the library's argument checks share their
primitives (negres.fields) and their bounds, name tuples come from their registries, and the
modules that check import one another in one direction only."""

import ast
import math
import re
from pathlib import Path

import pytest
from ml_collections import ConfigDict
from tests_configs import load_config

from negres import fields
from negres.errors import ArgumentError, ConfigError
from negres.models import MODELS, build_model
from negres.study.config import validate_config
from negres.training.builtin import check_input_noise, check_label_noise
from negres.training.checks import INPUT_NOISE, LABEL_NOISE
from negres.training.grid import expand_rows
from negres.training.layout import LAYOUTS, check_layout
from negres.training.optimizers import FIELDS as OPTIMIZER_FIELDS
from negres.training.optimizers import OPTIMIZER_RANGES, OPTIMIZERS, build_optimizer

PACKAGE = Path(__file__).resolve().parents[1] / "negres"


def a_config(**values):
    """The default config with ``values`` set (``"train.layout"``-style keys), of any type."""
    config = load_config("default").to_dict()
    for dotted, value in values.items():
        section, _, key = dotted.rpartition(".")
        node = config
        for part in filter(None, section.split(".")):
            node = node[part]
        node[key] = value
    return ConfigDict(config)


def refusal(config):
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    return err.value


# ----- names from their registries

@pytest.mark.parametrize("name", list(MODELS))
def test_every_registered_model_is_accepted_by_the_config(name):
    validate_config(a_config(**{"model.name": name}))


@pytest.mark.parametrize("name", ["resnet", "MLP", 3, None])
def test_a_model_outside_the_registry_is_refused_naming_the_field(name):
    error = refusal(a_config(**{"model.name": name}))
    assert error.field == "model.name"
    assert error.allowed == fields.one_of(MODELS)
    with pytest.raises(ConfigError) as built:
        build_model(ConfigDict({"name": name}), 3)
    assert str(built.value) == str(error)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_is_accepted_by_the_config_and_the_library(layout):
    validate_config(a_config(**{"train.layout": layout}))
    check_layout(layout, 1)


@pytest.mark.parametrize("layout", ["pmap", "sequential", "", 1])
def test_a_layout_outside_the_registry_is_refused_by_both_with_one_wording(layout):
    error = refusal(a_config(**{"train.layout": layout}))
    assert error.field == "train.layout"
    with pytest.raises(ArgumentError) as library:
        check_layout(layout, 1)
    assert library.value.field == "layout"
    assert library.value.allowed == error.allowed == fields.one_of(LAYOUTS)


def test_the_optimizer_name_field_lists_the_registry():
    name = next(f for f in OPTIMIZER_FIELDS if f.name == "name")
    assert all(name.accepts(n) for n in OPTIMIZERS) and not name.accepts("lamb")
    assert name.doc == " | ".join(OPTIMIZERS)


# ----- one bound, one wording

@pytest.mark.parametrize("value", [1.0, 1.5, -0.1, math.nan, math.inf, True, "0.1"])
def test_label_noise_is_refused_alike_by_the_library_and_the_config(value):
    with pytest.raises(ArgumentError) as library:
        check_label_noise(value, "classification", 10)
    error = refusal(a_config(**{"train.label_noise": value}))
    assert library.value.field == "label_noise" and error.field == "train.label_noise"
    assert library.value.allowed == error.allowed == LABEL_NOISE.allowed == "a number in [0, 1)"


@pytest.mark.parametrize("value", [0.0, 0.5, 0.999])
def test_label_noise_below_one_is_accepted_by_both(value):
    check_label_noise(value, "classification", 10)
    validate_config(a_config(**{"train.label_noise": value}))


@pytest.mark.parametrize("value", [-0.1, math.nan, math.inf, True, "0.1"])
def test_input_noise_is_refused_alike_by_the_library_and_the_config(value):
    with pytest.raises(ArgumentError) as library:
        check_input_noise(value)
    error = refusal(a_config(**{"train.input_noise": value}))
    assert library.value.field == "input_noise" and error.field == "train.input_noise"
    assert library.value.allowed == error.allowed == INPUT_NOISE.allowed


@pytest.mark.parametrize(("name", "bad"), [("learning_rate", 0.0), ("momentum", 1.0),
                                           ("weight_decay", -1e-4)])
def test_an_optax_range_is_one_bound_for_the_config_and_the_grid(name, bad):
    interval, _ = OPTIMIZER_RANGES[name]
    field = next(f for f in OPTIMIZER_FIELDS if f.name == name)
    assert field.allowed == interval.allowed
    with pytest.raises(ConfigError, match=rf"^config\.optimizer\.{name}="):
        build_optimizer(ConfigDict({"name": "sgd", name: bad}))
    said = re.escape(f"numbers {interval.bounds}")
    with pytest.raises(ArgumentError, match=rf"grid\['{name}'\].*{said}"):
        expand_rows(2, None, None, {name: [bad]})


@pytest.mark.parametrize(("interval", "allowed", "inside", "outside"), [
    (fields.Interval(), "a finite number", [0, -1e300, 2.5], [math.nan, math.inf, True]),
    (fields.Interval(0.0, low_open=True), "a finite number > 0", [1e-9, 3], [0, -1, math.inf]),
    (fields.Interval(0.0), "a finite number >= 0", [0, 0.0, 7], [-1e-9, math.nan, False]),
    (fields.Interval(high=1.0, high_open=True), "a finite number < 1", [0.5, -3], [1, 1.5]),
    (fields.Interval(0.0, 1.0), "a number in [0, 1]", [0, 1], [1.01, -0.01, "0.5"]),
    (fields.Interval(0.0, 1.0, True, True), "a number in (0, 1)", [0.5], [0, 1, None]),
])
def test_an_interval_words_what_it_accepts(interval, allowed, inside, outside):
    assert interval.allowed == allowed
    assert all(interval.accepts(v) for v in inside)
    assert not any(interval.accepts(v) for v in outside)
    field = fields.bounded("x", 0.0, "", interval)
    assert field.allowed == allowed and field.accepts is not None


def test_a_field_checks_a_library_argument_under_its_own_name_or_another():
    field = fields.integer("steps", 10, "", minimum=1)
    field.check_argument(3)
    with pytest.raises(ArgumentError, match=r"^steps=0 is not allowed: an integer >= 1$"):
        field.check_argument(0)
    with pytest.raises(ArgumentError, match=r"^train_steps=True is not allowed"):
        field.check_argument(True, "train_steps")


# ----- one definition of each primitive

def module_trees():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE.parent), ast.parse(path.read_text())


@pytest.mark.parametrize("name", ["is_int", "is_number", "is_int_in", "real_numbers",
                                  "range_text", "one_of"])
def test_a_primitive_check_is_defined_once_in_negres_fields(name):
    defined = sorted(str(path) for path, tree in module_trees() for node in ast.walk(tree)
                     if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                     and node.name == name)
    assert defined in ([], ["negres/fields.py"]), defined
    if name != "range_text":  # folded into fields.Interval.bounds
        assert defined == ["negres/fields.py"]


# ----- imports in one direction

def import_graph() -> dict[str, set[str]]:
    """Module -> the negres modules it imports anywhere in its text (at the top, under
    TYPE_CHECKING or inside a function alike: each is a dependency)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    kept = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(kept + ([base] if base else []))
                found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules
                          else base for alias in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def reachable(graph, start):
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_fields_imports_no_negres_module_but_errors():
    assert import_graph()["negres.fields"] <= {"negres.errors"}


@pytest.mark.parametrize("lower,upper", [
    ("negres.training.grid", "negres.training.checks"),
    ("negres.training.optimizers", "negres.training.checks"),
    ("negres.training.layout", "negres.training.checks"),
    ("negres.fields", "negres.training.checks"),
])
def test_checks_imports_the_modules_it_needs_and_none_imports_it_back(lower, upper):
    graph = import_graph()
    assert upper not in reachable(graph, lower), f"{lower} reaches {upper}: an import cycle"


def test_no_import_cycle_passes_through_the_checks():
    graph = import_graph()
    for name in ("negres.training.checks", "negres.training.grid", "negres.training.layout",
                 "negres.training.optimizers", "negres.fields", "negres.models"):
        back = sorted(m for m in graph if name in graph[m] and m in reachable(graph, name))
        assert not back, f"{name} imports, directly or not, {back}, which import it back"


@pytest.mark.parametrize("name, field, value", [
    ("adam", "weight_decay", 1e-2), ("sgd", "weight_decay", 1e-2), ("adam", "momentum", 0.9)])
def test_an_optimizer_setting_the_named_optimizer_ignores_is_refused(name, field, value):
    from negres.training.optimizers import build_optimizer

    with pytest.raises(ConfigError, match=rf"config\.optimizer\.{field}=.*only"):
        build_optimizer(ConfigDict({"name": name, field: value}))
