"""Image datasets from TensorFlow Datasets, read through ``tfds.data_source``.

``tfds.data_source`` gives random access over ArrayRecord files and needs no TensorFlow.
Datasets must be prepared beforehand (nothing downloads here); a missing one raises an
error that says where negres looked and what to run. Real corrupted test sets
(``mnist_corrupted``, ``cifar10_corrupted``) are attached as shift sets:
``Task.known["shift_sets"][corruption] = {"severities": (K,), "x": uint8 (K, N, H, W, C),
"y": (K, N)}``, each with its own labels (TFDS does not promise the clean test order).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from ml_collections import ConfigDict

from negres.errors import ConfigError
from negres.tasks.base import Task

# name -> (number of classes, its corrupted counterpart in TFDS, if any)
DATASETS: dict[str, tuple[int, str | None]] = {
    "mnist": (10, "mnist_corrupted"),
    "fashion_mnist": (10, None),
    "cifar10": (10, "cifar10_corrupted"),
}


def available_corruptions(dataset: str) -> list[str]:
    """Corruption names of ``dataset``'s corrupted counterpart, read from TFDS's builder."""
    import tensorflow_datasets as tfds

    corrupted = DATASETS[dataset][1]
    if corrupted is None:
        return []
    names = [c.name for c in tfds.builder_cls(corrupted).BUILDER_CONFIGS]
    if corrupted == "cifar10_corrupted":  # configs are <corruption>_<severity>
        names = [n.rsplit("_", 1)[0] for n in names]
    return sorted(set(names))


class DatasetNotPreparedError(ConfigError):
    """A TFDS dataset that is not prepared in the data directory negres was given."""

    def __init__(self, name: str, split: str, data_dir: str, cause: str):
        command = (f"tfds build {name.split('/')[0]} --data_dir={data_dir} "
                   f"--file_format=array_record")
        super().__init__(
            "task.data_dir", data_dir,
            f"a directory where TFDS dataset {name!r} (split {split!r}) is prepared in the "
            f"array_record format; looked in {data_dir} ({cause}). Prepare it once, with "
            f"network access, by running: {command}",
        )


def resolve_data_dir(data_dir: str) -> str:
    """The directory TFDS reads: the config's, else ``$TFDS_DATA_DIR``, else its default."""
    if data_dir:
        return os.path.expanduser(data_dir)
    return os.environ.get("TFDS_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))


def read_split(name: str, split: str, data_dir: str, limit: int = 0) -> tuple[np.ndarray, ...]:
    """Images ``uint8 (N, H, W, C)`` and labels ``int32 (N,)`` of one split, read once."""
    import tensorflow_datasets as tfds

    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
        count = len(source) if not limit else min(limit, len(source))
        # One record at a time: the same path mocked and real (tfds's batched
        # __getitems__ is not mocked by tfds.testing.mock_data).
        examples = [source[i] for i in range(count)]
    except (NotImplementedError, FileNotFoundError, AssertionError, ValueError) as e:
        raise DatasetNotPreparedError(name, split, data_dir, type(e).__name__) from None
    except Exception as e:  # tfds's own DatasetNotFoundError and friends
        if "NotFound" in type(e).__name__ or "not found" in str(e).lower():
            raise DatasetNotPreparedError(name, split, data_dir, type(e).__name__) from None
        raise
    images = np.stack([np.asarray(ex["image"], np.uint8) for ex in examples])
    labels = np.asarray([ex["label"] for ex in examples], np.int32)
    return images, labels


def _to_float(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32) / 255.0


def _shift_sets(
    dataset: str, corruptions: Sequence[str], severities: Sequence[int], data_dir: str,
    limit: int,
) -> dict[str, dict[str, np.ndarray]]:
    corrupted = DATASETS[dataset][1]
    if corruptions and corrupted is None:
        raise ConfigError("task.corruptions", tuple(corruptions),
                          f"() for {dataset}: TFDS has no corrupted counterpart of it")
    sets = {}
    known = available_corruptions(dataset) if corruptions else []
    for corruption in corruptions:
        if corruption not in known:
            raise ConfigError("task.corruptions", corruption, f"names among {known}")
        if dataset == "mnist":  # mnist_corrupted has one level per corruption
            levels, configs = [1], [f"{corrupted}/{corruption}"]
        else:
            levels = list(severities)
            configs = [f"{corrupted}/{corruption}_{s}" for s in levels]
        pairs = [read_split(c, "test", data_dir, limit) for c in configs]
        sets[corruption] = {"severities": np.asarray(levels, float),
                            "x": np.stack([x for x, _ in pairs]),
                            "y": np.stack([y for _, y in pairs])}
    return sets


def make_tfds_task(dataset: str):
    """A task maker for one of :data:`DATASETS`."""

    def make(task_config: ConfigDict) -> Task:
        """Images in [0, 1] as ``(N, H, W, C)`` float32, int32 labels.

        Config fields: ``data_dir`` ("": ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``),
        ``num_train``/``num_test`` (0: the whole split; otherwise its first N examples),
        ``corruptions`` (names of the corrupted counterpart's corruptions to load as shift
        sets) and ``corruption_severities`` (1-5, CIFAR-10-C only).
        """
        data_dir = resolve_data_dir(str(task_config.get("data_dir", "")))
        severities = tuple(task_config.get("corruption_severities", (1, 2, 3, 4, 5)))
        if any(s not in (1, 2, 3, 4, 5) for s in severities):
            raise ConfigError("task.corruption_severities", severities, "values among 1..5")
        num_train = int(task_config.get("num_train", 0))
        num_test = int(task_config.get("num_test", 0))
        x_train, y_train = read_split(dataset, "train", data_dir, num_train)
        x_test, y_test = read_split(dataset, "test", data_dir, num_test)
        shift_sets = _shift_sets(dataset, tuple(task_config.get("corruptions", ())),
                                 severities, data_dir, num_test)
        return Task(
            name=dataset,
            kind="classification",
            x_train=_to_float(x_train),
            y_train=y_train,
            x_test=_to_float(x_test),
            y_test=y_test,
            num_outputs=DATASETS[dataset][0],
            known={"shift_sets": shift_sets, "data_dir": data_dir} if shift_sets else
            {"data_dir": data_dir},
        )

    make.__name__ = f"make_{dataset}"
    return make
