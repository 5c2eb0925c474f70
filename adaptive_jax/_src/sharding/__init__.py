"""Sharding: the implementation of :mod:`adaptive_jax.sharding`."""
