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

Batches come one of three ways: drawn uniformly with replacement from data every seed
shares (``sampling="replacement"``, the default), visited once per epoch in an order of the
seed's own (``sampling="epochs"``; each epoch's order is a keyed permutation, a pure
function of ``(seed, epoch)``, computed per batch position by :func:`epoch_order`), or fed
into the call per segment from a pipeline (``fed``: the driver draws the same indices on
the host and hands in the examples). Early stopping
(:class:`EarlyStopping`) freezes a seed whose monitored curve stopped improving and keeps its
best state, inside the compiled call.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from negres.seeds import over_seeds, step_key
from negres.training.contract import Batch, Hyper, Metrics, SeedProgram

# Per-seed hyperparameters under this prefix are a design's stream keys, not the program's.
DESIGN_PREFIX = "negres.stream_key:"


# How a step's batch is drawn from in-memory data (the command line's and the library's
# ``sampling``).
SAMPLINGS = ("replacement", "epochs")
# Hyperparameters every program receives: the seed's index (as in ``seed_indices``) and its
# grid point's flat index (0 without a grid), so that init and step can pick per-seed things
# (a teacher, a data weight) without a hyperparameter of their own.
SEED_INDEX, GRID_POINT = "seed_index", "grid_point"
RESERVED_HYPER = (SEED_INDEX, GRID_POINT)


class EarlyStopping(NamedTuple):
    """Stop each seed whose ``metric`` has not improved for ``patience`` curve points.

    A stopped seed stops changing, like a diverged one but with finite numbers: its
    training curves are NaN from then on and its evaluation curves hold its frozen state's
    values. Its state at the best point is kept and returned (``restore_best``).

    Attributes:
      metric: a curve name, ``eval_<metric>`` (on ``eval_data``, e.g. a validation set) or
        ``train_<metric>``.
      patience: curve points without improvement before the seed stops (>= 1).
      mode: ``"max"`` (accuracy) or ``"min"`` (loss).
      min_delta: how much better than the best so far counts as an improvement (>= 0).
      restore_best: return each seed's best state (else its state when training ended).
    """

    metric: str
    patience: int
    mode: str = "max"
    min_delta: float = 0.0
    restore_best: bool = True


class StoppingState(NamedTuple):
    """A seed's training state under early stopping (the carry of the compiled call).

    Attributes:
      state: the program's state now (frozen once stopped).
      best: the program's state at the best curve point so far.
      best_value: the monitored metric there (``-inf``/``inf`` before the first point).
      best_step: the step of the best point; -1 before the first.
      wait: curve points since the best one.
      stopped_at: the step the seed stopped at; -1 while it trains.
    """

    state: Any
    best: Any
    best_value: jax.Array
    best_step: jax.Array
    wait: jax.Array
    stopped_at: jax.Array


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


# Rounds of the Feistel network that orders an epoch. Luby-Rackoff's four rounds assume wide
# halves; on a small set the halves are a few bits wide, and 6 rounds left a measurable
# bias (10 examples, 40,000 orders: chi-square p = 2e-11 for the pairs at positions 0 and
# 1); from 8 rounds none showed (p > 0.04 at 10 and 50 examples). 12 cost ~0.3 ms a step
# for 64 seeds of 128 examples on 2 CPU cores, next to ~0.16 ms to draw with replacement.
_FEISTEL_ROUNDS = 12


def _mix(value: jax.Array, key: jax.Array) -> jax.Array:
    """A keyed 32-bit mixing function: MurmurHash3's finaliser of ``value ^ key``."""
    value = value ^ key
    value = (value ^ (value >> 16)) * np.uint32(0x85EBCA6B)
    value = (value ^ (value >> 13)) * np.uint32(0xC2B2AE35)
    return value ^ (value >> 16)


def epoch_order(key: jax.Array, epoch: jax.Array, positions: jax.Array,
                size: int) -> jax.Array:
    """The examples at ``positions`` of the order one seed visits ``size`` examples in
    during ``epoch``: a permutation of ``0..size-1``, a pure function of the seed's ``data``
    key and the epoch.

    The permutation is a keyed Feistel network on the smallest even number of bits that
    holds ``size``, walked until it lands below ``size`` (cycle walking keeps it a
    bijection of ``0..size-1``). Each position is computed on its own, so a batch costs
    ``batch_size`` evaluations: no sort of the whole set, no permutation to carry from step
    to step, and the same batch whichever segment, chunk or resume asks for it.
    """
    bits = max(2, (size - 1).bit_length())
    half = (bits + 1) // 2
    mask = np.uint32((1 << half) - 1)
    round_keys = jax.random.bits(step_key(key, "epoch", epoch), (_FEISTEL_ROUNDS,),
                                 jnp.uint32)

    def encrypt(value: jax.Array) -> jax.Array:
        left, right = value >> half, value & mask
        for r in range(_FEISTEL_ROUNDS):
            left, right = right, left ^ (_mix(right, round_keys[r]) & mask)
        return (left << half) | right

    def walk(position: jax.Array) -> jax.Array:
        # At most 4x the set's size: under two steps expected, a few more for the
        # slowest of a batch.
        return jax.lax.while_loop(lambda v: v >= size, encrypt, encrypt(position))

    return jax.vmap(walk)(positions.astype(jnp.uint32)).astype(jnp.int32)


def _metric_dtype() -> Any:
    """The float dtype JAX computes metrics in (float64 under ``jax_enable_x64``)."""
    return jax.dtypes.canonicalize_dtype(np.float64)


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
    (seed count, layout, mesh, data shapes). An internal of the engine, not in negres's
    namespace; a benchmark passes its own as ``negres.Scale(trainer=...)``.

    Per seed (``state`` is the carry: the program's training state, or a
    :class:`StoppingState` around it under early stopping; ``diverged_at`` an int32 scalar;
    ``fed`` the fed batches of the segment's steps, or ``()``):

    * ``init_one(key (2,), hyper, example) -> state``;
    * ``segment_one(num_points)(state, diverged_at, key, hyper, fed, start_step, data,
      eval_data) -> (state, diverged_at, curves {name: (num_points,)})``;
    * ``steps_one(num_steps)(state, diverged_at, key, hyper, fed, start_step, data)
      -> (state, diverged_at)``: a segment without curve points.
    """

    def __init__(self, program: SeedProgram, *, batch_size: int, eval_every: int,
                 has_eval: bool, sampling: str = "replacement",
                 early_stopping: EarlyStopping | None = None, fed: bool = False):
        self.program = program
        self.batch_size = batch_size
        self.eval_every = eval_every
        self.has_eval = has_eval and program.evaluate is not None
        self.sampling = sampling
        self.early_stopping = early_stopping
        self.fed = fed
        self.init = jax.jit(over_seeds(self.init_one, seeded_args=(0, 1)))
        self.compiled: dict[tuple[Any, ...], Any] = {}
        self.checked: set[Any] = set()  # what checks.check_program has traced already
        # What the layout timing depends on; programs with a name share it.
        self.model_key: Hashable = (program.name or id(self), batch_size, sampling, fed)
        self.convolutional: bool | None = None  # found by tracing, once

    def init_one(self, key: jax.Array, hyper: Hyper, example: Batch) -> Any:
        keys, hyper = split_design(key, hyper)
        state = self.program.init(_key(keys, "init"), example, hyper)
        return self.wrap(state)

    def wrap(self, state: Any) -> Any:
        """One seed's carry from its program state: a :class:`StoppingState` under early
        stopping, the state itself otherwise."""
        stopping = self.early_stopping
        if stopping is None:
            return state
        worst = -jnp.inf if stopping.mode == "max" else jnp.inf
        none = jnp.asarray(-1, jnp.int32)
        return StoppingState(state, state, jnp.asarray(worst, _metric_dtype()), none,
                             jnp.asarray(0, jnp.int32), none)

    def program_state(self, carry: Any) -> Any:
        """The program's state inside a carry (see :meth:`wrap`)."""
        return carry.state if self.early_stopping is not None else carry

    def indices_one(self, key: jax.Array, hyper: Hyper, start_step: jax.Array,
                    num_steps: int, size: int) -> jax.Array:
        """``(num_steps, batch_size)`` the example indices one seed's steps from
        ``start_step`` draw from ``size`` examples: what a fed pipeline loads, equal to what
        the in-memory path draws."""
        keys, _ = split_design(key, hyper)
        steps = _int32_steps(start_step, num_steps)
        return jax.vmap(lambda s: self._indices(keys, s, size))(steps)

    def _indices(self, keys: Mapping[str, jax.Array], step: jax.Array,
                 size: int) -> jax.Array:
        """``(batch_size,)`` step ``step``'s examples: drawn uniformly with replacement, or
        the ``step % per_epoch``-th slice of its epoch's order (the last
        ``size % batch_size`` positions of each order are not visited that epoch)."""
        data_key = _key(keys, "data")
        if self.sampling == "epochs":
            per_epoch = size // self.batch_size
            first = (step % per_epoch) * self.batch_size
            positions = first + jnp.arange(self.batch_size, dtype=jnp.int32)
            return epoch_order(data_key, step // per_epoch, positions, size)
        return jax.random.randint(step_key(data_key, "data", step), (self.batch_size,), 0,
                                  size)

    def _batch(self, keys: Mapping[str, jax.Array], step: jax.Array, data: Batch,
               item: Any) -> Batch:
        """Step ``step``'s batch: ``item`` itself when fed, else the examples of
        :meth:`_indices`."""
        if self.fed:
            return item
        index = self._indices(keys, step, num_examples(data))
        return jax.tree_util.tree_map(lambda leaf: leaf[index], data)

    def _step(self, state: Any, keys: Mapping[str, jax.Array], hyper: Hyper, step: jax.Array,
              data: Batch, item: Any) -> tuple[Any, dict[str, jax.Array], jax.Array]:
        """One unguarded step: the new state, its metrics, and whether the loss is finite.
        ``keys``: stream -> the key it derives from (:func:`split_design`); ``item``: what
        :meth:`_batch` makes the batch from."""
        batch = self._batch(keys, step, data, item)
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
                      hyper: Hyper, step: jax.Array, data: Batch,
                      item: Any) -> tuple[tuple[Any, jax.Array], Any]:
        """A step that freezes a seed at its last finite state: ``diverged_at`` becomes the
        first step whose new state (optimizer moments included: an overflowing second
        moment would silently stop learning) or loss is not finite."""
        state, diverged_at = carry
        new_state, metrics, loss_finite = self._step(state, keys, hyper, step, data, item)
        alive = diverged_at < 0
        finite = all_finite(new_state) & loss_finite
        keep = alive & finite
        carry = (_select(keep, new_state, state),
                 jnp.where(alive & ~finite, step, diverged_at).astype(jnp.int32))
        return carry, {k: jnp.where(keep, v, jnp.nan) for k, v in metrics.items()}

    def _run_point(self, carry: tuple[Any, jax.Array], point_start: jax.Array,
                   keys: Mapping[str, jax.Array], hyper: Hyper, data: Batch,
                   eval_data: Batch, items: Any) -> Any:
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
        wrapped, start_diverged = carry
        start_state = self.program_state(wrapped)
        stopping = self.early_stopping
        stopped = wrapped.stopped_at >= 0 if stopping is not None else jnp.asarray(False)
        alive = (start_diverged < 0) & ~stopped
        steps = _int32_steps(point_start, self.eval_every)

        def fast_step(carry: tuple[Any, jax.Array], xs: tuple[jax.Array, Any]) -> Any:
            state, bad = carry
            step, item = xs
            new_state, metrics, loss_finite = self._step(state, keys, hyper, step, data, item)
            return (new_state, bad | ~loss_finite), {
                k: jnp.where(alive, v, jnp.nan) for k, v in metrics.items()}

        (state, bad), metrics = jax.lax.scan(fast_step, (start_state, jnp.asarray(False)),
                                             (steps, items))
        needs_replay = alive & (bad | ~all_finite(state))
        # Right for every seed that did not diverge in this point: a frozen or stopped seed
        # keeps its state (and NaN metrics), a live one keeps every step.
        state = _select(alive, state, start_state)
        point = _point_means(metrics)

        def replay(loop: tuple[jax.Array, Any, jax.Array, Any]) -> Any:
            # From the loop's own carry, not the closure: a body computed from loop
            # invariants alone could be hoisted out of the loop and always run.
            _, state, diverged_at, _ = loop
            (state, diverged_at), metrics = jax.lax.scan(
                lambda c, xs: self._guarded_step(c, keys, hyper, xs[0], data, xs[1]),
                (state, diverged_at), (steps, items))
            return jnp.asarray(False), state, diverged_at, _point_means(metrics)

        _, replayed, replayed_at, replayed_point = jax.lax.while_loop(
            lambda loop: loop[0], replay, (needs_replay, start_state, start_diverged, point))
        state = _select(needs_replay, replayed, state)
        diverged_at = jnp.where(needs_replay, replayed_at, start_diverged)
        point = _select(needs_replay, replayed_point, point)
        if self.has_eval:
            finite = diverged_at < 0  # a stopped seed's frozen state is still evaluated
            evaluated = self.program.evaluate(state, eval_data, hyper)
            point |= {f"eval_{k}": jnp.where(finite, v, jnp.nan) for k, v in evaluated.items()}
        if stopping is None:
            return (state, diverged_at), point
        return (self._stopping_update(wrapped, state, point, point_start, diverged_at,
                                      stopped), diverged_at), point

    def _stopping_update(self, wrapped: StoppingState, state: Any, point: Metrics,
                         point_start: jax.Array, diverged_at: jax.Array,
                         stopped: jax.Array) -> StoppingState:
        """The early-stopping carry after a curve point: the best state and value, the
        points waited since, and the step the seed stops at once it waited ``patience``."""
        stopping = self.early_stopping
        value = point[stopping.metric].astype(wrapped.best_value.dtype)
        live = (diverged_at < 0) & ~stopped
        if stopping.mode == "max":
            better = value > wrapped.best_value + stopping.min_delta
        else:
            better = value < wrapped.best_value - stopping.min_delta
        better = live & jnp.isfinite(value) & better
        end = (point_start + self.eval_every).astype(jnp.int32)
        wait = jnp.where(better, 0, jnp.where(live, wrapped.wait + 1, wrapped.wait))
        stop = live & (wait >= stopping.patience)
        return StoppingState(
            state=state, best=_select(better, state, wrapped.best),
            best_value=jnp.where(better, value, wrapped.best_value),
            best_step=jnp.where(better, end, wrapped.best_step).astype(jnp.int32),
            wait=wait.astype(jnp.int32),
            stopped_at=jnp.where(stop, end, wrapped.stopped_at).astype(jnp.int32))

    def segment_one(self, num_points: int) -> Callable[..., Any]:
        """``(state, diverged_at, key, hyper, fed, start_step, data, eval_data) -> (state,
        diverged_at, curves)``; ``fed``: the fed batches of the segment's steps, leaves
        ``(num_points * eval_every, batch_size, ...)``, or ``()``."""
        def run(state, diverged_at, key, hyper, fed, start_step, data, eval_data):
            keys, hyper = split_design(key, hyper)
            by_point = jax.tree_util.tree_map(
                lambda leaf: leaf.reshape(num_points, self.eval_every, *leaf.shape[1:]), fed)

            def point(carry: Any, xs: tuple[jax.Array, Any]) -> Any:
                point_start, fed_point = xs
                return self._run_point(carry, point_start, keys, hyper, data, eval_data,
                                       fed_point)

            starts = _int32_steps(start_step, num_points, self.eval_every)
            (state, diverged_at), curves = jax.lax.scan(
                point, (state, diverged_at), (starts, by_point if self.fed else None))
            return state, diverged_at, curves

        return run

    def steps_one(self, num_steps: int) -> Callable[..., Any]:
        """``(state, diverged_at, key, hyper, fed, start_step, data) -> (state,
        diverged_at)``: guarded steps without curve points (the layout probe's)."""
        def run(state, diverged_at, key, hyper, fed, start_step, data):
            keys, hyper = split_design(key, hyper)
            steps = _int32_steps(start_step, num_steps)
            program_state = self.program_state(state)
            (program_state, diverged_at), _ = jax.lax.scan(
                lambda c, xs: self._guarded_step(c, keys, hyper, xs[0], data, xs[1]),
                (program_state, diverged_at), (steps, fed if self.fed else None))
            if self.early_stopping is not None:
                program_state = state._replace(state=program_state)
            return program_state, diverged_at

        return run


# Trainers built so far, so that calling negres.train again with the same program (and
# batch size, curve spacing) reuses its compiled code.
_TRAINERS: dict[tuple[Any, ...], SeedTrainer] = {}
_MAX_CACHED_TRAINERS = 32


def make_seed_trainer(program: SeedProgram, *, batch_size: int, eval_every: int,
                      has_eval: bool, sampling: str = "replacement",
                      early_stopping: EarlyStopping | None = None,
                      fed: bool = False) -> SeedTrainer:
    """The :class:`SeedTrainer` of ``program``; the same object for the same arguments."""
    settings = {"batch_size": batch_size, "eval_every": eval_every, "has_eval": has_eval,
                "sampling": sampling, "early_stopping": early_stopping, "fed": fed}
    try:
        key = (program, *settings.values())
        hash(key)
    except TypeError:  # a program holding something unhashable: not cached
        return SeedTrainer(program, **settings)
    if key not in _TRAINERS:
        if len(_TRAINERS) >= _MAX_CACHED_TRAINERS:
            _TRAINERS.pop(next(iter(_TRAINERS)))
        _TRAINERS[key] = SeedTrainer(program, **settings)
    return _TRAINERS[key]
