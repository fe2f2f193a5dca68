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

from collections.abc import Callable, Sequence
from typing import Any

import jax

from negres.errors import ArgumentError
from negres.seeds import over_seeds

LAYOUTS = ("auto", "vmap", "map")
# Primitives that make a model "convolutional" for the layout choice.
_CONVOLUTIONS = frozenset({"conv_general_dilated"})


def check_layout(layout: object, seeds_per_map_step: object) -> None:
    """Raise :class:`ArgumentError` unless the layout knobs are allowed."""
    if layout not in LAYOUTS:
        raise ArgumentError("layout", layout, f"one of {list(LAYOUTS)}")
    if (not isinstance(seeds_per_map_step, int) or isinstance(seeds_per_map_step, bool)
            or seeds_per_map_step < 1):
        raise ArgumentError("seeds_per_map_step", seeds_per_map_step, "an integer >= 1")


def seeds_per_unit(layout: str, num_devices: int, seeds_per_map_step: int) -> int:
    """The seed count every chunk must be a multiple of: one row of seeds per device, times
    the seeds vmapped at each ``lax.map`` step."""
    return num_devices * (seeds_per_map_step if layout == "map" else 1)


def lift_over_seeds(
    fn: Callable[..., Any],
    seeded_args: Sequence[int],
    layout: str,
    *,
    num_devices: int = 1,
    seeds_per_map_step: int = 1,
) -> Callable[..., Any]:
    """``fn`` written for one seed, lifted to a seed axis in ``layout`` (``vmap`` or ``map``).

    With ``map``, the ``S`` seeds are viewed as ``(num_devices, S / (num_devices * b), b)``
    (``b = seeds_per_map_step``): the device axis is vmapped (and sharded), each device
    runs ``lax.map`` over its groups, and the ``b`` seeds of a group are vmapped.
    ``S`` must be a multiple of ``num_devices * b``.
    """
    if layout == "vmap":
        return over_seeds(fn, seeded_args)
    if layout != "map":
        raise ArgumentError("layout", layout, "'vmap' or 'map' once resolved")
    seeded = tuple(seeded_args)
    width = seeds_per_map_step

    def lifted(*args: Any) -> Any:
        num_seeds = jax.tree_util.tree_leaves(args[seeded[0]])[0].shape[0]
        groups = num_seeds // (num_devices * width)

        def split(leaf: jax.Array) -> jax.Array:
            return leaf.reshape(num_devices, groups, width, *leaf.shape[1:])

        stacked = tuple(jax.tree_util.tree_map(split, args[i]) for i in seeded)

        def one_group(group: tuple[Any, ...]) -> Any:
            full = list(args)
            for position, value in zip(seeded, group, strict=True):
                full[position] = value
            return over_seeds(fn, seeded)(*full)

        def one_device(device_rows: tuple[Any, ...]) -> Any:
            return jax.lax.map(one_group, device_rows)

        out = jax.vmap(one_device)(stacked)
        return jax.tree_util.tree_map(lambda leaf: leaf.reshape(num_seeds, *leaf.shape[3:]), out)

    lifted.__name__ = f"map_over_seeds({getattr(fn, '__name__', 'fn')})"
    return lifted


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
