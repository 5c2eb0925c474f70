"""The native step's cache and build, held to the standard of code loaded into other processes.

Each test builds into its own cache under ``tmp_path`` with a fresh build state (as a
new process would), seeded where it saves time with the FFI handler already compiled
in the real cache.  The oracle for numbers is always XLA's jitted plain step: after
any refusal or failure the step must fall back to it, with parameters and state
intact, and ``available()`` must say why.

(One module of about 430 lines: the issue's trust items share its fixtures — a fresh
build state, a cache seeded with the real handler, a planted library.)
"""

import errno
import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptive_jax as aj
from adaptive_jax._src.performance import native
from adaptive_jax._src.performance.native import build, cache, toolchain
from adaptive_jax._src.performance.native.build import TARGET_NAME
from adaptive_jax._src.performance.native.fused import MIN_SIZE
from tests.xla_defaults import XLA_DEFAULTS

SIZE = MIN_SIZE + 3  # large enough for apply_step(native=True) to try the kernel

PLANTED = r"""
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
__attribute__((constructor)) static void planted(void) {
    const char* marker = getenv("AJ_PLANTED_MARKER");
    FILE* f = marker ? fopen(marker, "w") : NULL;
    if (f) fclose(f);
}
void aj_kernel(const void* const* in, void* const* out, int64_t lo, int64_t hi, int64_t first) {}
"""


@pytest.fixture(scope="module")
def real_handler():
    """The FFI handler as built in the user's real cache (compiled once, then reused)."""
    assert native.available() is None, native.available()
    found = cache.find(cache.directory(), build.handler_recipe().source_key() + "-")
    assert found
    return found[0]


@pytest.fixture(scope="module")
def planted_library(tmp_path_factory):
    """A library whose constructor creates the file named by $AJ_PLANTED_MARKER."""
    folder = tmp_path_factory.mktemp("planted")
    (folder / "planted.c").write_text(PLANTED)
    subprocess.run(
        ["cc", "-shared", "-fPIC", "planted.c", "-o", "planted.so"], cwd=folder, check=True
    )
    return folder / "planted.so"


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A new process's build state over an empty cache at ``tmp_path/cache``."""
    monkeypatch.setattr(build, "_STATE", build._State())
    monkeypatch.setattr(toolchain, "_FOUND", {})
    monkeypatch.setattr(cache, "_PRIVATE", [])
    for variable in ("CC", "CXX", "ADAPTIVE_JAX_NATIVE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("ADAPTIVE_JAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AJ_PLANTED_MARKER", str(tmp_path / "planted-code-ran"))
    return tmp_path / "cache"


def seed(root: Path, *libraries: Path) -> Path:
    """Copy already-built libraries into the cache at ``root``; its entries directory."""
    entries = root / cache.SUBDIRECTORY
    cache.make_private(entries)
    for library in libraries:
        shutil.copy2(library, entries / library.name)
    return entries


def plant(entries: Path, library: Path, recipe: build.Recipe) -> Path:
    """``library`` under the name the cache would give a build of ``recipe``."""
    compiler = toolchain.find(*recipe.compiler)
    digest = hashlib.sha256(library.read_bytes()).hexdigest()[: cache.DIGEST_CHARS]
    target = entries / f"{recipe.source_key()}-{compiler.key}-{digest}.so"
    shutil.copy2(library, target)
    return target


PROBE = build.kernel_recipe(build.PROBE_SOURCE)


def plain_step(tx):
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return aj.apply_updates(params, updates), state

    return step


def check_step(native_expected: bool, tx=None):
    """One donated apply_step(native=True): native or not as expected, XLA's numbers."""
    tx = tx or aj.adam(1e-2)
    params = jnp.linspace(-1.0, 1.0, SIZE, dtype=jnp.float32)
    grads = jnp.cos(params * 3.0) * 0.1
    state = tx.init(params)
    # Both compiled as XLA compiles by default: a step that stays on XLA is that code.
    expected = jax.jit(plain_step(tx), compiler_options=XLA_DEFAULTS)(params, state, grads)
    step = jax.jit(
        lambda p, s, g: aj.performance.apply_step(tx, p, s, g, native=True),
        donate_argnums=(0, 1),
        compiler_options=XLA_DEFAULTS,
    )
    assert (TARGET_NAME in step.lower(params, state, grads).as_text()) == native_expected
    got = step(jnp.copy(params), jax.tree_util.tree_map(jnp.copy, state), grads)
    for x, y in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_array_equal(x, y)


def kernel_files(entries: Path) -> list[Path]:
    return sorted(entries.glob("*.so"))


# -- never load code from a place someone else can write ------------------------------


def test_cache_directories_and_libraries_are_private_under_umask_000(
    fresh, real_handler, monkeypatch
):
    root = fresh.parent / "a" / "b" / "cache"
    monkeypatch.setenv("ADAPTIVE_JAX_CACHE", str(root))
    previous = os.umask(0)
    try:
        entries = cache.directory()
        seed(root, real_handler)
        assert native.available() is None
    finally:
        os.umask(previous)
    for directory in (fresh.parent / "a", fresh.parent / "a" / "b", root, entries):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    built = [p for p in kernel_files(entries) if p.name != real_handler.name]
    assert built and all(stat.S_IMODE(p.stat().st_mode) & 0o077 == 0 for p in built)


@pytest.mark.parametrize("which", ["root", "entries", "parent"])
def test_a_cache_others_can_write_is_refused(fresh, real_handler, planted_library, which):
    entries = seed(fresh, real_handler)
    plant(entries, planted_library, PROBE)
    os.chmod({"root": fresh, "entries": entries, "parent": fresh.parent}[which], 0o777)
    reason = native.available()
    assert reason is not None and "writable by" in reason, reason
    assert not Path(os.environ["AJ_PLANTED_MARKER"]).exists()
    check_step(native_expected=False)


@pytest.mark.parametrize(
    "mode, group, refused",
    [(0o770, "own", False), (0o770, "shared", True), (0o1777, "shared", False)],
    ids=["private group", "shared group", "sticky"],
)
def test_ancestors_others_cannot_write_to(fresh, mode, group, refused, monkeypatch):
    # A parent writable by this user's private group (umask 002 distributions) or
    # sticky (/tmp) is fine; one that another user can write to is not.
    os.chmod(fresh.parent, mode)
    monkeypatch.setattr(cache, "_private_group", lambda gid, uid: group == "own")
    try:
        reason = None
        cache.directory()
    except native.NativeUnavailable as error:
        reason = str(error)
    assert (reason is not None) == refused, reason


def test_a_cache_owned_by_someone_else_is_refused(
    fresh, real_handler, planted_library, monkeypatch
):
    entries = seed(fresh, real_handler)
    plant(entries, planted_library, PROBE)
    monkeypatch.setattr(cache, "current_uid", lambda: os.geteuid() + 4242)
    reason = native.available()
    assert reason is not None and f"owned by uid {os.geteuid()}" in reason, reason
    assert not Path(os.environ["AJ_PLANTED_MARKER"]).exists()
    check_step(native_expected=False)


@pytest.mark.parametrize("how", ["writable by others", "symlink", "wrong content"])
def test_a_planted_library_is_never_loaded(fresh, real_handler, planted_library, how, tmp_path):
    entries = seed(fresh, real_handler)
    target = plant(entries, planted_library, PROBE)
    if how == "writable by others":
        os.chmod(target, 0o777)
    elif how == "symlink":
        target.unlink()
        target.symlink_to(planted_library)
    else:  # a library under the digest of another content
        target.rename(target.with_name(target.name[:-10] + "0123456.so"))
    assert native.available() is None  # the probe kernel is rebuilt, not loaded
    assert not Path(os.environ["AJ_PLANTED_MARKER"]).exists()
    assert not any(p.is_symlink() or p.stat().st_mode & 0o022 for p in entries.iterdir())
    check_step(native_expected=True)


@pytest.mark.parametrize("kind", ["fifo", "directory", "empty"])
def test_what_is_not_a_library_fails_verification_without_blocking(tmp_path, kind):
    path = tmp_path / "key-compiler-digest.so"
    {"fifo": os.mkfifo, "directory": os.mkdir, "empty": Path.touch}[kind](path)
    with pytest.raises(cache.BadEntry):
        cache.verify(path)


def test_without_a_home_the_cache_is_private_to_the_process(
    fresh, real_handler, planted_library, monkeypatch, tmp_path
):
    # The old fallback, $TMPDIR/adaptive_jax-<uid>, could be pre-created by anyone.
    monkeypatch.delenv("ADAPTIVE_JAX_CACHE")

    def no_home(cls):
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", classmethod(no_home))
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    predictable = temp / f"adaptive_jax-{os.geteuid()}" / "native"
    predictable.mkdir(parents=True)
    shutil.copy2(planted_library, predictable / "planted.so")
    os.chmod(predictable.parent, 0o777)
    entries = cache.directory()
    assert entries.parent.parent == temp and entries.parent != predictable.parent
    assert stat.S_IMODE(entries.parent.stat().st_mode) == 0o700
    assert cache.directory() == entries  # one directory for the whole process
    seed(entries.parent, real_handler)
    assert native.available() is None
    assert not Path(os.environ["AJ_PLANTED_MARKER"]).exists()
    check_step(native_expected=True)


def test_without_posix_user_ids_available_says_why(fresh, monkeypatch):
    # Windows has no os.getuid/os.geteuid: no AttributeError, a reason and XLA's step.
    monkeypatch.delattr(os, "geteuid")
    monkeypatch.delattr(os, "getuid", raising=False)
    reason = native.available()
    assert reason is not None and "POSIX" in reason
    check_step(native_expected=False)


# -- the cache key and the cache's size ---------------------------------------------------


def test_the_handler_key_covers_the_ffi_headers_contents_and_jaxlib_version(tmp_path, monkeypatch):
    headers = tmp_path / "include"
    shutil.copytree(jax.ffi.include_dir(), headers)
    monkeypatch.setattr(jax.ffi, "include_dir", lambda: str(headers))
    build._ffi_headers_digest.cache_clear()
    try:
        before = build.handler_recipe().source_key()
        api = next(headers.rglob("ffi.h"))
        api.write_text(api.read_text() + "\n// another jaxlib's header\n")
        build._ffi_headers_digest.cache_clear()
        after_header = build.handler_recipe().source_key()
        monkeypatch.setattr(build, "_jaxlib_version", lambda: "0.0.0-other")
        after_version = build.handler_recipe().source_key()
    finally:
        build._ffi_headers_digest.cache_clear()
    assert len({before, after_header, after_version}) == 3


def test_a_new_compiler_builds_anew_and_the_key_does_not_need_one(fresh, real_handler, monkeypatch):
    entries = seed(fresh, real_handler)
    assert native.available() is None
    assert len(kernel_files(entries)) == 2  # the handler and the probe kernel
    monkeypatch.setattr(build, "_STATE", build._State())
    monkeypatch.setenv("CC", "cc -DANOTHER_COMPILER=1")  # another identity, same source key
    assert native.available() is None
    probes = [p for p in kernel_files(entries) if p.name.startswith(PROBE.source_key())]
    assert len(probes) == 2 and len({p.name.split("-")[1] for p in probes}) == 2


def test_the_cache_keeps_the_most_recently_used_libraries(tmp_path, monkeypatch):
    entries = tmp_path / "entries"
    entries.mkdir()
    for k in range(6):
        path = entries / f"key{k}-c-d.so"
        path.write_bytes(b"x" * 1000)
        os.utime(path, (1000.0 + k, 1000.0 + k))
    (entries / ".build-crashed").mkdir()
    os.utime(entries / ".build-crashed", (1.0, 1.0))
    cache.touch(entries / "key0-c-d.so")  # used just now
    monkeypatch.setattr(cache, "MAX_ENTRIES", 4)
    cache.evict(entries)
    assert sorted(p.name for p in entries.iterdir()) == [f"key{k}-c-d.so" for k in (0, 3, 4, 5)]
    monkeypatch.setattr(cache, "MAX_BYTES", 2500)
    cache.evict(entries, keep=entries / "key3-c-d.so")
    assert sorted(p.name for p in entries.iterdir()) == [f"key{k}-c-d.so" for k in (0, 3, 5)]


def test_building_evicts_beyond_the_bound(fresh, real_handler, monkeypatch):
    entries = seed(fresh, real_handler)
    monkeypatch.setattr(cache, "MAX_ENTRIES", 2)
    assert native.available() is None
    check_step(native_expected=True)  # a third library: the least recently used goes
    assert len(kernel_files(entries)) == 2


# -- a damaged cache or a failing build never crashes the step ---------------------------


@pytest.mark.parametrize("keep", [64, "half"])
def test_a_truncated_library_is_rebuilt_not_loaded(fresh, real_handler, keep, monkeypatch):
    entries = seed(fresh, real_handler)
    check_step(native_expected=True)
    (kernel,) = [p for p in kernel_files(entries) if p.name != real_handler.name]
    size = kernel.stat().st_size
    # A new file in its place: truncating the one this process has mapped would crash
    # this process (SIGBUS), as it would any process running it.
    damaged = kernel.with_suffix(".damaged")
    damaged.write_bytes(kernel.read_bytes()[: 64 if keep == 64 else size // 2])
    os.chmod(damaged, 0o700)
    os.replace(damaged, kernel)
    monkeypatch.setattr(build, "_STATE", build._State())  # a later process
    check_step(native_expected=True)
    cache.verify(kernel)  # rebuilt whole (the same bytes: the same name)
    assert kernel.stat().st_size == size


FAKE_COMPILERS = {  # what the compiler does -> what available() says
    "exits 0 without output": ("exit 0", "exited 0 but wrote no library"),
    "writes garbage": ('printf "not a library" > "$out"', "not a shared library"),
    "writes a library without the kernel": (
        'exec /usr/bin/cc -shared -fPIC -x c /dev/null -o "$out"',
        "just compiled cannot be loaded",
    ),
    "fails": ('echo "fatal error: disk quota exceeded" >&2; exit 1', "disk quota exceeded"),
}


@pytest.mark.parametrize("name", sorted(FAKE_COMPILERS))
def test_a_failing_compiler_leaves_the_step_on_xla(
    fresh, real_handler, name, tmp_path, monkeypatch
):
    seed(fresh, real_handler)
    script = tmp_path / "fake-cc"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --version ]; then echo "fake cc 1.0"; exit 0; fi\n'
        'while [ $# -gt 0 ]; do if [ "$1" = -o ]; then out="$2"; fi; shift; done\n'
        + FAKE_COMPILERS[name][0]
        + "\n"
    )
    script.chmod(0o700)
    monkeypatch.setenv("CC", str(script))
    reason = native.available()
    assert reason is not None and FAKE_COMPILERS[name][1] in reason, reason
    check_step(native_expected=False)


@pytest.mark.parametrize("where", ["writing the source", "flushing the library"])
def test_a_full_disk_leaves_the_step_on_xla(fresh, real_handler, where, monkeypatch):
    seed(fresh, real_handler)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if where == "writing the source":
        monkeypatch.setattr(Path, "write_text", full)
    else:
        monkeypatch.setattr(os, "fsync", full)
    reason = native.available()
    assert reason is not None and os.strerror(errno.ENOSPC) in reason, reason
    check_step(native_expected=False)


# -- available() tells the truth ---------------------------------------------------------


def tools(folder: Path, *names: str) -> str:
    """A PATH holding only ``names`` (and the assembler and linker they need)."""
    folder.mkdir()
    for name in (*names, "as", "ld"):
        os.symlink(shutil.which(name), folder / name)
    return str(folder)


def test_without_a_c_compiler_available_says_so(fresh, real_handler, tmp_path, monkeypatch):
    seed(fresh, real_handler)  # the handler is built: only kernels need `cc`
    monkeypatch.setenv("PATH", tools(tmp_path / "bin", "c++"))
    reason = native.available()
    assert reason is not None and reason.startswith("no C compiler"), reason
    check_step(native_expected=False)


def test_without_a_cxx_compiler_available_names_it(fresh, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", tools(tmp_path / "bin", "cc"))
    reason = native.available()
    assert reason is not None and reason.startswith("no C++ compiler"), reason
    check_step(native_expected=False)


def test_compiler_variables_are_shell_words(fresh, real_handler, monkeypatch):
    seed(fresh, real_handler)
    monkeypatch.setenv("CC", "gcc -O2")
    assert native.available() is None
    check_step(native_expected=True)


def test_cached_kernels_run_without_a_compiler(fresh, real_handler, tmp_path, monkeypatch):
    seed(fresh, real_handler)
    check_step(native_expected=True)  # builds the step's kernel
    monkeypatch.setattr(build, "_STATE", build._State())  # a later process...
    monkeypatch.setattr(toolchain, "_FOUND", {})
    monkeypatch.setenv("PATH", tools(tmp_path / "bin"))  # ...with no compiler at all
    check_step(native_expected=True)
    reason = native.available()  # a new kernel could not be built
    assert reason is not None and "no C compiler" in reason, reason


def test_turned_off_by_the_environment(fresh, monkeypatch):
    monkeypatch.setenv("ADAPTIVE_JAX_NATIVE", "0")
    assert native.available() == "turned off by ADAPTIVE_JAX_NATIVE=0"
    check_step(native_expected=False)


def test_the_first_compilation_is_announced_once(fresh, real_handler, caplog):
    seed(fresh, real_handler)
    with caplog.at_level("INFO", logger="adaptive_jax"):
        assert native.available() is None  # compiles the probe kernel
        check_step(native_expected=True)  # compiles the step's kernel
    said = [r for r in caplog.records if r.levelname == "INFO" and "compiling" in r.message]
    assert len(said) == 1 and "first use" in said[0].message
