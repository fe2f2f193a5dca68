"""Train many seeds of one model in one compiled call.

The training of one seed is a pure function: ``init_one(key)`` builds parameters and
optimizer state; ``run_segment_one`` is a ``lax.scan`` over curve points, each a
``lax.scan`` over ``eval_every`` optimizer steps. Both are lifted to all seeds with
:func:`negres.seeds.over_seeds` and jitted once. Segments exist only so that a long run
can report progress between them; they do not change the numbers, because every draw
is addressed by ``(seed, stream, step)`` rather than by how far a key was split.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from negres.errors import ConfigError
from negres.losses import LOSSES, SCORE_NAMES
from negres.seeds import over_seeds, seed_keys, stream_key

# Called between segments with (steps_done, total_steps, num_seeds, elapsed_seconds).
ProgressFn = Callable[[int, int, int, float], None]

# Aim for about this many progress reports in a run.
_PROGRESS_REPORTS = 10


class TrainResult(NamedTuple):
    """What :func:`train_seeds` returns; every array has the seed axis first.

    Attributes:
      params: trained parameters, every leaf ``(S, ...)``.
      opt_state: optimizer state, every leaf ``(S, ...)``.
      seed_indices: ``(S,)`` the seed index of each row (seed ``i`` uses ``fold_in(root, i)``).
      curves: name -> ``(S, T)``: ``train_loss`` and ``train_<score>`` averaged over the
        ``eval_every`` steps before each point, and ``eval_loss``/``eval_<score>`` on the
        evaluation set at each point when one was given.
      curve_steps: ``(T,)`` the optimizer step after which each curve point was taken.
      train_time_s: wall time of initialisation and training, compilation included.
    """

    params: Any
    opt_state: Any
    seed_indices: np.ndarray
    curves: dict[str, np.ndarray]
    curve_steps: np.ndarray
    train_time_s: float


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


class SeedTrainer(NamedTuple):
    """The compiled pieces of a training run, built once and reusable across calls.

    ``init(keys (S, 2), hyperparams {name: (S,)}) -> (params, opt_state)``;
    ``segment[num_points](params, opt_state, keys, start_step, x, y, x_eval, y_eval)
    -> (params, opt_state, curves name -> (S, num_points))``.
    """

    init: Callable[..., Any]
    segment: Callable[[int], Callable[..., Any]]
    score_name: str
    has_eval: bool


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
    """Build the jitted, seed-lifted init and training segments for one model and optimizer.

    ``label_noise`` > 0 (classification only, needs ``num_classes``) trains each seed on
    its own noisy copy of the labels (see :func:`noisy_labels`); evaluation stays clean.
    ``input_noise`` > 0 adds ``N(0, input_noise^2)`` to every training batch, drawn from the
    seed's own ``input_noise`` stream at each step (noisy training data; evaluation is clean).
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

    def run_point(carry, point_start, key, x, y, x_eval, y_eval):
        def one_step(c, step):
            params, opt_state = c
            params, opt_state, loss, score = train_step(params, opt_state, key, step, x, y)
            return (params, opt_state), (loss, score)

        steps = point_start + jnp.arange(eval_every)
        carry, (losses, scores) = jax.lax.scan(one_step, carry, steps)
        point = {"train_loss": losses.mean(), "train_score": scores.mean()}
        if has_eval:
            point["eval_loss"], point["eval_score"] = evaluate(carry[0], x_eval, y_eval)
        return carry, point

    def make_segment_one(num_points: int):
        def segment_one(params, opt_state, key, start_step, x, y, x_eval, y_eval):
            starts = start_step + eval_every * jnp.arange(num_points)
            (params, opt_state), curves = jax.lax.scan(
                lambda c, s: run_point(c, s, key, x, y, x_eval, y_eval),
                (params, opt_state),
                starts,
            )
            return params, opt_state, curves

        return jax.jit(over_seeds(segment_one, seeded_args=(0, 1, 2)))

    compiled: dict[int, Callable[..., Any]] = {}

    def segment(num_points: int) -> Callable[..., Any]:
        if num_points not in compiled:
            compiled[num_points] = make_segment_one(num_points)
        return compiled[num_points]

    return SeedTrainer(
        init=jax.jit(over_seeds(init_one, seeded_args=(0, 1))),
        segment=segment,
        score_name=SCORE_NAMES[kind],
        has_eval=has_eval,
    )


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
) -> TrainResult:
    """Train ``num_seeds`` seeds of ``model`` with ``optimizer`` in one compiled call.

    Seed ``i`` gets ``fold_in(PRNGKey(seed), i)``, split into named streams for
    initialisation, batch order (uniform draws with replacement) and dropout, so seed
    ``i`` of an ``S``-seed run equals seed ``i`` trained alone.

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
      input_noise: standard deviation of Gaussian noise added to every training batch, a
        per-seed draw at every step; ignored when ``trainer`` is given.
      hyperparams: name -> ``(S,)`` per-seed values of hyperparameters held in the state
        of an ``optax.inject_hyperparams`` optimizer (e.g. ``learning_rate``), so rows
        with different values train in the same compiled call.

    Returns:
      A :class:`TrainResult` with params and optimizer state ``(S, ...)`` and curves ``(S, T)``.
    """
    start = time.perf_counter()
    if seed_indices is None:
        if num_seeds is None:
            raise ConfigError("num_seeds", None, "an integer >= 1 (or pass seed_indices)")
        seed_indices = np.arange(num_seeds)
    seed_indices = np.asarray(seed_indices, dtype=np.int64)
    eval_every = steps if eval_every is None else eval_every
    check_training_arguments(
        num_seeds=int(seed_indices.size),
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        num_train=int(np.shape(x_train)[0]),
    )
    has_eval = x_eval is not None
    if trainer is None:
        trainer = make_seed_trainer(
            model,
            optimizer,
            kind=kind,
            input_shape=np.shape(x_train)[1:],
            batch_size=batch_size,
            eval_every=eval_every,
            has_eval=has_eval,
            label_noise=label_noise,
            num_classes=num_classes,
            input_noise=input_noise,
        )
    x = jnp.asarray(x_train, jnp.float32)
    y = jnp.asarray(y_train)
    x_ev = jnp.asarray(x_eval, jnp.float32) if has_eval else jnp.zeros((0,), jnp.float32)
    y_ev = jnp.asarray(y_eval) if has_eval else jnp.zeros((0,), y.dtype)

    keys = seed_keys(seed, seed_indices)
    per_seed = {k: jnp.asarray(v, jnp.float32) for k, v in (hyperparams or {}).items()}
    for name, values in per_seed.items():
        if values.shape != seed_indices.shape:
            raise ConfigError(f"hyperparams.{name}", values.shape,
                              f"one value per seed, shape {seed_indices.shape}")
    params, opt_state = trainer.init(keys, per_seed)
    num_points = steps // eval_every
    per_segment = points_per_segment(num_points)
    segment = trainer.segment(per_segment)
    pieces: list[dict[str, jax.Array]] = []
    for first_point in range(0, num_points, per_segment):
        start_step = jnp.asarray(first_point * eval_every, jnp.int32)
        params, opt_state, curves = segment(params, opt_state, keys, start_step, x, y, x_ev, y_ev)
        pieces.append(curves)
        if progress is not None:
            jax.block_until_ready(params)
            done = (first_point + per_segment) * eval_every
            progress(done, steps, int(seed_indices.size), time.perf_counter() - start)
    jax.block_until_ready(params)
    score = trainer.score_name
    renamed = {"train_loss": "train_loss", "train_score": f"train_{score}"}
    if has_eval:
        renamed |= {"eval_loss": "eval_loss", "eval_score": f"eval_{score}"}
    curves_out = {
        new: np.concatenate([np.asarray(p[old]) for p in pieces], axis=1)
        for old, new in renamed.items()
    }
    return TrainResult(
        params=params,
        opt_state=opt_state,
        seed_indices=seed_indices,
        curves=curves_out,
        curve_steps=eval_every * np.arange(1, num_points + 1),
        train_time_s=time.perf_counter() - start,
    )
