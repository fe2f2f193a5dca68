"""Where seeds live: the seed axis sharded over a device mesh, on one host or many.

Every stacked object is split along its leading (seed) axis over a one-dimensional
:class:`jax.sharding.Mesh` whose axis is named ``"seeds"``; the data every seed shares is
replicated. The same code runs on one CPU, eight GPUs or a TPU pod slice: on several
hosts (after :func:`initialize_distributed`) the mesh spans every process's devices,
each host holds its share of seeds, and :func:`to_host` gathers whole arrays back.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

SEED_AXIS = "seeds"

# Environment variables read by initialize_distributed when no flag is given; the
# names are the ones JAX's own cluster detection documents.
_ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
_ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
_ENV_PROCESS_ID = "JAX_PROCESS_ID"


class CoreSetup(NamedTuple):
    """What :func:`use_all_cores` did: the CPU devices JAX has (or will have), and why."""

    num_devices: int
    reason: str


# What use_all_cores decided in this process, for the plan line; None: never called.
_CORE_SETUP: CoreSetup | None = None
_FORCE_FLAG = re.compile(r"--xla_force_host_platform_device_count=(\d+)")


def available_cores() -> int:
    """CPU cores this process may run on: its affinity mask, capped by a cgroup CPU quota
    (a container given 2 CPUs of a 64-core host has 2)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as limit:
            quota, period = limit.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def _backends_initialized() -> bool:
    try:
        # A private module of jax, imported only where asked: it may move between versions.
        from jax._src import xla_bridge
        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # a JAX that moved it: assume the worst
        return True


def _user_cpu_devices() -> CoreSetup | None:
    """The CPU device count the user set before JAX started, and where, or None."""
    forced = _FORCE_FLAG.search(os.environ.get("XLA_FLAGS", ""))
    if forced:
        return CoreSetup(int(forced.group(1)), "CPU devices set by XLA_FLAGS "
                         "(--xla_force_host_platform_device_count)")
    if jax.config.jax_num_cpu_devices > 0:
        return CoreSetup(int(jax.config.jax_num_cpu_devices),
                         "CPU devices set by JAX_NUM_CPU_DEVICES or jax_num_cpu_devices")
    return None


def use_all_cores(num_devices: int | None = None) -> CoreSetup:
    """Give JAX one CPU device per available core, so the ``seeds`` mesh spreads seeds
    over every core; call it before anything touches JAX's devices or arrays.

    XLA runs one CPU device's small operations on about one core, so on a CPU a study
    with one device leaves the other cores mostly idle; with one device per core the
    seed axis is split over them (results per seed are the same). ``main.py`` calls this
    first thing; a script or notebook calls it right after its imports.

    A setting of the user's wins: ``XLA_FLAGS=--xla_force_host_platform_device_count=N``,
    ``JAX_NUM_CPU_DEVICES=N`` or ``jax.config.update("jax_num_cpu_devices", N)`` made
    before this call are kept. Where JAX is already initialised, nothing can change: a
    warning says how many devices JAX has and what to do (call this before the first JAX
    computation, restarting the kernel in a notebook, or set ``JAX_NUM_CPU_DEVICES``
    before Python starts). Accelerators are not affected: only JAX's CPU backend gets the
    devices, and a GPU or TPU stays the default backend.

    Args:
      num_devices: CPU devices to ask for; default :func:`available_cores`.

    Returns:
      the CPU device count JAX will have and the reason, also shown in the plan line.
    """
    global _CORE_SETUP
    wanted = available_cores() if num_devices is None else int(num_devices)
    if wanted < 1:
        raise ValueError(f"num_devices={num_devices!r} is not allowed; it must be at least 1")
    if _CORE_SETUP is not None and jax.config.jax_num_cpu_devices == _CORE_SETUP.num_devices:
        return _CORE_SETUP  # called again: our own setting, not the user's
    user = _user_cpu_devices()
    if user is not None:
        setup = user
    elif _backends_initialized():
        have = len(jax.devices("cpu"))
        setup = CoreSetup(have, "JAX was initialised before negres.use_all_cores()")
        if have != wanted:
            logging.warning(
                "negres: JAX is already initialised with %d CPU device(s), so the seeds "
                "cannot spread over all %d cores; call negres.use_all_cores() before the "
                "first JAX computation (in a notebook: restart the kernel, call it after "
                "the imports) or start Python with JAX_NUM_CPU_DEVICES=%d", have, wanted,
                wanted)
    else:
        jax.config.update("jax_num_cpu_devices", wanted)
        setup = CoreSetup(wanted, f"one CPU device per available core ({wanted})")
    _CORE_SETUP = setup
    return setup


def devices_reason(mesh: Mesh) -> str:
    """Why ``mesh`` has the devices it has, for the plan line."""
    platform = mesh.devices.flat[0].platform
    if platform != "cpu":
        return f"every {platform} device"
    if _CORE_SETUP is not None:
        return _CORE_SETUP.reason
    if _user_cpu_devices() is not None:
        return "CPU devices set by the user"
    return ("JAX's default of one CPU device (negres.use_all_cores() gives one per core, "
            f"{available_cores()} here)")


def seed_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-dimensional mesh named ``"seeds"`` over ``devices`` (default: every device
    of every process)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (SEED_AXIS,))


def seeded(mesh: Mesh) -> NamedSharding:
    """Leading axis split over the mesh: the sharding of every ``(S, ...)`` array."""
    return NamedSharding(mesh, PartitionSpec(SEED_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device: the sharding of data shared by all seeds."""
    return NamedSharding(mesh, PartitionSpec())


def spread_seeds(value: Any) -> Any:
    """``value`` (a pytree of ``(S, ...)`` arrays) split along its seed axis over this
    process's devices, so that jitted per-seed work on it (evaluators) runs on all of them.

    The mesh is the largest number of local devices that divides ``S`` (no padding rows
    that every evaluator would have to drop); on one device, or where only one divides
    ``S``, ``value`` comes back as it was. Each seed is computed as on one device.
    """
    leaves = jax.tree_util.tree_leaves(value)
    if not leaves:
        return value
    num_seeds = int(np.shape(leaves[0])[0])
    local = jax.local_devices()
    count = max(k for k in range(1, min(len(local), num_seeds) + 1) if num_seeds % k == 0)
    if count == 1:
        return value
    return jax.device_put(value, seeded(seed_mesh(local[:count])))


def put(value: Any, sharding: NamedSharding) -> Any:
    """Place host arrays (a pytree) with ``sharding``, on one host or many.

    Every process passes the whole array; each keeps only the shards of its own devices,
    which is what lets a multi-host run start from arrays all hosts can compute.
    """

    def one(leaf: Any) -> jax.Array:
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree_util.tree_map(one, value)


def to_host(value: Any) -> Any:
    """Whole arrays as NumPy (a pytree), gathered from every process when there are several."""
    def one(leaf: Any) -> np.ndarray:
        # Only arrays spread over other processes' devices need gathering; NumPy arrays
        # and arrays this process holds whole are already complete here.
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return np.asarray(leaf)

    return jax.tree_util.tree_map(one, value)


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    **options: Any,
) -> bool:
    """Join a multi-host run through :func:`jax.distributed.initialize`; return whether one
    was joined.

    Arguments left ``None`` are read from ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``
    and ``JAX_PROCESS_ID``. With none of them set, nothing happens (one host). On clusters
    JAX detects by itself (Cloud TPU pods, SLURM, Open MPI), use :func:`initialize_auto`.
    ``options`` go to :func:`jax.distributed.initialize` (e.g. ``heartbeat_timeout_seconds``).
    Must run before anything else touches JAX's devices.
    """
    coordinator_address = coordinator_address or os.environ.get(_ENV_COORDINATOR) or None
    if num_processes is None and os.environ.get(_ENV_NUM_PROCESSES):
        num_processes = int(os.environ[_ENV_NUM_PROCESSES])
    if process_id is None and os.environ.get(_ENV_PROCESS_ID):
        process_id = int(os.environ[_ENV_PROCESS_ID])
    if coordinator_address is None and num_processes is None and process_id is None:
        return False
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=num_processes,
        process_id=process_id, **options,
    )
    _log_processes()
    return True


def initialize_auto() -> None:
    """Join a multi-host run on a cluster JAX detects by itself (TPU pod, SLURM, MPI)."""
    jax.distributed.initialize()
    _log_processes()


def agreed(value: int) -> int:
    """Process 0's ``value`` on every process: choices made from local timings or local
    memory must match, or the processes would compile different programs."""
    if jax.process_count() == 1:
        return value
    return int(multihost_utils.broadcast_one_to_all(np.int64(value)))


def barrier(name: str) -> None:
    """Wait until every process gets here (nothing to wait for on one host)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def _log_processes() -> None:
    logging.info("negres: process %d of %d, %d local and %d global devices",
                 jax.process_index(), jax.process_count(), jax.local_device_count(),
                 jax.device_count())


def is_main_process() -> bool:
    """Whether this process writes results (process 0; the only one on one host)."""
    return jax.process_index() == 0
