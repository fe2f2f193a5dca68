"""The default study: an MLP on scikit-learn's bundled digits, 16 seeds, on a CPU in seconds."""

from ml_collections import ConfigDict


def get_config() -> ConfigDict:
    config = ConfigDict()
    config.seed = 0  # root seed; seed i trains with fold_in(PRNGKey(seed), i)
    config.num_seeds = 16  # S: seeds trained together in one compiled call

    config.task = ConfigDict()
    config.task.name = "digits"  # a name in negres.tasks.TASKS
    config.task.test_fraction = 0.2  # share of examples held out for testing (stratified)
    config.task.split_seed = 0  # the train/test split; the same for every seed

    config.model = ConfigDict()
    config.model.name = "mlp"  # linear | mlp | cnn
    config.model.hidden_sizes = (64,)  # mlp: widths of the hidden layers
    config.model.activation = "relu"  # relu | gelu | tanh | sigmoid | silu
    config.model.dropout_rate = 0.0  # mlp/cnn: dropout after hidden layers, per-seed masks
    config.model.channels = (16, 32)  # cnn: channels of the convolutions
    config.model.kernel_size = 3  # cnn: kernel width (and height for images)
    config.model.strides = 1  # cnn: stride of every convolution
    config.model.dense_size = 64  # cnn: width of the dense layer after the convolutions

    config.optimizer = ConfigDict()
    config.optimizer.name = "adam"  # adam | adamw | sgd
    config.optimizer.learning_rate = 1e-2  # step size
    config.optimizer.momentum = 0.0  # sgd only; 0 is plain SGD
    config.optimizer.weight_decay = 0.0  # adamw only: decoupled weight decay
    config.optimizer.grad_clip_norm = 0.0  # clip gradients to this global norm; 0 is off

    config.train = ConfigDict()
    config.train.steps = 500  # optimizer steps per seed
    config.train.batch_size = 128  # examples per step, drawn uniformly with replacement
    config.train.eval_every = 50  # steps between learning-curve points; divides steps
    return config
