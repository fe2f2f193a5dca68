"""A CNN on CIFAR-10 with the CIFAR-10-C corruption sweep (15 corruptions x 5 severities).

Meant for an accelerator: 50,000 training images, 10,000 test images, and 75 corrupted
test sets of 10,000 images each. Prepare the data once (with network access):

    tfds build cifar10 --data_dir=DIR --file_format=array_record
    tfds build cifar10_corrupted --data_dir=DIR --file_format=array_record

then run ``python main.py --config configs/cifar10_corrupted.py --workdir runs/c10c
--config.task.data_dir=DIR``. On a CPU, shrink it: ``--config.task.num_train=2000
--config.task.num_test=500 --config.num_seeds=4 --config.train.steps=200``.
"""

from configs import study

# The 15 corruptions of Hendrycks & Dietterich (2019); TFDS also has 4 extra ones.
BENCHMARK_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "frosted_glass_blur",
    "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic",
    "pixelate", "jpeg_compression",
)


def get_config():
    config = study("CIFAR-10 CNN under the CIFAR-10-C corruptions", num_seeds=16, task="cifar10")
    config.task.data_dir = ""  # "" reads $TFDS_DATA_DIR or ~/tensorflow_datasets
    config.task.num_train = 0  # 0: the whole split
    config.task.num_test = 0
    config.task.corruptions = BENCHMARK_CORRUPTIONS
    config.task.corruption_severities = (1, 2, 3, 4, 5)
    config.model.name = "cnn"
    config.model.channels = (32, 64, 64)
    config.model.strides = 2
    config.model.dense_size = 128
    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.weight_decay = 1e-4
    config.train.steps = 5000
    config.train.eval_every = 500
    config.evaluation.robustness.shifts = ()  # the real corruptions replace the synthetic shifts
    config.evaluation.robustness.severities = (0.0,)
    config.evaluation.attributions.attribution_examples = 32
    config.evaluation.attributions.randomization_check = False
    return config
