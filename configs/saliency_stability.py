"""Doc 001: do saliency maps change with the seed, and more so on noisy data?

A 1-D CNN on MNIST-1D, 16 seeds per condition, trained on clean data (at two learning
rates), with 20% of the training labels wrong (a different draw per seed), and with
Gaussian noise on the training inputs. Four attribution methods per seed; per method:
cross-seed agreement, max-sensitivity to small input perturbations and the cascading
parameter-randomisation check, compared between methods (paired by seed) and between
conditions. SmoothGrad's noisy copies are the same for every seed
(``noise_draws='shared'``), so its disagreement between seeds is the models', not the
Monte-Carlo draws'. MNIST-1D rather than digits: a 2-D CNN on digits trains ~20x slower
on a CPU (XLA's convolution inside the training loop), a 1-D one does not.
"""

from configs import study
from negres.evaluators import instance_section

# The document: repeated runs on identical data give substantially different
# interpretations, and noisy data makes it worse.
AGREEMENT = "{}_agreement_spearman_abs"
# Clean training at two learning rates: the seeds' disagreement must hold at both.
LEARNING_RATES = {"clean": 0.01, "clean_lr0.003": 0.003}
CLAIMS = (
    *(dict(name=f"{method}_differs", text=f"seeds trained on the same data disagree on "
           f"their {method.replace('_', ' ')} maps (Spearman of |attribution| below 0.8)",
           metric=AGREEMENT.format(method), condition="{point}", versus_value=0.8,
           direction="lower", points=tuple(LEARNING_RATES))
      for method in ("gradient", "integrated_gradients", "smoothgrad")),
    *(dict(name=f"{noise}_lowers_agreement", text=f"{noise.replace('_', ' ')} in training "
           "lowers the agreement of integrated gradients",
           metric=AGREEMENT.format("integrated_gradients"), condition=noise,
           versus_condition="clean", direction="lower", margin=0.05)
      for noise in ("label_noise", "input_noise")),
    # Under label noise seeds may predict, and so explain, different classes: explaining
    # the true label for every seed tells whether agreement falls even so.
    dict(name="label_noise_lowers_agreement_on_the_label", text="label noise lowers it even "
         "when every seed explains the true label",
         metric="attributions_label/" + AGREEMENT.format("integrated_gradients"),
         condition="label_noise", versus_condition="clean", direction="lower", margin=0.05),
)


def get_config():
    config = study("Saliency stability across seeds, label noise and input noise (doc 001)",
                   num_seeds=16, claims=CLAIMS, task="mnist1d")
    config.task.num_samples = 5000  # 4000 train, 1000 test
    config.task.train_split = 0.8
    config.task.shuffle_seq = False
    config.task.data_seed = 42
    config.model.name = "cnn"
    config.model.channels = (25, 25, 25)  # the published MNIST-1D CNN
    config.model.strides = 2
    config.train.steps = 1200
    config.train.batch_size = 100
    config.train.eval_every = 150
    config.train.layout = "vmap"  # pinned: the README's numbers were measured with it
    config.evaluation.robustness.severities = (0.0, 0.1, 0.3)
    config.evaluation.attributions.attribution_methods = (
        "gradient", "gradient_x_input", "integrated_gradients", "smoothgrad")
    config.evaluation.attributions.top_k = 8
    config.evaluation.attributions.max_sensitivity = True
    # The attributions of the true label beside those of the predicted class.
    config.evaluation.evaluators = (*config.evaluation.evaluators, "attributions_label")
    config.evaluation.attributions_label = instance_section(
        "attributions", attribution_methods=("integrated_gradients",),
        attribution_target="label", top_k=8, randomization_check=False)
    config.conditions = (
        *({"name": name, "optimizer.learning_rate": lr} for name, lr in LEARNING_RATES.items()),
        {"name": "label_noise", "train.label_noise": 0.2},
        {"name": "input_noise", "train.input_noise": 0.3},
    )
    config.baseline = "clean"
    return config
