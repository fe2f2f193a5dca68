"""The driver: train many seeds of a :class:`~negres.training.contract.SeedProgram` in one call.

:func:`train` checks its arguments, plans the call (:mod:`negres.training.plan`), compiles
it once and runs it segment by segment: between segments it reports progress and saves
checkpoints, from which a killed run resumes. A grid of hyperparameters rides the seed
axis: every grid point trains the same seeds, all in the same compiled call. So does a
source design (``stream_seeds``): each source of randomness of each seed may draw from
another seed's key, so that a study varies one source while holding the others.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

import jax
import numpy as np
from absl import logging
from jax.sharding import SingleDeviceSharding

from negres.errors import ArgumentError, ResumeError
from negres.seeds import MAX_SEED_INDEX, TRAINING_SOURCES, SourceDesign, over_seeds, seed_keys
from negres.sharding import agreed, devices_reason, put, replicated, seed_mesh, to_host
from negres.training.checkpoint import Checkpointing, TrainingCheckpoints
from negres.training.checks import (
    check_loop_arguments,
    check_program,
    check_training_arguments,
    is_int,
)
from negres.training.contract import Batch, LossState, SeedProgram, injected_hyperparams
from negres.training.events import ProgressFn, TrainingProgress
from negres.training.fingerprint import (
    describe_differences,
    fingerprint_differences,
    run_fingerprint,
)
from negres.training.grid import Rows, expand_rows
from negres.training.pipeline import GrainFeed, is_random_access
from negres.training.plan import (
    Placement,
    Plan,
    Scale,
    choose_chunk,
    choose_layout,
    memory_budget,
    plan_description,
)
from negres.training.step import (
    GRID_POINT,
    RESERVED_HYPER,
    SEED_INDEX,
    EarlyStopping,
    SeedTrainer,
    design_hyper,
    is_design_name,
    make_seed_trainer,
    num_examples,
)

__all__ = ["Checkpointing", "EarlyStopping", "ProgressFn", "Scale", "TrainResult",
           "TrainingProgress", "compile_training", "train"]

# Aim for about this many progress reports in a run.
_PROGRESS_REPORTS = 10
# With Checkpointing(every=0), save at the first progress report this long after the last save:
# a short run then pays for one save (its final state), a long one loses at most a minute.
_CHECKPOINT_SECONDS = 60.0


class TrainResult(NamedTuple):
    """What :func:`train` returns. Every per-seed array has the shape ``(H..., S, ...)``:
    the grid's axes (none without a grid), then the seed axis.

    Attributes:
      state: the trained state of every seed (the program's pytree, leaves
        ``(H..., S, ...)``): device arrays when the run was one unpadded chunk on one host
        without a grid, NumPy arrays gathered on the host otherwise.
      seed_indices: ``(S,)`` the seed index of each seed (seed ``i`` uses
        ``fold_in(PRNGKey(seed), i)``); without a grid, of each row.
      curves: name -> ``(H..., S, T)``: ``train_<metric>`` averaged over the ``eval_every``
        steps before each point, ``eval_<metric>`` on the evaluation data at each point.
      curve_steps: ``(T,)`` the optimizer step after which each curve point was taken.
      train_time_s: wall time of planning, compilation and training.
      diverged_at: ``(H..., S)`` the step at which each seed's loss or state stopped being
        finite (it was frozen at its last finite state from then on); -1: never.
      plan: how the seeds were laid out, chunked and sharded, and the step resumed from.
      grid: name -> the values of each grid axis, in axis order; ``{}`` without a grid.
      hyperparams: name -> ``(H..., S)`` every seed's hyperparameter values.
      stream_seeds: source -> ``(S,)`` the seed index each seed's source drew from (the
        ``stream_seeds`` of the call); ``{}``: every source followed its seed.
      stopped_at: ``(H..., S)`` the step each seed was stopped early at (its state is the
        best one then, see ``best_step``); -1: it trained to the end (always, without
        ``early_stopping``).
      best_step: ``(H..., S)`` under early stopping, the step of each seed's best curve
        point (the state returned with ``restore_best``); -1 otherwise.
      restored_best: whether ``state`` holds each seed's best state (early stopping with
        ``restore_best``); :meth:`final` then reads each curve at the best step.
    """

    state: Any
    seed_indices: np.ndarray
    curves: dict[str, np.ndarray]
    curve_steps: np.ndarray
    train_time_s: float
    diverged_at: np.ndarray
    plan: dict[str, Any]
    grid: dict[str, tuple[float, ...]]
    hyperparams: dict[str, np.ndarray]
    stream_seeds: dict[str, np.ndarray] = {}  # noqa: RUF012 (a NamedTuple's default, never mutated)
    stopped_at: np.ndarray | None = None
    best_step: np.ndarray | None = None
    restored_best: bool = False

    @property
    def params(self) -> Any:
        """The parameters ``(H..., S, ...)`` of a :func:`~negres.loss_program` state."""
        return _loss_state(self.state).params

    @property
    def model_state(self) -> Any:
        """The model state (BatchNorm statistics, ...) of a loss-program state."""
        return _loss_state(self.state).model_state

    @property
    def opt_state(self) -> Any:
        """The optimizer state of a loss-program state."""
        return _loss_state(self.state).opt_state

    def final(self, curve: str) -> np.ndarray:
        """``curve``'s value for the state returned: ``(H..., S)``, ready for
        :mod:`negres.statistics`. Its last point; under early stopping that restored each
        seed's best state, the point of each seed's best step."""
        values = self.curves[curve]
        if not self.restored_best or self.best_step is None:
            return values[..., -1]
        at = np.clip(np.searchsorted(self.curve_steps, self.best_step), 0,
                     values.shape[-1] - 1)
        picked = np.take_along_axis(values, at[..., None], axis=-1)[..., 0]
        return np.where(self.best_step > 0, picked, values[..., -1])


def _loss_state(state: Any) -> LossState:
    if not isinstance(state, LossState):
        raise AttributeError("params, model_state and opt_state are fields of a loss_program's "
                             f"state; this run's state is a {type(state).__name__}: use .state")
    return state


def points_per_segment(num_points: int, reports: int = _PROGRESS_REPORTS) -> int:
    """The largest divisor of ``num_points`` at most ``ceil(num_points / reports)``.

    A divisor keeps every segment the same length, so the segment compiles once.
    """
    cap = max(1, math.ceil(num_points / reports))
    return max(d for d in range(1, cap + 1) if num_points % d == 0)


def checkpoint_points(checkpoint_every: int, eval_every: int, num_points: int) -> int:
    """Curve points between checkpoints: ``checkpoint_every`` steps rounded up to whole
    points (0: progress reports, of which :func:`train` saves one a minute)."""
    if checkpoint_every <= 0:
        return points_per_segment(num_points)
    return min(num_points, math.ceil(checkpoint_every / eval_every))


def _host_tree(tree: Any, name: str) -> Any:
    """``tree``'s leaves as NumPy arrays in the dtypes JAX will use (float64 only in x64)."""
    def one(leaf: Any) -> np.ndarray:
        array = np.asarray(leaf)
        if array.dtype == object or not (np.issubdtype(array.dtype, np.number)
                                         or array.dtype == np.bool_):
            raise ArgumentError(name, f"a leaf of dtype {array.dtype}",
                                "a pytree of numeric arrays")
        return array.astype(jax.dtypes.canonicalize_dtype(array.dtype), copy=False)

    return jax.tree_util.tree_map(one, tree)


StreamSeeds = Mapping[str, Sequence[int] | np.ndarray] | SourceDesign


def _design_seeds(stream_seeds: StreamSeeds | None, num_seeds: int | None,
                  seed_indices: Any) -> tuple[dict[str, Any], int | None]:
    """``(stream -> indices as given, num_seeds)``: a design given without a seed count
    sets it (its seeds' count)."""
    if isinstance(stream_seeds, SourceDesign):
        stream_seeds = stream_seeds.stream_seeds
    if stream_seeds is None:
        return {}, num_seeds
    if not isinstance(stream_seeds, Mapping):
        raise ArgumentError("stream_seeds", stream_seeds,
                            "a dict: source name -> (S,) seed indices, a "
                            "negres.seeds.SourceDesign, or None")
    if num_seeds is None and seed_indices is None and stream_seeds:
        num_seeds = int(np.size(next(iter(stream_seeds.values()))))
    return dict(stream_seeds), num_seeds


def checked_stream_seeds(stream_seeds: Mapping[str, Any], num_seeds: int,
                         streams: Sequence[str]) -> dict[str, np.ndarray]:
    """``stream_seeds`` as ``(S,)`` int64 arrays, each name a source this training draws
    (``init``, ``data`` or one of the program's ``streams``) and each value ``S`` seed
    indices."""
    sources = (*TRAINING_SOURCES, *(s for s in streams if s not in TRAINING_SOURCES))
    checked = {}
    for name, values in stream_seeds.items():
        if name not in sources:
            raise ArgumentError(
                f"stream_seeds[{name!r}]", values,
                f"an entry named for a source this training draws: "
                f"{', '.join(map(repr, sources))} ('init': the "
                "key the program's init receives; 'data': the batch order; the others: the "
                "streams the program's step draws)")
        array = np.asarray(values)
        if (array.shape != (num_seeds,) or not np.issubdtype(array.dtype, np.integer)
                or (array.size and (array.min() < 0 or array.max() > MAX_SEED_INDEX))):
            raise ArgumentError(f"stream_seeds[{name!r}]", values,
                                f"{num_seeds} integer seed indices from 0 to 2**32 - 1, one "
                                "per seed")
        checked[name] = array.astype(np.int64)
    return checked


_DATA_ALLOWED = ("one pytree of arrays sharing their leading (example) axis (an array, "
                 "(x, y), a dict of arrays), or a random-access source for data that does not "
                 "fit in memory (len() and [i]: negres.training.pipeline.ArraySource over "
                 "NumPy memmaps, a Grain or TFDS data source, or a GrainFeed around one)")


def _is_list_of_batches(data: Any) -> bool:
    """A list (or tuple) of two or more batches, e.g. ``[(x1, y1), (x2, y2)]``: items of
    one structure whose leaves agree in dtype and in shape past the leading axis. Its
    leaves would share a leading axis and pass for one dataset of ``B`` examples, so it is
    told apart here; ``((x, mask), (y, weight))`` is one dataset (``x`` and ``y`` differ)."""
    if not isinstance(data, (list, tuple)) or len(data) < 2:
        return False
    if not all(isinstance(item, (list, tuple, dict)) for item in data):
        return False
    if len({jax.tree_util.tree_structure(item) for item in data}) != 1:
        return False

    def signature(item: Any) -> list[tuple[Any, ...]]:
        return [(np.shape(leaf)[1:], np.asarray(leaf).dtype)
                for leaf in jax.tree_util.tree_leaves(item)]

    return all(signature(item) == signature(data[0]) for item in data[1:])


def _checked_data(data: Batch, name: str) -> tuple[Batch, int]:
    """``(data on the host, its number of examples)``; a random-access source comes back
    as a :class:`~negres.training.pipeline.GrainFeed` (not read here)."""
    if name != "data" and (isinstance(data, GrainFeed) or is_random_access(data)):
        raise ArgumentError(name, type(data).__name__,
                            "a pytree of arrays in memory (it is evaluated whole at every "
                            "curve point)")
    if isinstance(data, GrainFeed):
        return data, data.num_examples
    if is_random_access(data):
        feed = GrainFeed(data)
        return feed, feed.num_examples
    if isinstance(data, Iterator) or inspect.isgenerator(data):
        raise ArgumentError(name, type(data).__name__,
                            f"{_DATA_ALLOWED}; an iterator or generator cannot be replayed, "
                            "and every seed draws its own batches from the whole set")
    if _is_list_of_batches(data):
        raise ArgumentError(name, f"a {type(data).__name__} of {len(data)} batches",
                            f"{_DATA_ALLOWED}; join the batches first, e.g. "
                            "jax.tree.map(lambda *b: np.concatenate(b), *batches): every "
                            "seed draws its own batches")
    if not jax.tree_util.tree_leaves(data):
        raise ArgumentError(name, data, "a pytree of arrays (an array, a tuple, a dict, ...)")
    host = _host_tree(data, name)
    try:
        return host, num_examples(host)
    except ValueError:
        shapes = jax.tree_util.tree_map(np.shape, host)
        raise ArgumentError(name, f"leaves of shapes {shapes}",
                            "arrays sharing their leading (example) axis") from None


class _Run(NamedTuple):
    """A training call checked, placed and compiled: everything but the training itself."""

    placement: Placement
    plan: Plan
    rows: Rows  # hyper holds the design's stream keys and the reserved names too
    stream_seeds: dict[str, np.ndarray]  # source -> (S,) seed index, checked
    keys: np.ndarray  # (R, 2) every row's key, on the host
    chunk_rows: list[np.ndarray]  # per chunk, the rows it holds (padding repeats the last)
    chunk_keys: list[jax.Array]
    chunk_hyper: list[Any]
    eval_every: int
    num_points: int
    points_per_segment: int
    points_per_checkpoint: int
    curve_names: list[str]
    init: Any
    segment: Any
    feed: GrainFeed | None  # the pipeline batches are fed from; None: drawn from data
    fingerprint: dict[str, str]  # component -> digest ({} without checkpoints)
    resumed: dict[str, Any] | None  # the metadata of the checkpoint resumed from


def _reserved_hyper(rows: Rows) -> dict[str, np.ndarray]:
    """Every row's seed index and flat grid point, handed to the program's init and step."""
    points = math.prod(rows.grid_shape)
    per_point = rows.seed_indices.size // points
    return {SEED_INDEX: rows.seed_indices.astype(np.uint32),
            GRID_POINT: np.repeat(np.arange(points, dtype=np.int32), per_point)}


def _program_hyper(hyper: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The hyperparameters a user gave (the design's keys and the reserved names left out)."""
    return {n: v for n, v in hyper.items() if not is_design_name(n) and n not in RESERVED_HYPER}


def _check_declared_hyper(program: SeedProgram, rows: Rows, example: Batch) -> None:
    """Refuse grid and hyperparams names that only a program reading ``hyper`` could use,
    when its functions were not declared to take it (``hyper=True``): the optimizer's
    injected hyperparameters are the only names such a program varies."""
    given = _program_hyper(rows.hyper)
    if program.reads_hyper or not given:
        return
    abstract_hyper = {n: jax.ShapeDtypeStruct((), np.asarray(v).dtype)
                      for n, v in rows.hyper.items() if not is_design_name(n)}
    state = jax.eval_shape(program.init, jax.ShapeDtypeStruct((2,), np.uint32),
                           jax.tree_util.tree_map(
                               lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype),
                               example), abstract_hyper)
    injected = injected_hyperparams(state.opt_state) if isinstance(state, LossState) else set()
    undeclared = sorted(set(given) - injected)
    if not undeclared:
        return
    in_grid = [name for name in undeclared if name in rows.grid]
    where, names = ("grid", in_grid) if in_grid else ("hyperparams", undeclared)
    injects = f"the optimizer injects {sorted(injected)}" if injected else "none injected"
    raise ArgumentError(where, names,
                        f"names the optimizer injects ({injects}) or the program reads from "
                        "its hyper argument; these are read by neither: the program's "
                        "functions were not declared to take hyper (build it with hyper=True: "
                        "loss_program, linen_program and nnx_program then pass hyper last to "
                        "the functions you give), and an optimizer's hyperparameter varies "
                        "only when the optimizer is given as a factory, e.g. "
                        "optimizer=optax.adamw with hyperparams={'weight_decay': 1e-4}, not as "
                        "an instance such as optax.adamw(1e-3)")


def _prepare_run(
    program: SeedProgram, data: Batch, *, num_seeds: int | None, steps: int,
    batch_size: int, seed: int, eval_every: int | None, eval_data: Batch | None,
    seed_indices: Any, grid: Mapping[str, Sequence[float]] | None,
    hyperparams: Mapping[str, Any] | None, scale: Scale,
    checkpoints: TrainingCheckpoints | None = None, checkpoint_every: int = 0,
    fingerprint: str = "", stream_seeds: StreamSeeds | None = None,
    sampling: str = "replacement",
    early_stopping: EarlyStopping | None = None, init_state: Any = None,
    stop_at: int | None = None,
) -> tuple[_Run, Any]:
    """The call checked, placed and compiled, and ``init_state`` checked (``(R, ...)``
    host arrays, or None)."""
    if not isinstance(program, SeedProgram):
        raise ArgumentError("program", type(program).__name__,
                            "a negres.SeedProgram (see loss_program, linen_program, nnx_program)")
    if not is_int(seed):
        raise ArgumentError("seed", seed, "an integer")
    for argument, given in (("grid", grid), ("hyperparams", hyperparams)):
        clash = sorted(set(given or ()) & set(RESERVED_HYPER))
        if clash:
            raise ArgumentError(argument, clash, f"names other than {', '.join(RESERVED_HYPER)}"
                                " (negres hands every program these: hyper['seed_index'], "
                                "hyper['grid_point'])")
    stream_seeds, num_seeds = _design_seeds(stream_seeds, num_seeds, seed_indices)
    rows = expand_rows(num_seeds, seed_indices, hyperparams, grid)
    per_point = rows.seed_indices.size // math.prod(rows.grid_shape)
    stream_seeds = checked_stream_seeds(stream_seeds, per_point, program.streams)
    host_data, num_train = _checked_data(data, "data")
    feed = host_data if isinstance(host_data, GrainFeed) else None
    # The newest checkpoint's metadata, read once: it decides the default curve spacing
    # and whether the call may resume.
    resumed = (checkpoints.metadata() if checkpoints is not None
               and checkpoints.latest_step() is not None else None)
    if eval_every is None:
        eval_every = steps
        # Continuing a run that spaced its curve by default: its spacing, not the new steps.
        saved_every = None if resumed is None else resumed.get("eval_every")
        if is_int(saved_every) and saved_every > 0 and is_int(steps) and \
                steps % saved_every == 0:
            eval_every = saved_every
    check_training_arguments(num_seeds=int(rows.seed_indices.size), steps=steps,
                             batch_size=batch_size, eval_every=eval_every, num_train=num_train)
    check_loop_arguments(sampling=sampling, early_stopping=early_stopping, stop_at=stop_at,
                         steps=steps, eval_every=eval_every, has_eval=eval_data is not None)
    if eval_data is not None and program.evaluate is None:
        raise ArgumentError("eval_data", "a batch", "None for a program without evaluate "
                            "(give the SeedProgram an evaluate function to get eval curves)")
    has_eval = eval_data is not None
    host_eval = _checked_data(eval_data, "eval_data")[0] if has_eval else ()
    settings = {"batch_size": batch_size, "eval_every": eval_every, "has_eval": has_eval,
                "sampling": sampling, "early_stopping": early_stopping, "fed": feed is not None}
    trainer = scale.trainer
    if trainer is None:
        trainer = make_seed_trainer(program, **settings)
    elif (trainer.program, *(getattr(trainer, n) for n in settings)) != (
            program, *settings.values()):
        raise ArgumentError("scale.trainer", "a trainer of another program or settings",
                            "make_seed_trainer(program, batch_size=..., eval_every=..., "
                            "has_eval=..., sampling=..., early_stopping=..., fed=...) with "
                            "this call's values")
    example = (feed.example(batch_size) if feed is not None else
               jax.tree_util.tree_map(lambda leaf: leaf[:batch_size], host_data))
    rows = rows._replace(hyper=rows.hyper | _reserved_hyper(rows))
    # Checked once per trainer and shapes: a trainer reused across calls traces nothing.
    checked = (tuple(sorted(rows.hyper)), bool(rows.grid),
               str(jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), (example, host_eval))))
    if checked not in trainer.checked:
        _check_declared_hyper(program, rows, example)
        check_program(trainer, rows, example, host_eval if has_eval else None)
        trainer.checked.add(checked)
    if stream_seeds:
        # Every row's key of each designed source, tiled over the grid's points like seeds.
        points = rows.seed_indices.size // per_point
        keys_of = {name: np.asarray(seed_keys(seed, np.tile(indices, points)))
                   for name, indices in stream_seeds.items()}
        rows = rows._replace(hyper=rows.hyper | design_hyper(keys_of))

    run_print: dict[str, str] = {}
    resumed_layout = None
    if checkpoints is not None:
        # Refuse another run's checkpoints before anything compiles.
        run_print = run_fingerprint(
            program, example=example, eval_example=host_eval if has_eval else None,
            hyper={n: np.asarray(v[0]) for n, v in rows.hyper.items() if not is_design_name(n)},
            # A feed is its source read a certain way: the source's records enter, and the
            # decoding function by name.
            data=host_data if feed is None else feed.source,
            eval_data=host_eval if has_eval else None, init_state=init_state,
            settings={"batch_size": batch_size, "eval_every": eval_every, "seed": seed,
                      "sampling": sampling, "fingerprint": fingerprint,
                      # Another JAX may trace the same program differently: named as such.
                      "jax": jax.__version__,
                      "grid": {n: list(v) for n, v in rows.grid.items()},
                      "hyperparams": sorted(_program_hyper(rows.hyper)),
                      "decode": None if feed is None or feed.decode is None else
                      getattr(feed.decode, "__qualname__", type(feed.decode).__name__),
                      # What decides training; restore_best only picks what is returned.
                      "early_stopping": None if early_stopping is None else (
                          f"{early_stopping.metric} {early_stopping.mode} patience="
                          f"{early_stopping.patience} min_delta="
                          f"{float(early_stopping.min_delta):g}")})
        if resumed is not None:
            _check_resumable(resumed, run_print, fingerprint, rows.seed_indices,
                             stop_at or steps, checkpoints, stream_seeds)
            # The layouts round differently: "auto" resumes in the layout it chose, not in
            # one a new timing probe might pick.
            if scale.layout == "auto" and "layout" in resumed:
                resumed_layout = (resumed["layout"], int(resumed["seeds_per_map_step"]))

    mesh = seed_mesh() if scale.mesh is None else scale.mesh
    shared = replicated(mesh)
    num_real = int(rows.seed_indices.size)
    fed_batch = None if feed is None else jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), example)
    placement = Placement(trainer, mesh, () if feed is not None else put(host_data, shared),
                          put(host_eval, shared), put(example, shared),
                          {n: v.dtype for n, v in rows.hyper.items()}, fed_batch)
    if init_state is not None:
        init_state = _checked_init_state(init_state, placement, rows)

    num_points = steps // eval_every
    between_checkpoints = checkpoint_points(checkpoint_every if checkpoints is not None else 0,
                                            eval_every, num_points)
    # Fed batches of a segment sit on the device whole: one curve point's at a time.
    per_segment = 1 if feed is not None else math.gcd(points_per_segment(num_points),
                                                      between_checkpoints)
    if stop_at is not None:
        per_segment = math.gcd(per_segment, stop_at // eval_every)
    if resumed_layout is not None:
        chosen, width = resumed_layout
        layout_reason = (f"{chosen}" + (f" of {width}" if chosen == "map" else "")
                         + ", the layout of the run being resumed (auto keeps it, so that "
                         "resuming gives the numbers of an uninterrupted run)")
    else:
        chosen, width, layout_reason = choose_layout(placement, scale.layout,
                                                     scale.seeds_per_map_step, num_real,
                                                     rows.hyper)
    budget = (memory_budget(mesh) if scale.memory_budget_bytes is None
              else scale.memory_budget_bytes)
    budget = agreed(-1 if budget is None else budget)  # every process runs the broadcast
    budget = None if budget < 0 else budget
    chunk, chunk_reason = choose_chunk(placement, chosen, width, num_real,
                                       scale.seeds_per_chunk, per_segment, budget)
    num_chunks = -(-num_real // chunk)
    plan = Plan(layout=chosen, seeds_per_map_step=width, seeds_per_chunk=chunk,
                num_chunks=num_chunks, num_devices=mesh.size,
                padded_seeds=num_chunks * chunk - num_real,
                reason=f"{layout_reason}; {chunk_reason}",
                devices=(devices_reason(mesh) if scale.mesh is None
                         else "the mesh passed to train"))
    logging.info("negres: %s", plan_description(plan))

    # Padding rows repeat the last seed: they compute what it computes and are dropped.
    all_rows = np.concatenate([np.arange(num_real),
                               np.full(plan.padded_seeds, num_real - 1, np.int64)])
    keys = np.asarray(seed_keys(seed, rows.seed_indices))
    chunk_rows = [all_rows[c * chunk:(c + 1) * chunk] for c in range(num_chunks)]
    segment = placement.segment(per_segment, chosen, width, chunk)
    curve_names = sorted(segment.out_info[2])
    split = placement.split
    return _Run(
        placement=placement, plan=plan, rows=rows, stream_seeds=stream_seeds, keys=keys,
        chunk_rows=chunk_rows,
        chunk_keys=[put(keys[r], split) for r in chunk_rows],
        chunk_hyper=[put({n: v[r] for n, v in rows.hyper.items()}, split) for r in chunk_rows],
        eval_every=eval_every, num_points=num_points, points_per_segment=per_segment,
        points_per_checkpoint=between_checkpoints, curve_names=curve_names,
        init=placement.init(chunk), segment=segment, feed=feed, fingerprint=run_print,
        resumed=resumed,
    ), init_state


def _checked_init_state(init_state: Any, placement: Placement, rows: Rows) -> Any:
    """``init_state`` as host arrays ``(R, ...)``, one row per trained row: each leaf given
    per seed ``(H..., S, ...)`` (as a :class:`TrainResult`'s state), per seed ``(S, ...)``
    for every grid point, or once ``(...)`` for every seed; ``None`` where the program's
    init fills in (e.g. a fresh optimizer state: ``LossState(params, model_state, None)``)."""
    trainer = placement.trainer
    abstract = jax.eval_shape(trainer.program.init, jax.ShapeDtypeStruct((2,), np.uint32),
                              placement.example, {n: jax.ShapeDtypeStruct((), v.dtype)
                                                  for n, v in rows.hyper.items()
                                                  if not is_design_name(n)})
    num_rows = rows.seed_indices.size
    points = math.prod(rows.grid_shape)
    lead = (*rows.grid_shape, num_rows // points)

    def one(path: Any, given: Any, want: jax.ShapeDtypeStruct) -> Any:
        if given is None:
            return None
        array = np.asarray(given)
        if array.shape == want.shape:
            array = np.broadcast_to(array, (num_rows, *want.shape))
        elif array.shape == (*lead, *want.shape):
            array = array.reshape(num_rows, *want.shape)
        elif rows.grid_shape and array.shape == (lead[-1], *want.shape):
            array = np.tile(array, (points, *[1] * len(want.shape)))  # each seed's, per point
        else:
            per_seed = f"{(*lead, *want.shape)} per seed"
            if rows.grid_shape:
                per_seed += f", {(lead[-1], *want.shape)} per seed at every grid point"
            raise ArgumentError(
                f"init_state{jax.tree_util.keystr(path)}", f"a leaf of shape {array.shape}",
                f"a leaf shaped like the program's state: {want.shape} for every seed, or "
                f"{per_seed} (None: the program's init fills it in)")
        return array.astype(want.dtype, copy=False)

    try:
        return jax.tree_util.tree_map_with_path(one, init_state, abstract,
                                                is_leaf=lambda x: x is None)
    except ArgumentError:
        raise
    except (ValueError, TypeError) as e:
        raise ArgumentError("init_state", f"a {type(init_state).__name__}",
                            "a pytree with the structure of the program's state (as "
                            f"init returns it; None in place of a subtree init fills in): {e}"
                            ) from None


def _initial_states(run: _Run, init_state: Any) -> list[tuple[Any, Any]]:
    """Every chunk's freshly initialised ``(state, diverged_at)``; leaves of ``init_state``
    (``(R, ...)``, or None) replace what init gave."""
    split = run.placement.split
    trainer = run.placement.trainer
    states = []
    for rows, keys, hyper in zip(run.chunk_rows, run.chunk_keys, run.chunk_hyper, strict=True):
        state = run.init(keys, hyper, run.placement.example)
        if init_state is not None:
            program_state = jax.tree_util.tree_map(
                lambda given, fresh, r=rows: fresh if given is None else put(given[r], split),
                init_state, trainer.program_state(state), is_leaf=lambda x: x is None)
            # Rewrapped on the device: the best state so far starts as the given state.
            state = jax.jit(over_seeds(trainer.wrap), out_shardings=split)(program_state)
        states.append((state, put(np.full(rows.size, -1, np.int32), split)))
    return states


def _checkpoint_template(run: _Run, num_points: int) -> dict[str, Any]:
    """The saved state's shapes, restored whole onto this process's first device: every
    host reads all seeds, then keeps its shards (the rows saved are the real seeds only,
    so a resumed run may chunk, pad or shard them differently)."""
    here = SingleDeviceSharding(jax.local_devices()[0])
    num_seeds = run.rows.seed_indices.size

    def local(shape: tuple[int, ...], dtype: Any) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct(shape, dtype, sharding=here)

    state, diverged_at = jax.tree_util.tree_map(
        lambda a: local(a.shape, a.dtype), run.placement.abstract_state(num_seeds))
    return {
        "state": state, "diverged_at": diverged_at,
        "keys": local((num_seeds, 2), np.uint32),
        "hyper": {n: local(v.shape, v.dtype) for n, v in _saved_hyper(run).items()},
        "curves": {n: local((num_seeds, num_points), np.float32) for n in run.curve_names},
    }


def _saved_hyper(run: _Run) -> dict[str, np.ndarray]:
    """The per-row values a checkpoint keeps: the reserved names follow from the seeds."""
    return {n: v for n, v in run.rows.hyper.items() if n not in RESERVED_HYPER}


def _stream_seeds_json(stream_seeds: Mapping[str, Any]) -> dict[str, list[int]]:
    return {n: np.asarray(v).tolist() for n, v in sorted(stream_seeds.items())}


def _check_resumable(metadata: dict[str, Any], run_print: dict[str, str], fingerprint: str,
                     seed_indices: np.ndarray, target: int,
                     checkpoints: TrainingCheckpoints,
                     stream_seeds: Mapping[str, Any]) -> None:
    where = f"the checkpoints in {checkpoints.directory}"
    saved = metadata.get("fingerprint")
    if not isinstance(saved, dict):  # written before fingerprints were computed
        logging.warning("negres: %s were written before negres computed fingerprints: only "
                        "the fingerprint string given with them is checked", where)
        if saved != fingerprint:
            raise ResumeError(f"{where} belong to a run of another fingerprint; resume with "
                              "the fingerprint they were saved with, or give an empty "
                              "directory")
    else:
        differ = fingerprint_differences(saved, run_print)
        # A setting that changes the arguments the program is traced with (a batch size, a
        # hyperparameter's name) changes its traces too: the setting is the news.
        settings = [name for name in differ if name.startswith("settings.")]
        differ = settings or differ
        if differ:
            raise ResumeError(f"{where} hold another run; what differs: "
                              f"{describe_differences(differ, saved, run_print)}; give an "
                              "empty directory to start over")
    if list(metadata.get("seed_indices", [])) != seed_indices.tolist():
        raise ResumeError(f"{where} hold seeds {metadata.get('seed_indices')}, not "
                          f"{seed_indices.tolist()}; give an empty directory to start over")
    if int(metadata.get("step", 0)) > target:
        raise ResumeError(f"{where} are at step {metadata.get('step')}, past the {target} "
                          "asked for; ask for steps (or stop_at) of at least that many, or "
                          "give an empty directory to start over")
    saved_design = metadata.get("stream_seeds") or {}
    if saved_design != _stream_seeds_json(stream_seeds):
        raise ResumeError(f"{where} hold a run of stream_seeds "
                          f"{saved_design or 'None (every source follows its seed)'}, not "
                          f"{_stream_seeds_json(stream_seeds) or 'None'}; give an empty "
                          "directory to start over")


def _resume(run: _Run, checkpoints: TrainingCheckpoints,
            ) -> tuple[int, list[tuple[Any, Any]], dict[str, np.ndarray]]:
    """``(step, every chunk's (state, diverged_at), curves so far)`` from the newest
    checkpoint; curves of a run of another length are cut or padded with NaN."""
    metadata = run.resumed
    saved_points = int(metadata["steps"]) // run.eval_every
    saved, metadata = checkpoints.restore(None, _checkpoint_template(run, saved_points))
    saved = jax.tree_util.tree_map(lambda leaf: np.array(leaf, copy=True), saved)
    if not np.array_equal(saved["keys"], run.keys):
        raise ResumeError(f"the checkpoints in {checkpoints.directory} were trained with "
                          "another root seed; give an empty directory to start over")
    for name, values in _saved_hyper(run).items():
        if not np.array_equal(saved["hyper"][name], values):
            what = "another stream_seeds design" if is_design_name(name) else \
                f"other values of {name!r}"
            raise ResumeError(f"the checkpoints in {checkpoints.directory} were trained with "
                              f"{what}; give an empty directory to start over")
    state = (saved["state"], saved["diverged_at"])
    states = [put(jax.tree_util.tree_map(lambda leaf, r=rows: leaf[r], state),
                  run.placement.split) for rows in run.chunk_rows]
    step = int(metadata["step"])
    curves = {}
    for name, values in saved["curves"].items():
        values = values[:, :run.num_points]
        pad = run.num_points - values.shape[1]
        curves[name] = np.pad(values, ((0, 0), (0, pad)), constant_values=np.nan)
    logging.info("negres: resumed from the checkpoint at step %d of %d in %s", step,
                 run.num_points * run.eval_every, checkpoints.directory)
    return step, states, curves


def _gather_state(states: list[tuple[Any, Any]], num_real: int) -> tuple[Any, np.ndarray]:
    """The chunks' ``(state, diverged_at)`` joined on the host, padding dropped."""
    return jax.tree_util.tree_map(lambda *leaves: np.concatenate(leaves)[:num_real],
                                  *[to_host(s) for s in states])


def _fed_batches(run: _Run, chunk: int, start_step: int, num_steps: int) -> Any:
    """The examples chunk ``chunk``'s seeds train on in ``num_steps`` steps from
    ``start_step``, loaded through the pipeline on the host: leaves ``(seeds, steps,
    batch, ...)``. The indices are the ones the in-memory path would draw, computed from
    host copies of the chunk's keys on this process's own device: no collective, so a
    thread may call this while the main thread trains."""
    trainer = run.placement.trainer
    key = ("indices", num_steps, run.feed.num_examples)
    if key not in trainer.compiled:
        trainer.compiled[key] = jax.jit(over_seeds(
            lambda k, h, s: trainer.indices_one(k, h, s, num_steps, run.feed.num_examples),
            seeded_args=(0, 1)))
    rows = run.chunk_rows[chunk]
    here = jax.local_devices()[0]
    keys, hyper = jax.device_put((run.keys[rows], {n: v[rows] for n, v in
                                                   run.rows.hyper.items()}), here)
    indices = np.asarray(trainer.compiled[key](keys, hyper, np.int32(start_step)))
    return run.feed.load(indices)


class _Prefetcher:
    """Fed batches read one chunk-segment ahead, in a thread, so that the pipeline reads
    the next segment's examples while the devices train on this one's."""

    def __init__(self, run: _Run, num_steps: int, end_step: int):
        self.run, self.num_steps, self.end_step = run, num_steps, end_step
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="negres-feed")
        self.ahead: tuple[tuple[int, int], Future[Any]] | None = None

    def take(self, chunk: int, start_step: int) -> Any:
        """The batches of ``chunk`` from ``start_step``; starts reading the next chunk's
        (or the next segment's first chunk's), if the call trains on to it."""
        if self.ahead is not None and self.ahead[0] == (chunk, start_step):
            batches = self.ahead[1].result()
        else:
            batches = _fed_batches(self.run, chunk, start_step, self.num_steps)
        following = ((chunk + 1, start_step) if chunk + 1 < len(self.run.chunk_rows) else
                     (0, start_step + self.num_steps))
        self.ahead = None if following[1] >= self.end_step else (
            following, self.pool.submit(_fed_batches, self.run, *following, self.num_steps))
        # Read ahead on the host, placed here: the devices hold one chunk's batches at a
        # time, as the chunk size was chosen for.
        return put(batches, self.run.placement.split)


def _stopping_of(trainer: SeedTrainer, state: Any, num_rows: int) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """``(stopped_at, best_step)`` of every row; -1 without early stopping."""
    if trainer.early_stopping is None:
        none = np.full(num_rows, -1, np.int32)
        return none, none
    return (np.asarray(to_host(state.stopped_at)), np.asarray(to_host(state.best_step)))


def train(
    program: SeedProgram,
    data: Batch,
    *,
    steps: int,
    batch_size: int,
    num_seeds: int | None = None,
    seed_indices: Sequence[int] | np.ndarray | None = None,
    seed: int = 0,
    grid: Mapping[str, Sequence[float]] | None = None,
    hyperparams: Mapping[str, Sequence[float] | np.ndarray] | None = None,
    eval_data: Batch | None = None,
    eval_every: int | None = None,
    sampling: str = "replacement",
    early_stopping: EarlyStopping | None = None,
    init_state: Any = None,
    stop_at: int | None = None,
    progress: ProgressFn | None = None,
    stream_seeds: StreamSeeds | None = None,
    scale: Scale | None = None,
    checkpointing: Checkpointing | None = None,
) -> TrainResult:
    """Train ``num_seeds`` seeds of ``program`` (times every grid point) in one compiled call.

    negres's one way to train: every model, the built-in ones included
    (:func:`~negres.builtin_program`), goes through it. Where the seeds run is one option
    (``scale``), where they are saved another (``checkpointing``). Seed ``i`` gets
    ``fold_in(PRNGKey(seed), i)``; its batches, and every stream the program names, are
    drawn per ``(seed, stream, step)``. So seed ``i`` of an ``S``-seed run equals seed ``i``
    trained alone, at any grid point, sharded, chunked, laid out with ``lax.map`` or resumed
    from a checkpoint. A seed whose loss or state stops being finite is frozen at its last
    finite state (its curves become NaN); the other seeds are untouched. Every program's
    ``init`` and ``step`` find the seed's index in ``hyper["seed_index"]`` and its grid
    point's flat index in ``hyper["grid_point"]``.

    Args:
      program: one seed's training (:func:`~negres.loss_program`,
        :func:`~negres.linen_program`, :func:`~negres.nnx_program`, or your own
        :class:`~negres.SeedProgram`).
      data: the training set, shared by all seeds: any pytree of arrays whose leaves share
        their leading axis ``N`` (an array, ``(x, y)``, a dict of arrays, integer tokens);
        or, for data larger than memory, a random-access source (``len`` and ``[i]``:
        :class:`negres.training.pipeline.ArraySource` over NumPy memmaps, a Grain,
        ArrayRecord or TFDS data source, or a :class:`~negres.training.pipeline.GrainFeed`
        around one), read through Grain one curve point at a time with the indices the
        in-memory path would draw. Lists of batches, iterators and generators are refused.
      steps: optimizer steps per seed.
      batch_size: examples per step.
      num_seeds: ``S``, seeds ``0..S-1``; give this or ``seed_indices``.
      seed_indices: which seeds to train (e.g. ``range(16, 64)`` to add seeds to a study).
      seed: the root seed.
      grid: name -> values: train every seed at every point of the product of these
        axes; results get shape ``(H_1, ..., H_k, S, ...)``. A name is an injected optimizer
        hyperparameter (``learning_rate`` of a factory such as ``optax.adam``) or anything
        the program reads from its ``hyper`` argument (e.g. a loss's label smoothing), which
        a built program declares with ``hyper=True``.
      hyperparams: name -> ``(S,)`` values, one per seed (with a grid, every grid point
        trains seed ``s`` with its value; without, one per row of ``seed_indices``).
      eval_data: a pytree like ``data`` evaluated whole at every curve point (needs the
        program's ``evaluate``).
      eval_every: steps between curve points; must divide ``steps`` (default: ``steps``).
      sampling: ``"replacement"`` (each step draws ``batch_size`` examples uniformly with
        replacement) or ``"epochs"`` (each seed visits every example once per epoch of
        ``N // batch_size`` steps, in an order drawn per ``(seed, epoch)``; the last
        ``N % batch_size`` examples of an epoch's order wait for another epoch).
      early_stopping: an :class:`EarlyStopping`: each seed whose monitored curve has not
        improved for ``patience`` curve points stops changing; its best state is returned
        and ``stopped_at`` says when it stopped. ``None``: every seed trains every step.
      init_state: start from this state instead of the program's init (fine-tuning, warm
        starts): a pytree with the structure of the program's state, each leaf per seed
        ``(H..., S, ...)`` (a :class:`TrainResult`'s ``state``), per seed ``(S, ...)`` at
        every grid point, or one value for every seed; ``None`` in place of a subtree keeps
        what init gives (e.g. ``negres.LossState(result.params, result.model_state,
        None)``: a fresh optimizer).
      stop_at: train to this step of the ``steps``-step run and return (a multiple of
        ``eval_every``); with ``checkpointing``, a later call continues from there.
      progress: called after every segment with a
        :class:`~negres.training.events.TrainingProgress`: the steps done and each seed's
        new curve points (:func:`negres.progress_reporter` draws a bar;
        :mod:`negres.reporting.live` writes TensorBoard logs and a metrics table live).
      stream_seeds: a source design: source -> ``(S,)`` seed indices, so that seed ``s``'s
        source ``name`` draws from the key of seed ``stream_seeds[name][s]`` instead of its
        own (every source not named follows seed ``s``). Sources: ``"init"`` (the key the
        program's ``init`` receives: initial weights, and whatever else init draws),
        ``"data"`` (the batch order) and the streams the program's step draws
        (``"dropout"``, ...). Hold a source with the same index for every seed; cross
        several with :func:`negres.seeds.crossed_design`, whose :class:`SourceDesign` may be
        passed here whole. Without ``num_seeds`` and ``seed_indices``, the design's seeds
        are ``0..S-1``.
        With a grid, every grid point trains the same design.
      scale: where and how the seeds run (:class:`~negres.Scale`: mesh, chunking, layout,
        memory budget); none of it changes a seed's numbers. ``None``: ``Scale()``, every
        choice automatic.
      checkpointing: where and how often to save, and resume from
        (:class:`~negres.Checkpointing`: a directory, ``every`` steps, a ``fingerprint``).
        A call finding checkpoints there resumes from the newest, after checking they are
        of this run (see :class:`~negres.Checkpointing`). A call with more ``steps`` than
        the checkpoints' run (and the same ``eval_every``; left out, it is read from the
        checkpoints) continues it: seed ``i`` then equals a run that had all the steps from
        the start, where the program does not depend on the number of steps (a schedule
        decaying over ``steps`` does, and is refused as another program). ``None``: saves
        nothing.

    Returns:
      A :class:`TrainResult`; every per-seed array ``(H..., S, ...)``.

    Raises:
      ArgumentError: an argument that is not allowed, before anything compiles.
      ResumeError: checkpoints of another run.
    """
    scale, checkpointing = _checked_options(scale, checkpointing)
    arguments = dict(steps=steps, batch_size=batch_size, num_seeds=num_seeds,
                     seed_indices=seed_indices, seed=seed, grid=grid, hyperparams=hyperparams,
                     eval_data=eval_data, eval_every=eval_every, sampling=sampling,
                     early_stopping=early_stopping, init_state=init_state, stop_at=stop_at,
                     progress=progress, stream_seeds=stream_seeds, scale=scale)
    if checkpointing is None:
        return _train(program, data, checkpoints=None, checkpoint_every=0, fingerprint="",
                      **arguments)
    checkpoints, opened = checkpointing.open()
    try:
        return _train(program, data, checkpoints=checkpoints,
                      checkpoint_every=checkpointing.every,
                      fingerprint=checkpointing.fingerprint, **arguments)
    finally:
        if opened:
            checkpoints.close()


def _checked_options(scale: Any, checkpointing: Any,
                     ) -> tuple[Scale, Checkpointing | None]:
    if scale is None:
        scale = Scale()
    if not isinstance(scale, Scale):
        raise ArgumentError("scale", scale, "None or a negres.Scale(mesh=..., "
                            "seeds_per_chunk=..., layout=..., ...)")
    if checkpointing is not None and not isinstance(checkpointing, Checkpointing):
        raise ArgumentError("checkpointing", checkpointing,
                            "None or a negres.Checkpointing(directory, every=..., "
                            "fingerprint=...)")
    return scale, checkpointing


def _train(program: SeedProgram, data: Batch, *, steps: int, batch_size: int,
           num_seeds: int | None, seed_indices: Any, seed: int, grid: Any, hyperparams: Any,
           eval_data: Any, eval_every: int | None, sampling: str,
           early_stopping: EarlyStopping | None, init_state: Any, stop_at: int | None,
           progress: ProgressFn | None, stream_seeds: StreamSeeds | None, scale: Scale,
           checkpoints: TrainingCheckpoints | None, checkpoint_every: int,
           fingerprint: str) -> TrainResult:
    """:func:`train` with its options checked and its checkpoints open."""
    start = time.perf_counter()
    run, init_state = _prepare_run(
        program, data, num_seeds=num_seeds, steps=steps, batch_size=batch_size, seed=seed,
        eval_every=eval_every, eval_data=eval_data, seed_indices=seed_indices, grid=grid,
        hyperparams=hyperparams, scale=scale, checkpoint_every=checkpoint_every,
        checkpoints=checkpoints, fingerprint=fingerprint, stream_seeds=stream_seeds,
        sampling=sampling, early_stopping=early_stopping, init_state=init_state,
        stop_at=stop_at,
    )
    num_real, eval_every = run.rows.seed_indices.size, run.eval_every
    target = stop_at or steps
    target_points = target // eval_every
    curves = {n: np.full((num_real, run.num_points), np.nan, np.float32)
              for n in run.curve_names}
    first_point, resumed_from = 0, None
    if run.resumed is not None:
        resumed_from, states, curves = _resume(run, checkpoints)
        first_point = resumed_from // eval_every
    else:
        states = _initial_states(run, init_state)

    placement, chunk = run.placement, run.plan.seeds_per_chunk
    trainer = placement.trainer
    shape = run.rows.grid_shape
    seeds = run.rows.seed_indices

    def shaped(leaf: Any) -> Any:
        return leaf.reshape(*shape, -1, *leaf.shape[1:]) if shape else leaf

    last_save = time.perf_counter()
    # A checkpoint of a run with other segment lengths may sit between this run's segments:
    # then segments as long as both grids allow.
    per_segment = math.gcd(run.points_per_segment, first_point) if first_point else \
        run.points_per_segment
    segment = run.segment if per_segment == run.points_per_segment else placement.segment(
        per_segment, run.plan.layout, run.plan.seeds_per_map_step, chunk)
    loader = (_Prefetcher(run, per_segment * eval_every, target) if run.feed is not None
              else None)
    try:
        for point in range(first_point, target_points, per_segment):
            start_step = point * eval_every
            step_on_device = put(np.asarray(start_step, np.int32), placement.shared)
            pending = []
            for c, (keys, hyper) in enumerate(zip(run.chunk_keys, run.chunk_hyper, strict=True)):
                fed = () if loader is None else loader.take(c, start_step)
                *state, pieces = segment(*states[c], keys, hyper, fed, step_on_device,
                                         placement.data, placement.eval_data)
                states[c] = tuple(state)
                pending.append(pieces)  # fetched after every chunk is dispatched, so they overlap
            for c, pieces in enumerate(pending):
                pieces = to_host(pieces)
                lo, hi = c * chunk, min((c + 1) * chunk, num_real)
                for name in run.curve_names:
                    curves[name][lo:hi, point:point + per_segment] = pieces[name][:hi - lo]
            done = (point + per_segment) * eval_every
            new_points = slice(point, point + per_segment)
            # Gathered on every process whatever its progress argument (a gather is
            # collective; a user may pass progress on process 0 only): (S,) arrays.
            diverged_now = np.concatenate([to_host(d) for _, d in states])[:num_real]
            stopped_now = (np.full(num_real, -1, np.int32) if trainer.early_stopping is None
                           else np.concatenate([to_host(s.stopped_at)
                                                for s, _ in states])[:num_real])
            if (trainer.early_stopping is not None and done < target
                    and np.all((stopped_now >= 0) | (diverged_now >= 0))):
                # Every seed stopped or diverged: the rest would change nothing. Their
                # evaluation curves hold the frozen states' values, their training curves
                # stay NaN, as training on would have left them.
                for name, values in curves.items():
                    if name.startswith("eval_"):
                        values[:, point + per_segment:] = values[:, [point + per_segment - 1]]
                new_points, done = slice(point, target_points), target
            if progress is not None:
                progress(TrainingProgress(
                    step=done, steps=target, num_seeds=num_real,
                    elapsed_s=time.perf_counter() - start,
                    curve_steps=eval_every * np.arange(new_points.start + 1, new_points.stop + 1),
                    curves={n: shaped(v[:, new_points]) for n, v in curves.items()},
                    seed_indices=seeds[:seeds.size // math.prod(shape)] if shape else seeds,
                    grid=dict(run.rows.grid), diverged_at=shaped(np.asarray(diverged_now)),
                    stopped_at=shaped(stopped_now)))
            due = done == target or (done % (run.points_per_checkpoint * eval_every) == 0 and (
                checkpoint_every > 0 or time.perf_counter() - last_save >= _CHECKPOINT_SECONDS))
            # Saving is collective: process 0's clock decides for every process.
            if checkpoints is not None and agreed(int(due)):
                state, diverged_at = _gather_state(states, num_real)
                # Saved replicated: every host can read every seed back, whatever the mesh then.
                saved = put({"state": state, "diverged_at": diverged_at, "keys": run.keys,
                             "hyper": _saved_hyper(run), "curves": curves}, placement.shared)
                checkpoints.save(done, saved, {
                    "step": done, "steps": steps, "eval_every": eval_every,
                    "fingerprint": run.fingerprint,
                    "seed_indices": run.rows.seed_indices.tolist(),
                    "grid": {n: list(v) for n, v in run.rows.grid.items()},
                    "hyperparams": sorted(_program_hyper(run.rows.hyper)),
                    "layout": run.plan.layout,
                    "stream_seeds": _stream_seeds_json(run.stream_seeds),
                    "seeds_per_map_step": run.plan.seeds_per_map_step,
                    "early_stopping": trainer.early_stopping is not None,
                    "restore_best": (trainer.early_stopping is None
                                     or trainer.early_stopping.restore_best)})
                last_save = time.perf_counter()
            if done == target:
                break
    finally:
        if loader is not None:
            loader.pool.shutdown(wait=True, cancel_futures=True)
    if (run.plan.num_chunks == 1 and not run.plan.padded_seeds and jax.process_count() == 1
            and not run.rows.grid):
        final_state, diverged_at = states[0]
    else:
        final_state, diverged_at = _gather_state(states, num_real)
    jax.block_until_ready(final_state)
    stopped_at, best_step = _stopping_of(trainer, final_state, num_real)
    if trainer.early_stopping is not None:
        final_state = (final_state.best if trainer.early_stopping.restore_best
                       else final_state.state)

    return TrainResult(
        state=jax.tree_util.tree_map(shaped, final_state),
        seed_indices=seeds[:seeds.size // math.prod(shape)] if shape else seeds,
        curves={n: shaped(v[:, :target_points]) for n, v in curves.items()},
        curve_steps=eval_every * np.arange(1, target_points + 1),
        train_time_s=time.perf_counter() - start,
        diverged_at=shaped(np.asarray(to_host(diverged_at))),
        plan=run.plan._asdict() | {"resumed_from_step": resumed_from},
        grid=dict(run.rows.grid),
        hyperparams={n: shaped(v) for n, v in _program_hyper(run.rows.hyper).items()},
        stream_seeds=dict(run.stream_seeds),
        stopped_at=shaped(stopped_at),
        best_step=shaped(best_step),
        restored_best=bool(trainer.early_stopping is not None
                           and trainer.early_stopping.restore_best),
    )


def compile_training(program: SeedProgram, data: Batch, **kwargs: Any) -> Plan:
    """Check, place and compile what :func:`train` with the same arguments would run,
    choosing its layout and chunk size, without training; returns the :class:`Plan`.

    Not part of negres's public namespace: the benchmarks call it to keep compilation out
    of their timings (a later :func:`train` with the same program and settings reuses the
    compiled code, cached with its trainer). ``progress`` and ``checkpointing`` are
    accepted and ignored.
    """
    bound = inspect.signature(train).bind(program, data, **kwargs)
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    for name in ("program", "data", "progress", "checkpointing"):
        arguments.pop(name)
    arguments["scale"], _ = _checked_options(arguments["scale"], None)
    return _prepare_run(program, data, **arguments)[0].plan
