"""MNIST-1D (generated locally): logistic regression, an MLP and a CNN, 16 seeds each.

Compares the three models' test accuracy with intervals against the published numbers
(logistic regression 32%, MLP 68%, CNN 94%; Greydanus 2020). Runs offline on a CPU.
"""

from configs import study


def get_config():
    config = study("MNIST-1D: logistic regression, MLP and CNN", num_seeds=16, task="mnist1d")
    config.task.shuffle_seq = False  # True: the spatially shuffled control
    config.model.hidden_sizes = (100, 100)  # the published MLP: 40 -> 100 -> 100 -> 10
    config.model.channels = (25, 25, 25)  # the published CNN: three convolutions of 25
    config.model.strides = 2
    config.train.steps = 4000
    config.train.batch_size = 100
    config.train.eval_every = 200
    config.train.layout = "vmap"  # pinned: the README's numbers were measured with it
    config.evaluation.attributions.top_k = 5
    config.conditions = (
        {"name": "logistic", "model.name": "linear"},
        {"name": "mlp", "model.name": "mlp"},
        {"name": "cnn", "model.name": "cnn"},
    )
    config.baseline = "mlp"
    return config
