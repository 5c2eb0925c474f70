"""Compile, cache, check and load the native pieces: the FFI handler and generated kernels.

Both are compiled on first use with the system compilers (:mod:`.toolchain`: ``$CXX``
for the handler, ``$CC`` for kernels) and kept in the user's private cache
(:mod:`.cache`, which holds the trust model: where code is loaded from and what is
checked first).  The first compilation in a process is announced once on the
``adaptive_jax`` logger at INFO: the handler takes a few seconds.

A library's cache key is two parts.  The *source key* covers everything but the
compiler that changes the binary: the source, the flags, this CPU's feature flags (the
kernels use ``-march=native``), the machine and, for the handler, the **contents** of
XLA's FFI headers and jaxlib's version.  The *compiler key* is the compiler's identity
(path, arguments, ``--version``).  With a compiler on ``PATH`` a library is looked up
by both, so a new compiler builds anew; without one, the newest library of the same
source key is used, so cached kernels keep working where no compiler is installed.

Nothing here raises anything but :class:`NativeUnavailable`: a missing or failing
compiler, a full disk, an unsafe or damaged cache, a library that does not load — each
is a reason to stay on XLA, reported by :func:`available`.  Failures are remembered for
the process (not retried at every trace).  ``ADAPTIVE_JAX_NATIVE=0`` turns kernels off.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import threading
from dataclasses import dataclass, field
from pathlib import Path

import jax

from adaptive_jax._src.performance.native import cache, toolchain
from adaptive_jax._src.performance.native.c_expressions import HEADER
from adaptive_jax._src.performance.native.errors import NativeUnavailable

__all__ = ["NativeUnavailable", "available", "kernel_address", "register_handler"]

logger = logging.getLogger(__name__)

HANDLER_SOURCE = Path(__file__).with_name("elementwise_ffi.cc")
HANDLER_SYMBOL = "AdaptiveJaxElementwise"
KERNEL_SYMBOL = "aj_kernel"
TARGET_NAME = "adaptive_jax_elementwise"
KERNEL_FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=fast", "-fwrapv",
                "-std=c11", "-shared", "-fPIC")  # fmt: skip
HANDLER_FLAGS = ("-O2", "-std=c++17", "-shared", "-fPIC", "-pthread", "-w")

# What available() compiles to prove that kernels can be built here: the generated
# kernels' header (tgmath, libm) and signature, with the kernel flags.
PROBE_SOURCE = (
    HEADER
    + "void aj_kernel(const void* const* in, void* const* out, int64_t lo, int64_t hi,"
    + " int64_t first) {\n    double* y = (double*)out[0];\n"
    + "    for (int64_t i = lo; i < hi; ++i) y[i] = sqrt(((const double*)in[0])[i]);\n}\n"
)


@dataclass
class _State:
    """What this process has built or failed to build (tests start from a fresh one)."""

    handler: ctypes.CDLL | NativeUnavailable | None = None
    kernels: dict[str, int | NativeUnavailable] = field(default_factory=dict)
    libraries: list[ctypes.CDLL] = field(default_factory=list)  # loaded for good
    announced: bool = False


_STATE = _State()
_REGISTERED: list[ctypes.CDLL] = []  # the handler XLA calls: registered once per process
_LOCK = threading.RLock()  # threads tracing at once build each library once


def _check_enabled() -> None:
    if os.environ.get("ADAPTIVE_JAX_NATIVE", "1") == "0":
        raise NativeUnavailable("turned off by ADAPTIVE_JAX_NATIVE=0")


def register_handler() -> None:
    """Build (or find) the FFI handler and register it with XLA as a CPU target, once."""
    _check_enabled()
    state = _STATE
    with _LOCK:
        _build_handler(state)
    if isinstance(state.handler, NativeUnavailable):
        raise state.handler


def _build_handler(state: _State) -> None:
    if state.handler is None:
        try:
            library = _library(handler_recipe())
            if not _REGISTERED:
                capsule = jax.ffi.pycapsule(getattr(library, HANDLER_SYMBOL))
                jax.ffi.register_ffi_target(TARGET_NAME, capsule, platform="cpu")
                _REGISTERED.append(library)
            state.handler = library
        except Exception as error:  # any failure means "stay on XLA"
            state.handler = _unavailable(error, "building the FFI handler")
            logger.info("native CPU step unavailable: %s", state.handler)


def kernel_address(source: str) -> int:
    """Build (or find) a generated kernel; the address of its ``aj_kernel``."""
    register_handler()
    with _LOCK:
        found = _build_kernel(_STATE, source)
    if isinstance(found, NativeUnavailable):
        raise found
    return found


def _build_kernel(state: _State, source: str) -> int | NativeUnavailable:
    found = state.kernels.get(source)
    if found is None:
        try:
            library = _library(kernel_recipe(source))
            address = ctypes.cast(getattr(library, KERNEL_SYMBOL), ctypes.c_void_p).value
            if not address:
                raise NativeUnavailable(f"{KERNEL_SYMBOL} has no address")
            state.libraries.append(library)  # loaded for as long as the process runs
            found = address
        except Exception as error:  # any failure means "stay on XLA"
            found = _unavailable(error, "building a kernel")
            logger.debug("native kernel unavailable: %s", found)
        state.kernels[source] = found
    return found


def available() -> str | None:
    """``None`` if every translatable step runs natively here, else the reason it does not.

    ``None`` means: the handler is registered, ``$CC`` runs, and a kernel built with it
    (now or by an earlier process) loads.
    Without a C compiler, kernels already in the cache still run natively, but new
    ones cannot be built, so the answer is a reason, not ``None``.
    """
    try:
        register_handler()
        kernel_address(PROBE_SOURCE)
        toolchain.find("CC", "cc", "C")
    except NativeUnavailable as error:
        return str(error)
    return None


def _unavailable(error: Exception, doing: str) -> NativeUnavailable:
    if isinstance(error, NativeUnavailable):
        return error
    unavailable = NativeUnavailable(f"{doing} failed: {type(error).__name__}: {error}")
    unavailable.__cause__ = error
    return unavailable


@dataclass(frozen=True)
class Recipe:
    """How to build one library, and the part of its cache key that needs no compiler."""

    what: str  # "FFI handler" or "kernel", for messages
    source: str
    suffix: str  # ".cc" or ".c"
    flags: tuple[str, ...]
    compiler: tuple[str, str, str]  # environment variable, default, language
    symbol: str  # what the library must define
    extra_key: tuple[str, ...] = ()  # what else changes the binary

    def source_key(self) -> str:
        """32 hex digits: the source, flags, extra key parts and this machine."""
        parts = ("v2", self.what, self.source, *self.flags, *self.extra_key, _machine_key())
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def handler_recipe() -> Recipe:
    """The FFI handler: keyed on XLA's FFI headers' contents and jaxlib's version too."""
    return Recipe(
        "FFI handler",
        HANDLER_SOURCE.read_text(),
        ".cc",
        (*HANDLER_FLAGS, "-I", jax.ffi.include_dir()),
        ("CXX", "c++", "C++"),
        HANDLER_SYMBOL,
        (_ffi_headers_digest(), _jaxlib_version()),
    )


def kernel_recipe(source: str) -> Recipe:
    """A generated kernel (plain C: no headers but the C library's)."""
    return Recipe("kernel", source, ".c", KERNEL_FLAGS, ("CC", "cc", "C"), KERNEL_SYMBOL)


def _library(recipe: Recipe) -> ctypes.CDLL:
    """The loaded library: from the cache if a valid one is there, else built and stored."""
    what = recipe.what
    entries = cache.directory()
    source_key = recipe.source_key()
    try:
        compiler: toolchain.Compiler | None = toolchain.find(*recipe.compiler)
        missing = None
    except NativeUnavailable as error:
        compiler, missing = None, error
    prefix = f"{source_key}-{compiler.key}-" if compiler else f"{source_key}-"
    for path in cache.find(entries, prefix):
        try:
            return _load(path, recipe.symbol)
        except cache.BadEntry as error:
            logger.info("discarding a cached native library: %s", error)
            cache.discard(path)
    if compiler is None:
        raise NativeUnavailable(f"{missing}; and no {what} built earlier is in {entries}")
    _announce(what, compiler, entries)
    with cache.scratch(entries) as scratch:
        built = toolchain.compile_library(
            compiler, recipe.source, recipe.suffix, recipe.flags, scratch
        )
        path = cache.store(entries, built, prefix)
    cache.evict(entries, keep=path)
    try:
        return _load(path, recipe.symbol)
    except cache.BadEntry as error:
        cache.discard(path)
        raise NativeUnavailable(f"the {what} just compiled cannot be loaded: {error}") from error


def _load(path: Path, symbol: str) -> ctypes.CDLL:
    """Load ``path`` after :func:`cache.verify`; :class:`cache.BadEntry` if it fails."""
    cache.verify(path)
    try:
        library = ctypes.CDLL(str(path))
        getattr(library, symbol)
    except (OSError, AttributeError) as error:
        raise cache.BadEntry(f"{path.name} does not load: {error}") from error
    cache.touch(path)
    return library


def _announce(what: str, compiler: toolchain.Compiler, entries: Path) -> None:
    if _STATE.announced:
        logger.debug("compiling a native %s with %s", what, compiler.argv[0])
        return
    _STATE.announced = True
    logger.info(
        "compiling the native CPU step's %s with %s into %s (first use: a few seconds; "
        "later runs load it from there; ADAPTIVE_JAX_NATIVE=0 turns this off)",
        what,
        " ".join(compiler.argv),
        entries,
    )


@functools.cache
def _machine_key() -> str:
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line
                break
    except OSError:
        pass
    return "|".join([platform.system(), platform.machine(), platform.processor(), flags])


@functools.cache
def _ffi_headers_digest() -> str:
    """SHA-256 of every file under ``jax.ffi.include_dir()`` (paths and contents)."""
    root = Path(jax.ffi.include_dir())
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _jaxlib_version() -> str:
    import jaxlib

    return str(getattr(jaxlib, "__version__", jax.__version__))
