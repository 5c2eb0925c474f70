"""XLA's own CPU compile options, for the tests that compare bits with the code users get.

The suite compiles with cheaper settings (``tests/conftest.py``): XLA's older loop
emitters and LLVM's optimisation level 0.  Both give IEEE results, but not always the
same last bit as XLA's default code (at level 3 it may contract ``a * b + c`` into a
fused multiply-add).  A test that compares bits with the default code (the native
kernels reproduce it) or between two differently structured programs compiles them
with ``jax.jit(f, compiler_options=XLA_DEFAULTS)``.
"""

XLA_DEFAULTS = {"xla_cpu_use_fusion_emitters": True, "xla_backend_optimization_level": 3}
