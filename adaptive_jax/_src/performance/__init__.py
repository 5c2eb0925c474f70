"""Fast paths: the implementation of :mod:`adaptive_jax.performance`."""
