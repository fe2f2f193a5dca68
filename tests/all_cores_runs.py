"""Run by tests/test_all_cores.py: the default config and every study's config at toy size,
run as ``main.py`` runs them (``negres.use_all_cores()`` before anything else), on the
devices that gives; prints one JSON line with every condition's per-seed numbers.

``python tests/all_cores_runs.py [NUM_DEVICES]``: without an argument, one CPU device per
core as main.py does; ``JAX_NUM_CPU_DEVICES=1`` gives the one-device reference.
"""

import json
import sys
import tempfile
import time
from pathlib import Path

from negres import sharding

SETUP = sharding.use_all_cores(int(sys.argv[1]) if len(sys.argv) > 1 else None)

import jax  # noqa: E402  (after use_all_cores, as in main.py)
import numpy as np  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_studies  # noqa: E402
from tests_configs import load_config, tiny_config  # noqa: E402

from negres.results import load_results_file  # noqa: E402
from negres.study import experiment  # noqa: E402

SEEDS = 4  # two per device on two cores: the seed axis is split, not padded


def toy(config, condition: int | None = 0):
    """Fewer seeds and steps than test_studies' toy size, one condition, and only the
    ``performance`` evaluator: each study's task and model trained on the devices at a
    fraction of the compile time. The default config keeps every default evaluator
    (``condition=None``), so each runs spread over the devices too."""
    config.num_seeds = SEEDS
    config.train.steps = 20
    config.train.eval_every = 10
    if condition is not None:
        config.evaluation.evaluators = ()
    if config.conditions:
        kept = {k: v for k, v in config.conditions[condition].items()
                if k not in ("reference", "compared_with")}  # names no condition kept
        config.conditions, config.baseline = (kept,), kept["name"]
        config.claims = ()  # they name the conditions left out
    return config


def cifar10_corrupted():
    config = toy(load_config("cifar10_corrupted"))
    config.task.num_train, config.task.num_test = 16, 8
    config.task.corruptions = ("contrast",)
    config.task.corruption_severities = (1,)
    config.model.channels, config.model.dense_size = (4,), 8
    config.train.batch_size = 8
    attributions = config.evaluation.attributions
    attributions.attribution_examples = attributions.save_attributions = 2
    return config


def mnist1d():
    config = toy(load_config("mnist1d"), condition=-1)  # its CNN
    config.task.num_samples = 1000
    return config


# The condition each study keeps: its own model where a study compares several (the CNN of
# the capacity study, the attention model of shape and color).
CONDITION = {"capacity_tradeoff": -1}


def configs():
    yield "default", toy(tiny_config(), condition=None)
    for name, (make, _) in test_studies.STUDIES.items():
        yield name, toy(make(), CONDITION.get(name, 0))
    yield "mnist1d", mnist1d()
    yield "cifar10_corrupted", cifar10_corrupted()


def main() -> None:
    # The per-seed numbers are what is compared; report.md and the plots are not needed.
    experiment.complete_report = load_results_file
    out = {"num_devices": jax.device_count(), "reason": SETUP.reason, "studies": {}}
    with tfds.testing.mock_data(num_examples=24, policy=tfds.testing.MockPolicy.USE_CODE):
        for name, config in configs():
            start = time.perf_counter()
            with tempfile.TemporaryDirectory() as workdir:
                results = experiment.run(config, workdir)
            out.setdefault("seconds", {})[name] = round(time.perf_counter() - start, 1)
            out["studies"][name] = {
                condition: {
                    "devices": c.training_plan["num_devices"],
                    "numbers": {**{f"metric/{k}": v for k, v in c.metrics.items()},
                                **{f"curve/{k}": v for k, v in c.curves.items()}},
                } for condition, c in results.conditions.items()}
    print(json.dumps(out, default=lambda v: np.asarray(v).tolist()))


if __name__ == "__main__":
    main()
