"""Conditions of a study: named variants of one config, each trained on its own S seeds.

A config declares ``conditions`` as a tuple of dicts, each with a ``name`` and dotted
overrides of the base config, e.g.
``({"name": "mlp"}, {"name": "linear", "model.name": "linear"})``. ``baseline`` names
the condition every other one is compared with (default: the first). A condition may
name its own reference with ``"compared_with": "<condition>"``, so that one study can hold
several comparison groups (for example the same capacity sweep on two datasets).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ml_collections import ConfigDict

from negres.errors import ConfigError
from negres.evaluators import moved_field
from negres.study.config import EVALUATION, evaluator_sections, section_fields

# Fields a condition may not override: they define the study, not a variant of it.
_STUDY_FIELDS = frozenset({"conditions", "baseline", "stats", "claims"})
# Keys of a condition that describe it rather than override the config.
_DESCRIPTIVE_KEYS = frozenset({"name", "compared_with"})
# The longest condition name, in bytes of its file-name form: it goes into file names
# (plots/KIND_NAME_SHIFT.png, attributions/NAME__METHOD.npy, checkpoints/0_NAME_look2)
# that must stay under the file system's 255 bytes.
_MAX_NAME_BYTES = 100


def file_name_of(name: str) -> str:
    """The form of a condition name in file names: characters other than letters, digits,
    ``-``, ``_`` and ``.`` become ``_`` (as :func:`negres.reporting.write.safe_name`)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def check_condition_name(name: str, index: int, taken: dict[str, str]) -> None:
    """Refuse a condition name that is empty, too long for file names, or that names the
    same files as an earlier condition's (``'a/b'`` and ``'a_b'``; ``'A'`` and ``'a'`` on a
    file system that ignores case). ``taken``: file-name form (lower case) -> name."""
    field = f"conditions[{index}].name"
    if not name.strip():
        raise ConfigError(field, name, "a non-empty name (it names the condition's rows, "
                          "tables and files)")
    form = file_name_of(name)
    if len(form.encode()) > _MAX_NAME_BYTES:
        raise ConfigError(field, name, f"a name of at most {_MAX_NAME_BYTES} bytes (it goes "
                          "into the names of the condition's files)")
    if form.lower() in taken:
        other = taken[form.lower()]
        raise ConfigError(field, name, f"a name whose files differ from those of condition "
                          f"{other!r}: both would write files named {form!r} (characters "
                          "other than letters, digits, '-', '_' and '.' become '_'; case is "
                          "ignored, as some file systems do)")
    taken[form.lower()] = name


def _declared(config: ConfigDict, path: list[str], leaf: str) -> bool:
    """Whether ``path.leaf`` is a declared config field of ``config`` (a base config may
    leave it at its default by not setting it; a condition may still override it)."""
    declared = section_fields(config).get(".".join(path), ())
    return leaf in {f.name for f in declared}


def _set_dotted(config: ConfigDict, dotted: str, value: Any, condition: str) -> None:
    *path, leaf = dotted.split(".")
    field = f"conditions[{condition!r}].{dotted}"
    node = config
    for part in path:
        child = node.get(part) if isinstance(node, ConfigDict) else None
        if not isinstance(child, ConfigDict):
            raise ConfigError(field, value, "a field of the base config")
        node = child
    if leaf not in node and not _declared(config, path, leaf):
        # An evaluator's field overridden as in the flat layout: say where it lives now.
        moved = moved_field(leaf, {s.removeprefix(f"{EVALUATION}."): f for s, f in
                                   evaluator_sections().items()}) if path == [EVALUATION] else None
        raise ConfigError(field, value, moved or "a field of the base config")
    with node.unlocked():
        try:
            node[leaf] = value
        except TypeError:  # ml_collections keeps a field's type: 'fast' for a float
            raise ConfigError(field, value, f"a value of the field's type "
                                            f"({type(node[leaf]).__name__})") from None


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
    file_names: dict[str, str] = {}
    for i, condition in enumerate(declared):
        if not isinstance(condition, Mapping) or not isinstance(condition.get("name"), str):
            raise ConfigError(f"conditions[{i}]", condition, "a dict with a string 'name'")
        name = condition["name"]
        if name in dict(expanded):
            raise ConfigError(f"conditions[{i}].name", name, "a name used by one condition only")
        check_condition_name(name, i, file_names)
        variant = copy.deepcopy(config)
        for dotted, value in condition.items():
            if dotted in _DESCRIPTIVE_KEYS:
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


def references_of(config: ConfigDict, baseline: str) -> dict[str, str | None]:
    """Each condition's reference: its ``compared_with``, else ``baseline``.

    A reference is ``None`` for a condition compared with nothing (the baseline itself, and
    any condition that other conditions name as their reference without naming one itself).
    """
    declared = config.get("conditions") or ()
    if not declared:
        return {str(config.model.get("name", "default")): None}
    names = [c["name"] for c in declared]
    named = {c["name"]: c.get("compared_with") for c in declared}
    for name, reference in named.items():
        if reference is not None and (reference not in names or reference == name):
            raise ConfigError(f"conditions[{name!r}].compared_with", reference,
                              f"the name of another condition, one of "
                              f"{[n for n in names if n != name]}")
    group_heads = {r for r in named.values() if r is not None} | {baseline}
    return {name: (reference if reference is not None
                   else None if name in group_heads else baseline)
            for name, reference in named.items()}
