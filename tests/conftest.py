"""Test configuration: float64 on, strict dtype promotion, cheaper XLA compilation.

float64 makes comparisons with torch.optim and finite differences meaningful at
rtol 1e-9; strict promotion proves the library never relies on implicit promotion.
Tests that need float32/bfloat16 ask for the dtype explicitly.

Half of the suite's time is XLA compiling small programs; two settings make that
cheaper:

* ``--xla_cpu_use_fusion_emitters=false``: XLA's CPU backend emits fused loops with
  its older LLVM IR emitters instead of the MLIR fusion emitters (measured on 2 cores:
  compile time of ``tests/test_wrappers.py`` and ``tests/test_recent_optimizers.py``
  75 s → 40 s).  Both emit the same HLO operations, but not always the same last bit
  (one float32 output of adopt differed by 1 ulp): the tests compare against optax,
  torch, closed forms and finite differences, which run under the same flag, and the
  tests that compare bits with XLA's default code (``tests/test_native.py``) ask for
  the default emitters in their ``compiler_options``.  Subprocesses started by the
  tests (examples, the 8-device suite) inherit the flag through ``XLA_FLAGS``.
* JAX's persistent compilation cache in a private temporary folder for this run only
  (made here, shared by the xdist workers, removed at exit): tests that build the same
  program in a new ``jit`` (a closure per test) compile it once.  Every run starts
  with an empty cache, so the suite's time is that of a fresh machine.
"""

import atexit
import os
import shutil
import tempfile

_EMITTER_FLAG = "--xla_cpu_use_fusion_emitters=false"
if _EMITTER_FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_EMITTER_FLAG}".strip()

import jax  # noqa: E402  (XLA_FLAGS is read when JAX starts its backend)

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")


def _run_compilation_cache() -> str:
    """The cache folder of this test run: made by the first process (pytest itself),
    inherited by the xdist workers it starts through the environment."""
    path = os.environ.get("ADAPTIVE_JAX_TEST_XLA_CACHE")
    if path is None or not os.path.isdir(path):
        path = tempfile.mkdtemp(prefix="adaptive-jax-test-xla-cache-")  # mode 0700
        os.environ["ADAPTIVE_JAX_TEST_XLA_CACHE"] = path
        atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


jax.config.update("jax_compilation_cache_dir", _run_compilation_cache())
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
