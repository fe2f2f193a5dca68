"""Shared pieces of the ``compare_*`` benchmarks: workloads, PyTorch twins, timing, tables.

Importing this module calls :func:`negres.use_all_cores` before anything touches JAX's
devices, so every benchmark runs negres as ``main.py`` does: one JAX CPU device per core,
with the ``seeds`` mesh spreading seeds over all of them. The device count and the reason
are recorded in every JSON (:func:`machine`).

Three reference workloads, each defined once here and used by every benchmark:

* ``mlp_digits``: scikit-learn digits scaled to [0, 1] as ``(1797, 8, 8, 1)``, an MLP
  64 -> 64 (ReLU) -> 10; trained on all 1,797 digits, accuracy on all 1,797 digits.
* ``cnn_mnist1d``: the MNIST-1D CNN of ``configs/mnist1d.py`` (the published CNN: three
  convolutions of 25 channels, kernel 3, stride 2, 'SAME' padding, ReLU, then a dense
  layer of 64 and 10 outputs) on MNIST-1D generated locally (``make_dataset`` with the
  package's default arguments, never its download), ``x`` as ``(N, 40, 1)``; trained on
  the 4,000 training signals, accuracy on the 1,000 test signals.
* ``cnn_digits``: the 2-D CNN of seeds_scaling.py on the digits of ``mlp_digits``
  (negres ``cnn``: two convolutions of 16 and 32 channels, kernel 3x3, stride 1, 'SAME'
  padding, ReLU, then a dense layer of 64 and 10 outputs); trained and evaluated on all
  1,797 digits.

The CNNs use negres's default ``conv_impl`` (what a user gets). All train with Adam
(learning rate 1e-2), batches of 128 drawn uniformly with replacement, 200 steps. The
PyTorch twins have the same layers, the same initialiser (flax's LeCun-normal kernels,
truncated at two standard deviations, zero biases) and the same optimizer
(``torch.optim.Adam`` and ``optax.adam`` share betas and epsilon), so the two frameworks
do the same arithmetic; flax weights can be ported into them exactly (:func:`port_params`,
checked by :func:`check_port`).

PyTorch threads: on a small model PyTorch's intra-op threads can cost more than they
give (and far more while other jobs share the cores), so every PyTorch method is run with
the faster of 1 thread and one per available core, chosen by a short timed trial
(:func:`fastest_torch_threads`) and reported. JAX gets one CPU device per core (above).
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tables import load_average, markdown_table  # noqa: F401  (re-exported)
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import flax.linen as fnn  # noqa: E402
import jax  # noqa: E402

import negres  # noqa: E402

# First, before anything touches JAX's devices: one CPU device per core, as main.py does.
CORE_SETUP = negres.use_all_cores()

from negres.models import CNN, MLP  # noqa: E402
from negres.sharding import available_cores  # noqa: E402

# Where every benchmark writes its JSON; run_all.py --quick points it elsewhere.
RESULTS_DIR = Path(os.environ.get("NEGRES_BENCH_RESULTS", REPO / "bench" / "results"))
THREADS = available_cores()
# PyTorch's candidate intra-op thread counts.
TORCH_THREAD_CHOICES = tuple(sorted({1, THREADS}))

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


# The MNIST-1D CNN of configs/mnist1d.py: negres's CNN with these settings.
CNN_CHANNELS = (25, 25, 25)
CNN_KERNEL, CNN_STRIDE, CNN_DENSE, SIGNAL_LENGTH = 3, 2, 64, 40


def _same_lengths() -> list[int]:
    """Output length of each 'SAME' strided convolution: ``ceil(L / stride)``."""
    lengths, length = [], SIGNAL_LENGTH
    for _ in CNN_CHANNELS:
        length = -(-length // CNN_STRIDE)
        lengths.append(length)
    return lengths


def _same_padding(length: int) -> tuple[int, int]:
    """flax/XLA 'SAME' padding of one convolution: the odd pixel goes to the right."""
    out = -(-length // CNN_STRIDE)
    total = max((out - 1) * CNN_STRIDE + CNN_KERNEL - length, 0)
    return total // 2, total - total // 2


class TorchCNN(nn.Sequential):
    """negres's ``CNN(10, (25, 25, 25), 3, strides=2)`` for channels-first ``(B, 1, 40)``."""

    def __init__(self) -> None:
        layers: list[nn.Module] = []
        length, channels_in = SIGNAL_LENGTH, 1
        for channels in CNN_CHANNELS:
            # torch pads symmetrically; flax's 'SAME' pads (0, 1) here, so pad explicitly.
            layers += [nn.ConstantPad1d(_same_padding(length), 0.0),
                       nn.Conv1d(channels_in, channels, CNN_KERNEL, stride=CNN_STRIDE),
                       nn.ReLU()]
            length, channels_in = -(-length // CNN_STRIDE), channels
        layers += [nn.Flatten(), nn.Linear(channels_in * length, CNN_DENSE), nn.ReLU(),
                   nn.Linear(CNN_DENSE, 10)]
        super().__init__(*layers)


# The 2-D CNN of seeds_scaling.py on digits: negres's CNN with these settings.
CNN2D_CHANNELS, CNN2D_KERNEL, CNN2D_DENSE, IMAGE_SIZE = (16, 32), 3, 64, 8


class TorchCNN2d(nn.Sequential):
    """negres's ``CNN(10, (16, 32), 3)`` for channels-first ``(B, 1, 8, 8)`` digits.

    Stride 1 with an odd kernel: flax's 'SAME' pads (1, 1) on each side, as torch's
    ``padding="same"`` does.
    """

    def __init__(self) -> None:
        layers: list[nn.Module] = []
        channels_in = 1
        for channels in CNN2D_CHANNELS:
            layers += [nn.Conv2d(channels_in, channels, CNN2D_KERNEL, padding="same"),
                       nn.ReLU()]
            channels_in = channels
        layers += [nn.Flatten(), nn.Linear(channels_in * IMAGE_SIZE**2, CNN2D_DENSE),
                   nn.ReLU(), nn.Linear(CNN2D_DENSE, 10)]
        super().__init__(*layers)


def flax_like_init_(module: nn.Module) -> nn.Module:
    """Re-initialise ``module`` in place as flax does: LeCun-normal kernels, zero biases."""
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                fan_in = math.prod(layer.weight.shape[1:])
                std = math.sqrt(1.0 / fan_in) / _TRUNCATED_NORMAL_STD
                nn.init.trunc_normal_(layer.weight, 0.0, std, -2 * std, 2 * std)
                nn.init.zeros_(layer.bias)
    return module


def mlp_forward_flops(batch: int) -> int:
    return 2 * batch * (64 * 64 + 64 * 10)


def cnn_forward_flops(batch: int) -> int:
    convs, channels_in = 0, 1
    for length, channels in zip(_same_lengths(), CNN_CHANNELS, strict=True):
        convs += 2 * length * CNN_KERNEL * channels_in * channels
        channels_in = channels
    flat = _same_lengths()[-1] * CNN_CHANNELS[-1]
    return batch * (convs + 2 * (flat * CNN_DENSE + CNN_DENSE * 10))


def cnn2d_forward_flops(batch: int) -> int:
    convs, channels_in = 0, 1
    for channels in CNN2D_CHANNELS:
        convs += 2 * IMAGE_SIZE**2 * CNN2D_KERNEL**2 * channels_in * channels
        channels_in = channels
    flat = IMAGE_SIZE**2 * CNN2D_CHANNELS[-1]
    return batch * (convs + 2 * (flat * CNN2D_DENSE + CNN2D_DENSE * 10))


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
        description=("MNIST-1D (4000 train x 40 x 1), the MNIST-1D CNN: 3 x conv 25 "
                     "(k=3, stride 2) -> 64 -> 10"),
        load=load_mnist1d_data,
        flax_model=lambda: CNN(num_outputs=10, channels=CNN_CHANNELS, kernel_size=CNN_KERNEL,
                               strides=CNN_STRIDE, dense_size=CNN_DENSE),
        torch_model=TorchCNN,
        forward_flops=cnn_forward_flops,
        to_torch_layout=lambda x: np.ascontiguousarray(np.transpose(x, (0, 2, 1))),
    ),
    "cnn_digits": Workload(
        name="cnn_digits",
        description=("digits (1797 x 8x8x1 in [0, 1]), 2-D CNN: conv 16, conv 32 (3x3, "
                     "stride 1) -> 64 -> 10"),
        load=load_digits_data,
        flax_model=lambda: CNN(num_outputs=10, channels=CNN2D_CHANNELS,
                               kernel_size=CNN2D_KERNEL, dense_size=CNN2D_DENSE),
        torch_model=TorchCNN2d,
        forward_flops=cnn2d_forward_flops,
        to_torch_layout=lambda x: np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))),
    ),
}


def port_params(workload: Workload, params: Any) -> nn.Module:
    """A torch model of ``workload`` holding one seed's flax ``params`` (numpy-convertible).

    Dense kernels ``(in, out)`` become ``weight (out, in)``; convolution kernels
    ``(k, in, out)`` (1-D) or ``(kh, kw, in, out)`` (2-D, HWIO) become ``(out, in, k)`` or
    ``(out, in, kh, kw)`` (OIHW); the dense layer after the convolutions also has its rows
    reordered, because flax flattens ``(L, C)`` / ``(H, W, C)`` position-major and torch
    flattens ``(C, L)`` / ``(C, H, W)`` channel-major.
    """
    p = jax.tree_util.tree_map(np.asarray, params)
    model = workload.torch_model()
    convs = sorted((k for k in p if k.startswith("Conv_")), key=lambda k: int(k[5:]))
    denses = sorted((k for k in p if k.startswith("Dense_")), key=lambda k: int(k[6:]))
    tensors = []
    for name in convs:
        kernel = p[name]["kernel"]  # (*window, in, out) -> (out, in, *window)
        spatial = tuple(range(kernel.ndim - 2))
        tensors += [kernel.transpose(kernel.ndim - 1, kernel.ndim - 2, *spatial),
                    p[name]["bias"]]
    for i, name in enumerate(denses):
        kernel = p[name]["kernel"]
        if i == 0 and convs:  # rows l * C + c (flax) -> c * L + l (torch); l: position
            channels = p[convs[-1]]["kernel"].shape[-1]
            kernel = kernel.reshape(-1, channels, kernel.shape[-1]).transpose(1, 0, 2)
            kernel = kernel.reshape(-1, kernel.shape[-1])
        tensors += [kernel.T, p[name]["bias"]]
    with torch.no_grad():
        for param, value in zip(model.parameters(), tensors, strict=True):
            if tuple(param.shape) != value.shape:
                raise ValueError(f"cannot port {value.shape} into a torch {tuple(param.shape)}")
            param.copy_(torch.from_numpy(np.array(value, dtype=np.float32)))
    return model


def check_port(workload: Workload, params: Any, x: np.ndarray, atol: float = 1e-4) -> float:
    """Largest logit difference of one seed's flax ``params`` and its torch port on ``x``.

    Raises ``AssertionError`` above ``atol``: the twins must compute the same function.
    """
    flax_out = np.asarray(workload.flax_model().apply({"params": params}, x, train=False))
    with torch.no_grad():
        torch_out = port_params(workload, params)(
            torch.from_numpy(workload.to_torch_layout(x))).numpy()
    gap = float(np.max(np.abs(flax_out - torch_out)))
    assert gap <= atol, f"{workload.name}: torch twin differs from flax by {gap:.2e}"
    return gap


# --------------------------------------------------------------------------- timing


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """``(seconds, result)`` of one call; ``fn`` must block until its work is done."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def interleaved_medians(
    methods: dict[str, Callable[[], Any]], repeats: int, min_seconds: float = 0.0,
) -> tuple[dict[str, float], dict[str, list[float]], dict[str, Any]]:
    """Median seconds of each method over ``repeats`` rounds, each round timing every method.

    Interleaving spreads the load of other jobs on a shared machine over all methods alike.
    With ``min_seconds``, a method whose call is shorter is called back to back in each
    round until about that long, and the time per call is reported: a single call of a few
    milliseconds, made after the other methods, measures waking the thread pools as much as
    the work (2026-11-30, 2 cores: 8 seeds' integrated gradients on 2 JAX devices took 6-8 ms
    per call back to back and 13-16 ms as one call per round, against 12 ms for the loop of
    single-seed calls either way). Returns the medians, every time taken (per call), and
    each method's result from its last round.
    """
    calls = dict.fromkeys(methods, 1)
    if min_seconds > 0:
        for name, fn in methods.items():
            calls[name] = max(1, math.ceil(min_seconds / max(timed(fn)[0], 1e-6)))
    times: dict[str, list[float]] = {name: [] for name in methods}
    results: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in methods.items():
            start = time.perf_counter()
            for _ in range(calls[name]):
                results[name] = fn()
            times[name].append((time.perf_counter() - start) / calls[name])
    return {n: statistics.median(t) for n, t in times.items()}, times, results


def fastest_torch_threads(trial: Callable[[], Any], tries: int = 2) -> tuple[int, dict]:
    """The faster of :data:`TORCH_THREAD_CHOICES` for ``trial``, and each one's best time.

    ``trial`` is a short version of the PyTorch work about to be timed (a few steps).
    Leaves PyTorch set to the chosen count; a caller that switches between methods sets it
    again with ``torch.set_num_threads`` before each.
    """
    best: dict[int, float] = {}
    for threads in TORCH_THREAD_CHOICES:
        torch.set_num_threads(threads)
        trial()  # first-call costs
        best[threads] = min(timed(trial)[0] for _ in range(tries))
    chosen = min(best, key=best.get)
    torch.set_num_threads(chosen)
    return chosen, best


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
        "jax_device_count": jax.device_count(), "jax_devices_reason": CORE_SETUP.reason,
        "torch_thread_choices": list(TORCH_THREAD_CHOICES), "python": platform.python_version(),
        "jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__,
        "torch": torch.__version__, "captum": captum.__version__, "numpy": np.__version__,
    }


def machine_line(info: dict[str, Any]) -> str:
    return (f"{info['cpu']}, {info['cpu_count']} cores (JAX {info['jax']} on "
            f"{info.get('jax_device_count', 1)} device(s), {info['jax_device']} first: "
            f"{info.get('jax_devices_reason', '')}; torch {info['torch']}, captum "
            f"{info['captum']}; load average {load_average()})")


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1, default=float))
    return path


def parse_ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]
