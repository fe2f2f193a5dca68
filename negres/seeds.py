"""The seed axis: per-seed keys and the one helper that lifts a function over seeds.

Every stacked object in negres carries the seed axis first. Code is written for one
seed and lifted with :func:`over_seeds`; keys come from :func:`seed_key` so that seed
``i`` of a many-seed run draws exactly what seed ``i`` trained alone draws.
"""

from __future__ import annotations

import functools
import itertools
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from negres import fields
from negres.errors import ArgumentError, ConfigError

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


# Where a training call's randomness comes from, by the name a design gives it: "init" is
# the key the program's init receives (everything drawn at initialisation), "data" the
# order of the batches; every other name is a stream the program's step draws.
TRAINING_SOURCES = ("init", "data")
# Seed indices fold into uint32 keys.
MAX_SEED_INDEX = (1 << 32) - 1


@dataclass(frozen=True)
class SourceDesign:
    """Which seed index each source of randomness of each seed draws from.

    A study varies one source of randomness while holding the others by giving each
    stream its own seed index per seed: seed ``s``'s stream ``name`` draws from the key
    of seed ``stream_seeds[name][s]`` instead of seed ``s``'s own; streams the design does
    not name keep seed ``s``'s key. Held: the same index for every seed. Crossed: every
    combination of the levels of several sources (:func:`crossed_design`).

    Attributes:
      stream_seeds: stream -> ``(S,)`` the seed index its draws come from, per seed.
      factors: stream -> ``(S,)`` the level (0, 1, ...) of that source per seed, what
        :func:`negres.statistics.variance_by_source` takes.
    """

    stream_seeds: Mapping[str, np.ndarray]
    factors: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_seeds(self) -> int:
        """``S``: the seeds the design lays out."""
        return int(next(iter(self.stream_seeds.values())).size)

    @property
    def levels(self) -> dict[str, int]:
        """stream -> its number of levels (1: held)."""
        return {n: int(np.unique(v).size) for n, v in self.factors.items()}

    def take(self, rows: Sequence[int] | np.ndarray | slice) -> SourceDesign:
        """The design of the seeds ``rows`` (e.g. a condition's share of a call)."""
        return SourceDesign({n: np.asarray(v)[rows] for n, v in self.stream_seeds.items()},
                            {n: np.asarray(v)[rows] for n, v in self.factors.items()})


def crossed_design(levels: Mapping[str, int], *, first_index: int = 0) -> SourceDesign:
    """Every combination of ``levels[name]`` levels of each named source, one seed each.

    ``crossed_design({"init": 4, "data": 4})`` lays out 16 seeds: seed ``s`` is init level
    ``s // 4`` and data level ``s % 4`` (the first source varies slowest), and level ``l`` of
    a source draws from seed index ``first_index + l``. A source with one level is held:
    ``{"init": 16, "data": 1}`` varies the initialisation alone, every seed seeing the same
    batches. Streams not named (e.g. dropout) follow each seed's own index.

    Args:
      levels: source -> number of levels (an integer >= 1); sources are ``"init"`` (the key
        the program's init receives), ``"data"`` (batch order) or a stream the program's
        step draws (``"dropout"``, ...).
      first_index: the seed index of level 0.

    Returns:
      A :class:`SourceDesign`; pass it as ``negres.train(..., stream_seeds=design)``.
    """
    if not isinstance(levels, Mapping) or not levels:
        raise ArgumentError("levels", levels, "a non-empty dict: source name -> number of "
                            "levels, e.g. {'init': 4, 'data': 4}")
    for name, count in levels.items():
        if not isinstance(name, str) or not name:
            raise ArgumentError("levels", dict(levels), "source names that are non-empty "
                                "strings ('init', 'data', 'dropout', ...)")
        if not isinstance(count, (int, np.integer)) or isinstance(count, bool) or count < 1:
            raise ArgumentError(f"levels[{name!r}]", count, "an integer >= 1 (1: held)")
    if not isinstance(first_index, (int, np.integer)) or isinstance(first_index, bool) \
            or not 0 <= first_index <= MAX_SEED_INDEX - max(levels.values()) + 1:
        raise ArgumentError("first_index", first_index,
                            "an integer >= 0 whose levels stay below 2**32")
    total = math.prod(int(c) for c in levels.values())
    cells = np.asarray(list(itertools.product(*(range(int(c)) for c in levels.values()))),
                       np.int64).reshape(total, len(levels))
    factors = {name: cells[:, i] for i, name in enumerate(levels)}
    return SourceDesign({n: first_index + f for n, f in factors.items()}, factors)


# The config's ``randomness`` section: a source design for negres's own training.
# "init" covers everything drawn at initialisation (for negres's own models: the initial
# weights and each seed's label-noise draw); "input_noise" is a stream only when
# train.input_noise > 0.
CONFIG_SOURCES = ("init", "data", "dropout", "input_noise")
DESIGN_FIELDS = (
    fields.names("vary", (), "sources of randomness crossed in a design, e.g. ('init', "
                 "'data'); (): every source follows its seed", CONFIG_SOURCES),
    fields.sequence("levels", (), "levels of each source in vary (1: held); their product "
                    "is num_seeds", lambda v: fields.is_int(v) and v >= 1,
                    "integers >= 1, one per source in vary"),
    fields.names("metrics", ("test_accuracy",), "metrics whose variance is split by source "
                 "(metrics of pairs of seeds are not)"),
)


def configured_design(section: Mapping[str, Any], num_seeds: int, *,
                      sources: Sequence[str] = CONFIG_SOURCES) -> SourceDesign | None:
    """The :class:`SourceDesign` of a config's ``randomness`` section (fields already
    checked one by one), or ``None`` when it varies nothing; :class:`ConfigError` where
    the fields disagree with each other, with ``num_seeds`` or with the ``sources`` this
    training draws."""
    vary, levels = tuple(section.get("vary", ())), tuple(section.get("levels", ()))
    if len(levels) != len(vary):
        raise ConfigError("randomness.levels", levels,
                          f"{len(vary)} integer(s) >= 1, one per source in randomness.vary "
                          f"{vary}")
    if not vary:
        return None
    for name in vary:
        if name not in sources:
            raise ConfigError("randomness.vary", vary,
                              f"sources this training draws: {', '.join(map(repr, sources))}"
                              + (" ('input_noise' needs train.input_noise > 0)"
                                 if name == "input_noise" else ""))
    total = math.prod(levels)
    if num_seeds != total:
        raise ConfigError("num_seeds", num_seeds,
                          f"{total}, the product of randomness.levels {levels}: one seed per "
                          f"combination of the levels of {vary}")
    return crossed_design(dict(zip(vary, levels, strict=True)))


def design_keys(root_seed: int, seed_indices: Sequence[int] | np.ndarray,
                stream_seeds: Mapping[str, Sequence[int] | np.ndarray] | SourceDesign,
                ) -> dict[str, jax.Array]:
    """stream -> ``(S, 2)``: the key each named stream of each seed derives from, that of
    seed ``stream_seeds[name][s]``; :func:`stream_key` and :func:`step_key` of it give the
    stream's draws exactly as for that seed. ``""``: each seed's own key, what every stream
    the design does not name derives from."""
    if isinstance(stream_seeds, SourceDesign):
        stream_seeds = stream_seeds.stream_seeds
    return {"": seed_keys(root_seed, seed_indices)} | {
        name: seed_keys(root_seed, np.asarray(indices)) for name, indices in stream_seeds.items()}


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
