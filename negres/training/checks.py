"""Checks of the arguments of a training call, made before anything compiles.

Each raises :class:`~negres.errors.ArgumentError` naming the argument, its value and
what is allowed; the command line translates the names into config fields.
"""

from __future__ import annotations

import math

from negres.errors import ArgumentError
from negres.training.layout import check_layout


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_training_arguments(
    *, num_seeds: int, steps: int, batch_size: int, eval_every: int, num_train: int | None
) -> None:
    """Raise :class:`ArgumentError` naming the argument when one is not allowed.

    ``num_train=None`` (the data not loaded yet) skips the bound of the batch size by the
    training set size.
    """
    if not is_int(num_seeds) or num_seeds < 1:
        raise ArgumentError("num_seeds", num_seeds, "an integer >= 1")
    if not is_int(steps) or steps < 1:
        raise ArgumentError("steps", steps, "an integer >= 1")
    upper = num_train if num_train is not None else math.inf
    if not is_int(batch_size) or not 1 <= batch_size <= upper:
        allowed = (f"an integer from 1 to the training set size ({num_train} examples)"
                   if num_train is not None else "an integer >= 1")
        raise ArgumentError("batch_size", batch_size, allowed)
    if not is_int(eval_every) or eval_every < 1 or steps % eval_every:
        raise ArgumentError("eval_every", eval_every,
                            f"a positive integer that divides steps={steps}")


def check_scale_arguments(
    *, seeds_per_chunk: object, layout: object, seeds_per_map_step: object,
    checkpoint_every: object,
) -> None:
    """Raise :class:`ArgumentError` naming a scale or durability argument not allowed."""
    if not is_int(seeds_per_chunk) or seeds_per_chunk < 0:
        raise ArgumentError("seeds_per_chunk", seeds_per_chunk,
                            "an integer >= 0 (0: chosen from the compiled step's memory)")
    check_layout(layout, seeds_per_map_step)
    if not is_int(checkpoint_every) or checkpoint_every < 0:
        raise ArgumentError("checkpoint_every", checkpoint_every,
                            "an integer >= 0 (steps between checkpoints; 0: about one a minute)")
