"""Data parallelism with `jax.sharding`: the global batch split along a "data" mesh axis,
parameters and optimizer state replicated. The jitted steps need no change: XLA inserts the
gradient all-reduce because the inputs say where they live.

On several hosts, call `jax.distributed.initialize()` first (`jaxnets --distributed ...`). Each
host builds the same global batch from the same seed and keeps the rows of its own devices, so
the data pipeline needs no change; a pipeline that reads only its host's share passes
`process_local=True` instead.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def data_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over every device of every host (or the ones given)."""
    return Mesh(np.array(devices or jax.devices()), (DATA_AXIS,))


def default_mesh() -> Mesh | None:
    """The data mesh over all devices when there are several, else None (plain single-device
    placement): what every trainer uses unless told otherwise."""
    return data_mesh() if jax.device_count() > 1 else None


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Put every array of `tree` on every device of `mesh`."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_batch(batch: Any, mesh: Mesh, *, process_local: bool = False) -> Any:
    """Split each array's leading (batch) axis over the mesh's data axis.

    `process_local=True`: each host passes only its part and the global array is assembled
    from them. The batch size must divide evenly by the number of devices (of this host, if
    local).
    """
    sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    size = mesh.devices.size // (jax.process_count() if process_local else 1)

    def put(x: Any) -> Any:
        x = np.asarray(x)
        if x.ndim == 0:
            return jax.device_put(x, NamedSharding(mesh, PartitionSpec()))
        if x.shape[0] % size:
            raise ValueError(
                f"a batch of {x.shape[0]} rows does not split evenly over {size} devices; "
                f"choose a batch size that is a multiple of {size}"
            )
        if process_local:
            return jax.make_array_from_process_local_data(sharding, x)
        return jax.device_put(x, sharding)

    return jax.tree.map(put, batch)
