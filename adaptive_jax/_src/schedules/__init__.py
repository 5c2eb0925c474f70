"""Pytree schedules: the implementation of :mod:`adaptive_jax.schedules`."""
