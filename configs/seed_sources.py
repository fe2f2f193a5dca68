"""Why do repeated runs disagree? Initialisation against data order, crossed.

The default digits MLP, 64 seeds laid out as 8 initialisations x 8 batch orders (seed s:
initialisation s // 8, data order s % 8; every other source follows the seed), so that
the spread of test accuracy, and of one attribution metric (the sparsity of integrated
gradients), splits into a part due to each source and a remainder (their interaction),
each with a 95% interval (docs/sources.md). Bouthillier et al. (2021) found data order
to matter as much as initialisation; this study measures it on one model.
"""

from configs import study


def get_config():
    config = study("Sources of seed-to-seed spread: initialisation vs data order",
                   num_seeds=64)  # the product of randomness.levels
    config.randomness.vary = ("init", "data")
    config.randomness.levels = (8, 8)
    config.randomness.metrics = ("test_accuracy", "test_loss", "integrated_gradients_sparsity")
    config.evaluation.evaluators = ("attributions",)
    config.evaluation.attributions.attribution_methods = ("integrated_gradients",)
    config.evaluation.attributions.randomization_check = False
    return config
