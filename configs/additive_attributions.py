"""Doc 002: do additive attributions (SHAP) miss an interaction between features?

The regression ``y = 3 x0 + 2 x1 - 1.5 x2 + noise`` over 5 standard-normal features, and
the same world with ``+ 2 x0 x1``, each learned two ways: by a 32-32 GELU MLP on 1,000
examples (smooth, so that the mixed partial derivative is defined; with ReLU it is 0 almost
everywhere), and by the document's own experiment (one hidden layer of 10 ReLU units, 100
examples, Adam at 0.01, 500 full-batch epochs, its N(0, 0.2) input shift). Per world: test
MSE, clean and under Gaussian noise; gradient x input, integrated gradients, DeepLIFT's
rescale rule (what shap.DeepExplainer computes, here against the zero baseline), sampled
(Kernel SHAP) and exact Shapley values against the true additive contributions; the
interaction the model learned (mixed partial derivative, Shapley interaction index); and
how much of each feature's Shapley value depends on the other features (non-additivity),
which one number per feature cannot show.
"""

from configs import study

# The document: additive attributions (SHAP) "won't capture" a dependency between x0 and x1.
CLAIMS = (
    dict(name="shapley_misleads", text="with a true x0·x1 interaction, exact Shapley values "
         "of the trained models err against the true additive split more than without it",
         metric="shapley_truth_error", condition="interaction", versus_condition="additive",
         direction="higher", margin=0.05),
    # What the attributions would miss is there: the models learn the interaction.
    dict(name="interaction_learned", text="the models learn the interaction (their mixed "
         "partial derivative, 2 in truth)", metric="interaction_x0*x1_mixed_partial",
         condition="interaction", versus_condition="additive", direction="higher",
         margin=1.0, role="premise"),
    # How much of the attributions the interaction moves: one number per feature folds it
    # in, and the share of attribution mass that depends on the other features says how much.
    dict(name="attributions_fold_in_the_interaction", text="with the interaction, more of "
         "each feature's Shapley value depends on the other features (by more than 0.05 of "
         "the attribution mass)", metric="shapley_non_additivity", condition="interaction",
         versus_condition="additive", direction="higher", margin=0.05),
    # The document's own experiment: its model, data, optimiser, epochs and shift.
    dict(name="deepexplainer_misleads", text="on the document's experiment, DeepLIFT "
         "attributions (shap.DeepExplainer's rule) mislead more than they explain: their "
         "error against the true additive split exceeds half the attribution mass",
         metric="deeplift_truth_error", condition="document", versus_value=0.5,
         direction="higher"),
    dict(name="deepexplainer_misses_the_interaction", text="on the document's experiment "
         "with an x0·x1 dependency, DeepLIFT attributions err more than without it",
         metric="deeplift_truth_error", condition="document_interaction",
         versus_condition="document", direction="higher", margin=0.05),
    dict(name="document_shift_raises_mse", text="the document's N(0, 0.2) input shift "
         "raises the test MSE of its model (by more than 0.05)",
         metric="gaussian_noise_mean_mse", condition="document", versus_metric="test_mse",
         direction="higher", margin=0.05),
    dict(name="document_model_learns_the_interaction", text="the document's 10-unit ReLU "
         "model learns the dependency (more of its Shapley values depend on the other "
         "features)", metric="shapley_non_additivity", condition="document_interaction",
         versus_condition="document", direction="higher", margin=0.05, role="premise"),
)

# The document's experiment (doc 002's listing): 100 samples of its regression, a 5-10-1
# ReLU MLP, Adam at 0.01, 500 epochs of one full batch, shifted test inputs x + N(0, 0.2).
DOCUMENT = {
    "task.num_train": 100, "model.hidden_sizes": (10,), "model.activation": "relu",
    "optimizer.name": "adam", "optimizer.learning_rate": 0.01, "train.batch_size": 100,
    "train.steps": 500, "evaluation.robustness.severities": (0.0, 0.2),
}


def get_config():
    config = study("Additive attributions and an x0·x1 interaction (doc 002)", num_seeds=32,
                   claims=CLAIMS, task="synthetic_regression")
    config.task.interaction = 0.0  # set per condition below
    config.model.hidden_sizes = (32, 32)
    config.model.activation = "gelu"
    config.train.steps = 2000
    config.train.eval_every = 100
    config.evaluation.attributions.attribution_methods = (
        "gradient_x_input", "integrated_gradients", "deeplift", "kernel_shap", "shapley")
    # 16 of the 30 coalitions (shap's default budget, 2d + 2048, would enumerate all 30).
    config.evaluation.attributions.kernel_shap_samples = 16
    config.evaluation.attributions.attribution_examples = 200
    config.evaluation.attributions.ig_steps = 64
    config.evaluation.attributions.top_k = 2
    config.evaluation.attributions.save_attributions = 200  # all: the plots mark the truth
    config.conditions = (
        {"name": "additive", "task.interaction": 0.0},
        {"name": "interaction", "task.interaction": 2.0},
        {"name": "document", "task.interaction": 0.0, **DOCUMENT},
        {"name": "document_interaction", "task.interaction": 2.0, **DOCUMENT,
         "compared_with": "document"},
    )
    config.baseline = "additive"
    return config
