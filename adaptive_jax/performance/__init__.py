"""Fast paths: flat buffers and the donating train step.

This module only re-exports; see each module for the idea it holds.
"""

from adaptive_jax.performance.flatten import FlatLayoutError, Flattened, flatten
from adaptive_jax.performance.layout import FlatLayout, FlatParams, ravel_params
from adaptive_jax.performance.train_step import (
    DonatingStep,
    StepPath,
    apply_step,
    choose_path,
    make_train_step,
    update_step,
)

__all__ = [
    "DonatingStep",
    "FlatLayout",
    "FlatLayoutError",
    "FlatParams",
    "Flattened",
    "StepPath",
    "apply_step",
    "choose_path",
    "flatten",
    "make_train_step",
    "ravel_params",
    "update_step",
]
