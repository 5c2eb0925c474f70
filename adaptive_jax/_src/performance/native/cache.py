"""Where compiled native code is kept, and what is checked before any of it is loaded.

The native step loads machine code into the user's process, so this module is its
trust boundary.  The rule: **load only a library this user compiled, from a directory
nobody else can write, with the content it had when it was written.**

Where
    ``$ADAPTIVE_JAX_CACHE`` if set, else ``~/.cache/adaptive_jax``; the libraries live in
    its subdirectory ``native-v2/``.  When no home directory can be found (a container
    without a passwd entry) or its cache cannot be created (a read-only home), a
    directory made by :func:`tempfile.mkdtemp` for this process alone is used instead
    (mode 0700, a random name created exclusively, removed at exit): compiled code is
    then not reused by other processes.  There is no shared, predictable temp path (a
    fixed ``/tmp/adaptive_jax-<uid>`` can be pre-created by another user).

Created private
    Each missing directory is created with mode 0700, one level at a time
    (``os.makedirs`` gives the parents the umask's mode: 0777 under ``umask 000``);
    libraries are chmod 0700 before they are renamed into place.

Checked before every load (:func:`directory`, :func:`verify`)
    The cache root is resolved (symlinks followed once, then the real path is used);
    its ancestors must belong to root or to this user and not be writable by others
    (unless sticky, as ``/tmp``, or group-writable by this user's private group), so
    nobody else can rename the cache away between a check and a load; the root and ``native-v2/`` must belong to this user, be real
    directories and not be writable by group or others.  A directory failing this
    turns native kernels off (:class:`NativeUnavailable`, the reason shown by
    ``available()``).  A library must be a regular file (opened without following
    symlinks) owned by this user, not writable by group or others, start like a shared
    library, and its SHA-256 must equal the digest in its name, computed when it was
    stored: a truncated or corrupted file fails here instead of crashing ``dlopen``
    (mapping a truncated ELF file can raise SIGBUS).  A file failing this is deleted
    and rebuilt; it is never loaded.

Written atomically (:func:`scratch`, :func:`store`)
    Compilers write into a private scratch directory inside ``native-v2/``; the output
    is checked, fsync'd and renamed into place, so readers (parallel test workers)
    see a whole library or none.

Bounded (:func:`evict`)
    At most :data:`MAX_ENTRIES` libraries and :data:`MAX_BYTES` bytes; the least
    recently loaded go first (loading a library refreshes its modification time).

A library's name is ``<source key>-<compiler key>-<content digest>.so``: the source key
covers everything but the compiler (:mod:`.build`), so a library can be found again
without a compiler on ``PATH``.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from adaptive_jax._src.performance.native.errors import NativeUnavailable

SUBDIRECTORY = "native-v2"  # the layout of earlier versions (native/) is never read
MAX_ENTRIES = 256
MAX_BYTES = 64 << 20
MAX_LIBRARY_BYTES = 32 << 20  # a generated kernel is ~15 KB, the handler ~80 KB
STALE_SCRATCH_SECONDS = 3600  # a scratch directory older than this was left by a crash
DIGEST_CHARS = 32  # hex digits of the content's SHA-256 kept in the name

# What a shared library starts with: ELF, Mach-O (32/64-bit, both byte orders), fat Mach-O.
_MAGIC = (b"\x7fELF", b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe",
          b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe")  # fmt: skip


class BadEntry(Exception):
    """A cached library that must not be loaded (it is deleted and rebuilt)."""


def current_uid() -> int:
    """The effective user id that must own the cache (tests replace this function)."""
    geteuid = getattr(os, "geteuid", None)
    if geteuid is None:
        raise NativeUnavailable("native kernels need a POSIX system (no os.geteuid here)")
    return geteuid()


def directory() -> Path:
    """The checked directory holding the libraries, created if missing.

    Raises :class:`NativeUnavailable` if it cannot be created or someone else could
    write to it (see the module docstring).
    """
    uid = current_uid()
    base = _root()
    base = Path(os.path.realpath(base))
    _check_ancestors(base, uid)
    entries = base / SUBDIRECTORY
    try:
        make_private(entries)
    except OSError as error:
        raise NativeUnavailable(f"cannot create the kernel cache {entries}: {error}") from error
    for path in (base, entries):
        _check_directory(path, uid)
    return entries


def make_private(path: Path) -> None:
    """Create ``path`` and its missing parents, each with mode 0700 whatever the umask."""
    missing = []
    while not os.path.lexists(path):
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for level in reversed(missing):
        try:
            os.mkdir(level, 0o700)
        except FileExistsError:  # created meanwhile (another process): checked by the caller
            continue
        os.chmod(level, 0o700)  # a umask such as 0o700 would leave it unusable


def _root() -> Path:
    configured = os.environ.get("ADAPTIVE_JAX_CACHE")
    if configured:  # chosen by the user: used or refused, never replaced by another
        try:
            path = Path(os.path.abspath(Path(configured).expanduser()))
            make_private(path)
        except (OSError, RuntimeError) as error:
            raise NativeUnavailable(
                f"cannot create $ADAPTIVE_JAX_CACHE={configured!r}: {error}"
            ) from error
        return path
    try:
        home = Path.home()
    except (RuntimeError, KeyError, OSError):  # no $HOME and no passwd entry
        return _private_root()
    if not home.is_absolute():
        return _private_root()
    path = home / ".cache" / "adaptive_jax"
    try:
        make_private(path)
    except OSError:  # a read-only or missing home
        return _private_root()
    return path


_PRIVATE: list[Path] = []


def _private_root() -> Path:
    """A directory for this process alone: created exclusively, random name, mode 0700."""
    if not _PRIVATE:
        try:
            path = Path(tempfile.mkdtemp(prefix="adaptive_jax-"))
        except OSError as error:
            raise NativeUnavailable(f"no home directory and no temp directory: {error}") from error
        owner = os.getpid()
        atexit.register(lambda: os.getpid() == owner and shutil.rmtree(path, ignore_errors=True))
        _PRIVATE.append(path)
    return _PRIVATE[0]


def _check_ancestors(path: Path, uid: int) -> None:
    for parent in path.parents:
        try:
            info = os.stat(parent)
        except OSError as error:
            raise NativeUnavailable(f"cannot inspect {parent}: {error}") from error
        if info.st_uid not in (0, uid):
            raise NativeUnavailable(
                f"refusing the kernel cache under {parent}: owned by uid {info.st_uid}, "
                f"who could replace it (set $ADAPTIVE_JAX_CACHE to a private directory)"
            )
        if _others_can_replace_entries(info, uid):
            raise NativeUnavailable(
                f"refusing the kernel cache under {parent}: writable by others "
                f"(mode {stat.S_IMODE(info.st_mode):o}), who could replace it"
            )


def _others_can_replace_entries(info: os.stat_result, uid: int) -> bool:
    """Whether another user may rename or delete entries of a directory.

    Not in a sticky directory (``/tmp``); in a group-writable one only if the group is
    this user's private group (the user-private-group scheme of ``umask 002``
    distributions, where a home's ``.cache`` is often mode 775).
    """
    if info.st_mode & stat.S_ISVTX:
        return False
    if info.st_mode & 0o002:
        return True
    return bool(info.st_mode & 0o020) and not _private_group(info.st_gid, uid)


def _private_group(gid: int, uid: int) -> bool:
    try:
        import grp
        import pwd

        user, group = pwd.getpwuid(uid), grp.getgrgid(gid)
    except (ImportError, KeyError):
        return False
    return (
        gid == user.pw_gid and group.gr_name == user.pw_name and set(group.gr_mem) <= {user.pw_name}
    )


def _check_directory(path: Path, uid: int) -> None:
    try:
        info = os.lstat(path)
    except OSError as error:
        raise NativeUnavailable(f"cannot inspect {path}: {error}") from error
    if not stat.S_ISDIR(info.st_mode):
        raise NativeUnavailable(f"refusing the kernel cache {path}: not a directory")
    if info.st_uid != uid:
        raise NativeUnavailable(
            f"refusing the kernel cache {path}: owned by uid {info.st_uid}, not {uid}"
        )
    if info.st_mode & 0o022:
        raise NativeUnavailable(
            f"refusing the kernel cache {path}: writable by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):o}; chmod 700 it)"
        )


def find(entries: Path, prefix: str) -> list[Path]:
    """Libraries in ``entries`` whose names start with ``prefix``, newest first."""
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(entries):
            if entry.name.startswith(prefix) and entry.name.endswith(".so"):
                with contextlib.suppress(OSError):
                    found.append((entry.stat(follow_symlinks=False).st_mtime, entry.path))
    return [Path(path) for _, path in sorted(found, reverse=True)]


def verify(path: Path) -> None:
    """Raise :class:`BadEntry` unless ``path`` may be loaded (module docstring)."""
    uid = current_uid()
    try:
        # Not following a symlink; not waiting on a FIFO.
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(path, flags)
    except OSError as error:  # gone (evicted), a symlink (ELOOP), unreadable
        raise BadEntry(f"cannot open {path.name}: {error}") from error
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BadEntry(f"{path.name} is not a regular file")
        if info.st_uid != uid:
            raise BadEntry(f"{path.name} is owned by uid {info.st_uid}, not {uid}")
        if info.st_mode & 0o022:
            raise BadEntry(f"{path.name} is writable by group or others")
        if not 0 < info.st_size <= MAX_LIBRARY_BYTES:
            raise BadEntry(f"{path.name} has {info.st_size} bytes")
        with os.fdopen(os.dup(fd), "rb") as file:
            data = file.read()
    except OSError as error:
        raise BadEntry(f"cannot read {path.name}: {error}") from error
    finally:
        os.close(fd)
    if not data.startswith(_MAGIC):
        raise BadEntry(f"{path.name} is not a shared library")
    expected = path.name[: -len(".so")].rsplit("-", 1)[-1]
    if hashlib.sha256(data).hexdigest()[:DIGEST_CHARS] != expected:
        raise BadEntry(f"{path.name} does not have the content it was stored with")


def discard(path: Path) -> None:
    """Delete a library that failed :func:`verify` or would not load (if still there)."""
    with contextlib.suppress(OSError):
        os.unlink(path)


def touch(path: Path) -> None:
    """Mark ``path`` as just used, for :func:`evict` (best effort)."""
    with contextlib.suppress(OSError):
        os.utime(path)


@contextlib.contextmanager
def scratch(entries: Path) -> Iterator[Path]:
    """A private directory (0700, random name) inside ``entries`` for one compilation."""
    try:
        path = Path(tempfile.mkdtemp(prefix=".build-", dir=entries))
    except OSError as error:
        raise NativeUnavailable(f"cannot create a build directory in {entries}: {error}") from error
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def store(entries: Path, built: Path, prefix: str) -> Path:
    """Move the compiler's output ``built`` into ``entries`` as ``<prefix><digest>.so``.

    The file is checked to be a shared library, made private (0700) and flushed to
    disk before an atomic rename, so no reader ever sees it half-written.
    """
    try:
        data = built.read_bytes()
        if not data.startswith(_MAGIC):
            raise NativeUnavailable(
                f"the compiler wrote {len(data)} bytes that are not a shared library"
            )
        if len(data) > MAX_LIBRARY_BYTES:
            raise NativeUnavailable(f"the compiler wrote a library of {len(data)} bytes")
        digest = hashlib.sha256(data).hexdigest()[:DIGEST_CHARS]
        os.chmod(built, 0o700)
        fd = os.open(built, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        target = entries / f"{prefix}{digest}.so"
        os.replace(built, target)
        _sync_directory(entries)
    except OSError as error:  # ENOSPC, EDQUOT, EIO, ...
        raise NativeUnavailable(f"cannot store a compiled library in {entries}: {error}") from error
    return target


def _sync_directory(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def evict(entries: Path, keep: Path | None = None) -> None:
    """Delete the least recently used libraries beyond the bounds, and stale scratch."""
    libraries, now = [], time.time()
    with contextlib.suppress(OSError):
        for entry in os.scandir(entries):
            with contextlib.suppress(OSError):
                info = entry.stat(follow_symlinks=False)
                if entry.name.endswith(".so"):
                    libraries.append((info.st_mtime, info.st_size, entry.path))
                elif (
                    entry.name.startswith(".build-") and now - info.st_mtime > STALE_SCRATCH_SECONDS
                ):
                    shutil.rmtree(entry.path, ignore_errors=True)
    count, total = 0, 0
    for _, size, path in sorted(libraries, reverse=True):
        over = count + 1 > MAX_ENTRIES or total + size > MAX_BYTES
        if over and (keep is None or path != str(keep)):
            discard(Path(path))
        else:
            count, total = count + 1, total + size
