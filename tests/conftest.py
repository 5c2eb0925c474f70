"""Test configuration: float64 on, strict dtype promotion, cheaper XLA compilation.

float64 makes comparisons with torch.optim and finite differences meaningful at
rtol 1e-9; strict promotion proves the library never relies on implicit promotion.
Tests that need float32/bfloat16 ask for the dtype explicitly.

Half of the suite's time is XLA compiling small programs; four settings make that
cheaper:

* ``--xla_cpu_use_fusion_emitters=false``: XLA's CPU backend emits fused loops with
  its older LLVM IR emitters instead of the MLIR fusion emitters (measured on 2 cores:
  compile time of ``tests/test_wrappers.py`` and ``tests/test_recent_optimizers.py``
  75 s → 40 s).  Both emit the same HLO operations, but not always the same last bit
  (one float32 output of adopt differed by 1 ulp): the tests compare against optax,
  torch, closed forms and finite differences, which run under the same flag, and the
  tests that compare bits with XLA's default code (``tests/test_native.py``) ask for
  XLA's defaults in their ``compiler_options`` (``tests/xla_defaults.py``).
  Subprocesses started by the tests (examples, the 8-device suite) inherit these flags
  through ``XLA_FLAGS``.
* ``--xla_backend_optimization_level=0``: LLVM's optimisation level 0 for the code of
  each program (XLA's own HLO passes still run).  The code runs slower, which the
  suite's small programs do not notice.  Its results are IEEE arithmetic like the
  default's, but some last bits differ (the default, level 3, may contract
  ``a * b + c`` into a fused multiply-add): tests that compare bits with it, or between two
  differently structured programs, compile those with ``tests/xla_defaults.py``
  (full suite on 2 cores, cold caches: 382 s before, 334 s and 351 s after).
* ``--xla_cpu_parallel_codegen_split_count=1``: one LLVM module per program instead of
  up to 32 compiled on parallel threads.  The split pays off on an idle machine; here
  both cores already run a worker each, and the parts only add per-module work
  (measured on 2 cores, ``-n 2`` on four modules, three runs each: 62 CPU-s → 54 CPU-s,
  36 s → 31 s).  The code inside each kernel is the same.
* JAX's persistent compilation cache in a private temporary folder for this run only
  (made here, shared by the xdist workers, removed at exit): tests that build the same
  program in a new ``jit`` (a closure per test) compile it once.  Every run starts
  with an empty cache, so the suite's time is that of a fresh machine.

Scheduling: ``pyproject.toml`` runs xdist with ``--dist loadscope`` (a module goes to one
worker, so a module-scoped fixture runs once) and ``--no-loadscope-reorder``; the
collection hook below puts the slowest modules first, so that the last ones handed out
are short and both workers finish together (the longest-first rule of scheduling).
"""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

_COMPILE_FLAGS = (
    "--xla_cpu_use_fusion_emitters=false",
    "--xla_backend_optimization_level=0",
    "--xla_cpu_parallel_codegen_split_count=1",
)
for _flag in _COMPILE_FLAGS:
    if _flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_flag}".strip()

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


# Modules in the order a worker should start them: slowest first (seconds on 2 cores,
# measured with --durations; a module missing here runs after these, in file order).
# Those that start subprocesses (examples, sharding, multi-process jobs) come early, so
# their children overlap with the other worker's compiling.
SLOWEST_FIRST = (
    "test_meta_modes",  # 80: every optimizer's meta-gradient in three modes
    "test_sharding",  # 60: a pytest run on 8 devices and two examples in subprocesses
    "test_examples",  # 50: seven example scripts at once
    "test_native",  # 45: C compiler and XLA's default emitters
    "test_lbfgs",  # 45
    "test_differentiability",  # 45
    "test_checkpoint",  # 35: every optimizer eagerly
    "test_recent_optimizers",  # 30
    "test_optimizers_core",  # 30
    "test_train_step_trust",  # 30
    "test_doctests",  # 25: one subprocess runs every docstring
    "test_wrappers",  # 25
    "test_multi_process",  # 25: four multi-process jobs
    "test_clipping",  # 20
    "test_implicit",  # 20
)


def pytest_collection_modifyitems(config, items):
    """Slowest modules first (see the module docstring); a stable sort keeps the order
    of the tests inside a module."""
    rank = {name: index for index, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(Path(str(item.path)).stem, len(rank)))
