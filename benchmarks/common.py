"""Shared by the benchmarks: interleaved timing, the bandwidth roofline, tables, JSON.

Timing rules (every benchmark follows them):

* candidates are timed **interleaved** — one sample of each in turn, repeated, the
  order rotated each round — so a burst of load from another process hits all of
  them alike;
* a sample is the wall-clock time of ``calls`` consecutive steps divided by ``calls``
  (the same for every candidate, at least 3, chosen so the fastest candidate's sample
  lasts 20 ms), ending in ``block_until_ready``;
* the reported figure is the **median** of the samples; ratios are of medians.

Nothing here asserts anything about time.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


class Candidate:
    """Something to time: ``step()`` advances its own state by one optimizer step."""

    def __init__(self, name: str, step: Callable[[], Any]):
        self.name = name
        self.step = step
        self.samples: list[float] = []

    def sample(self, calls: int) -> None:
        start = time.perf_counter()
        for _ in range(calls):
            out = self.step()
        jax.block_until_ready(out)
        self.samples.append((time.perf_counter() - start) / calls)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def time_interleaved(
    candidates: list[Candidate], repeats: int, min_sample_s: float = 0.02
) -> dict[str, float]:
    """Median seconds per step of each candidate, sampled in turn ``repeats`` times."""
    once = {}
    for candidate in candidates:  # warm up (compile), then time one step
        candidate.step()
        start = time.perf_counter()
        jax.block_until_ready(candidate.step())
        once[candidate.name] = max(time.perf_counter() - start, 1e-6)
    # The same number of steps per sample for every candidate (enough for the fastest to
    # last ``min_sample_s``, at least 3): a sample's final synchronisation and the
    # overlap of consecutive dispatches then weigh alike on all of them.
    calls = max(3, min(200, int(min_sample_s / min(once.values()))))
    for repeat in range(repeats):
        # Rotate the order, so no candidate always runs right after the same other one.
        shift = repeat % len(candidates)
        for candidate in candidates[shift:] + candidates[:shift]:
            candidate.sample(calls)
    return {candidate.name: candidate.median for candidate in candidates}


def triad_bandwidth(size: int, repeats: int) -> dict[str, float]:
    """In-place bandwidth (bytes/s) of ``a += b`` on ``size`` float32, three ways.

    12 bytes move per element (read a, read b, write a).  numpy runs on one core;
    the jitted JAX version (``a`` donated, so the write is in place, as an optimizer
    step's is) and torch's ``add_`` use every core.  The roofline is the fastest.
    """
    a = np.random.default_rng(0).random(size, dtype=np.float32)
    b = np.random.default_rng(1).random(size, dtype=np.float32)

    def numpy_step():
        np.add(a, b, out=a)
        return None

    add = jax.jit(lambda x, y: x + y, donate_argnums=0)
    state = {"x": jax.device_put(a.copy()), "y": jax.device_put(b)}

    def jax_step():
        state["x"] = add(state["x"], state["y"])
        return state["x"]

    candidates = [Candidate("numpy", numpy_step), Candidate("jax", jax_step)]
    try:
        import torch

        ta, tb = torch.from_numpy(a.copy()), torch.from_numpy(b.copy())

        def torch_step():
            ta.add_(tb)

        candidates.append(Candidate("torch", torch_step))
    except ImportError:
        pass
    times = time_interleaved(candidates, repeats)
    return {name: 12 * size / seconds for name, seconds in times.items()}


def machine() -> dict[str, Any]:
    """What the numbers were measured on, and how busy the machine was."""
    model = platform.processor() or platform.machine()
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        found = re.search(r"Model name:\s*(.+)", text)
        model = found.group(1).strip() if found else model
    except (OSError, subprocess.CalledProcessError):
        pass
    versions = {"jax": jax.__version__}
    for module in ("jaxlib", "optax", "torch", "numpy"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            versions[module] = None
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "device": str(jax.devices()[0]),
        "versions": versions,
        "load_average_1min": os.getloadavg()[0],
    }


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def count_kernels(compiled: Any) -> int:
    """Kernels of a compiled step: fusions, loops and custom calls of its entry computation."""
    text = compiled.as_text()
    entry = text[text.index("\nENTRY") :]
    return sum(len(re.findall(rf"\b{op}\(", entry)) for op in ("fusion", "while", "custom-call"))


def fmt_ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1e3:.3g}"


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
