"""Train many seeds of one model in one compiled call.

The training of one seed is a pure function: ``init_one(key)`` builds parameters and
optimizer state; ``segment_one`` is a ``lax.scan`` over curve points, each a
``lax.scan`` over ``eval_every`` optimizer steps. Both are lifted to all seeds (vmap,
or lax.map for convolutional models where that is faster, see :mod:`negres.layout`),
the seed axis split over a ``seeds`` device mesh (:mod:`negres.sharding`), and compiled
once. Segments exist so that a long run can report progress and save checkpoints
between them; chunks of seeds exist so that S seeds need not fit in memory at once.
Neither changes the numbers, because every draw is addressed by ``(seed, stream,
step)`` rather than by how far a key was split.
"""

from __future__ import annotations

import inspect
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.sharding import Mesh, SingleDeviceSharding

from negres.errors import ConfigError
from negres.layout import check_layout, is_convolutional, lift_over_seeds, seeds_per_unit
from negres.losses import LOSSES, SCORE_NAMES
from negres.results_io import WorkdirError
from negres.seeds import over_seeds, seed_keys, stream_key
from negres.sharding import agreed, put, replicated, seed_mesh, seeded, to_host

if TYPE_CHECKING:
    from negres.checkpoint import TrainingCheckpoints

# Called between segments with (steps_done, total_steps, num_seeds, elapsed_seconds).
ProgressFn = Callable[[int, int, int, float], None]

# Aim for about this many progress reports in a run.
_PROGRESS_REPORTS = 10
# With checkpoint_every=0, save at the first progress report this long after the last save:
# a short run then pays for one save (its final state), a long one loses at most a minute.
_CHECKPOINT_SECONDS = 60.0


class TrainResult(NamedTuple):
    """What :func:`train_seeds` returns; every array has the seed axis first.

    Attributes:
      params: trained parameters, every leaf ``(S, ...)``: device arrays (split over the
        ``seeds`` mesh) when the run was one unpadded chunk on one host, NumPy arrays
        gathered on the host otherwise.
      opt_state: optimizer state, every leaf ``(S, ...)``.
      seed_indices: ``(S,)`` the seed index of each row (seed ``i`` uses ``fold_in(root, i)``).
      curves: name -> ``(S, T)``: ``train_loss`` and ``train_<score>`` averaged over the
        ``eval_every`` steps before each point, and ``eval_loss``/``eval_<score>`` on the
        evaluation set at each point when one was given.
      curve_steps: ``(T,)`` the optimizer step after which each curve point was taken.
      train_time_s: wall time of initialisation and training, compilation included.
      diverged_at: ``(S,)`` the step at which each seed's loss or parameters stopped being
        finite (it was frozen at its last finite state from then on); -1: never.
      plan: how the seeds were laid out, chunked and sharded, and the step resumed from.
    """

    params: Any
    opt_state: Any
    seed_indices: np.ndarray
    curves: dict[str, np.ndarray]
    curve_steps: np.ndarray
    train_time_s: float
    diverged_at: np.ndarray | None = None
    plan: dict[str, Any] | None = None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_training_arguments(
    *, num_seeds: int, steps: int, batch_size: int, eval_every: int, num_train: int | None
) -> None:
    """Raise :class:`ConfigError` naming the field when a training argument is not allowed.

    ``num_train=None`` (the data not loaded yet) skips the bound of the batch size by the
    training set size; the experiment checks it again once the task is loaded.
    """
    if not _is_int(num_seeds) or num_seeds < 1:
        raise ConfigError("num_seeds", num_seeds, "an integer >= 1")
    if not _is_int(steps) or steps < 1:
        raise ConfigError("train.steps", steps, "an integer >= 1")
    upper = num_train if num_train is not None else float("inf")
    if not _is_int(batch_size) or not 1 <= batch_size <= upper:
        allowed = (f"an integer from 1 to the training set size ({num_train} examples)"
                   if num_train is not None else "an integer >= 1")
        raise ConfigError("train.batch_size", batch_size, allowed)
    if not _is_int(eval_every) or eval_every < 1 or steps % eval_every:
        raise ConfigError(
            "train.eval_every", eval_every, f"a positive integer that divides train.steps={steps}"
        )


def noisy_labels(
    key: jax.Array, indices: jax.Array, labels: jax.Array, rate: float, num_classes: int
) -> jax.Array:
    """Labels of examples ``indices`` with a share ``rate`` replaced by a wrong class, for one seed.

    Whether example ``j`` is noisy, and which wrong class it gets, is a pure function of
    ``(key, j)``: the same example keeps the same noisy label at every step, and seeds differ
    in which examples are noisy. The replacement is uniform over the *other* classes, so
    ``rate`` is the share of labels that are wrong.

    Args:
      key: the seed's ``label_noise`` stream key.
      indices: ``(B,)`` example indices into the training set.
      labels: ``(B,)`` their clean labels.
      rate: share of wrong labels, in [0, 1].
      num_classes: number of classes ``C``.

    Returns:
      ``(B,)`` int labels.
    """

    def one(j: jax.Array, label: jax.Array) -> jax.Array:
        flip_key, class_key = jax.random.split(jax.random.fold_in(key, j))
        offset = jax.random.randint(class_key, (), 1, num_classes)
        flipped = (label + offset) % num_classes
        return jnp.where(jax.random.uniform(flip_key) < rate, flipped, label)

    return jax.vmap(one)(indices, labels)


def check_label_noise(rate: float, kind: str, num_classes: int | None) -> None:
    """Raise :class:`ConfigError` unless ``rate`` is a share in [0, 1) usable for ``kind``."""
    if not 0.0 <= rate < 1.0:
        raise ConfigError("train.label_noise", rate, "a share in [0, 1)")
    if rate > 0 and (kind != "classification" or not num_classes or num_classes < 2):
        raise ConfigError(
            "train.label_noise", rate, "0 for regression tasks (label noise needs classes)"
        )


def check_input_noise(std: float) -> None:
    """Raise :class:`ConfigError` unless ``std`` is a finite number >= 0."""
    if not isinstance(std, (int, float)) or isinstance(std, bool) or not 0.0 <= std < math.inf:
        raise ConfigError("train.input_noise", std, "a standard deviation >= 0 (0 is off)")


def make_apply(model: nn.Module) -> Callable[[Any, jax.Array], jax.Array]:
    """One seed's deterministic forward pass ``(params, x (B, *input_shape)) -> (B, K)``."""

    def apply_fn(params: Any, x: jax.Array) -> jax.Array:
        return model.apply({"params": params}, x, train=False)

    return apply_fn


def make_evaluate(
    model: nn.Module, kind: str
) -> Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    """One seed's ``(params, x, y) -> (loss, score)`` on a whole set (score: accuracy or MSE)."""
    apply_fn = make_apply(model)
    loss_fn = LOSSES[kind]

    def evaluate(params: Any, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        return loss_fn(apply_fn(params, x), y)

    return evaluate


class SeedTrainer:
    """The per-seed pieces of a training run, and their compiled, seed-lifted forms.

    Built once per model, optimizer and training settings by :func:`make_seed_trainer`
    and reusable across :func:`train_seeds` calls: compiled executables are cached per
    (seed count, layout, mesh); the layout measured for a convolutional model is cached
    per model, input shape and batch size.

    Per seed: ``init_one(key (2,), hyperparams {name: ()}) -> (params, opt_state)``;
    ``segment_one(num_points)(params, opt_state, diverged_at, key, start_step, x, y,
    x_eval, y_eval) -> (params, opt_state, diverged_at, curves name -> (num_points,))``;
    ``steps_one(num_steps)(params, opt_state, diverged_at, key, start_step, x, y)``
    ``-> (params, opt_state, diverged_at)``, a segment without curve points.
    """

    def __init__(
        self,
        init_one: Callable[..., Any],
        segment_one: Callable[[int], Callable[..., Any]],
        steps_one: Callable[[int], Callable[..., Any]],
        train_step_one: Callable[..., Any],
        score_name: str,
        has_eval: bool,
    ):
        self.init_one = init_one
        self.segment_one = segment_one
        self.steps_one = steps_one
        self.train_step_one = train_step_one
        self.score_name = score_name
        self.has_eval = has_eval
        self.init = jax.jit(over_seeds(init_one, seeded_args=(0, 1)))
        self.compiled: dict[tuple[Any, ...], Any] = {}
        # What the layout timing depends on; set by make_seed_trainer.
        self.model_key: tuple[Any, ...] = (id(self),)
        self.convolutional: bool | None = None  # found by tracing, once


def _all_finite(tree: Any) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:  # e.g. the empty state of plain SGD
        return jnp.asarray(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def _select(condition: jax.Array, new: Any, old: Any) -> Any:
    return jax.tree_util.tree_map(lambda a, b: jnp.where(condition, a, b), new, old)


def make_seed_trainer(
    model: nn.Module,
    optimizer: optax.GradientTransformation,
    *,
    kind: str,
    input_shape: Sequence[int],
    batch_size: int,
    eval_every: int,
    has_eval: bool,
    label_noise: float = 0.0,
    num_classes: int | None = None,
    input_noise: float = 0.0,
) -> SeedTrainer:
    """Build the per-seed init, training step and segments for one model and optimizer.

    ``label_noise`` > 0 (classification only, needs ``num_classes``) trains each seed on
    its own noisy copy of the labels (see :func:`noisy_labels`); evaluation stays clean.
    ``input_noise`` > 0 adds ``N(0, input_noise^2)`` to every training batch, drawn from the
    seed's own ``input_noise`` stream at each step (noisy training data; evaluation is clean).

    A seed whose loss or parameters stop being finite is frozen at its last finite state
    from that step on; its ``diverged_at`` records the step (``-1``: never), and its curve
    points from then on are NaN. The other seeds of the call are untouched.
    """
    if kind not in LOSSES:
        raise ConfigError("task.kind", kind, f"one of {sorted(LOSSES)}")
    check_label_noise(label_noise, kind, num_classes)
    check_input_noise(input_noise)
    loss_fn = LOSSES[kind]
    evaluate = make_evaluate(model, kind)
    dummy = jnp.zeros((1, *input_shape), jnp.float32)

    def init_one(key: jax.Array, hyperparams: dict[str, jax.Array]) -> tuple[Any, Any]:
        params = model.init(stream_key(key, "init"), dummy, train=False)["params"]
        opt_state = optimizer.init(params)
        if hyperparams:
            opt_state = set_hyperparams(opt_state, hyperparams)
        return params, opt_state

    def train_step(params, opt_state, key, step, x, y):
        # Draws are addressed by step, so a run split into segments, resumed, or
        # trained alongside other seeds draws the same batches and dropout masks.
        batch_key = jax.random.fold_in(stream_key(key, "data"), step)
        dropout_key = jax.random.fold_in(stream_key(key, "dropout"), step)
        idx = jax.random.randint(batch_key, (batch_size,), 0, x.shape[0])
        xb, yb = x[idx], y[idx]
        if label_noise > 0:
            yb = noisy_labels(stream_key(key, "label_noise"), idx, yb, label_noise, num_classes)
        if input_noise > 0:
            noise_key = jax.random.fold_in(stream_key(key, "input_noise"), step)
            xb = xb + input_noise * jax.random.normal(noise_key, xb.shape, xb.dtype)

        def batch_loss(p):
            out = model.apply({"params": p}, xb, train=True, rngs={"dropout": dropout_key})
            return loss_fn(out, yb)

        (loss, score), grads = jax.value_and_grad(batch_loss, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, score

    def guarded_step(carry, key, step, x, y):
        params, opt_state, diverged_at = carry
        new_params, new_opt_state, loss, score = train_step(params, opt_state, key, step, x, y)
        alive = diverged_at < 0
        # Optimizer state too: an overflowing second moment would silently stop learning.
        finite = jnp.isfinite(loss) & _all_finite(new_params) & _all_finite(new_opt_state)
        keep = alive & finite
        carry = (
            _select(keep, new_params, params),
            _select(keep, new_opt_state, opt_state),
            jnp.where(alive & ~finite, step, diverged_at),
        )
        return carry, (jnp.where(keep, loss, jnp.nan), jnp.where(keep, score, jnp.nan))

    def run_point(carry, point_start, key, x, y, x_eval, y_eval):
        steps = point_start + jnp.arange(eval_every)
        carry, (losses, scores) = jax.lax.scan(
            lambda c, step: guarded_step(c, key, step, x, y), carry, steps)
        point = {"train_loss": losses.mean(), "train_score": scores.mean()}
        if has_eval:
            eval_loss, eval_score = evaluate(carry[0], x_eval, y_eval)
            alive = carry[2] < 0
            point["eval_loss"] = jnp.where(alive, eval_loss, jnp.nan)
            point["eval_score"] = jnp.where(alive, eval_score, jnp.nan)
        return carry, point

    def segment_one(num_points: int) -> Callable[..., Any]:
        def run(params, opt_state, diverged_at, key, start_step, x, y, x_eval, y_eval):
            starts = start_step + eval_every * jnp.arange(num_points)
            (params, opt_state, diverged_at), curves = jax.lax.scan(
                lambda c, s: run_point(c, s, key, x, y, x_eval, y_eval),
                (params, opt_state, diverged_at),
                starts,
            )
            return params, opt_state, diverged_at, curves

        return run

    def steps_one(num_steps: int) -> Callable[..., Any]:
        def run(params, opt_state, diverged_at, key, start_step, x, y):
            carry, _ = jax.lax.scan(
                lambda c, step: guarded_step(c, key, step, x, y),
                (params, opt_state, diverged_at),
                start_step + jnp.arange(num_steps),
            )
            return carry

        return run

    trainer = SeedTrainer(
        init_one=init_one,
        segment_one=segment_one,
        steps_one=steps_one,
        train_step_one=train_step,
        score_name=SCORE_NAMES[kind],
        has_eval=has_eval,
    )
    trainer.model_key = (repr(model), tuple(input_shape), batch_size)
    return trainer


def set_hyperparams(opt_state: Any, hyperparams: dict[str, jax.Array]) -> Any:
    """``opt_state`` of an ``optax.inject_hyperparams`` optimizer with new hyperparameter values."""
    if not hasattr(opt_state, "hyperparams"):
        raise ConfigError(
            "optimizer", type(opt_state).__name__,
            "an optax.inject_hyperparams optimizer when hyperparameters vary per seed",
        )
    unknown = set(hyperparams) - set(opt_state.hyperparams)
    if unknown:
        raise ConfigError("hyperparams", sorted(unknown),
                          f"names among the optimizer's {sorted(opt_state.hyperparams)}")
    merged = dict(opt_state.hyperparams)
    for name, value in hyperparams.items():
        merged[name] = jnp.asarray(value, dtype=jnp.asarray(merged[name]).dtype)
    return opt_state._replace(hyperparams=merged)


def points_per_segment(num_points: int, reports: int = _PROGRESS_REPORTS) -> int:
    """The largest divisor of ``num_points`` at most ``ceil(num_points / reports)``.

    A divisor keeps every segment the same length, so the segment compiles once.
    """
    cap = max(1, math.ceil(num_points / reports))
    return max(d for d in range(1, cap + 1) if num_points % d == 0)


def checkpoint_points(checkpoint_every: int, eval_every: int, num_points: int) -> int:
    """Curve points between checkpoints: ``checkpoint_every`` steps rounded up to whole
    points (0: progress reports, of which :func:`train_seeds` saves one a minute)."""
    if checkpoint_every <= 0:
        return points_per_segment(num_points)
    return min(num_points, math.ceil(checkpoint_every / eval_every))


def check_scale_arguments(
    *, seeds_per_chunk: object, layout: object, seeds_per_map_step: object,
    checkpoint_every: object,
) -> None:
    """Raise :class:`ConfigError` naming the field of a scale or durability knob not allowed."""
    if not _is_int(seeds_per_chunk) or seeds_per_chunk < 0:
        raise ConfigError("train.seeds_per_chunk", seeds_per_chunk,
                          "an integer >= 0 (0: chosen from the compiled step's memory)")
    check_layout(layout, seeds_per_map_step)
    if not _is_int(checkpoint_every) or checkpoint_every < 0:
        raise ConfigError("train.checkpoint_every", checkpoint_every,
                          "an integer >= 0 (steps between checkpoints; 0: about one a minute)")


class Plan(NamedTuple):
    """How a call lays out its seeds; logged, and written to ``results.json``.

    Attributes:
      layout: ``"vmap"`` or ``"map"`` (see :mod:`negres.layout`).
      seeds_per_map_step: seeds vmapped at each ``lax.map`` step (``map`` only).
      seeds_per_chunk: seeds per compiled call; the last chunk is padded.
      num_chunks: calls per segment.
      num_devices: devices of the ``seeds`` mesh.
      padded_seeds: rows added to fill the last chunk (copies of the last seed, dropped).
      reason: why this layout and chunk size.
    """

    layout: str
    seeds_per_map_step: int
    seeds_per_chunk: int
    num_chunks: int
    num_devices: int
    padded_seeds: int
    reason: str


def memory_needed(compiled: Any) -> int | None:
    """Bytes one device needs to run ``compiled`` (arguments, outputs, temporaries), or None
    where the backend does not report it."""
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


class _Placement:
    """Compiles the lifted pieces of one trainer for one mesh and data, with explicit
    shardings: seeded arguments split over ``seeds``, shared ones replicated."""

    def __init__(self, trainer: SeedTrainer, mesh: Mesh, data: tuple[jax.Array, ...],
                 hyperparam_names: Sequence[str]):
        self.trainer = trainer
        self.mesh = mesh
        self.data = data
        self.hyperparam_names = tuple(sorted(hyperparam_names))
        self.split = seeded(mesh)
        self.shared = replicated(mesh)

    def _abstract(self, shape: tuple[int, ...], dtype: Any, sharding: Any) -> Any:
        return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)

    def abstract_inputs(self, num_seeds: int) -> tuple[Any, Any]:
        keys = self._abstract((num_seeds, 2), jnp.uint32, self.split)
        hyper = {n: self._abstract((num_seeds,), jnp.float32, self.split)
                 for n in self.hyperparam_names}
        return keys, hyper

    def abstract_state(self, num_seeds: int) -> Any:
        keys, hyper = self.abstract_inputs(num_seeds)
        params, opt_state = jax.eval_shape(self.trainer.init, keys, hyper)
        with_sharding = jax.tree_util.tree_map(
            lambda leaf: self._abstract(leaf.shape, leaf.dtype, self.split), (params, opt_state))
        diverged_at = self._abstract((num_seeds,), jnp.int32, self.split)
        return (*with_sharding, diverged_at)

    def _cached(self, key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        key = (*key, self.mesh, self.hyperparam_names,
               tuple((a.shape, a.dtype) for a in self.data))
        if key not in self.trainer.compiled:
            self.trainer.compiled[key] = build()
        return self.trainer.compiled[key]

    def init(self, num_seeds: int) -> Any:
        def build() -> Any:
            keys, hyper = self.abstract_inputs(num_seeds)
            jitted = jax.jit(over_seeds(self.trainer.init_one, seeded_args=(0, 1)),
                             in_shardings=(self.split, self.split), out_shardings=self.split)
            return jitted.lower(keys, hyper).compile()

        return self._cached(("init", num_seeds), build)

    def _lifted(self, fn: Callable[..., Any], num_shared: int, layout: str, width: int,
                num_seeds: int) -> Any:
        lifted = lift_over_seeds(fn, (0, 1, 2, 3), layout, num_devices=self.mesh.size,
                                 seeds_per_map_step=width)
        shardings = (self.split,) * 4 + (self.shared,) * (1 + num_shared)
        jitted = jax.jit(lifted, in_shardings=shardings, out_shardings=self.split)
        params, opt_state, diverged_at = self.abstract_state(num_seeds)
        keys, _ = self.abstract_inputs(num_seeds)
        start = self._abstract((), jnp.int32, self.shared)
        data = [self._abstract(a.shape, a.dtype, self.shared) for a in self.data[:num_shared]]
        return jitted.lower(params, opt_state, diverged_at, keys, start, *data).compile()

    def segment(self, num_points: int, layout: str, width: int, num_seeds: int) -> Any:
        return self._cached(
            ("segment", num_points, layout, width, num_seeds),
            lambda: self._lifted(self.trainer.segment_one(num_points), 4, layout, width,
                                 num_seeds))

    def steps(self, num_steps: int, layout: str, width: int, num_seeds: int) -> Any:
        return self._cached(
            ("steps", num_steps, layout, width, num_seeds),
            lambda: self._lifted(self.trainer.steps_one(num_steps), 2, layout, width,
                                 num_seeds))


# Layouts measured so far: conditions of one study that share a model (and differ in
# noise or learning rate) are timed once.
_MEASURED_LAYOUTS: dict[tuple[Any, ...], tuple[str, str]] = {}
# Steps and seeds of the timing probe that picks the layout of a convolutional model.
_PROBE_STEPS = 2
# How much faster map must be in the probe to be chosen over vmap.
_MAP_MARGIN = 1.25
_PROBE_SEEDS_PER_DEVICE = 8


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def choose_layout(
    placement: _Placement, layout: str, width: int, num_seeds: int, example: tuple[Any, ...],
) -> tuple[str, str]:
    """Resolve ``"auto"``: ``vmap`` for models without convolutions; for convolutional ones,
    ``map`` if a short timed probe on this device finds it clearly faster (by
    ``_MAP_MARGIN``), else ``vmap``.

    Returns ``(layout, reason)``.
    """
    if layout != "auto":
        return layout, f"layout {layout} set in the config"
    trainer = placement.trainer
    if trainer.convolutional is None:
        trainer.convolutional = is_convolutional(trainer.train_step_one, *example)
    if not trainer.convolutional:
        return "vmap", "auto: no convolution, so vmap"
    num_devices = placement.mesh.size
    unit = num_devices * width
    probe_seeds = _round_up(min(num_seeds, _PROBE_SEEDS_PER_DEVICE * num_devices), unit)
    memo = (trainer.model_key, probe_seeds, width, num_devices,
            placement.mesh.devices.flat[0].platform)
    if memo in _MEASURED_LAYOUTS:
        layout, reason = _MEASURED_LAYOUTS[memo]
        return layout, reason.replace("measured", "measured earlier in this process,", 1)
    keys = put(np.asarray(seed_keys(0, np.arange(probe_seeds))), placement.split)
    hyper = {n: put(np.full(probe_seeds, 1e-3, np.float32), placement.split)
             for n in placement.hyperparam_names}
    params, opt_state = placement.init(probe_seeds)(keys, hyper)
    diverged_at = put(np.full(probe_seeds, -1, np.int32), placement.split)
    start = put(np.asarray(0, np.int32), placement.shared)
    timings = {}
    for candidate in ("vmap", "map"):
        run = placement.steps(_PROBE_STEPS, candidate, width, probe_seeds)
        args = (params, opt_state, diverged_at, keys, start, *placement.data[:2])
        jax.block_until_ready(run(*args))  # first run: allocation, caches
        begin = time.perf_counter()
        jax.block_until_ready(run(*args))
        timings[candidate] = (time.perf_counter() - begin) / (_PROBE_STEPS * probe_seeds)
    candidates = list(timings)
    # The layouts round differently, and a long training run amplifies rounding: a choice
    # that flips with timing noise would make reruns of one config differ. So map must win
    # clearly; near a tie, vmap.
    faster = timings["map"] * _MAP_MARGIN < timings["vmap"]
    best = candidates[agreed(candidates.index("map" if faster else "vmap"))]
    reason = (f"auto: convolutional model, measured {probe_seeds} seeds x {_PROBE_STEPS} steps: "
              + ", ".join(f"{k} {1e3 * v:.2f} ms/seed-step" for k, v in timings.items())
              + f", so {best} (map needs to be {_MAP_MARGIN:g}x faster)"
              + (" (process 0's timings decide)" if jax.process_count() > 1 else ""))
    _MEASURED_LAYOUTS[memo] = (best, reason)
    return best, reason


def _balanced(num_seeds: int, chunk: int, unit: int) -> int:
    """The smallest chunk (whole rows of ``unit``) that needs no more chunks than ``chunk``
    does: S = 1024 in chunks of at most 65 becomes 16 chunks of 64, not 16 of 65 with
    padding."""
    num_chunks = -(-num_seeds // chunk)
    return _round_up(-(-num_seeds // num_chunks), unit)


def choose_chunk(
    placement: _Placement, layout: str, width: int, num_seeds: int, seeds_per_chunk: int,
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
        return chunk, f"{chunk} seeds per chunk set in the config (whole rows of {unit})"
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
            f"{plan.num_devices} device(s) ({plan.padded_seeds} padding); {plan.reason}")


def _checkpoint_template(placement: _Placement, num_seeds: int, num_points: int,
                         curve_names: Sequence[str]) -> dict[str, Any]:
    """The saved state's shapes, restored whole onto this process's first device: every
    host reads all seeds, then keeps its shards (the rows saved are the real seeds only,
    so a resumed run may chunk, pad or shard them differently)."""
    here = SingleDeviceSharding(jax.local_devices()[0])
    params, opt_state, diverged_at = placement.abstract_state(num_seeds)

    def local(shape: tuple[int, ...], dtype: Any) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct(shape, dtype, sharding=here)

    state = jax.tree_util.tree_map(lambda a: local(a.shape, a.dtype),
                                   (params, opt_state, diverged_at))
    return {
        "params": state[0], "opt_state": state[1], "diverged_at": state[2],
        "keys": local((num_seeds, 2), jnp.uint32),
        "curves": {n: local((num_seeds, num_points), jnp.float32) for n in curve_names},
    }


def train_seeds(
    model: nn.Module,
    optimizer: optax.GradientTransformation,
    x_train: np.ndarray | jax.Array,
    y_train: np.ndarray | jax.Array,
    *,
    num_seeds: int | None = None,
    steps: int,
    batch_size: int,
    seed: int = 0,
    kind: str = "classification",
    eval_every: int | None = None,
    x_eval: np.ndarray | jax.Array | None = None,
    y_eval: np.ndarray | jax.Array | None = None,
    seed_indices: Sequence[int] | np.ndarray | None = None,
    progress: ProgressFn | None = None,
    trainer: SeedTrainer | None = None,
    label_noise: float = 0.0,
    num_classes: int | None = None,
    hyperparams: dict[str, Sequence[float] | np.ndarray] | None = None,
    input_noise: float = 0.0,
    mesh: Mesh | None = None,
    seeds_per_chunk: int = 0,
    layout: str = "auto",
    seeds_per_map_step: int = 1,
    memory_budget_bytes: int | None = None,
    checkpoints: TrainingCheckpoints | None = None,
    checkpoint_every: int = 0,
    fingerprint: str = "",
) -> TrainResult:
    """Train ``num_seeds`` seeds of ``model`` with ``optimizer``, all in one compiled call.

    Seed ``i`` gets ``fold_in(PRNGKey(seed), i)``, split into named streams for
    initialisation, batch order (uniform draws with replacement) and dropout, so seed
    ``i`` of an ``S``-seed run equals seed ``i`` trained alone, sharded, chunked, laid out
    with ``lax.map`` or resumed from a checkpoint.

    Args:
      model: a flax linen module ``(B, *input_shape) -> (B, K)`` taking ``train``.
      optimizer: an optax gradient transformation.
      x_train: ``(N, *input_shape)`` training inputs, shared by all seeds.
      y_train: ``(N,)`` integer labels (classification) or float targets (regression).
      num_seeds: ``S``, training seeds ``0..S-1``; give this or ``seed_indices``.
      steps: optimizer steps per seed.
      batch_size: examples per step.
      seed: the root seed.
      kind: ``"classification"`` or ``"regression"``.
      eval_every: steps between curve points; must divide ``steps`` (default: ``steps``).
      x_eval: optional ``(M, *input_shape)`` set evaluated at every curve point.
      y_eval: its ``(M,)`` labels or targets.
      seed_indices: which seeds to train (default ``0..S-1``).
      progress: called between segments; ``None`` reports nothing.
      trainer: a :class:`SeedTrainer` from :func:`make_seed_trainer` to reuse compiled code.
      label_noise: share of training labels each seed sees replaced by a wrong class
        (a per-seed draw, see :func:`noisy_labels`); ignored when ``trainer`` is given.
      num_classes: number of classes, needed when ``label_noise`` > 0.
      hyperparams: name -> ``(S,)`` per-seed values of hyperparameters held in the state
        of an ``optax.inject_hyperparams`` optimizer (e.g. ``learning_rate``), so rows
        with different values train in the same compiled call.
      input_noise: standard deviation of Gaussian noise added to every training batch, a
        per-seed draw at every step; ignored when ``trainer`` is given.
      mesh: the devices the seed axis is split over (default: a ``seeds`` mesh of every
        device, see :func:`negres.sharding.seed_mesh`); the data is replicated.
      seeds_per_chunk: seeds per compiled call (rounded up to whole rows of devices);
        0 chooses from the compiled segment's memory analysis against the memory budget.
      layout: ``"vmap"``, ``"map"`` or ``"auto"`` (see :mod:`negres.layout`).
      seeds_per_map_step: seeds vmapped together at each ``lax.map`` step of ``"map"``.
      memory_budget_bytes: per-device budget of the automatic chunk size (default:
        :func:`memory_budget`).
      checkpoints: where to save and resume; ``None`` saves nothing.
      checkpoint_every: steps between checkpoints (rounded up to curve points; 0: at the
        first progress report a minute or more after the last save); the final state is
        always saved. Ignored without ``checkpoints``.
      fingerprint: what identifies the run in its checkpoints (for example the config);
        resuming from checkpoints of another fingerprint is refused.

    Returns:
      A :class:`TrainResult` with params and optimizer state ``(S, ...)`` and curves ``(S, T)``.
    """
    start = time.perf_counter()
    if checkpoints is not None and checkpoints.latest_step() is not None:
        # Refuse another run's checkpoints before anything compiles.
        indices = np.arange(num_seeds or 0) if seed_indices is None else seed_indices
        _check_resumable(checkpoints.metadata(), fingerprint,
                         np.asarray(indices, np.int64), steps, checkpoints)
    run = _prepare_run(
        model, optimizer, x_train, y_train, num_seeds=num_seeds, steps=steps,
        batch_size=batch_size, seed=seed, kind=kind, eval_every=eval_every, x_eval=x_eval,
        y_eval=y_eval, seed_indices=seed_indices, trainer=trainer, label_noise=label_noise,
        num_classes=num_classes, hyperparams=hyperparams, input_noise=input_noise, mesh=mesh,
        seeds_per_chunk=seeds_per_chunk, layout=layout, seeds_per_map_step=seeds_per_map_step,
        memory_budget_bytes=memory_budget_bytes, checkpoint_every=checkpoint_every,
        checkpointing=checkpoints is not None,
    )
    num_real, eval_every = run.seed_indices.size, run.eval_every
    curves = {new: np.full((num_real, run.num_points), np.nan, np.float32)
              for new in run.curve_names.values()}
    first_point, resumed_from = 0, None
    if checkpoints is not None and checkpoints.latest_step() is not None:
        # The metadata was checked against this run above, before anything compiled.
        resumed_from, states, curves = _resume(run, checkpoints, steps, list(curves))
        first_point = resumed_from // eval_every
    else:
        states = _initial_states(run)

    placement, chunk = run.placement, run.plan.seeds_per_chunk
    last_save = time.perf_counter()
    # A checkpoint of a run with other segment lengths may sit between this run's segments:
    # then segments as long as both grids allow.
    per_segment = math.gcd(run.points_per_segment, first_point) if first_point else \
        run.points_per_segment
    segment = run.segment if per_segment == run.points_per_segment else placement.segment(
        per_segment, run.plan.layout, run.plan.seeds_per_map_step, chunk)
    for point in range(first_point, run.num_points, per_segment):
        start_step = put(np.asarray(point * eval_every, np.int32), placement.shared)
        pending = []
        for c, keys in enumerate(run.chunk_keys):
            *state, pieces = segment(*states[c], keys, start_step, *placement.data)
            states[c] = tuple(state)
            pending.append(pieces)  # fetched after every chunk is dispatched, so they overlap
        for c, pieces in enumerate(pending):
            pieces = to_host(pieces)
            lo, hi = c * chunk, min((c + 1) * chunk, num_real)
            for old, new in run.curve_names.items():
                curves[new][lo:hi, point:point + per_segment] = pieces[old][:hi - lo]
        done = (point + per_segment) * eval_every
        if progress is not None:
            jax.block_until_ready(states)
            progress(done, steps, num_real, time.perf_counter() - start)
        due = done == steps or (done % (run.points_per_checkpoint * eval_every) == 0 and (
            checkpoint_every > 0 or time.perf_counter() - last_save >= _CHECKPOINT_SECONDS))
        # Saving is collective: process 0's clock decides for every process.
        if checkpoints is not None and agreed(int(due)):
            # Saved replicated: every host can read every seed back, whatever the mesh then.
            state = put({**_gather_state(states, num_real), "keys": run.keys, "curves": curves},
                        placement.shared)
            checkpoints.save(done, state, {"step": done, "steps": steps,
                                           "fingerprint": fingerprint,
                                           "seed_indices": run.seed_indices.tolist()})
            last_save = time.perf_counter()
    if run.plan.num_chunks == 1 and not run.plan.padded_seeds and jax.process_count() == 1:
        final = dict(zip(("params", "opt_state", "diverged_at"), states[0], strict=True))
    else:
        final = _gather_state(states, num_real)
    jax.block_until_ready(final)
    return TrainResult(
        params=final["params"],
        opt_state=final["opt_state"],
        seed_indices=run.seed_indices,
        curves=curves,
        curve_steps=eval_every * np.arange(1, run.num_points + 1),
        train_time_s=time.perf_counter() - start,
        diverged_at=np.asarray(to_host(final["diverged_at"])),
        plan=run.plan._asdict() | {"resumed_from_step": resumed_from},
    )


class _Run(NamedTuple):
    """A training run checked, placed and compiled: everything but the training itself."""

    placement: _Placement
    plan: Plan
    seed_indices: np.ndarray
    keys: np.ndarray  # (S, 2) every seed's key, on the host
    hyperparams: dict[str, np.ndarray]  # name -> (S,)
    chunk_rows: list[np.ndarray]  # per chunk, the seed rows it holds (padding repeats the last)
    chunk_keys: list[jax.Array]
    curve_names: dict[str, str]  # segment output -> curve name
    eval_every: int
    num_points: int
    points_per_segment: int
    points_per_checkpoint: int
    init: Any
    segment: Any


def _prepare_run(
    model: nn.Module, optimizer: optax.GradientTransformation, x_train: Any, y_train: Any, *,
    num_seeds: int | None, steps: int, batch_size: int, seed: int, kind: str,
    eval_every: int | None, x_eval: Any, y_eval: Any, seed_indices: Any,
    trainer: SeedTrainer | None, label_noise: float, num_classes: int | None,
    hyperparams: dict[str, Any] | None, input_noise: float, mesh: Mesh | None,
    seeds_per_chunk: int, layout: str, seeds_per_map_step: int,
    memory_budget_bytes: int | None, checkpoint_every: int, checkpointing: bool,
) -> _Run:
    if seed_indices is None:
        if num_seeds is None:
            raise ConfigError("num_seeds", None, "an integer >= 1 (or pass seed_indices)")
        seed_indices = np.arange(num_seeds)
    seed_indices = np.asarray(seed_indices, dtype=np.int64)
    eval_every = steps if eval_every is None else eval_every
    check_training_arguments(num_seeds=int(seed_indices.size), steps=steps,
                             batch_size=batch_size, eval_every=eval_every,
                             num_train=int(np.shape(x_train)[0]))
    check_scale_arguments(seeds_per_chunk=seeds_per_chunk, layout=layout,
                          seeds_per_map_step=seeds_per_map_step,
                          checkpoint_every=checkpoint_every)
    num_real = int(seed_indices.size)
    per_seed = {k: np.asarray(v, np.float32) for k, v in (hyperparams or {}).items()}
    for name, values in per_seed.items():
        if values.shape != seed_indices.shape:
            raise ConfigError(f"hyperparams.{name}", values.shape,
                              f"one value per seed, shape {seed_indices.shape}")
    has_eval = x_eval is not None
    if trainer is None:
        trainer = make_seed_trainer(
            model, optimizer, kind=kind, input_shape=np.shape(x_train)[1:],
            batch_size=batch_size, eval_every=eval_every, has_eval=has_eval,
            label_noise=label_noise, num_classes=num_classes, input_noise=input_noise,
        )
    mesh = seed_mesh() if mesh is None else mesh
    x = np.asarray(x_train, np.float32)
    y = np.asarray(y_train)
    x_ev = np.asarray(x_eval, np.float32) if has_eval else np.zeros((0,), np.float32)
    y_ev = np.asarray(y_eval) if has_eval else np.zeros((0,), y.dtype)
    placement = _Placement(trainer, mesh, put((x, y, x_ev, y_ev), replicated(mesh)), per_seed)

    num_points = steps // eval_every
    between_checkpoints = checkpoint_points(checkpoint_every if checkpointing else 0,
                                            eval_every, num_points)
    per_segment = math.gcd(points_per_segment(num_points), between_checkpoints)

    example = (*jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype),
        placement.abstract_state(1)[:2]), jax.ShapeDtypeStruct((2,), jnp.uint32),
        jax.ShapeDtypeStruct((), jnp.int32), *placement.data[:2])
    chosen, layout_reason = choose_layout(placement, layout, seeds_per_map_step, num_real,
                                          example)
    width = seeds_per_map_step if chosen == "map" else 1
    budget = memory_budget(mesh) if memory_budget_bytes is None else memory_budget_bytes
    budget = agreed(-1 if budget is None else budget)  # every process runs the broadcast
    budget = None if budget < 0 else budget
    chunk, chunk_reason = choose_chunk(placement, chosen, width, num_real, seeds_per_chunk,
                                       per_segment, budget)
    num_chunks = -(-num_real // chunk)
    plan = Plan(layout=chosen, seeds_per_map_step=width, seeds_per_chunk=chunk,
                num_chunks=num_chunks, num_devices=mesh.size,
                padded_seeds=num_chunks * chunk - num_real,
                reason=f"{layout_reason}; {chunk_reason}")
    logging.info("negres: %s", plan_description(plan))

    # Padding rows repeat the last seed: they compute what it computes and are dropped.
    rows = np.concatenate([np.arange(num_real),
                           np.full(plan.padded_seeds, num_real - 1, np.int64)])
    keys = np.asarray(seed_keys(seed, seed_indices))
    chunk_rows = [rows[c * chunk:(c + 1) * chunk] for c in range(num_chunks)]
    curve_names = {"train_loss": "train_loss", "train_score": f"train_{trainer.score_name}"}
    if has_eval:
        curve_names |= {"eval_loss": "eval_loss", "eval_score": f"eval_{trainer.score_name}"}
    return _Run(
        placement=placement, plan=plan, seed_indices=seed_indices, keys=keys,
        hyperparams=per_seed, chunk_rows=chunk_rows,
        chunk_keys=[put(keys[r], placement.split) for r in chunk_rows],
        curve_names=curve_names, eval_every=eval_every, num_points=num_points,
        points_per_segment=per_segment, points_per_checkpoint=between_checkpoints,
        init=placement.init(chunk), segment=placement.segment(per_segment, chosen, width, chunk),
    )


def compile_training(*args: Any, **kwargs: Any) -> Plan:
    """Check, place and compile what :func:`train_seeds` with the same arguments would run,
    choosing its layout and chunk size, without training; returns the :class:`Plan`.

    With a ``trainer`` passed in, a later :func:`train_seeds` call reuses the compiled code,
    which keeps compilation out of timings.
    """
    bound = inspect.signature(train_seeds).bind(*args, **kwargs)
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    checkpointing = arguments.pop("checkpoints") is not None
    for name in ("progress", "fingerprint"):
        arguments.pop(name)
    positional = [arguments.pop(n) for n in ("model", "optimizer", "x_train", "y_train")]
    return _prepare_run(*positional, checkpointing=checkpointing, **arguments).plan


def _initial_states(run: _Run) -> list[tuple[Any, Any, Any]]:
    """Every chunk's freshly initialised ``(params, opt_state, diverged_at)``."""
    split = run.placement.split
    states = []
    for rows, keys in zip(run.chunk_rows, run.chunk_keys, strict=True):
        hyper = put({n: v[rows] for n, v in run.hyperparams.items()}, split)
        params, opt_state = run.init(keys, hyper)
        states.append((params, opt_state, put(np.full(rows.size, -1, np.int32), split)))
    return states


def _resume(
    run: _Run, checkpoints: TrainingCheckpoints, steps: int, curve_names: list[str],
) -> tuple[int, list[tuple[Any, Any, Any]], dict[str, np.ndarray]]:
    """``(step, every chunk's state, curves so far)`` from the newest checkpoint."""
    num_real = run.seed_indices.size
    template = _checkpoint_template(run.placement, num_real, run.num_points, curve_names)
    saved, metadata = checkpoints.restore(None, template)
    saved = jax.tree_util.tree_map(lambda leaf: np.array(leaf, copy=True), saved)
    if not np.array_equal(saved["keys"], run.keys):
        raise WorkdirError(f"the checkpoints in {checkpoints.directory} were trained with "
                           "another root seed; pass --overwrite or choose another --workdir")
    state = (saved["params"], saved["opt_state"], saved["diverged_at"])
    states = [put(jax.tree_util.tree_map(lambda leaf, r=rows: leaf[r], state),
                  run.placement.split) for rows in run.chunk_rows]
    step = int(metadata["step"])
    logging.info("negres: resumed from the checkpoint at step %d of %d in %s",
                 step, steps, checkpoints.directory)
    return step, states, saved["curves"]


def _gather_state(states: list[tuple[Any, Any, Any]], num_real: int) -> dict[str, Any]:
    """The chunks' ``(params, opt_state, diverged_at)`` joined on the host, padding dropped."""
    joined = jax.tree_util.tree_map(lambda *leaves: np.concatenate(leaves)[:num_real],
                                    *[to_host(s) for s in states])
    return dict(zip(("params", "opt_state", "diverged_at"), joined, strict=True))


def _check_resumable(metadata: dict[str, Any], fingerprint: str, seed_indices: np.ndarray,
                     steps: int, checkpoints: TrainingCheckpoints) -> None:
    where = f"the checkpoints in {checkpoints.directory}"
    if metadata.get("fingerprint") != fingerprint:
        raise WorkdirError(f"{where} belong to a different study config; pass --overwrite to "
                           "start again, or choose another --workdir")
    if list(metadata.get("seed_indices", [])) != seed_indices.tolist():
        raise WorkdirError(f"{where} hold seeds {metadata.get('seed_indices')}, not "
                           f"{seed_indices.tolist()}; pass --overwrite or choose another --workdir")
    if metadata.get("steps") != steps:
        raise WorkdirError(f"{where} are of a {metadata.get('steps')}-step run, not {steps}; "
                           "pass --overwrite or choose another --workdir")
