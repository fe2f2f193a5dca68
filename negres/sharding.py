"""Where seeds live: the seed axis sharded over a device mesh, on one host or many.

Every stacked object is split along its leading (seed) axis over a one-dimensional
:class:`jax.sharding.Mesh` whose axis is named ``"seeds"``; the data every seed shares is
replicated. The same code runs on one CPU, eight GPUs or a TPU pod slice: on several
hosts (after :func:`initialize_distributed`) the mesh spans every process's devices,
each host holds its share of seeds, and :func:`to_host` gathers whole arrays back.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

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
