"""The seed axis: per-seed keys and the one helper that lifts a function over seeds.

Every stacked object in negres carries the seed axis first. Code is written for one
seed and lifted with :func:`over_seeds`; keys come from :func:`seed_key` so that seed
``i`` of a many-seed run draws exactly what seed ``i`` trained alone draws.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from negres.errors import ArgumentError

# Named random streams of one seed. Each purpose folds in its own constant, so
# adding a stream never shifts the draws of an existing one.
STREAMS: dict[str, int] = {
    "init": 0,
    "data": 1,
    "dropout": 2,
    "evaluation": 3,
    "label_noise": 4,
    "input_noise": 5,
}


def seed_key(root_seed: int, seed_index: jax.Array | int) -> jax.Array:
    """Key of seed ``seed_index`` under ``root_seed``: ``fold_in(PRNGKey(root), i)``."""
    return jax.random.fold_in(jax.random.PRNGKey(root_seed), seed_index)


def seed_keys(root_seed: int, seed_indices: Sequence[int] | np.ndarray | jax.Array) -> jax.Array:
    """Keys of several seeds, shape ``(S, 2)``; row ``s`` equals ``seed_key(root, idx[s])``."""
    return _seed_keys(int(root_seed), jnp.asarray(seed_indices, dtype=jnp.uint32))


# Compiled: run eagerly, the vmapped threefry costs a training call of a small model tens
# of milliseconds each time.
@functools.partial(jax.jit, static_argnums=0)
def _seed_keys(root_seed: int, indices: jax.Array) -> jax.Array:
    return jax.vmap(lambda i: seed_key(root_seed, i))(indices)


def stream_number(stream: str) -> int:
    """The constant folded into a seed's key for ``stream``: fixed for negres's own streams
    (:data:`STREAMS`), the CRC-32 of the name for any other, so a user's stream keeps its
    draws whatever other streams exist."""
    if not isinstance(stream, str) or not stream:
        raise ValueError(f"stream={stream!r} is not allowed: a non-empty string")
    return STREAMS.get(stream, zlib.crc32(stream.encode()))


def stream_key(key: jax.Array, stream: str) -> jax.Array:
    """The key of one named stream (``init``, ``data``, ``dropout``, or any name) of one seed."""
    return jax.random.fold_in(key, stream_number(stream))


def step_key(key: jax.Array, stream: str, step: jax.Array | int) -> jax.Array:
    """The key of ``stream`` at optimizer step ``step`` of one seed: a pure function of
    ``(seed, stream, step)``, so a run split into segments, chunked, resumed or trained
    beside other seeds draws the same."""
    return jax.random.fold_in(stream_key(key, stream), step)


def over_seeds(fn: Callable[..., Any], seeded_args: Sequence[int] = (0,)) -> Callable[..., Any]:
    """Lift a one-seed function to all seeds by mapping over the leading axis.

    Args:
      fn: a pure function written for one seed.
      seeded_args: positions of the arguments that carry the seed axis first (for
        example parameters ``(S, ...)`` or keys ``(S, 2)``); every other argument
        (data, settings) is shared by all seeds.

    Returns:
      A function with the same arguments whose seeded arguments and every output
      leaf have the seed axis first.
    """
    seeded = frozenset(seeded_args)

    def lifted(*args: Any) -> Any:
        in_axes = tuple(0 if i in seeded else None for i in range(len(args)))
        return jax.vmap(fn, in_axes=in_axes)(*args)

    lifted.__name__ = f"over_seeds({getattr(fn, '__name__', 'fn')})"
    lifted.__doc__ = fn.__doc__
    return lifted


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


def num_seeds_of(tree: Any) -> int:
    """The size ``S`` of the leading (seed) axis shared by every leaf of ``tree``."""
    sizes = {leaf.shape[0] for leaf in jax.tree_util.tree_leaves(tree)}
    if len(sizes) != 1:
        raise ValueError(f"leaves disagree on the seed axis size: {sorted(sizes)}")
    return sizes.pop()


def take_seed(tree: Any, s: int) -> Any:
    """Seed ``s`` of a stacked pytree (drops the seed axis)."""
    return jax.tree_util.tree_map(lambda leaf: leaf[s], tree)


def take_rows(tree: Any, rows: slice | np.ndarray) -> Any:
    """The seeds ``rows`` of a stacked pytree (keeps the seed axis)."""
    return jax.tree_util.tree_map(lambda leaf: leaf[rows], tree)
