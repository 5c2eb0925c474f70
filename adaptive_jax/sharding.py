"""Sharding helpers built on JAX's own SPMD machinery (Mesh, NamedSharding, jit).

Where optimizer state lives on a mesh (:func:`state_shardings`, ZeRO-1's
:func:`zero1_state_shardings`), the target to restore it into another layout
(:func:`abstract_state`), and a multi-process job on one machine
(:func:`launch_local_processes`, :func:`initialize_local_process`).
"""

from adaptive_jax._src.sharding.local import (
    LocalJob,
    LocalProcess,
    free_port,
    initialize_local_process,
    is_launched_process,
    launch_local_processes,
)
from adaptive_jax._src.sharding.zero import (
    abstract_state,
    state_shardings,
    zero1_state_shardings,
)

__all__ = [
    "LocalJob",
    "LocalProcess",
    "abstract_state",
    "free_port",
    "initialize_local_process",
    "is_launched_process",
    "launch_local_processes",
    "state_shardings",
    "zero1_state_shardings",
]
