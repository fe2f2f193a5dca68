"""Conditions of a study: named variants of one config, each trained on its own S seeds.

A config declares ``conditions`` as a tuple of dicts, each with a ``name`` and dotted
overrides of the base config, e.g.
``({"name": "mlp"}, {"name": "linear", "model.name": "linear"})``. ``baseline`` names
the condition every other one is compared with (default: the first).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ml_collections import ConfigDict

from negres.errors import ConfigError

# Fields a condition may not override: they define the study, not a variant of it.
_STUDY_FIELDS = frozenset({"conditions", "baseline", "stats", "report"})


def _set_dotted(config: ConfigDict, dotted: str, value: Any, condition: str) -> None:
    *path, leaf = dotted.split(".")
    field = f"conditions[{condition!r}].{dotted}"
    node = config
    for part in path:
        child = node.get(part) if isinstance(node, ConfigDict) else None
        if not isinstance(child, ConfigDict):
            raise ConfigError(field, value, "a field of the base config")
        node = child
    if leaf not in node:
        raise ConfigError(field, value, "a field of the base config")
    with node.unlocked():
        node[leaf] = value


def expand_conditions(config: ConfigDict) -> tuple[list[tuple[str, ConfigDict]], str]:
    """The ``(name, config)`` of every condition, and the baseline's name.

    Without ``config.conditions`` the study has one condition named after its model.
    Each condition's config is a deep copy of the base with its overrides applied.
    """
    declared = config.get("conditions") or ()
    if not declared:
        name = str(config.model.get("name", "default"))
        return [(name, config)], name
    expanded: list[tuple[str, ConfigDict]] = []
    for i, condition in enumerate(declared):
        if not isinstance(condition, Mapping) or not isinstance(condition.get("name"), str):
            raise ConfigError(f"conditions[{i}]", condition, "a dict with a string 'name'")
        name = condition["name"]
        if name in dict(expanded):
            raise ConfigError(f"conditions[{i}].name", name, "a name used by one condition only")
        variant = copy.deepcopy(config)
        for dotted, value in condition.items():
            if dotted == "name":
                continue
            if dotted.split(".")[0] in _STUDY_FIELDS:
                raise ConfigError(f"conditions[{name!r}].{dotted}", value,
                                  "a field of the model, task, optimizer or training")
            _set_dotted(variant, dotted, value, name)
        expanded.append((name, variant))
    baseline = config.get("baseline") or expanded[0][0]
    names = [name for name, _ in expanded]
    if baseline not in names:
        raise ConfigError("baseline", baseline, f"one of the condition names {names}")
    return expanded, baseline
