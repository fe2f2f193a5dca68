"""Image datasets from TensorFlow Datasets, read through ``tfds.data_source``.

``tfds.data_source`` gives random access over ArrayRecord files and needs no TensorFlow.
Datasets must be prepared beforehand (nothing downloads here); a missing one raises an
error that says where negres looked and what to run. Real corrupted test sets
(``mnist_corrupted``, ``cifar10_corrupted``) are attached as shift sets:
``Task.shift_sets[corruption] = ShiftSet(severities (K,), x uint8 (K, N, H, W, C),
y (K, N))``, each with its own labels (TFDS does not promise the clean test order).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from ml_collections import ConfigDict

from negres.errors import ConfigError
from negres.fields import Field, integer, is_int, names, sequence, text
from negres.tasks.base import ShiftSet, Task
from negres.tasks.common import MAX_EXAMPLES

# name -> (number of classes, its corrupted counterpart in TFDS, if any)
DATASETS: dict[str, tuple[int, str | None]] = {
    "mnist": (10, "mnist_corrupted"),
    "fashion_mnist": (10, None),
    "cifar10": (10, "cifar10_corrupted"),
}
# Corrupted counterparts with levels 1-5, their configs named <corruption>_<severity>;
# the others have one level per corruption.
LEVELED = frozenset({"cifar10_corrupted"})
SEVERITIES = (1, 2, 3, 4, 5)


def _fields(dataset: str) -> tuple[Field, ...]:
    """The config fields of ``dataset``: corruptions only where TFDS has corrupted
    counterparts, severities only where those have levels."""
    corrupted = DATASETS[dataset][1]
    fields = (
        text("data_dir", "", "where TFDS datasets are prepared; '' reads $TFDS_DATA_DIR or "
             "~/tensorflow_datasets"),
        integer("num_train", 0, "training examples read, the split's first N (0: the whole "
                "split)", minimum=0, maximum=MAX_EXAMPLES),
        integer("num_test", 0, "test examples read, the split's first N (0: the whole split); "
                "also of each shift set", minimum=0, maximum=MAX_EXAMPLES),
    )
    if corrupted is not None:
        fields += (names("corruptions", (), f"corruptions of {corrupted} loaded as shift "
                         "sets"),)
    if corrupted in LEVELED:
        fields += (sequence("corruption_severities", SEVERITIES, "levels of each corruption "
                            "loaded", lambda s: is_int(s) and s in SEVERITIES,
                            "levels among 1..5", min_len=1, unique=True),)
    return fields


# dataset -> its config fields
FIELDS: dict[str, tuple[Field, ...]] = {dataset: _fields(dataset) for dataset in DATASETS}


def available_corruptions(dataset: str) -> list[str]:
    """Corruption names of ``dataset``'s corrupted counterpart, read from TFDS's builder."""
    import tensorflow_datasets as tfds  # optional: only TFDS tasks need it

    corrupted = DATASETS[dataset][1]
    if corrupted is None:
        return []
    names = [c.name for c in tfds.builder_cls(corrupted).BUILDER_CONFIGS]
    if corrupted in LEVELED:
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
    import tensorflow_datasets as tfds  # optional: only TFDS tasks need it

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
) -> dict[str, ShiftSet]:
    corrupted = DATASETS[dataset][1]
    sets = {}
    known = available_corruptions(dataset) if corruptions else []
    for corruption in corruptions:
        if corruption not in known:
            raise ConfigError("task.corruptions", corruption, f"names among {known}")
        if corrupted in LEVELED:
            levels = list(severities)
            configs = [f"{corrupted}/{corruption}_{s}" for s in levels]
        else:
            levels, configs = [1], [f"{corrupted}/{corruption}"]
        pairs = [read_split(c, "test", data_dir, limit) for c in configs]
        sets[corruption] = ShiftSet(severities=tuple(float(s) for s in levels),
                                    x=np.stack([x for x, _ in pairs]),
                                    y=np.stack([y for _, y in pairs]))
    return sets


def make_tfds_task(dataset: str):
    """A task maker for one of :data:`DATASETS`."""

    def make(task_config: ConfigDict) -> Task:
        """Images in [0, 1] as ``(N, H, W, C)`` float32, int32 labels.

        Reads the fields of ``FIELDS[dataset]`` (``task_config`` completed with their
        defaults).
        """
        data_dir = resolve_data_dir(task_config.data_dir)
        x_train, y_train = read_split(dataset, "train", data_dir, task_config.num_train)
        x_test, y_test = read_split(dataset, "test", data_dir, task_config.num_test)
        corruptions = tuple(task_config.get("corruptions", ()))  # declared where any exist
        severities = tuple(task_config.get("corruption_severities", ()))
        shift_sets = _shift_sets(dataset, corruptions, severities, data_dir,
                                 task_config.num_test)
        return Task(
            name=dataset,
            kind="classification",
            x_train=_to_float(x_train),
            y_train=y_train,
            x_test=_to_float(x_test),
            y_test=y_test,
            num_outputs=DATASETS[dataset][0],
            shift_sets=shift_sets,
        )

    make.__name__ = f"make_{dataset}"
    return make
