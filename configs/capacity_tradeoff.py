"""Doc 003: does more capacity buy accuracy at the cost of interpretability?

A capacity sweep, from a linear model through MLPs of growing width and depth (to a CNN
on MNIST-1D), on scikit-learn's digits and on MNIST-1D (both offline), 16 seeds each. The
digits sweep ends at a deep MLP rather than a 2-D CNN, which trains ~60x slower than the
MLP on a CPU (XLA's convolution inside the training loop); add it on an accelerator. Per model:
test accuracy (performance) and three interpretability proxies measured per seed: the
cross-seed agreement of integrated-gradients attributions, their sparsity (Gini of
|attribution|), and the fidelity of a linear surrogate fitted to the model's decisions.
Each model is compared with the linear model of its dataset; the report's frontier plots
put every model at its mean with intervals on both axes.
"""

from configs import grouped_conditions, study

# Per dataset: the models of the sweep, as overrides of the base config; the first, the
# linear model, is the one the others of its dataset are compared with.
SWEEP = {
    "digits": (
        ("linear", {"model.name": "linear"}),
        ("mlp_16", {"model.name": "mlp", "model.hidden_sizes": (16,)}),
        ("mlp_64", {"model.name": "mlp", "model.hidden_sizes": (64,)}),
        ("mlp_256x2", {"model.name": "mlp", "model.hidden_sizes": (256, 256)}),
        ("mlp_256x3", {"model.name": "mlp", "model.hidden_sizes": (256, 256, 256)}),
    ),
    "mnist1d": (
        ("linear", {"model.name": "linear"}),
        ("mlp_32", {"model.name": "mlp", "model.hidden_sizes": (32,)}),
        ("mlp_100x2", {"model.name": "mlp", "model.hidden_sizes": (100, 100)}),
        ("mlp_256x3", {"model.name": "mlp", "model.hidden_sizes": (256, 256, 256)}),
        ("cnn", {"model.name": "cnn", "model.channels": (25, 25, 25), "model.strides": 2}),
    ),
}


# The document: the most powerful models are less interpretable. On each dataset, the
# largest model against the linear one: more accurate, and its attributions less stable
# across seeds and less sparse. (Linear-surrogate fidelity is left out: it is bounded by
# 1 - accuracy + the best linear accuracy, so it falls with accuracy by construction.)
LARGEST = "{point}/mlp_256x3"
CLAIMS = (
    dict(name="capacity_buys_accuracy", text="the largest model is more accurate than the "
         "linear one", metric="test_accuracy", condition=LARGEST,
         versus_condition="{point}/linear", direction="higher", margin=0.02,
         points=("digits", "mnist1d")),
    dict(name="capacity_costs_agreement", text="its integrated-gradients maps agree less "
         "across seeds", metric="integrated_gradients_agreement_spearman_abs",
         condition=LARGEST, versus_condition="{point}/linear", direction="lower",
         margin=0.05, points=("digits", "mnist1d")),
    dict(name="capacity_costs_sparsity", text="and are less sparse",
         metric="integrated_gradients_sparsity", condition=LARGEST,
         versus_condition="{point}/linear", direction="lower", margin=0.05,
         points=("digits", "mnist1d")),
)


def get_config():
    config = study("Capacity against interpretability, digits and MNIST-1D (doc 003)",
                   num_seeds=16, claims=CLAIMS)
    config.train.steps = 2000
    config.train.batch_size = 100
    config.train.eval_every = 200
    config.train.layout = "vmap"  # pinned: the README's numbers were measured with it
    config.evaluation.robustness.severities = (0.0, 0.2)
    config.evaluation.attributions.top_k = 8
    config.evaluation.attributions.randomization_check = False
    config.evaluation.evaluators = ("robustness", "attributions", "surrogate_fidelity")
    config.evaluation.attributions.save_attributions = 8
    config.conditions = grouped_conditions("task.name", SWEEP)
    config.baseline = "digits/linear"
    return config
