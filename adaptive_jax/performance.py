"""Fast paths: the donating step helpers, flat layouts and the native CPU step.

* :func:`update_step`, :func:`make_train_step` — jitted steps that donate (consume) the
  parameters and the state; :func:`apply_step` is their traceable body, and
  :func:`choose_path` the one rule for where a step runs;
* :func:`ravel_params` / :class:`FlatParams` — parameters in one buffer per dtype;
  :func:`flatten` — the optimizer state in one buffer per dtype;
* :func:`native_available` — whether the native CPU step can be used here, and if not,
  why (``ADAPTIVE_JAX_NATIVE=0`` turns it off).
"""

from adaptive_jax._src.performance.dispatch import StepPath, apply_step, choose_path
from adaptive_jax._src.performance.donation import DonatingStep
from adaptive_jax._src.performance.flatten import FlatLayoutError, Flattened, flatten
from adaptive_jax._src.performance.layout import FlatLayout, FlatParams, ravel_params
from adaptive_jax._src.performance.native.build import available as native_available
from adaptive_jax._src.performance.train_step import make_train_step, update_step

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
    "native_available",
    "ravel_params",
    "update_step",
]
