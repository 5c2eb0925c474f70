"""Native CPU kernels: the elementwise optimizer step as one generated C loop.

:func:`fused_apply_step` is the entry point; :func:`available` says whether every
translatable step runs natively here, and if not, why.

Trust model, in short (details in :mod:`.cache`, :mod:`.build`, :mod:`.codegen`):
code is compiled with the system's compilers and loaded only from this user's private
cache (``$ADAPTIVE_JAX_CACHE`` or ``~/.cache/adaptive_jax``; a private per-process
temp directory without a home), after checking that nobody else can write there and
that each library still has the content it was stored with; a step is translated only
if every operation in it is known; any failure — no compiler, a full disk, an unsafe
or damaged cache, an unknown operation — leaves the step on XLA, with the same
numbers.  ``ADAPTIVE_JAX_NATIVE=0`` turns native kernels off.
"""

from adaptive_jax._src.performance.native.build import available
from adaptive_jax._src.performance.native.errors import NativeUnavailable
from adaptive_jax._src.performance.native.fused import fused_apply_step, fused_elementwise

__all__ = ["NativeUnavailable", "available", "fused_apply_step", "fused_elementwise"]
