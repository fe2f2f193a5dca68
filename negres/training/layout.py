"""How the seeds of one compiled call are laid out: side by side (vmap) or one after another.

``vmap`` turns every seed into one more batch dimension: a matmul over seeds is one
batched matmul, which is what makes 64 seeds cost about one on dense models. A
convolution over seeds becomes a grouped convolution, which some backends run slower
than the same convolution repeated (XLA on CPU: measured in ``bench/seeds_scaling.py``
and the README). ``map`` runs the seeds of each device one after another with
``lax.map``, ``seeds_per_map_step`` of them vmapped together at each step (1: strictly
in sequence; more: a mix of the two). Either way every seed computes what it computes
alone; only the schedule differs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from negres.errors import ArgumentError
from negres.fields import is_int_in, one_of

# The one place a layout's name is written: check_layout and the config's train.layout
# field read it.
LAYOUTS = ("auto", "vmap", "map")
# Primitives that make a model "convolutional" for the layout choice.
_CONVOLUTIONS = frozenset({"conv_general_dilated"})


def check_layout(layout: object, seeds_per_map_step: object) -> None:
    """Raise :class:`ArgumentError` unless the layout knobs are allowed."""
    if not isinstance(layout, str) or layout not in LAYOUTS:
        raise ArgumentError("layout", layout, one_of(LAYOUTS))
    if not is_int_in(seeds_per_map_step, 1):
        raise ArgumentError("seeds_per_map_step", seeds_per_map_step, "an integer >= 1")


def seeds_per_unit(layout: str, num_devices: int, seeds_per_map_step: int) -> int:
    """The seed count every chunk must be a multiple of: one row of seeds per device, times
    the seeds vmapped at each ``lax.map`` step."""
    return num_devices * (seeds_per_map_step if layout == "map" else 1)


def is_convolutional(fn: Callable[..., Any], *example_args: Any) -> bool:
    """Whether tracing ``fn(*example_args)`` meets a convolution (nested jaxprs included)."""
    jaxpr = jax.make_jaxpr(fn)(*example_args).jaxpr
    return _has_primitive(jaxpr, _CONVOLUTIONS)


def _has_primitive(jaxpr: Any, names: frozenset[str]) -> bool:
    for equation in jaxpr.eqns:
        if equation.primitive.name in names:
            return True
        for param in equation.params.values():
            for sub in param if isinstance(param, (list, tuple)) else (param,):
                inner = getattr(sub, "jaxpr", None)
                if inner is not None and _has_primitive(getattr(inner, "jaxpr", inner), names):
                    return True
    return False
