"""Compile, cache and load the native pieces: the FFI handler and generated kernels.

Both are compiled on first use with the system C/C++ compiler (``$CC``/``$CXX``,
else ``cc``/``c++``) into a cache directory (``$ADAPTIVE_JAX_CACHE``, else
``~/.cache/adaptive_jax``), keyed by a hash of the source, the flags, the compiler's
version and this CPU's feature flags (the kernels use ``-march=native``).  A compiled
library is written under a temporary name and renamed into place, so parallel
processes (``pytest -n``) can share the cache.

:func:`available` says whether native kernels can be used here, and why not.
``ADAPTIVE_JAX_NATIVE=0`` turns them off.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import jax

HANDLER_SOURCE = Path(__file__).with_name("elementwise_ffi.cc")
TARGET_NAME = "adaptive_jax_elementwise"
KERNEL_FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=fast", "-fwrapv",
                "-std=c11", "-shared", "-fPIC")  # fmt: skip
HANDLER_FLAGS = ("-O2", "-std=c++17", "-shared", "-fPIC", "-pthread", "-w")


class NativeUnavailable(RuntimeError):
    """No native kernels here (no compiler, not a CPU build, or turned off)."""


def cache_dir() -> Path:
    """The first writable of ``$ADAPTIVE_JAX_CACHE``, ``~/.cache``, the temp directory."""
    roots = [os.environ.get("ADAPTIVE_JAX_CACHE"), Path.home() / ".cache" / "adaptive_jax"]
    roots.append(Path(tempfile.gettempdir()) / f"adaptive_jax-{os.getuid()}")
    for root in roots:
        if not root:
            continue
        path = Path(root) / "native"
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(path, os.W_OK):
            return path
    raise NativeUnavailable("no writable cache directory for compiled kernels")


def _compiler(variable: str, default: str) -> str:
    name = os.environ.get(variable, default)
    found = shutil.which(name)
    if found is None:
        raise NativeUnavailable(f"no C compiler: ${variable} or `{default}` not found on PATH")
    return found


@functools.cache
def _machine_key(compiler: str) -> str:
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line
                break
    except OSError:
        pass
    return f"{version}|{flags}|{platform.machine()}|{jax.__version__}"


def _compile(source: str, suffix: str, compiler: str, flags: tuple[str, ...], extra=()) -> Path:
    key = hashlib.sha256(
        "\n".join([source, " ".join(flags + tuple(extra)), _machine_key(compiler)]).encode()
    ).hexdigest()[:24]
    target = cache_dir() / f"{key}.so"
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(dir=cache_dir()) as scratch:
        src = Path(scratch) / f"source{suffix}"
        src.write_text(source)
        out = Path(scratch) / "lib.so"
        done = subprocess.run(
            [compiler, *flags, *extra, str(src), "-o", str(out), "-lm"],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise NativeUnavailable(f"compiling a native kernel failed:\n{done.stderr[-2000:]}")
        os.replace(out, target)
    return target


_LOADED: dict[str, ctypes.CDLL] = {}


@functools.cache
def register_handler() -> None:
    """Compile the FFI handler once and register it with XLA as a CPU target."""
    if os.environ.get("ADAPTIVE_JAX_NATIVE", "1") == "0":
        raise NativeUnavailable("turned off by ADAPTIVE_JAX_NATIVE=0")
    compiler = _compiler("CXX", "c++")
    path = _compile(
        HANDLER_SOURCE.read_text(),
        ".cc",
        compiler,
        HANDLER_FLAGS,
        extra=("-I", jax.ffi.include_dir()),
    )
    library = ctypes.CDLL(str(path))
    _LOADED["handler"] = library
    capsule = jax.ffi.pycapsule(library.AdaptiveJaxElementwise)
    jax.ffi.register_ffi_target(TARGET_NAME, capsule, platform="cpu")


@functools.cache
def kernel_address(source: str) -> int:
    """Compile a generated kernel (cached) and return the address of ``aj_kernel``."""
    register_handler()
    path = _compile(source, ".c", _compiler("CC", "cc"), KERNEL_FLAGS)
    library = ctypes.CDLL(str(path))
    _LOADED[source] = library  # keep it loaded for as long as the process runs
    address = ctypes.cast(library.aj_kernel, ctypes.c_void_p).value
    assert address is not None
    return address


@functools.cache
def available() -> str | None:
    """``None`` if native kernels work here, else the reason they do not."""
    try:
        register_handler()
    except NativeUnavailable as error:
        return str(error)
    return None
