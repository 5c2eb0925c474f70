"""The system's C and C++ compilers: which ones, who they are, and running them.

``$CC``/``$CXX`` are read as shell words (``CC="ccache gcc -O2"`` works: the first word
is looked up on ``PATH``, the others are passed before this package's own flags).  A
compiler's *identity* — its resolved path, those words and its ``--version`` output —
is part of a library's cache key, so a new compiler builds new libraries; it is
computed once per process.  A compiler is needed only to build: a library already in
the cache is found by the rest of its key (:mod:`.cache`, :mod:`.build`).

Every failure (no such program, a crash, a timeout, an exit status, a compiler that
exits 0 without writing its output) becomes :class:`NativeUnavailable` with the
compiler's own message.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from adaptive_jax._src.performance.native.errors import NativeUnavailable

COMPILE_TIMEOUT_SECONDS = 600
VERSION_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Compiler:
    """A usable compiler: the words to run it with, and a key naming its identity."""

    argv: tuple[str, ...]
    key: str  # 16 hex digits of SHA-256(resolved path, words, `--version` output)


_FOUND: dict[tuple[str, str, str], Compiler | NativeUnavailable] = {}


def find(variable: str, default: str, language: str) -> Compiler:
    """The compiler named by ``$variable`` (else ``default``), checked to run.

    Raises :class:`NativeUnavailable` naming the missing ``language`` compiler.
    """
    configured = os.environ.get(variable, "").strip()
    spec = configured or default
    lookup = (variable, spec, os.environ.get("PATH", ""))
    if lookup not in _FOUND:
        try:
            _FOUND[lookup] = _identify(variable, spec, configured != "", language)
        except NativeUnavailable as error:
            _FOUND[lookup] = error
    found = _FOUND[lookup]
    if isinstance(found, NativeUnavailable):
        raise found
    return found


def _identify(variable: str, spec: str, configured: bool, language: str) -> Compiler:
    origin = f"${variable}={spec!r}" if configured else f"`{spec}` (set ${variable} to choose one)"
    try:
        words = shlex.split(spec)
    except ValueError as error:
        raise NativeUnavailable(f"cannot parse {origin}: {error}") from error
    if not words:
        raise NativeUnavailable(f"no {language} compiler: {origin} is empty")
    program = shutil.which(words[0])
    if program is None:
        raise NativeUnavailable(f"no {language} compiler: {origin} not found on PATH")
    argv = (program, *words[1:])
    try:
        done = subprocess.run(
            [*argv, "--version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT_SECONDS
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise NativeUnavailable(
            f"the {language} compiler {origin} does not run: {error}"
        ) from error
    if done.returncode != 0:
        raise NativeUnavailable(
            f"the {language} compiler {origin} failed `--version` "
            f"(exit {done.returncode}): {done.stderr.strip()[-500:]}"
        )
    identity = "\0".join([os.path.realpath(program), *words[1:], done.stdout])
    return Compiler(argv, hashlib.sha256(identity.encode()).hexdigest()[:16])


def compile_library(
    compiler: Compiler, source: str, suffix: str, flags: tuple[str, ...], scratch: Path
) -> Path:
    """Compile ``source`` into a shared library in ``scratch``; return its path.

    Runs in ``scratch`` with relative file names, so the output does not depend on
    the (random) scratch path.
    """
    name = f"source{suffix}"
    try:
        (scratch / name).write_text(source)
    except OSError as error:  # ENOSPC, EDQUOT, ...
        raise NativeUnavailable(f"cannot write the source to compile: {error}") from error
    command = [*compiler.argv, *flags, name, "-o", "library.so", "-lm"]
    try:
        done = subprocess.run(
            command, cwd=scratch, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_SECONDS
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise NativeUnavailable(f"running `{shlex.join(command)}` failed: {error}") from error
    if done.returncode != 0:
        raise NativeUnavailable(
            f"compiling a native library failed (`{shlex.join(command)}`, exit "
            f"{done.returncode}):\n{done.stderr[-2000:]}"
        )
    output = scratch / "library.so"
    if not output.is_file() or output.stat().st_size == 0:
        raise NativeUnavailable(f"`{shlex.join(command)}` exited 0 but wrote no library")
    return output
