"""The plan of a training call: where seeds live, how they are laid out and chunked.

Seeded arguments (state, keys, hyperparameters) are split over the ``seeds`` mesh and
the data every seed shares is replicated (:mod:`negres.sharding`). A convolutional
model may run faster with its seeds one after another (``lax.map``) than side by side
(``vmap``): :func:`choose_layout` times both where it matters. :func:`choose_chunk` keeps
a call within the device's memory by compiling it and reading its memory analysis.
:class:`Scale` is what a user says about all this to :func:`negres.train`: where the
seeds run and how they are chunked and laid out, none of which changes their numbers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from negres.errors import ArgumentError
from negres.seeds import lift_over_seeds, over_seeds, seed_keys
from negres.sharding import agreed, put, replicated, seeded
from negres.training.checks import check_scale_arguments, is_int
from negres.training.layout import is_convolutional, seeds_per_unit
from negres.training.step import SeedTrainer


@contextlib.contextmanager
def fields_of(owner: str) -> Iterator[None]:
    """Name an :class:`ArgumentError` raised inside as a field of ``owner`` (``layout`` ->
    ``scale.layout``), so that the message names what the user wrote."""
    try:
        yield
    except ArgumentError as e:
        raise ArgumentError(f"{owner}.{e.field}", e.value, e.allowed) from None


@dataclasses.dataclass(frozen=True)
class Scale:
    """Where and how :func:`negres.train` runs the seeds: none of it changes a seed's
    numbers (seed ``i`` equals seed ``i`` trained alone under any of these), only the
    time and memory a call takes. Checked when made: a bad value raises
    :class:`~negres.ArgumentError` naming the field (``scale.layout``).

    Attributes:
      mesh: the devices the seed axis is split over (default: a ``seeds`` mesh of every
        device, :func:`negres.seed_mesh`); the data is replicated.
      seeds_per_chunk: seeds per compiled call (rounded up to whole rows of devices);
        0 chooses from the compiled segment's memory analysis against the memory budget.
      layout: ``"vmap"``, ``"map"`` or ``"auto"`` (see :mod:`negres.training.layout`).
      seeds_per_map_step: seeds vmapped together at each ``lax.map`` step of ``"map"``.
      memory_budget_bytes: per-device budget of the automatic chunk size (default: 90% of
        an accelerator's memory, half the host's on a CPU).
      trainer: a :class:`~negres.training.step.SeedTrainer` to train with (default: the
        one cached per program and settings); benchmarks pass a subclass or reuse one to
        keep compilation out of their timings.
    """

    mesh: Mesh | None = None
    seeds_per_chunk: int = 0
    layout: str = "auto"
    seeds_per_map_step: int = 1
    memory_budget_bytes: int | None = None
    trainer: SeedTrainer | None = None

    def __post_init__(self) -> None:
        with fields_of("scale"):
            check_scale_arguments(seeds_per_chunk=self.seeds_per_chunk, layout=self.layout,
                                  seeds_per_map_step=self.seeds_per_map_step,
                                  checkpoint_every=0)
        if self.mesh is not None and not isinstance(self.mesh, Mesh):
            raise ArgumentError("scale.mesh", self.mesh,
                                "None or a jax.sharding.Mesh with a 'seeds' axis "
                                "(negres.seed_mesh(devices))")
        if self.memory_budget_bytes is not None and (not is_int(self.memory_budget_bytes)
                                                     or self.memory_budget_bytes < 1):
            raise ArgumentError("scale.memory_budget_bytes", self.memory_budget_bytes,
                                "None (chosen from the device) or an integer >= 1 (bytes per "
                                "device)")
        if self.trainer is not None and not isinstance(self.trainer, SeedTrainer):
            raise ArgumentError("scale.trainer", type(self.trainer).__name__,
                                "None or a negres.training.step.SeedTrainer")


class Plan(NamedTuple):
    """How a call lays out its seeds; logged, and written to ``results.json``.

    Attributes:
      layout: ``"vmap"`` or ``"map"`` (see :mod:`negres.training.layout`).
      seeds_per_map_step: seeds vmapped at each ``lax.map`` step (``map`` only).
      seeds_per_chunk: seeds per compiled call; the last chunk is padded.
      num_chunks: calls per segment.
      num_devices: devices of the ``seeds`` mesh.
      padded_seeds: rows added to fill the last chunk (copies of the last seed, dropped).
      reason: why this layout and chunk size.
      devices: why the mesh has ``num_devices`` devices (e.g. one CPU device per core).
    """

    layout: str
    seeds_per_map_step: int
    seeds_per_chunk: int
    num_chunks: int
    num_devices: int
    padded_seeds: int
    reason: str
    devices: str = ""


# Compiled executable's id -> (the executable, kept alive so the id stays its own; its need).
_MEMORY_NEEDED: dict[int, tuple[Any, int | None]] = {}
_MAX_MEMORY_NEEDED = 64


def memory_needed(compiled: Any) -> int | None:
    """Bytes one device needs to run ``compiled`` (arguments, outputs, temporaries), or None
    where the backend does not report it. Read once per executable: the analysis costs a
    small model's training call several percent, and the chunk choice asks at every call."""
    if id(compiled) not in _MEMORY_NEEDED:
        if len(_MEMORY_NEEDED) >= _MAX_MEMORY_NEEDED:
            _MEMORY_NEEDED.pop(next(iter(_MEMORY_NEEDED)))
        _MEMORY_NEEDED[id(compiled)] = (compiled, _analyse_memory(compiled))
    return _MEMORY_NEEDED[id(compiled)][1]


def _analyse_memory(compiled: Any) -> int | None:
    try:
        stats = compiled.memory_analysis()
    except (NotImplementedError, AttributeError, jax.errors.JaxRuntimeError):
        return None
    if stats is None:
        return None
    return int(stats.argument_size_in_bytes + stats.output_size_in_bytes
               + stats.temp_size_in_bytes - stats.alias_size_in_bytes
               + stats.generated_code_size_in_bytes)


def memory_budget(mesh: Mesh) -> int | None:
    """Bytes a training call may use on each device of ``mesh``: 90% of the device's limit
    where the backend reports one (GPU, TPU); on CPU, half the machine's memory shared by
    its local devices. None where neither is known."""
    # A device of this process: another process's device reports nothing here.
    device = next((d for d in mesh.devices.flat if d.process_index == jax.process_index()),
                  jax.local_devices()[0])
    try:
        stats = device.memory_stats()
    except (NotImplementedError, jax.errors.JaxRuntimeError):
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(0.9 * stats["bytes_limit"])
    if device.platform == "cpu":
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return None
        return total // (2 * max(1, jax.local_device_count()))
    return None


class Placement:
    """Compiles the lifted pieces of one trainer for one mesh and data, with explicit
    shardings: seeded arguments split over ``seeds``, shared ones replicated.

    ``data`` and ``eval_data`` are pytrees already placed (replicated) on the mesh (``data``
    is ``()`` when batches are fed); ``hyper`` maps each grid name to the dtype of its
    per-seed values; ``fed_batch``: one fed batch's shapes (leaves ``(batch_size, ...)``),
    or None when the batches are drawn from ``data``.
    """

    def __init__(self, trainer: SeedTrainer, mesh: Mesh, data: Any, eval_data: Any,
                 example: Any, hyper_dtypes: dict[str, Any], fed_batch: Any = None):
        self.trainer = trainer
        self.mesh = mesh
        self.data = data
        self.eval_data = eval_data
        self.example = example
        self.hyper_dtypes = dict(sorted(hyper_dtypes.items()))
        self.fed_batch = fed_batch
        self.split = seeded(mesh)
        self.shared = replicated(mesh)

    def _abstract(self, shape: tuple[int, ...], dtype: Any, sharding: Any) -> Any:
        return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)

    def _shared_abstract(self, tree: Any) -> Any:
        return jax.tree_util.tree_map(
            lambda a: self._abstract(a.shape, a.dtype, self.shared), tree)

    def abstract_inputs(self, num_seeds: int) -> tuple[Any, Any]:
        keys = self._abstract((num_seeds, 2), jnp.uint32, self.split)
        hyper = {n: self._abstract((num_seeds,), d, self.split)
                 for n, d in self.hyper_dtypes.items()}
        return keys, hyper

    def abstract_state(self, num_seeds: int) -> tuple[Any, Any]:
        """``(state, diverged_at)`` of ``num_seeds`` seeds as sharded shape structs."""
        keys, hyper = self.abstract_inputs(num_seeds)
        state = jax.eval_shape(self.trainer.init, keys, hyper, self.example)
        state = jax.tree_util.tree_map(
            lambda leaf: self._abstract(leaf.shape, leaf.dtype, self.split), state)
        return state, self._abstract((num_seeds,), jnp.int32, self.split)

    def abstract_fed(self, num_seeds: int, num_steps: int) -> Any:
        """The fed batches of ``num_steps`` steps: leaves ``(num_seeds, num_steps,
        batch_size, ...)`` split over seeds; ``()`` when batches are drawn from the data."""
        if self.fed_batch is None:
            return ()
        return jax.tree_util.tree_map(
            lambda a: self._abstract((num_seeds, num_steps, *a.shape), a.dtype, self.split),
            self.fed_batch)

    def _cached(self, key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        shapes = jax.tree_util.tree_map(lambda a: (a.shape, a.dtype),
                                        (self.data, self.eval_data, self.example,
                                         self.fed_batch))
        key = (*key, self.mesh, tuple(self.hyper_dtypes.items()),
               jax.tree_util.tree_structure(shapes), tuple(jax.tree_util.tree_leaves(shapes)))
        if key not in self.trainer.compiled:
            self.trainer.compiled[key] = build()
        return self.trainer.compiled[key]

    def init(self, num_seeds: int) -> Any:
        def build() -> Any:
            keys, hyper = self.abstract_inputs(num_seeds)
            jitted = jax.jit(over_seeds(self.trainer.init_one, seeded_args=(0, 1)),
                             in_shardings=(self.split, self.split, self.shared),
                             out_shardings=self.split)
            return jitted.lower(keys, hyper, self._shared_abstract(self.example)).compile()

        return self._cached(("init", num_seeds), build)

    def _lifted(self, fn: Callable[..., Any], shared: tuple[Any, ...], layout: str,
                width: int, num_seeds: int, num_steps: int) -> Any:
        lifted = lift_over_seeds(fn, (0, 1, 2, 3, 4), layout, num_devices=self.mesh.size,
                                 seeds_per_map_step=width)
        shardings = (self.split,) * 5 + (self.shared,) * (1 + len(shared))
        jitted = jax.jit(lifted, in_shardings=shardings, out_shardings=self.split)
        state, diverged_at = self.abstract_state(num_seeds)
        keys, hyper = self.abstract_inputs(num_seeds)
        start = self._abstract((), jnp.int32, self.shared)
        return jitted.lower(state, diverged_at, keys, hyper,
                            self.abstract_fed(num_seeds, num_steps), start,
                            *self._shared_abstract(shared)).compile()

    def segment(self, num_points: int, layout: str, width: int, num_seeds: int) -> Any:
        """Compiled ``(state, diverged_at, keys, hyper, fed, start_step, data, eval_data)
        -> (state, diverged_at, curves)`` for ``num_seeds`` seeds."""
        return self._cached(
            ("segment", num_points, layout, width, num_seeds),
            lambda: self._lifted(self.trainer.segment_one(num_points),
                                 (self.data, self.eval_data), layout, width, num_seeds,
                                 num_points * self.trainer.eval_every))

    def steps(self, num_steps: int, layout: str, width: int, num_seeds: int) -> Any:
        """Compiled ``(state, diverged_at, keys, hyper, fed, start_step, data)
        -> (state, diverged_at)``."""
        return self._cached(
            ("steps", num_steps, layout, width, num_seeds),
            lambda: self._lifted(self.trainer.steps_one(num_steps), (self.data,), layout,
                                 width, num_seeds, num_steps))


# Layouts measured so far: conditions of one study that share a model (and differ in
# noise or learning rate) are timed once.
_MEASURED_LAYOUTS: dict[tuple[Any, ...], tuple[str, int, str]] = {}
# Steps of the timing probe that picks the layout, and how long it times them: rounds of
# every candidate until this many seconds are spent (at least one round, at most
# _PROBE_MAX_ROUNDS).
_PROBE_STEPS = 2
_PROBE_SECONDS = 0.25
_PROBE_MAX_ROUNDS = 10
# How much faster map must be in the probe to be chosen over vmap.
_MAP_MARGIN = 1.25
# Most seeds per device the probe trains: with map widths for a CPU's caches (below),
# enough for those effects to show; a convolutional model's native-convolution probe alone
# (any backend), few, as its memory is not known yet.
_PROBE_MAX_SEEDS_PER_DEVICE = 64
_CONV_PROBE_SEEDS_PER_DEVICE = 8
# Seeds vmapped per lax.map step that the probe tries on a CPU for any model with at least
# two such steps' worth of seeds per device. Many seeds side by side can outgrow the caches:
# measured on 2 cores (2026-11-30, 2 devices), MNIST-1D's CNN with matmul convolutions ran
# 1.4-1.7x faster as map over groups of 4 than as vmap at 32-256 seeds, the digits MLP
# 1.3x faster in groups of 16 at 128-256 seeds (vmap stayed fastest at 64).
_PROBE_WIDTHS = (4, 16)
# Fewer seeds per device than this: no map widths tried on a dense model. Below it the
# gains were small, and the probe would time every shipped config at its default seed
# count, whose numbers were measured with vmap (the layouts round differently).
_PROBE_MIN_SEEDS_PER_DEVICE = 32


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _tries_groups(seeds_per_device: int, cpu: bool) -> bool:
    """Whether the probe tries map over groups of ``_PROBE_WIDTHS`` seeds: on a CPU, from
    ``_PROBE_MIN_SEEDS_PER_DEVICE`` seeds per device."""
    return cpu and seeds_per_device >= _PROBE_MIN_SEEDS_PER_DEVICE


def _candidates(convolutional: bool, width: int, seeds_per_device: int,
                cpu: bool = True) -> list[tuple[str, int]]:
    """``(layout, seeds per map step)`` pairs the probe times: vmap; map at the asked width
    for a model with native convolutions; on a CPU from ``_PROBE_MIN_SEEDS_PER_DEVICE``
    seeds per device, map at each of ``_PROBE_WIDTHS`` that gives every device at least
    two steps."""
    candidates = [("vmap", 1)]
    if convolutional:
        candidates.append(("map", width))
    if _tries_groups(seeds_per_device, cpu):
        candidates += [("map", w) for w in _PROBE_WIDTHS
                       if seeds_per_device >= 2 * w and ("map", w) not in candidates]
    return candidates


def choose_layout(
    placement: Placement, layout: str, width: int, num_seeds: int,
    hyper: dict[str, np.ndarray],
) -> tuple[str, int, str]:
    """Resolve ``"auto"`` by a short timed probe on this device: ``vmap``, unless ``map``
    (at the asked ``width`` for a model with native convolutions, at each width of
    ``_PROBE_WIDTHS`` for any model with enough seeds per device) is clearly faster (by
    ``_MAP_MARGIN``). A model without convolutions and with too few seeds for a map step
    is ``vmap`` without a probe. ``hyper`` holds every seed's hyperparameters; the probe
    trains copies of the first seed's.

    Returns ``(layout, seeds_per_map_step, reason)``.
    """
    if layout != "auto":
        return layout, (width if layout == "map" else 1), f"layout {layout} asked for"
    if placement.fed_batch is not None:
        return "vmap", 1, ("auto: batches fed from a pipeline, so vmap (the probe would "
                           "need batches of its own)")
    trainer = placement.trainer
    if trainer.convolutional is None:
        state, diverged_at = jax.tree_util.tree_map(
            lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), placement.abstract_state(1))
        one_hyper = {n: jax.ShapeDtypeStruct((), d) for n, d in placement.hyper_dtypes.items()}
        trainer.convolutional = is_convolutional(
            trainer.steps_one(1), state, diverged_at, jax.ShapeDtypeStruct((2,), jnp.uint32),
            one_hyper, (), jax.ShapeDtypeStruct((), jnp.int32), placement.data)
    num_devices = placement.mesh.size
    platform = placement.mesh.devices.flat[0].platform
    per_device = -(-num_seeds // num_devices)
    candidates = _candidates(bool(trainer.convolutional), width,
                             min(per_device, _PROBE_MAX_SEEDS_PER_DEVICE), platform == "cpu")
    if len(candidates) == 1:
        return "vmap", 1, (f"auto: no convolution and {per_device} seed(s) per device "
                           f"(map is tried on a CPU from {_PROBE_MIN_SEEDS_PER_DEVICE}), "
                           "so vmap")
    unit = num_devices * math.lcm(*(w for _, w in candidates))
    most = (_PROBE_MAX_SEEDS_PER_DEVICE if _tries_groups(per_device, platform == "cpu")
            else _CONV_PROBE_SEEDS_PER_DEVICE)
    probe_seeds = _round_up(num_devices * min(per_device, most), unit)
    memo = (trainer.model_key, probe_seeds, tuple(candidates), num_devices, platform,
            tuple((a.shape, str(a.dtype)) for a in jax.tree_util.tree_leaves(placement.data)))
    if memo in _MEASURED_LAYOUTS:
        layout, chosen_width, reason = _MEASURED_LAYOUTS[memo]
        return layout, chosen_width, reason.replace("measured", "measured earlier in this "
                                                    "process,", 1)
    keys = put(np.asarray(seed_keys(0, np.arange(probe_seeds))), placement.split)
    probe_hyper = put({n: np.full(probe_seeds, v[0], v.dtype) for n, v in hyper.items()},
                      placement.split)
    state = placement.init(probe_seeds)(keys, probe_hyper, placement.example)
    diverged_at = put(np.full(probe_seeds, -1, np.int32), placement.split)
    start = put(np.asarray(0, np.int32), placement.shared)
    args = (state, diverged_at, keys, probe_hyper, (), start, placement.data)
    runs = {c: placement.steps(_PROBE_STEPS, *c, probe_seeds) for c in candidates}
    for run in runs.values():
        jax.block_until_ready(run(*args))  # first run: allocation, caches
    # Rounds of every candidate in turn, each keeping its fastest run: one run of a small
    # model lasts a few milliseconds, where one stray delay would decide.
    fastest = dict.fromkeys(candidates, math.inf)
    spent, rounds = 0.0, 0
    while rounds < _PROBE_MAX_ROUNDS and (rounds == 0 or spent < _PROBE_SECONDS):
        for candidate, run in runs.items():
            begin = time.perf_counter()
            jax.block_until_ready(run(*args))
            took = time.perf_counter() - begin
            fastest[candidate], spent = min(fastest[candidate], took), spent + took
        rounds += 1
    timings = {c: t / (_PROBE_STEPS * probe_seeds) for c, t in fastest.items()}
    fastest_map = min((c for c in candidates if c[0] == "map"), key=timings.__getitem__)
    # The layouts round differently, and a long training run amplifies rounding: a choice
    # that flips with timing noise would make reruns of one config differ. So map must win
    # clearly; near a tie, vmap.
    faster = timings[fastest_map] * _MAP_MARGIN < timings[("vmap", 1)]
    chosen = candidates[agreed(candidates.index(fastest_map if faster else ("vmap", 1)))]
    names = {c: (c[0] if c[0] == "vmap" else f"map of {c[1]}") for c in candidates}
    kind = "convolutional model" if trainer.convolutional else "no convolution"
    reason = (f"auto: {kind}, measured {probe_seeds} seeds x {_PROBE_STEPS} steps, fastest of "
              f"{rounds} round(s): "
              + ", ".join(f"{names[c]} {1e3 * v:.3f} ms/seed-step" for c, v in timings.items())
              + f", so {names[chosen]} (map needs to be {_MAP_MARGIN:g}x faster)"
              + (" (process 0's timings decide)" if jax.process_count() > 1 else ""))
    _MEASURED_LAYOUTS[memo] = (*chosen, reason)
    return (*chosen, reason)


def _balanced(num_seeds: int, chunk: int, unit: int) -> int:
    """The smallest chunk (whole rows of ``unit``) that needs no more chunks than ``chunk``
    does: S = 1024 in chunks of at most 65 becomes 16 chunks of 64, not 16 of 65 with
    padding."""
    num_chunks = -(-num_seeds // chunk)
    return _round_up(-(-num_seeds // num_chunks), unit)


def choose_chunk(
    placement: Placement, layout: str, width: int, num_seeds: int, seeds_per_chunk: int,
    num_points: int, budget: int | None,
) -> tuple[int, str]:
    """Seeds per compiled call: ``seeds_per_chunk`` rounded up to whole device rows, or
    (when 0) all seeds unless the compiled segment's memory analysis exceeds ``budget``.

    Returns ``(seeds_per_chunk, reason)``.
    """
    unit = seeds_per_unit(layout, placement.mesh.size, width)
    everything = _round_up(num_seeds, unit)
    if seeds_per_chunk:
        chunk = min(everything, _round_up(seeds_per_chunk, unit))
        return chunk, f"{chunk} seeds per chunk asked for (whole rows of {unit})"
    chunk = everything
    needed = memory_needed(placement.segment(num_points, layout, width, chunk))
    if needed is None or budget is None:
        return chunk, "all seeds in one chunk (the backend reports no memory analysis)"
    if needed <= budget:
        return chunk, (f"all seeds in one chunk: the compiled segment needs "
                       f"{needed / 2**20:.1f} MiB of a {budget / 2**20:.0f} MiB budget per device")
    first_need = needed
    chunk = _balanced(num_seeds, max(unit, (budget * chunk // needed) // unit * unit), unit)
    while True:
        needed = memory_needed(placement.segment(num_points, layout, width, chunk)) or 0
        if needed <= budget or chunk == unit:
            break
        chunk = _balanced(num_seeds, max(unit, (chunk // 2) // unit * unit), unit)
    return chunk, (f"chunks of {chunk} seeds: all {everything} need {first_need / 2**20:.1f} MiB "
                   f"per device, over the {budget / 2**20:.0f} MiB budget; a chunk needs "
                   f"{needed / 2**20:.1f} MiB")


def plan_description(plan: Plan) -> str:
    """One line for the log: layout, chunks, devices and why."""
    layout = ("vmap" if plan.layout == "vmap" else
              f"lax.map over seeds, {plan.seeds_per_map_step} vmapped per step")
    return (f"layout {layout}; {plan.num_chunks} chunk(s) of {plan.seeds_per_chunk} seeds on "
            f"{plan.num_devices} device(s) ({plan.devices + '; ' if plan.devices else ''}"
            f"{plan.padded_seeds} padding); {plan.reason}")
