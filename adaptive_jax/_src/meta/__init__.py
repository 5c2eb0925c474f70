"""Meta-learning: the implementation of :mod:`adaptive_jax.meta`."""
