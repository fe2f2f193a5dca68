"""The default study: an MLP on scikit-learn's bundled digits, 16 seeds, on a CPU in seconds.

Generated from the fields' declarations (negres.study.config): edit those, then run
``python -m negres.study.config --write-default``.
"""

from ml_collections import ConfigDict


def get_config() -> ConfigDict:
    config = ConfigDict()
    config.seed = 0  # root seed; seed i trains with fold_in(PRNGKey(seed), i)
    config.num_seeds = 16  # S: seeds trained together in one compiled call
    config.title = "digits MLP"  # heading of report.md (the seed counts follow it)
    # the claims the study tests, each a dict of a negres.statistics.claims.Claim's fields: their
    # verdicts open report.md
    config.claims = ()
    config.conditions = ()  # e.g. ({'name': 'mlp'}, {'name': 'linear', 'model.name': 'linear'})
    config.baseline = ""  # condition compared against; '' is the first
    # seeds per condition whose own curves the TensorBoard logs hold (the mean and min-max band
    # cover every seed)
    config.tensorboard_seed_curves = 8

    config.task = ConfigDict()
    config.task.name = "digits"  # a task of negres.tasks.TASKS
    # 0: all training examples; else that many, drawn once with subset_seed and shared by every seed
    config.task.train_subset = 0
    config.task.subset_seed = 0  # draws the train_subset examples
    config.task.test_fraction = 0.2  # share of examples held out for testing (stratified)
    config.task.split_seed = 0  # the train/test split; the same for every seed

    config.model = ConfigDict()
    config.model.name = "mlp"  # linear | mlp | cnn | attention
    config.model.hidden_sizes = (64,)  # mlp: widths of the hidden layers
    config.model.activation = "relu"  # relu | gelu | tanh | sigmoid | silu
    # mlp/cnn/attention: dropout after hidden layers, per-seed masks
    config.model.dropout_rate = 0.0
    config.model.channels = (16, 32)  # cnn: channels of the convolutions
    config.model.kernel_size = 3  # cnn: kernel width (and height for images)
    config.model.strides = 1  # cnn: stride of every convolution
    config.model.dense_size = 64  # cnn: width of the dense layer after the convolutions
    # cnn: auto (matmul on CPU, lax elsewhere) | lax (nn.Conv) | matmul (unfolded patches; same
    # numbers)
    config.model.conv_impl = "auto"
    config.model.patch_size = 4  # attention: patch side of the patch embedding
    config.model.embed_dim = 32  # attention: token width
    config.model.num_heads = 4  # attention: heads; must divide embed_dim
    config.model.mlp_dim = 64  # attention: hidden width of the token-wise MLP
    config.model.attention = True  # attention: False removes the self-attention block
    config.model.freeze_embeddings = False  # attention: keep patch/position embeddings at init

    config.optimizer = ConfigDict()
    config.optimizer.name = "adam"  # adam | adamw | sgd
    config.optimizer.learning_rate = 0.01  # step size
    config.optimizer.momentum = 0.0  # sgd only; 0 is plain SGD
    config.optimizer.weight_decay = 0.0  # adamw only: decoupled weight decay
    config.optimizer.grad_clip_norm = 0.0  # clip gradients to this global norm; 0 is off

    config.train = ConfigDict()
    config.train.steps = 500  # optimizer steps per seed
    config.train.batch_size = 128  # examples per step
    # replacement | epochs: batches drawn uniformly with replacement, or each epoch a permutation
    # per seed
    config.train.sampling = "replacement"
    config.train.eval_every = 50  # steps between learning-curve points; divides steps
    config.train.label_noise = 0.0  # share of training labels each seed sees replaced at random
    config.train.input_noise = 0.0  # std of Gaussian noise added to training inputs, per seed
    config.train.seeds_per_chunk = 0  # seeds per compiled call; 0: all that fit in memory
    config.train.layout = "auto"  # auto | vmap | map: seeds side by side or in sequence
    config.train.seeds_per_map_step = 1  # map: seeds vmapped together at each step
    config.train.checkpoint_every = 0  # steps between checkpoints; 0: about one a minute

    config.evaluation = ConfigDict()
    # evaluators run after training, in order, names in negres.evaluators.REGISTRY or of instance
    # sections (performance always runs first)
    config.evaluation.evaluators = (
        "robustness", "attributions", "subsets", "truth", "multiplicity")

    config.evaluation.robustness = ConfigDict()
    # names in ['channel_shift', 'contrast', 'covariate_scale', 'gaussian_blur', 'gaussian_noise',
    # 'occlusion'] or the task's own shifts
    config.evaluation.robustness.shifts = ("gaussian_noise",)
    # severity sweep of every shift
    config.evaluation.robustness.severities = (0.0, 0.1, 0.2, 0.3, 0.5)
    # every seed sees the same shifted test set
    config.evaluation.robustness.shared_shift_noise = True
    # also each shift's mean score on each test subset the task declares
    # (<shift>_<subset>_mean_<score>)
    config.evaluation.robustness.per_subset = False

    config.evaluation.attributions = ConfigDict()
    # attribution methods, names in negres.measures.saliency.ATTRIBUTION_METHODS
    config.evaluation.attributions.attribution_methods = ("integrated_gradients",)
    # first N test examples attributed per seed
    config.evaluation.attributions.attribution_examples = 64
    # predicted | label: the output explained
    config.evaluation.attributions.attribution_target = "predicted"
    config.evaluation.attributions.ig_steps = 32  # integrated gradients: midpoint-rule steps
    config.evaluation.attributions.smoothgrad_samples = 16  # smoothgrad: noisy copies per example
    # smoothgrad: noise std as a share of input range
    config.evaluation.attributions.smoothgrad_noise = 0.15
    # methods that draw noise (smoothgrad, kernel_shap): shared (every seed draws the same, so seeds
    # differ by their models alone) | per_seed (each seed draws its own)
    config.evaluation.attributions.noise_draws = "shared"
    # kernel_shap: sampled coalitions per example (even; 2^d - 2 or more enumerates them all: exact
    # Shapley values)
    config.evaluation.attributions.kernel_shap_samples = 64
    # shapley, kernel_shap, deeplift: background rows of the training set averaged over as the
    # reference (0: zero baseline)
    config.evaluation.attributions.shapley_background = 0
    # top-k agreement between seeds (capped at half the features)
    config.evaluation.attributions.top_k = 10
    # stability of attributions under perturbation
    config.evaluation.attributions.max_sensitivity = False
    # max-sensitivity: L-inf radius of perturbations
    config.evaluation.attributions.sensitivity_radius = 0.05
    # max-sensitivity: perturbations per example
    config.evaluation.attributions.sensitivity_samples = 8
    # cascading parameter-randomisation check
    config.evaluation.attributions.randomization_check = True
    # examples whose attributions are saved as .npy
    config.evaluation.attributions.save_attributions = 16

    config.evaluation.subsets = ConfigDict()
    # classification: also each subset's accuracy per true class (subset_<name>_class<k>_accuracy)
    config.evaluation.subsets.per_class = False

    config.evaluation.multiplicity = ConfigDict()
    # multiplicity: save the S x S churn matrix of every shifted test set at every severity (S*S*K
    # numbers a shift; False at hundreds of seeds keeps the clean one and each shift's mean)
    config.evaluation.multiplicity.multiplicity_matrices = True

    config.evaluation.stability = ConfigDict()
    # share of the evaluation points, from the end of training, whose oscillation is measured
    config.evaluation.stability.last_share = 0.5

    config.stats = ConfigDict()
    config.stats.level = 0.95  # confidence level of intervals and tests
    config.stats.num_resamples = 2000  # bootstrap resamples
    config.stats.num_permutations = 2000  # permutation-test permutations
    config.stats.paired_conditions = False  # compare conditions seed by seed (same seed index)
    # distribution | test_set: what intervals of metrics over test examples are about (the data
    # distribution: seeds and examples both sampled; this test set: seeds only)
    config.stats.estimand = "distribution"
    # share of 1 - level the verdicts spend at a study's first look; the rest stays for looks after
    # --extend (1: one look, an extended study's verdicts stay inconclusive)
    config.stats.first_look_share = 0.8

    config.randomness = ConfigDict()
    # sources of randomness crossed in a design, e.g. ('init', 'data'); (): every source follows its
    # seed
    config.randomness.vary = ()
    # levels of each source in vary (1: held); their product is num_seeds
    config.randomness.levels = ()
    # metrics whose variance is split by source (metrics of pairs of seeds are not)
    config.randomness.metrics = ("test_accuracy",)
    return config
