"""negres's own models, losses and training-data options as one adapter on the open contract.

The command line trains its built-in flax models (:mod:`negres.models`, which take
``train``) on a task's ``(x, y)`` with the task kind's loss (:mod:`negres.measures.losses`),
optionally with per-seed label noise and input noise. All of it is a
:class:`~negres.training.contract.SeedProgram` built here and trained by
:func:`negres.train`, the call a library user makes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from negres.errors import ArgumentError
from negres.measures.losses import LOSSES, SCORE_NAMES
from negres.seeds import stream_key
from negres.training.checks import INPUT_NOISE, LABEL_NOISE
from negres.training.contract import SeedProgram, loss_program
from negres.training.driver import TrainResult, train
from negres.training.linen import linen_apply


def make_evaluate(
    model: nn.Module, kind: str
) -> Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    """One seed's ``(params, x, y) -> (loss, score)`` on a whole set (score: accuracy or MSE).

    The forward pass is :func:`negres.linen_apply` of the model (the built-in models take
    ``train``, which it finds)."""
    apply_fn = linen_apply(model)
    loss_fn = LOSSES[kind]

    def evaluate(params: Any, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        return loss_fn(apply_fn(params, x), y)

    return evaluate


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
    """Raise :class:`ArgumentError` unless ``rate`` is a share in [0, 1) usable for ``kind``
    (the bound is :data:`negres.training.checks.LABEL_NOISE`'s, the config field's too)."""
    LABEL_NOISE.check_argument(rate)
    if rate > 0 and (kind != "classification" or not num_classes or num_classes < 2):
        raise ArgumentError("label_noise", rate,
                            "0 for regression tasks (label noise needs classes)")


def check_input_noise(std: float) -> None:
    """Raise :class:`ArgumentError` unless ``std`` is a finite number >= 0 (0 is off)."""
    INPUT_NOISE.check_argument(std)


def builtin_data(x: Any, y: Any, *, label_noise: float = 0.0) -> dict[str, np.ndarray]:
    """A task's arrays as the built-in program's data: ``{"x", "y"}``, plus each example's
    ``"index"`` when label noise needs to know which example it flips."""
    data = {"x": np.asarray(x, np.float32), "y": np.asarray(y)}
    if label_noise > 0:
        data["index"] = np.arange(data["x"].shape[0], dtype=np.int32)
    return data


def builtin_program(
    model: nn.Module,
    optimizer: optax.GradientTransformation,
    *,
    kind: str = "classification",
    label_noise: float = 0.0,
    num_classes: int | None = None,
    input_noise: float = 0.0,
) -> SeedProgram:
    """The program of a built-in model: the task kind's loss, per-seed label and input noise.

    Batches are ``{"x": (B, *input_shape), "y": (B,)}`` (:func:`builtin_data`). Label noise
    (classification, needs ``num_classes``) gives each seed its own fixed noisy copy of the
    labels (:func:`noisy_labels`): the seed's ``label_noise`` key is made at init and rides
    in the model state. Input noise adds ``N(0, input_noise^2)`` to each training batch from
    the seed's ``input_noise`` stream. Evaluation is clean. Curves: ``loss`` and the kind's
    score (``accuracy`` or ``mse``).
    """
    if kind not in LOSSES:
        raise ArgumentError("kind", kind, f"one of {sorted(LOSSES)}")
    check_label_noise(label_noise, kind, num_classes)
    check_input_noise(input_noise)
    loss_fn, score = LOSSES[kind], SCORE_NAMES[kind]
    evaluate_set = make_evaluate(model, kind)

    def init(key: jax.Array, batch: dict[str, jax.Array]) -> tuple[Any, Any]:
        x = jnp.zeros((1, *batch["x"].shape[1:]), jnp.float32)
        params = model.init(stream_key(key, "init"), x, train=False)["params"]
        model_state = {"label_noise_key": stream_key(key, "label_noise")} if label_noise else {}
        return params, model_state

    def loss(params, model_state, batch, rngs):
        x, y = batch["x"], batch["y"]
        if label_noise > 0:
            y = noisy_labels(model_state["label_noise_key"], batch["index"], y, label_noise,
                             num_classes)
        if input_noise > 0:
            x = x + input_noise * jax.random.normal(rngs["input_noise"], x.shape, x.dtype)
        outputs = model.apply({"params": params}, x, train=True,
                              rngs={"dropout": rngs["dropout"]})
        value, score_value = loss_fn(outputs, y)
        return value, (model_state, {score: score_value})

    def evaluate(params, model_state, batch):
        value, score_value = evaluate_set(params, batch["x"], batch["y"])
        return {"loss": value, score: score_value}

    streams = ("dropout", "input_noise") if input_noise > 0 else ("dropout",)
    return loss_program(init, loss, optimizer, evaluate=evaluate, streams=streams,
                        # Conditions that differ only in noise share one layout timing.
                        name=f"builtin:{model!r}")


def train_seeds(
    model: nn.Module,
    optimizer: optax.GradientTransformation,
    x_train: np.ndarray | jax.Array,
    y_train: np.ndarray | jax.Array,
    *,
    kind: str = "classification",
    x_eval: np.ndarray | jax.Array | None = None,
    y_eval: np.ndarray | jax.Array | None = None,
    label_noise: float = 0.0,
    num_classes: int | None = None,
    input_noise: float = 0.0,
    program: SeedProgram | None = None,
    **kwargs: Any,
) -> TrainResult:
    """``negres.train(builtin_program(model, optimizer, ...), builtin_data(x_train, y_train),
    eval_data=builtin_data(x_eval, y_eval), **kwargs)``: a shortcut for negres's own tests
    and benchmarks, not part of the public namespace (:func:`negres.train` is the one way
    to train). ``kwargs`` are :func:`negres.train`'s (``num_seeds``, ``steps``,
    ``batch_size``, ``scale``, ``checkpointing``, ...).

    ``program`` reuses an already built :func:`builtin_program` (and so its compiled code).
    """
    if program is None:
        program = builtin_program(model, optimizer, kind=kind, label_noise=label_noise,
                                  num_classes=num_classes, input_noise=input_noise)
    eval_data = None if x_eval is None else builtin_data(x_eval, y_eval)
    return train(program, builtin_data(x_train, y_train, label_noise=label_noise),
                 eval_data=eval_data, **kwargs)


__all__ = ["builtin_data", "builtin_program", "check_input_noise", "check_label_noise",
           "make_evaluate", "noisy_labels", "train_seeds"]
