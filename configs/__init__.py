"""The study configs, one ``configs/NAME.py`` each, and what several of them build alike."""

from collections.abc import Mapping, Sequence
from typing import Any

from ml_collections import ConfigDict

from configs import default


def study(title: str, *, num_seeds: int, claims: Sequence[Mapping[str, Any]] = (),
          task: str = "") -> ConfigDict:
    """``configs/default.py``'s config with what a study names first: its ``title``, its
    ``num_seeds``, the ``claims`` of its source document it tests (each a dict of a
    :class:`negres.statistics.claims.Claim`'s fields; their verdicts open its report) and
    its ``task`` (left at its default when not given)."""
    config = default.get_config()
    config.title = title
    config.claims = tuple(dict(c) for c in claims)
    config.num_seeds = num_seeds
    if task:
        config.task.name = task
    return config


def grouped_conditions(
        field: str,
        groups: Mapping[str, Sequence[tuple[str, Mapping[str, Any]]]]) -> tuple[dict, ...]:
    """A condition per group and member, ``{group: ((member, overrides), ...)}``: named
    ``group/member``, with ``field`` set to the group and the member's overrides, and each
    compared with its group's first member (the group's reference)."""
    conditions = []
    for group, members in groups.items():
        reference = members[0][0]
        for member, overrides in members:
            condition = {"name": f"{group}/{member}", field: group, **overrides}
            if member != reference:
                condition["compared_with"] = f"{group}/{reference}"
            conditions.append(condition)
    return tuple(conditions)
