"""Fast paths: flat buffers, the donated train step and the cache-blocked update.

This module only re-exports; see each module for the idea it holds.
"""

from adaptive_jax.performance.blocked import blocked_step, blocking_problems
from adaptive_jax.performance.flatten import FlatLayoutError, Flattened, flatten
from adaptive_jax.performance.layout import FlatLayout, FlatParams, ravel_params
from adaptive_jax.performance.train_step import (
    DonatingStep,
    apply_step,
    make_train_step,
    update_step,
)

__all__ = [
    "DonatingStep",
    "FlatLayout",
    "FlatLayoutError",
    "FlatParams",
    "Flattened",
    "apply_step",
    "blocked_step",
    "blocking_problems",
    "flatten",
    "make_train_step",
    "ravel_params",
    "update_step",
]
