"""negres: vectorized seed studies in JAX.

Train many seeds of a model in one ``jit(vmap(scan))`` call, evaluate every seed with
pure functions, and compare conditions with statistics that can say "inconclusive".
Every stacked object has the seed axis first.

Importing negres is light: the names below are loaded on first use, so ``import negres``
does not pull in scikit-learn, TFDS or matplotlib until something needs them (nor orbax
before ``negres.train``, which saves checkpoints with it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it. One public way to do each thing: internals
# (SeedTrainer, make_seed_trainer, Plan, compile_training) and negres's own shortcuts
# (negres.training.builtin.train_seeds) stay importable from their modules only.
_ATTRIBUTES: dict[str, str] = {
    # training: the open core
    "SeedProgram": "negres.training.contract",
    "LossState": "negres.training.contract",
    "loss_program": "negres.training.contract",
    "train": "negres.training.driver",
    "TrainResult": "negres.training.driver",
    "Scale": "negres.training.plan",
    "Checkpointing": "negres.training.checkpoint",
    "EarlyStopping": "negres.training.step",
    "TrainingProgress": "negres.training.events",
    "SavedRun": "negres.training.checkpoint",
    "ResumeError": "negres.errors",
    "DiskFullError": "negres.errors",
    "linen_program": "negres.training.linen",
    "linen_apply": "negres.training.linen",
    "nnx_program": "negres.training.nnx",
    "nnx_apply": "negres.training.nnx",
    "TrainingCheckpoints": "negres.training.checkpoint",
    "progress_reporter": "negres.reporting.progress",
    "load_results": "negres.reporting.tidy",
    "LoadedResults": "negres.reporting.tidy",
    "LabelledArray": "negres.reporting.tidy",
    # negres's own models and losses on the same contract (trained by negres.train)
    "builtin_program": "negres.training.builtin",
    "builtin_data": "negres.training.builtin",
    "make_evaluate": "negres.training.builtin",
    # the seed axis and where it lives
    "over_seeds": "negres.seeds",
    "num_seeds_of": "negres.seeds",
    "seed_key": "negres.seeds",
    "seed_keys": "negres.seeds",
    "stream_key": "negres.seeds",
    "take_seed": "negres.seeds",
    "seed_mesh": "negres.sharding",
    "use_all_cores": "negres.sharding",
    "CoreSetup": "negres.sharding",
    "initialize_distributed": "negres.sharding",
    "ArgumentError": "negres.errors",
    "ConfigError": "negres.errors",
    # evaluators on any model's trained seeds
    "evaluate": "negres.evaluators",
    "Evaluator": "negres.evaluators.protocol",
    "Evaluation": "negres.evaluators.protocol",
    "EvaluationContext": "negres.evaluators.protocol",
    "Metric": "negres.evaluators.protocol",
    "Claim": "negres.statistics.claims",
    # tasks, evaluators and statistics
    "TASKS": "negres.tasks",
    "Task": "negres.tasks",
    "load_task": "negres.tasks",
}
# Short names of the modules a researcher reaches for, as attributes of negres.
_SUBMODULES: dict[str, str] = {
    "agreement": "negres.measures.agreement",
    "evaluators": "negres.evaluators",
    "interpretability": "negres.measures.interpretability",
    "metrics": "negres.measures.metrics",
    "models": "negres.models",
    "saliency": "negres.measures.saliency",
    "shifts": "negres.tasks.shifts",
    "statistics": "negres.statistics",
    "training": "negres.training",
}

__all__ = [
    "TASKS",
    "ArgumentError",
    "Checkpointing",
    "Claim",
    "ConfigError",
    "CoreSetup",
    "DiskFullError",
    "EarlyStopping",
    "Evaluation",
    "EvaluationContext",
    "Evaluator",
    "LabelledArray",
    "LoadedResults",
    "LossState",
    "Metric",
    "ResumeError",
    "SavedRun",
    "Scale",
    "SeedProgram",
    "Task",
    "TrainResult",
    "TrainingCheckpoints",
    "TrainingProgress",
    "agreement",
    "builtin_data",
    "builtin_program",
    "evaluate",
    "evaluators",
    "initialize_distributed",
    "interpretability",
    "linen_apply",
    "linen_program",
    "load_results",
    "load_task",
    "loss_program",
    "make_evaluate",
    "metrics",
    "models",
    "nnx_apply",
    "nnx_program",
    "num_seeds_of",
    "over_seeds",
    "progress_reporter",
    "saliency",
    "seed_key",
    "seed_keys",
    "seed_mesh",
    "shifts",
    "statistics",
    "stream_key",
    "take_seed",
    "train",
    "training",
    "use_all_cores",
]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(_SUBMODULES[name])
    if name in _ATTRIBUTES:
        value = getattr(importlib.import_module(_ATTRIBUTES[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'negres' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from negres import evaluators, models, statistics, training
    from negres.errors import ArgumentError, ConfigError, DiskFullError, ResumeError
    from negres.evaluators import evaluate
    from negres.evaluators.protocol import Evaluation, EvaluationContext, Evaluator, Metric
    from negres.measures import agreement, interpretability, metrics, saliency
    from negres.seeds import num_seeds_of, over_seeds, seed_key, seed_keys, stream_key, take_seed
    from negres.sharding import CoreSetup, initialize_distributed, seed_mesh, use_all_cores
    from negres.statistics.claims import Claim
    from negres.tasks import TASKS, Task, load_task, shifts
    from negres.training.builtin import builtin_data, builtin_program, make_evaluate
    from negres.training.checkpoint import Checkpointing, SavedRun, TrainingCheckpoints
    from negres.training.contract import LossState, SeedProgram, loss_program
    from negres.training.driver import TrainResult, train
    from negres.training.events import TrainingProgress
    from negres.training.linen import linen_apply, linen_program
    from negres.training.nnx import nnx_apply, nnx_program
    from negres.training.plan import Scale
    from negres.training.step import EarlyStopping
