"""Checkpoints of a many-seed training run, so that a killed run resumes where it stopped.

The engine saves the whole stacked training state between segments and, on restart,
restores the newest complete checkpoint. Orbax does the writing because it already
solves the hard parts: every step is written into ``<step>.orbax-checkpoint-tmp`` and
renamed to ``<step>`` only once complete, so a half-written step is never mistaken for
a checkpoint; arrays are written and read shard by shard, so the same code works when
the seed axis is split over devices or hosts; and old steps are pruned for us.

Each step directory holds two items:

* ``state``: a pytree of arrays, every leaf with the seed axis first -- params and
  optimizer state ``(S, ...)``, keys ``(S, 2)`` uint32, curves name -> ``(S, T)``
  float32 (NaN where a point is not taken yet), ``diverged_at`` ``(S,)`` int32;
* ``metadata``: a small JSON dict (step, seed indices, a fingerprint of the config).

:class:`Checkpointing` is what a user hands :func:`negres.train`: where to save, how
often, and what else identifies the run.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self

import jax
import numpy as np
import orbax.checkpoint as ocp

from negres.errors import ArgumentError, DiskFullError, ResumeError
from negres.files import free_space, is_disk_full, readable_size, to_jsonable
from negres.training.checks import check_scale_arguments
from negres.training.plan import fields_of

# What orbax writes beside the arrays of a checkpoint (a dozen metadata and OCDBT manifest
# files): measured at 52 kB of 4 kB blocks. A step is saved only when the arrays' bytes
# and this much are free; orbax compresses, so the check errs on the side of refusing.
_SAVE_OVERHEAD = 64 * 1024
# Differences listed in a mismatch message before the rest are only counted.
_MISMATCHES_SHOWN = 3


class CheckpointMismatchError(ResumeError):
    """A checkpoint holds a state of another shape than the run that wants to resume from it."""


def _leaf_name(path: tuple[Any, ...]) -> str:
    # Orbax stores NamedTuples as dicts and tuples as lists, so key paths are compared
    # by name (``opt_state.inner_state.0.mu``) rather than by key type.
    parts = []
    for entry in path:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                parts.append(str(getattr(entry, attr)))
                break
        else:
            parts.append(str(entry))
    return ".".join(parts)


def _leaves_by_name(tree: Any) -> dict[str, Any]:
    """Leaf name -> leaf, in ``tree``'s flattening order."""
    return {_leaf_name(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _in_structure_of(like: Any, by_name: dict[str, Any]) -> Any:
    """The leaves ``by_name`` (name -> leaf) in ``like``'s structure, matched by name:
    orbax stores NamedTuples as dicts and tuples as lists, so the structure is ``like``'s
    whatever containers orbax returns."""
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like),
                                        [by_name[name] for name in _leaves_by_name(like)])


def _describe(shape: tuple[int, ...], dtype: Any) -> str:
    return f"{tuple(shape)} {np.dtype(dtype).name}"


def _seed_counts(leaves: dict[str, Any]) -> str:
    """The leading-axis sizes of ``leaves``: one number when every leaf has the same."""
    sizes = sorted({leaf.shape[0] for leaf in leaves.values() if len(leaf.shape)})
    return "/".join(map(str, sizes)) or "no"


def _abstract(template: Any) -> Any:
    """``template`` with every leaf a ``jax.ShapeDtypeStruct``, keeping any sharding it has."""

    def one(leaf: Any) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct(
            np.shape(leaf), leaf.dtype, sharding=getattr(leaf, "sharding", None)
        )

    return jax.tree.map(one, template)


class SavedRun(NamedTuple):
    """A training run read back from its checkpoints (:meth:`TrainingCheckpoints.read`).
    Per-seed arrays have the shape ``(H..., S, ...)``, as in :class:`negres.TrainResult`.

    Attributes:
      step: the step the checkpoint was saved at.
      steps: the steps of the run that saved it.
      state: every seed's state: the stored dicts and lists, or the structure of ``like``
        (under early stopping, each seed's best state where the run restored the best).
      curves: name -> ``(H..., S, T)`` the curve points taken by ``step``.
      curve_steps: ``(T,)`` the step of each point.
      diverged_at: ``(H..., S)``; -1: never.
      stopped_at: ``(H..., S)`` the step each seed stopped early at; -1: it did not.
      seed_indices: ``(S,)``.
      grid: name -> the values of each grid axis.
      hyperparams: name -> ``(H..., S)`` each seed's per-seed values.
      metadata: everything the run saved beside the arrays (its fingerprint, layout, ...).
    """

    step: int
    steps: int
    state: Any
    curves: dict[str, np.ndarray]
    curve_steps: np.ndarray
    diverged_at: np.ndarray
    stopped_at: np.ndarray
    seed_indices: np.ndarray
    grid: dict[str, tuple[float, ...]]
    hyperparams: dict[str, np.ndarray]
    metadata: dict[str, Any]


class TrainingCheckpoints:
    """The checkpoints of one run in one directory: save, find the newest, restore.

    Saving is synchronous: when :meth:`save` returns, the step is complete on disk, so a
    process killed right after can resume from it. Only the newest ``max_to_keep`` steps
    are kept. Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, directory: str | os.PathLike[str], *, max_to_keep: int = 3):
        if isinstance(max_to_keep, bool) or not isinstance(max_to_keep, int) or max_to_keep < 1:
            raise ValueError(f"max_to_keep={max_to_keep!r} is not allowed: an integer >= 1")
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            preservation_policy=ocp.checkpoint_managers.LatestN(max_to_keep),
            # An async save returns before the step is renamed into place; a kill right
            # after would lose a step the engine believes is safe.
            enable_async_checkpointing=False,
            # A run killed mid-save leaves <step>.orbax-checkpoint-tmp behind; saving
            # that step again would fail on the existing directory.
            cleanup_tmp_directories=True,
            create=True,
        )
        # Without a registry, a manager that has not saved yet cannot read the stored
        # shapes of a checkpoint written by an earlier process (item_metadata is None).
        registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
        for item, save_args, restore_args in (
            ("state", ocp.args.StandardSave, ocp.args.StandardRestore),
            ("metadata", ocp.args.JsonSave, ocp.args.JsonRestore),
        ):
            registry.add(item, save_args)
            registry.add(item, restore_args)
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, handler_registry=registry
        )

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or ``None`` when there is none."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of the complete checkpoints kept, oldest first."""
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, metadata: dict[str, Any]) -> None:
        """Write ``state`` and ``metadata`` as checkpoint ``step``, whole or not at all.

        Args:
          step: the optimizer step the state is at; must be new to this directory.
          state: a pytree of arrays, seed axis first (params and optimizer state
            ``(S, ...)``, keys ``(S, 2)``, curves ``(S, T)``, ``diverged_at`` ``(S,)``).
          metadata: a small dict of JSON values; NumPy arrays and scalars are turned
            into lists and Python numbers.

        Raises:
          DiskFullError: the disk filled up; the step is not saved, and the earlier
            complete steps are kept.
        """
        needed = sum(leaf.nbytes for leaf in jax.tree.leaves(state)) + _SAVE_OVERHEAD
        free = free_space(self.directory)
        if free < needed:
            # Found before orbax starts: its own disk-full errors come from worker threads,
            # each logged with a traceback.
            raise DiskFullError(self._disk_full(step, needed, free))
        try:
            self._manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state),
                    metadata=ocp.args.JsonSave(to_jsonable(metadata)),
                ),
                # The engine decides when to save; orbax's own interval policy must not skip.
                force=True,
            )
            self._manager.wait_until_finished()
            self._manager.check_for_errors()
        except ocp.checkpoint_manager.StepAlreadyExistsError:
            raise ResumeError(
                f"checkpoint directory {str(self.directory)!r} already holds step {step}; "
                "give an empty directory to start over"
            ) from None
        except Exception as e:
            if not is_disk_full(e):
                raise
            raise DiskFullError(
                self._disk_full(step, needed, free_space(self.directory))) from None

    def _disk_full(self, step: int, needed: int, free: int) -> str:
        return (f"no space left on the device of {str(self.directory)!r} for the checkpoint "
                f"of step {step}: it needs about {readable_size(needed)}, "
                f"{readable_size(free)} free")

    def metadata(self, step: int | None = None) -> dict[str, Any]:
        """The JSON metadata of checkpoint ``step`` (``None``: the newest), without the state:
        cheap enough to check a resume before anything compiles."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(
                f"checkpoint directory {str(self.directory)!r} holds no complete checkpoint")
        restored = self._manager.restore(
            step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore()))
        return dict(restored.metadata)

    def restore(self, step: int | None, template: Any) -> tuple[Any, dict[str, Any]]:
        """Read checkpoint ``step`` (``None``: the newest) into the layout of ``template``.

        Args:
          step: which checkpoint, or ``None`` for the newest.
          template: a pytree of arrays or ``jax.ShapeDtypeStruct`` (as ``jax.eval_shape``
            gives, optionally with ``.sharding``) with the structure, shapes ``(S, ...)``
            and dtypes of the saved state; restored arrays take its shardings.

        Returns:
          ``(state, metadata)``: ``state`` has exactly ``template``'s tree structure
          (optax NamedTuples included) with ``jax.Array`` leaves; ``metadata`` is the dict
          given to :meth:`save`, as JSON values.

        Raises:
          FileNotFoundError: no checkpoint, or not checkpoint ``step``.
          CheckpointMismatchError: the stored state differs from ``template`` in
            structure, shape (e.g. another number of seeds) or dtype.
        """
        if step is None:
            step = self.latest_step()
            if step is None:
                raise FileNotFoundError(
                    f"checkpoint directory {str(self.directory)!r} holds no complete checkpoint"
                )
        elif step not in self._manager.all_steps():
            raise FileNotFoundError(
                f"checkpoint directory {str(self.directory)!r} holds no step {step}; "
                f"it holds steps {self.all_steps()}"
            )
        abstract = _abstract(template)
        self._check_matches(step, abstract)
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract),
                metadata=ocp.args.JsonRestore(),
            ),
        )
        state = _in_structure_of(abstract, _leaves_by_name(restored.state))
        return state, dict(restored.metadata)

    def _check_matches(self, step: int, abstract: Any) -> None:
        """Raise :class:`CheckpointMismatchError` unless step ``step`` fits ``abstract``."""
        stored = _leaves_by_name(self._manager.item_metadata(step).state.tree)
        expected = _leaves_by_name(abstract)
        extra, missing = sorted(stored.keys() - expected), sorted(expected.keys() - stored)
        problems = [f"{name} is stored but not expected" for name in extra]
        problems += [f"{name} is expected but not stored" for name in missing]
        for name in sorted(stored.keys() & expected.keys()):
            have, want = stored[name], expected[name]
            if tuple(have.shape) != tuple(want.shape) or np.dtype(have.dtype) != want.dtype:
                problems.append(
                    f"{name} is stored as {_describe(have.shape, have.dtype)}, "
                    f"expected {_describe(want.shape, want.dtype)}"
                )
        if not problems:
            return
        shown = "; ".join(problems[:_MISMATCHES_SHOWN])
        more = len(problems) - _MISMATCHES_SHOWN
        raise CheckpointMismatchError(
            f"checkpoint directory {str(self.directory)!r} step {step} holds another run's "
            f"state ({_seed_counts(stored)} seeds stored, {_seed_counts(expected)} expected): "
            f"{shown}{f' (and {more} more)' if more > 0 else ''}; "
            "give an empty directory to start over"
        )

    def read(self, step: int | None = None, *, like: Any = None) -> SavedRun:
        """A checkpoint of :func:`negres.train` read back whole, without the program that
        wrote it: the state, curves and seeds, shaped ``(H..., S, ...)``.

        Args:
          step: which checkpoint (``None``: the newest).
          like: a pytree with the structure of one run's state (e.g. a
            :class:`~negres.TrainResult`'s ``state``, or ``jax.eval_shape`` of it):
            the state comes back in its structure (NamedTuples included); ``None``: as
            stored, in dicts and lists.

        Raises:
          FileNotFoundError: no checkpoint, or not checkpoint ``step``.
          CheckpointMismatchError: ``like`` names leaves the checkpoint does not hold.
        """
        step = self.latest_step() if step is None else step
        if step is None or step not in self._manager.all_steps():
            raise FileNotFoundError(
                f"checkpoint directory {str(self.directory)!r} holds no step {step}; "
                f"it holds steps {self.all_steps()}")
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(), metadata=ocp.args.JsonRestore()))
        saved = jax.tree.map(np.asarray, restored.state)
        metadata = dict(restored.metadata)
        grid = {n: tuple(v) for n, v in (metadata.get("grid") or {}).items()}
        lead = tuple(len(v) for v in grid.values())

        def shaped(leaf: Any) -> Any:
            leaf = np.asarray(leaf)
            return leaf.reshape(*lead, -1, *leaf.shape[1:]) if lead else leaf

        state = saved["state"]
        num_rows = len(saved["diverged_at"])
        stopped_at = np.full(num_rows, -1, np.int32)
        if metadata.get("early_stopping"):
            stopped_at = saved["state"]["stopped_at"]
            state = state["best"] if metadata.get("restore_best", True) else state["state"]
        if like is not None:
            by_name = _leaves_by_name(state)
            wanted = _leaves_by_name(like)
            missing = sorted(wanted.keys() - by_name.keys())
            if missing:
                more = len(missing) - _MISMATCHES_SHOWN
                raise CheckpointMismatchError(
                    f"checkpoint directory {str(self.directory)!r} step {step} holds no "
                    f"{', '.join(missing[:_MISMATCHES_SHOWN])}"
                    f"{f' (and {more} more)' if more > 0 else ''}: like= has another "
                    "structure than the run that saved it")
            state = _in_structure_of(like, by_name)
        eval_every = int(metadata.get("eval_every") or metadata.get("steps") or step)
        points = step // eval_every
        seeds = np.asarray(metadata.get("seed_indices", np.arange(num_rows)))
        return SavedRun(
            step=int(step), steps=int(metadata.get("steps", step)),
            state=jax.tree.map(shaped, state),
            curves={n: shaped(v[:, :points]) for n, v in saved["curves"].items()},
            curve_steps=eval_every * np.arange(1, points + 1),
            diverged_at=shaped(saved["diverged_at"]), stopped_at=shaped(stopped_at),
            seed_indices=seeds[:seeds.size // max(1, int(np.prod(lead)))] if lead else seeds,
            grid=grid,
            hyperparams={n: shaped(v) for n, v in saved.get("hyper", {}).items()
                         if n in set(metadata.get("hyperparams", saved.get("hyper", {})))},
            metadata=metadata)

    def close(self) -> None:
        """Finish pending work and release orbax's threads."""
        self._manager.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclasses.dataclass(frozen=True)
class Checkpointing:
    """Where and how often :func:`negres.train` saves a run, and what identifies it. Checked
    when made: a bad value raises :class:`~negres.ArgumentError` naming the field
    (``checkpointing.every``).

    A call finding checkpoints in ``directory`` resumes from the newest, after checking
    they are of this run: the program's functions (traced, with the constants they close
    over: an optimizer's hyperparameters, a schedule, arrays), the data's and
    ``init_state``'s contents, the batch size, curve spacing, sampling, root seed, seeds,
    grid and ``stream_seeds``; anything else is refused naming what differs
    (:class:`~negres.ResumeError`).

    Attributes:
      directory: a directory (opened for the call and closed after it), or an open
        :class:`TrainingCheckpoints` (left open: its owner closes it).
      every: steps between checkpoints, rounded up to whole curve points; 0: at the first
        progress report a minute or more after the last save. The final state is always
        saved.
      fingerprint: anything else that identifies the run (a config's hash), checked with
        the fingerprint negres computes.
    """

    directory: str | os.PathLike[str] | TrainingCheckpoints
    every: int = 0
    fingerprint: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.directory, (str, os.PathLike, TrainingCheckpoints)):
            raise ArgumentError("checkpointing.directory", self.directory,
                                "a directory (a str or a pathlib.Path) or a "
                                "negres.TrainingCheckpoints")
        with fields_of("checkpointing"):
            try:
                check_scale_arguments(seeds_per_chunk=0, layout="auto", seeds_per_map_step=1,
                                      checkpoint_every=self.every)
            except ArgumentError as e:
                raise ArgumentError("every", e.value, e.allowed) from None
        if not isinstance(self.fingerprint, str):
            raise ArgumentError("checkpointing.fingerprint", self.fingerprint,
                                "a string (e.g. a config's hash)")

    def open(self) -> tuple[TrainingCheckpoints, bool]:
        """``(the checkpoints, whether this call opened them and so closes them)``."""
        if isinstance(self.directory, TrainingCheckpoints):
            return self.directory, False
        return TrainingCheckpoints(self.directory), True
