"""Toy-size configs shared by the tests."""

import importlib.util
from pathlib import Path

from ml_collections import ConfigDict

REPO = Path(__file__).resolve().parents[1]
# main.py's arguments for a study small enough to run several times in one test: the default
# config with every default evaluator, 2 seeds, 40 steps, checkpoints every 10.
LIGHT = ["--config", "configs/default.py", "--config.num_seeds=2", "--config.train.steps=40",
         "--config.train.eval_every=10", "--config.train.checkpoint_every=10",
         "--config.model.hidden_sizes=(16,)",
         "--config.evaluation.attributions.attribution_examples=4",
         "--config.evaluation.attributions.save_attributions=2",
         "--config.evaluation.attributions.ig_steps=4",
         "--config.evaluation.attributions.smoothgrad_samples=2",
         "--config.evaluation.robustness.severities=(0.0,0.3)",
         "--config.evaluation.attributions.randomization_check=False",
         "--config.stats.num_resamples=200", "--config.stats.num_permutations=200"]


def load_config(name: str, arg: str | None = None) -> ConfigDict:
    """``configs/NAME.py``'s ``get_config(arg)`` (``arg`` as after ``NAME.py:`` on the CLI)."""
    path = REPO / "configs" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"config_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config() if arg is None else module.get_config(arg)


def tiny_config() -> ConfigDict:
    """The default study at toy size: 3 seeds, 60 steps, few examples, a small MLP."""
    config = load_config("default")
    config.num_seeds = 3
    config.model.hidden_sizes = (16,)
    config.train.steps = 60
    config.train.eval_every = 30
    config.train.batch_size = 32
    config.evaluation.robustness.severities = (0.0, 0.3)
    config.evaluation.attributions.update({
        "attribution_methods": ("integrated_gradients", "smoothgrad"),
        "attribution_examples": 8, "ig_steps": 8, "smoothgrad_samples": 4,
        "max_sensitivity": True, "sensitivity_samples": 2, "save_attributions": 4})
    config.stats.num_resamples = 500
    config.stats.num_permutations = 500
    return config
