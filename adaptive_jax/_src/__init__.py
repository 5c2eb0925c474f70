"""The implementation of adaptive_jax (private): import from the public modules."""
