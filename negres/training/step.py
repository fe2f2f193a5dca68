"""One seed's training loop around a :class:`~negres.training.contract.SeedProgram`.

negres adds to the user's step what every seed study needs and no user should rewrite:
batches drawn from any pytree of data by the seed's ``data`` stream, the named random
streams of each step, divergence freezing, and curves. Training is a ``lax.scan`` over
curve points, each a ``lax.scan`` over ``eval_every`` steps; a segment is a run of
curve points, so a long run can report progress and save checkpoints between segments.
Every draw is addressed by ``(seed, stream, step)``, so segments, chunks, layouts and
resumes never change the numbers. A source design (:class:`negres.seeds.SourceDesign`)
gives a stream another seed's key: the driver hands each such key in with the seed's
hyperparameters, under reserved names (:func:`design_hyper`) that the program never sees.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from negres.seeds import over_seeds, step_key
from negres.training.contract import Batch, Hyper, SeedProgram

# Per-seed hyperparameters under this prefix are a design's stream keys, not the program's.
DESIGN_PREFIX = "negres.stream_key:"


def design_hyper(keys: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """stream -> ``(R, 2)`` keys as per-row hyperparameter entries: two ``uint32`` words per
    stream, ``(R,)`` each, which ride the seed axis like any hyperparameter (split over
    devices and chunks, saved and compared in checkpoints)."""
    return {f"{DESIGN_PREFIX}{name}:{word}": np.ascontiguousarray(np.asarray(k)[:, word],
                                                                     np.uint32)
            for name, k in keys.items() for word in (0, 1)}


def is_design_name(name: str) -> bool:
    return name.startswith(DESIGN_PREFIX)


def split_design(key: jax.Array, hyper: Hyper) -> tuple[dict[str, jax.Array], Hyper]:
    """``(stream -> key, the program's hyperparameters)`` of one seed: a stream a design
    names gets its key, every other stream (``""``) the seed's own ``key``."""
    keys = {"": key}
    plain = {}
    for name, value in hyper.items():
        if is_design_name(name):
            stream, word = name[len(DESIGN_PREFIX):].rsplit(":", 1)
            if word == "0":
                keys[stream] = jnp.stack([value, hyper[f"{DESIGN_PREFIX}{stream}:1"]]).astype(
                    jnp.uint32)
        else:
            plain[name] = value
    return keys, plain


def _key(keys: Mapping[str, jax.Array], stream: str) -> jax.Array:
    return keys.get(stream, keys[""])


def num_examples(data: Batch) -> int:
    """The size of the shared leading (example) axis of every leaf of ``data``."""
    sizes = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None
             for leaf in jax.tree_util.tree_leaves(data)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"data leaves disagree on their leading (example) axis: {sizes}")
    return int(sizes.pop())


def all_finite(tree: Any) -> jax.Array:
    """Whether every float leaf of ``tree`` is finite (integer leaves always are)."""
    leaves = [leaf for leaf in jax.tree_util.tree_leaves(tree)
              if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)]
    if not leaves:  # e.g. the empty state of plain SGD
        return jnp.asarray(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def _select(condition: jax.Array, new: Any, old: Any) -> Any:
    return jax.tree_util.tree_map(lambda a, b: jnp.where(condition, a, b), new, old)


def _point_means(metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """A curve point's training metrics: each step metric's mean over the point."""
    return {f"train_{k}": v.mean() for k, v in metrics.items()}


def _int32_steps(start: jax.Array, count: int, stride: int = 1) -> jax.Array:
    # Explicit int32: under jax_enable_x64 a bare arange is int64 and the scan carry of
    # a resumed or segmented run would change type.
    return jnp.asarray(start, jnp.int32) + stride * jnp.arange(count, dtype=jnp.int32)


class SeedTrainer:
    """The per-seed pieces of a training run, and a cache of their compiled, lifted forms.

    Built by :func:`make_seed_trainer` once per program, batch size and curve spacing, and
    reusable across :func:`negres.train` calls: compiled executables are cached per
    (seed count, layout, mesh, data shapes).

    Per seed (``state`` is the program's training state, ``diverged_at`` an int32 scalar):

    * ``init_one(key (2,), hyper, example) -> state``;
    * ``segment_one(num_points)(state, diverged_at, key, hyper, start_step, data,
      eval_data) -> (state, diverged_at, curves {name: (num_points,)})``;
    * ``steps_one(num_steps)(state, diverged_at, key, hyper, start_step, data)
      -> (state, diverged_at)``: a segment without curve points.
    """

    def __init__(self, program: SeedProgram, *, batch_size: int, eval_every: int,
                 has_eval: bool):
        self.program = program
        self.batch_size = batch_size
        self.eval_every = eval_every
        self.has_eval = has_eval and program.evaluate is not None
        self.init = jax.jit(over_seeds(self.init_one, seeded_args=(0, 1)))
        self.compiled: dict[tuple[Any, ...], Any] = {}
        self.checked: set[Any] = set()  # what checks.check_program has traced already
        # What the layout timing depends on; programs with a name share it.
        self.model_key: Hashable = (program.name or id(self), batch_size)
        self.convolutional: bool | None = None  # found by tracing, once

    def init_one(self, key: jax.Array, hyper: Hyper, example: Batch) -> Any:
        keys, hyper = split_design(key, hyper)
        return self.program.init(_key(keys, "init"), example, hyper)

    def _step(self, state: Any, keys: Mapping[str, jax.Array], hyper: Hyper, step: jax.Array,
              data: Batch) -> tuple[Any, dict[str, jax.Array], jax.Array]:
        """One unguarded step: the new state, its metrics, and whether the loss is finite.
        ``keys``: stream -> the key it derives from (:func:`split_design`)."""
        index = jax.random.randint(step_key(_key(keys, "data"), "data", step),
                                   (self.batch_size,), 0, num_examples(data))
        batch = jax.tree_util.tree_map(lambda leaf: leaf[index], data)
        rngs = {name: step_key(_key(keys, name), name, step) for name in self.program.streams}
        new_state, metrics = self.program.step(state, batch, rngs, hyper)
        # The state keeps the dtypes it was initialised with: under jax_enable_x64, float64
        # data would otherwise promote float32 statistics (BatchNorm's) and change the scan
        # carry's type. A no-op when the dtypes already agree.
        new_state = jax.tree_util.tree_map(
            lambda new, old: new if new.dtype == old.dtype else new.astype(old.dtype),
            new_state, state)
        loss_finite = jnp.isfinite(metrics["loss"]) if "loss" in metrics else jnp.asarray(True)
        return new_state, metrics, loss_finite

    def _guarded_step(self, carry: tuple[Any, jax.Array], keys: Mapping[str, jax.Array],
                      hyper: Hyper, step: jax.Array,
                      data: Batch) -> tuple[tuple[Any, jax.Array], Any]:
        """A step that freezes a seed at its last finite state: ``diverged_at`` becomes the
        first step whose new state (optimizer moments included: an overflowing second
        moment would silently stop learning) or loss is not finite."""
        state, diverged_at = carry
        new_state, metrics, loss_finite = self._step(state, keys, hyper, step, data)
        alive = diverged_at < 0
        finite = all_finite(new_state) & loss_finite
        keep = alive & finite
        carry = (_select(keep, new_state, state),
                 jnp.where(alive & ~finite, step, diverged_at).astype(jnp.int32))
        return carry, {k: jnp.where(keep, v, jnp.nan) for k, v in metrics.items()}

    def _run_point(self, carry: tuple[Any, jax.Array], point_start: jax.Array,
                   keys: Mapping[str, jax.Array], hyper: Hyper, data: Batch,
                   eval_data: Batch) -> Any:
        """One curve point: ``eval_every`` steps, then the point's metrics.

        What the guarded step gives, at the cost of unguarded steps. Checking the whole
        state and selecting old or new at every step cost 10-20% of a small model's
        training (docs/performance.md), so the steps run unguarded, each checking only its
        loss, and the whole state is checked once, at the end of the point. A seed whose
        loss or state was not finite is replayed from the point's start with the guarded
        step, which freezes it at its last finite state and records the first non-finite
        step: the same numbers, bit for bit. The replay is a ``while_loop`` that runs at
        most once; under ``vmap`` it runs when some seed of the batch needs it (the others
        keep their result), so a run without divergence never pays for it. A program that
        makes its state non-finite and finite again within one point, with finite losses
        throughout, is not caught (gradient steps don't: a non-finite parameter reaches the
        loss, an overflowed moment stays infinite).
        """
        start_state, start_diverged = carry
        alive = start_diverged < 0
        steps = _int32_steps(point_start, self.eval_every)

        def fast_step(carry: tuple[Any, jax.Array], step: jax.Array) -> Any:
            state, bad = carry
            new_state, metrics, loss_finite = self._step(state, keys, hyper, step, data)
            return (new_state, bad | ~loss_finite), {
                k: jnp.where(alive, v, jnp.nan) for k, v in metrics.items()}

        (state, bad), metrics = jax.lax.scan(fast_step, (start_state, jnp.asarray(False)),
                                             steps)
        needs_replay = alive & (bad | ~all_finite(state))
        # Right for every seed that did not diverge in this point: a frozen seed keeps its
        # state (and NaN metrics), a live one keeps every step.
        state = _select(alive, state, start_state)
        point = _point_means(metrics)

        def replay(loop: tuple[jax.Array, Any, jax.Array, Any]) -> Any:
            # From the loop's own carry, not the closure: a body computed from loop
            # invariants alone could be hoisted out of the loop and always run.
            _, state, diverged_at, _ = loop
            (state, diverged_at), metrics = jax.lax.scan(
                lambda c, step: self._guarded_step(c, keys, hyper, step, data),
                (state, diverged_at), steps)
            return jnp.asarray(False), state, diverged_at, _point_means(metrics)

        _, replayed, replayed_at, replayed_point = jax.lax.while_loop(
            lambda loop: loop[0], replay, (needs_replay, start_state, start_diverged, point))
        state = _select(needs_replay, replayed, state)
        diverged_at = jnp.where(needs_replay, replayed_at, start_diverged)
        point = _select(needs_replay, replayed_point, point)
        if self.has_eval:
            alive = diverged_at < 0
            evaluated = self.program.evaluate(state, eval_data, hyper)
            point |= {f"eval_{k}": jnp.where(alive, v, jnp.nan) for k, v in evaluated.items()}
        return (state, diverged_at), point

    def segment_one(self, num_points: int) -> Callable[..., Any]:
        def run(state, diverged_at, key, hyper, start_step, data, eval_data):
            keys, hyper = split_design(key, hyper)
            (state, diverged_at), curves = jax.lax.scan(
                lambda c, s: self._run_point(c, s, keys, hyper, data, eval_data),
                (state, diverged_at), _int32_steps(start_step, num_points, self.eval_every))
            return state, diverged_at, curves

        return run

    def steps_one(self, num_steps: int) -> Callable[..., Any]:
        def run(state, diverged_at, key, hyper, start_step, data):
            keys, hyper = split_design(key, hyper)
            carry, _ = jax.lax.scan(
                lambda c, step: self._guarded_step(c, keys, hyper, step, data),
                (state, diverged_at), _int32_steps(start_step, num_steps))
            return carry

        return run


# Trainers built so far, so that calling negres.train again with the same program (and
# batch size, curve spacing) reuses its compiled code.
_TRAINERS: dict[tuple[Any, ...], SeedTrainer] = {}
_MAX_CACHED_TRAINERS = 32


def make_seed_trainer(program: SeedProgram, *, batch_size: int, eval_every: int,
                      has_eval: bool) -> SeedTrainer:
    """The :class:`SeedTrainer` of ``program``; the same object for the same arguments."""
    try:
        key = (program, batch_size, eval_every, has_eval)
        hash(key)
    except TypeError:  # a program holding something unhashable: not cached
        return SeedTrainer(program, batch_size=batch_size, eval_every=eval_every,
                           has_eval=has_eval)
    if key not in _TRAINERS:
        if len(_TRAINERS) >= _MAX_CACHED_TRAINERS:
            _TRAINERS.pop(next(iter(_TRAINERS)))
        _TRAINERS[key] = SeedTrainer(program, batch_size=batch_size, eval_every=eval_every,
                                     has_eval=has_eval)
    return _TRAINERS[key]
