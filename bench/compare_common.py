"""Shared pieces of the ``compare_*`` benchmarks: workloads, PyTorch twins, timing, tables.

Two reference workloads, each defined once here and used by every benchmark:

* ``mlp_digits``: scikit-learn digits scaled to [0, 1] as ``(1797, 8, 8, 1)``, an MLP
  64 -> 64 (ReLU) -> 10; accuracy on all 1,797 digits (the training set itself).
* ``cnn_mnist1d``: MNIST-1D generated locally (``make_dataset(get_dataset_args())``, never
  its download), ``x`` as ``(N, 40, 1)``; negres's ``CNN(num_outputs=10, channels=(16, 32),
  kernel_size=3)`` (two 'SAME' convolutions, stride 1, a dense layer of 64, ReLU); trained
  on the 4,000 training signals, accuracy on the 1,000 test signals.

Both train with Adam (learning rate 1e-2), batches of 128 drawn uniformly with
replacement, 200 steps. The PyTorch twins have the same layers, the same initialiser
(flax's LeCun-normal kernels, truncated at two standard deviations, zero biases) and
the same optimizer (``torch.optim.Adam`` and ``optax.adam`` share betas and epsilon), so
the two frameworks do the same arithmetic; flax weights can be ported into them exactly
(:func:`port_params`).

PyTorch uses ``os.cpu_count()`` threads, the core count XLA's CPU backend uses by default.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import flax.linen as fnn  # noqa: E402
import jax  # noqa: E402

from negres.models import CNN, MLP  # noqa: E402

RESULTS_DIR = REPO / "bench" / "results"
THREADS = os.cpu_count() or 1
# The same core count for both frameworks: XLA's CPU client uses every core by default.
torch.set_num_threads(THREADS)

LEARNING_RATE = 1e-2
BATCH_SIZE = 128
STEPS = 200
# flax's lecun_normal: stddev sqrt(1 / fan_in) corrected for truncation at +-2 sigma.
_TRUNCATED_NORMAL_STD = 0.87962566103423978


@dataclass(frozen=True)
class Data:
    """Arrays of one workload: ``x_*`` as the flax model takes them, ``y_*`` int labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray
    eval_name: str


@dataclass(frozen=True)
class Workload:
    """A model in both frameworks, its data, and its analytic FLOP count."""

    name: str
    description: str
    load: Callable[[], Data]
    flax_model: Callable[[], fnn.Module]
    torch_model: Callable[[], nn.Module]
    # (batch) -> forward matmul/convolution FLOPs of one batch (multiply-adds count as 2).
    forward_flops: Callable[[int], int]
    # flax layout (N, *input_shape) -> the torch model's layout.
    to_torch_layout: Callable[[np.ndarray], np.ndarray]


def load_digits_data() -> Data:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[..., None]  # (1797, 8, 8, 1) in [0, 1]
    y = bunch.target.astype(np.int32)
    return Data(x, y, x, y, "all 1,797 digits")


def load_mnist1d_data() -> Data:
    from mnist1d.data import get_dataset_args, make_dataset

    state = np.random.get_state()  # make_dataset reseeds NumPy's global generator
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(state)
    return Data(data["x"].astype(np.float32)[..., None], data["y"].astype(np.int32),
                data["x_test"].astype(np.float32)[..., None], data["y_test"].astype(np.int32),
                "the 1,000 MNIST-1D test signals")


class TorchMLP(nn.Sequential):
    """64 -> 64 (ReLU) -> 10 on flattened ``(B, 8, 8, 1)`` or ``(B, 64)`` inputs."""

    def __init__(self) -> None:
        super().__init__(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


class TorchCNN(nn.Sequential):
    """negres's ``CNN(10, (16, 32), 3)`` for channels-first ``(B, 1, 40)`` signals."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv1d(1, 16, 3, padding=1), nn.ReLU(),  # padding=1 is flax's 'SAME' for k=3
            nn.Conv1d(16, 32, 3, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(32 * 40, 64), nn.ReLU(), nn.Linear(64, 10),
        )


def flax_like_init_(module: nn.Module) -> nn.Module:
    """Re-initialise ``module`` in place as flax does: LeCun-normal kernels, zero biases."""
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, (nn.Linear, nn.Conv1d)):
                fan_in = math.prod(layer.weight.shape[1:])
                std = math.sqrt(1.0 / fan_in) / _TRUNCATED_NORMAL_STD
                nn.init.trunc_normal_(layer.weight, 0.0, std, -2 * std, 2 * std)
                nn.init.zeros_(layer.bias)
    return module


def mlp_forward_flops(batch: int) -> int:
    return 2 * batch * (64 * 64 + 64 * 10)


def cnn_forward_flops(batch: int) -> int:
    length, kernel = 40, 3
    convs = 2 * length * kernel * (1 * 16 + 16 * 32)
    return batch * (convs + 2 * (32 * length * 64 + 64 * 10))


WORKLOADS: dict[str, Workload] = {
    "mlp_digits": Workload(
        name="mlp_digits",
        description="digits (1797 x 8x8 in [0, 1]), MLP 64 -> 64 (ReLU) -> 10",
        load=load_digits_data,
        flax_model=lambda: MLP(num_outputs=10, hidden_sizes=(64,)),
        torch_model=TorchMLP,
        forward_flops=mlp_forward_flops,
        to_torch_layout=lambda x: x.reshape(x.shape[0], -1),
    ),
    "cnn_mnist1d": Workload(
        name="cnn_mnist1d",
        description="MNIST-1D (4000 train x 40 x 1), CNN conv16-conv32 (k=3) -> 64 -> 10",
        load=load_mnist1d_data,
        flax_model=lambda: CNN(num_outputs=10, channels=(16, 32), kernel_size=3),
        torch_model=TorchCNN,
        forward_flops=cnn_forward_flops,
        to_torch_layout=lambda x: np.ascontiguousarray(np.transpose(x, (0, 2, 1))),
    ),
}


def port_params(workload: Workload, params: Any) -> nn.Module:
    """A torch model of ``workload`` holding one seed's flax ``params`` (numpy-convertible).

    Dense kernels ``(in, out)`` become ``weight (out, in)``; 1-D convolution kernels
    ``(k, in, out)`` become ``(out, in, k)``; the dense layer after the convolutions also
    has its rows reordered, because flax flattens ``(L, C)`` position-major and torch
    flattens ``(C, L)`` channel-major.
    """
    p = jax.tree_util.tree_map(np.asarray, params)
    model = workload.torch_model()
    if workload.name == "mlp_digits":
        tensors = [p["Dense_0"]["kernel"].T, p["Dense_0"]["bias"],
                   p["Dense_1"]["kernel"].T, p["Dense_1"]["bias"]]
    elif workload.name == "cnn_mnist1d":
        dense0 = p["Dense_0"]["kernel"]  # (L * C, 64), row l * C + c
        channels = p["Conv_1"]["kernel"].shape[-1]
        dense0 = dense0.reshape(-1, channels, dense0.shape[-1]).transpose(1, 0, 2)
        tensors = [p["Conv_0"]["kernel"].transpose(2, 1, 0), p["Conv_0"]["bias"],
                   p["Conv_1"]["kernel"].transpose(2, 1, 0), p["Conv_1"]["bias"],
                   dense0.reshape(-1, dense0.shape[-1]).T, p["Dense_0"]["bias"],
                   p["Dense_1"]["kernel"].T, p["Dense_1"]["bias"]]
    else:
        raise ValueError(f"no weight port for workload {workload.name!r}")
    with torch.no_grad():
        for param, value in zip(model.parameters(), tensors, strict=True):
            param.copy_(torch.from_numpy(np.ascontiguousarray(value)))
    return model


# --------------------------------------------------------------------------- timing


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """``(seconds, result)`` of one call; ``fn`` must block until its work is done."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def interleaved_medians(
    methods: dict[str, Callable[[], Any]], repeats: int
) -> tuple[dict[str, float], dict[str, list[float]], dict[str, Any]]:
    """Median seconds of each method over ``repeats`` rounds, each round timing every method.

    Interleaving spreads the load of other jobs on a shared machine over all methods alike.
    Returns the medians, every time taken, and each method's result from its last round.
    """
    times: dict[str, list[float]] = {name: [] for name in methods}
    results: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in methods.items():
            seconds, results[name] = timed(fn)
            times[name].append(seconds)
    return {n: statistics.median(t) for n, t in times.items()}, times, results


# --------------------------------------------------------------------------- reporting


def machine() -> dict[str, Any]:
    """CPU model, core count and library versions, for the JSON and the table header."""
    import captum
    import flax
    import optax

    model = platform.processor() or "unknown"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                     if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    return {
        "cpu": model, "cpu_count": THREADS, "jax_device": str(jax.devices()[0]),
        "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
        "jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__,
        "torch": torch.__version__, "captum": captum.__version__, "numpy": np.__version__,
    }


def machine_line(info: dict[str, Any]) -> str:
    return (f"{info['cpu']}, {info['cpu_count']} cores (JAX {info['jax']} on "
            f"{info['jax_device']}, torch {info['torch']} with {info['torch_threads']} threads)")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; the first column left-aligned, the rest right-aligned."""
    align = [":---"] + ["---:"] * (len(headers) - 1)
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1, default=float))
    return path


def parse_ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]
