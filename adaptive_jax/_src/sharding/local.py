"""A multi-process JAX job on one machine: launch it, bound it in time, never leak a process.

Training that outgrows one host runs one JAX process per host, joined by
:func:`jax.distributed.initialize`.  The same program runs on one machine with
:func:`launch_local_processes` (a free port on 127.0.0.1, ``devices_per_process``
simulated CPU devices each) and, in each process, :func:`initialize_local_process`
(the coordinator from the environment, gloo CPU collectives).  A job whose process dies
is a job that has failed: the others would block in their next collective, so they
are killed at once; so is every process once ``timeout`` has passed.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import jax

_PROCESS_ID = "ADAPTIVE_JAX_PROCESS_ID"
_NUM_PROCESSES = "ADAPTIVE_JAX_NUM_PROCESSES"
_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"
_COORDINATOR = "JAX_COORDINATOR_ADDRESS"  # read by jax.distributed.initialize itself


class LocalProcess(NamedTuple):
    """How one process of a local job ended: ``returncode`` is ``-9`` if it was killed."""

    process_id: int
    returncode: int
    stdout: str
    stderr: str


class LocalJob(NamedTuple):
    """The processes of a job, by id; ``timed_out`` if the job was stopped at its deadline."""

    processes: tuple[LocalProcess, ...]
    timed_out: bool
    wall_time: float

    @property
    def ok(self) -> bool:
        """Every process exited with status 0 before the deadline."""
        return not self.timed_out and all(p.returncode == 0 for p in self.processes)

    def describe(self, tail: int = 3000) -> str:
        """The end of each process's stderr, for an assertion message."""
        lines = [f"timed out: {self.timed_out}, wall time {self.wall_time:.1f} s"]
        for p in self.processes:
            lines.append(f"--- process {p.process_id}: returncode {p.returncode}")
            lines.append(p.stderr[-tail:])
        return "\n".join(lines)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, before exec
    """Linux: SIGKILL this process when the launcher's thread dies, however it dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        try:  # its own session: whatever it started dies with it
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()


def with_device_count(xla_flags: str, devices: int) -> str:
    """``xla_flags`` with its simulated CPU device count set to ``devices`` (others kept).

    Example:
        >>> with_device_count("--xla_dump_to=/tmp/d --xla_force_host_platform_device_count=4", 2)
        '--xla_dump_to=/tmp/d --xla_force_host_platform_device_count=2'
    """
    kept = [f for f in xla_flags.split() if not f.startswith(_DEVICE_COUNT_FLAG + "=")]
    return " ".join([*kept, f"{_DEVICE_COUNT_FLAG}={devices}"])


def launch_local_processes(
    argv: Sequence[str],
    num_processes: int = 2,
    devices_per_process: int = 4,
    *,
    timeout: float = 120.0,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
) -> LocalJob:
    """Run ``argv`` as ``num_processes`` processes of one JAX job on this machine.

    Each process gets the coordinator address (a free port on 127.0.0.1), its id and the
    number of processes in its environment (read by :func:`initialize_local_process`), and
    ``--xla_force_host_platform_device_count=<devices_per_process>`` in ``XLA_FLAGS``
    (the environment's other XLA flags are kept).  Returns
    when every process has exited, as soon as one exits with a non-zero status (the others
    are then killed with SIGKILL: they would wait forever in a collective), or at
    ``timeout`` seconds (all are killed).  No process outlives the call: an exception
    (``KeyboardInterrupt``) kills them on the way out, and on Linux each process is also
    killed when the launcher itself dies (``PR_SET_PDEATHSIG``), even by SIGKILL.

    Args:
        argv: the command of every process, e.g. ``[sys.executable, "train.py"]``.
        num_processes: how many processes.
        devices_per_process: simulated CPU devices in each.
        timeout: seconds after which the whole job is killed.
        env: the environment (default: this process's), to which the above is added.
        cwd: the working directory of the processes.

    Returns:
        :class:`LocalJob`: each process's exit status and output, whether it timed out.
    """
    if num_processes < 1:
        raise ValueError(f"num_processes must be at least 1, got {num_processes}")
    base = dict(os.environ if env is None else env)
    base[_COORDINATOR] = f"127.0.0.1:{free_port()}"
    base[_NUM_PROCESSES] = str(num_processes)
    base["XLA_FLAGS"] = with_device_count(base.get("XLA_FLAGS", ""), devices_per_process)
    start = time.monotonic()
    processes: list[subprocess.Popen] = []
    timed_out = False
    with tempfile.TemporaryDirectory() as logs:
        outputs = []
        try:
            for process_id in range(num_processes):
                out = open(Path(logs) / f"{process_id}.out", "w+")
                err = open(Path(logs) / f"{process_id}.err", "w+")
                outputs.append((out, err))
                processes.append(
                    subprocess.Popen(
                        list(argv),
                        env={**base, _PROCESS_ID: str(process_id)},
                        cwd=cwd,
                        stdout=out,
                        stderr=err,
                        start_new_session=True,
                        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                    )
                )
            while True:
                codes = [p.poll() for p in processes]
                if all(code is not None for code in codes):
                    break
                if any(code not in (None, 0) for code in codes):
                    break  # a failed process: the survivors cannot finish
                if time.monotonic() - start > timeout:
                    timed_out = True
                    break
                time.sleep(0.05)
        finally:
            for process in processes:
                _kill(process)
        results = []
        for process_id, (process, (out, err)) in enumerate(zip(processes, outputs)):
            out.seek(0)
            err.seek(0)
            results.append(LocalProcess(process_id, process.returncode, out.read(), err.read()))
            out.close()
            err.close()
    return LocalJob(tuple(results), timed_out, time.monotonic() - start)


def initialize_local_process(**kwargs) -> None:
    """Join the job started by :func:`launch_local_processes` (call before any JAX work).

    Selects gloo for collectives between CPU processes and calls
    :func:`jax.distributed.initialize` with the coordinator, process count and id that
    the launcher put in the environment.  Extra keyword arguments go to
    ``jax.distributed.initialize``.
    """
    missing = [
        name for name in (_COORDINATOR, _NUM_PROCESSES, _PROCESS_ID) if name not in os.environ
    ]
    if missing:
        raise RuntimeError(
            f"initialize_local_process needs {', '.join(missing)} in the environment: start "
            "this program with adaptive_jax.sharding.launch_local_processes"
        )
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=os.environ[_COORDINATOR],
        num_processes=int(os.environ[_NUM_PROCESSES]),
        process_id=int(os.environ[_PROCESS_ID]),
        **kwargs,
    )


def is_launched_process() -> bool:
    """Whether this process was started by :func:`launch_local_processes`."""
    return _PROCESS_ID in os.environ
