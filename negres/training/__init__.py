"""Training: many seeds of one program in one compiled call.

The open contract (:mod:`~negres.training.contract`) is what a user hands negres: a
:class:`SeedProgram` of pure per-seed functions, usually built by :func:`loss_program`
from an init, a loss and an optax optimizer, or from a flax module by
:mod:`~negres.training.linen` or :mod:`~negres.training.nnx`. :mod:`~negres.training.step`
wraps the user's step in what every seed needs (batches with replacement or in epochs,
random streams, divergence freezing, early stopping, curves); :mod:`~negres.training.plan`
decides where seeds live (sharding, ``vmap`` or ``lax.map`` layout, memory-bounded
chunks); :mod:`~negres.training.driver` runs it (:func:`train`: the rows of a grid from
:mod:`~negres.training.grid`, argument checks from :mod:`~negres.training.checks`,
segments reported live as :mod:`~negres.training.events`, checkpoints via
:mod:`~negres.training.checkpoint` checked against a run's
:mod:`~negres.training.fingerprint` before resuming, batches fed from
:mod:`~negres.training.pipeline` for data larger than memory). A call says where its
seeds run with one :class:`Scale` (``plan``) and where it saves with one
:class:`Checkpointing` (``checkpoint``).
:mod:`~negres.training.builtin` is negres's own models and losses as one program, the one
the command line trains.

Layer: training. Imports the foundations and measures, tasks and models; never
evaluators, statistics, reporting or the study.
"""

from negres.errors import ResumeError
from negres.training.checkpoint import Checkpointing
from negres.training.contract import (
    LossState,
    SeedProgram,
    loss_program,
    set_hyperparams,
)
from negres.training.driver import TrainResult, train
from negres.training.events import TrainingProgress
from negres.training.linen import linen_apply, linen_program
from negres.training.nnx import nnx_apply, nnx_program
from negres.training.plan import Scale
from negres.training.step import EarlyStopping

# The engine's internals (SeedTrainer, make_seed_trainer, Plan, compile_training) are
# importable from their modules (negres.training.step, .plan, .driver), not from here.
__all__ = [
    "Checkpointing",
    "EarlyStopping",
    "LossState",
    "ResumeError",
    "Scale",
    "SeedProgram",
    "TrainResult",
    "TrainingProgress",
    "linen_apply",
    "linen_program",
    "loss_program",
    "nnx_apply",
    "nnx_program",
    "set_hyperparams",
    "train",
]
