"""Native CPU kernels: the elementwise optimizer step as one generated C loop.

:func:`fused_apply_step` is the entry point; :func:`available` says whether a C
compiler and XLA's FFI are usable here (and why not).
"""

from adaptive_jax.performance.native.build import available
from adaptive_jax.performance.native.fused import fused_apply_step, fused_elementwise

__all__ = ["available", "fused_apply_step", "fused_elementwise"]
