"""Sharding helpers built on JAX's own SPMD machinery (Mesh, NamedSharding, jit)."""

from adaptive_jax._src.sharding.zero import state_shardings, zero1_state_shardings

__all__ = ["state_shardings", "zero1_state_shardings"]
