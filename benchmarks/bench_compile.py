"""Compile time of one Adam step on many leaves, against optax.adam: trace + lower, then XLA.

The parameters are ``--leaves`` float32 arrays of random shapes (those of
:mod:`benchmarks.bench_many_leaves`, about 2M parameters for 300 leaves).  Each candidate
is the step ``update`` then ``apply_updates``, jitted with the parameters and state
donated:

* ``optax.adam`` closed over (as optax users jit it: its hyperparameters are constants);
* ``aj.adam`` as an argument of the jitted function (hyperparameters are inputs: a new
  value is not a new program), and closed over.

A sample builds a new Python function (so nothing is reused from JAX's tracing caches),
times ``jit(...).lower(...)`` (tracing and lowering to StableHLO) and ``.compile()``
(XLA) separately, in wall-clock time and in this process's CPU time (all its threads;
less sensitive than wall time to other processes on a shared machine).  Candidates are sampled interleaved, the order rotated each round;
figures are medians, ratios are of medians of the same run.  The StableHLO operation
count of each lowered step is printed too (every operation in every function).

Run ``python -m benchmarks.bench_compile [--quick] [--leaves 300] [--repeats 7]`` (``--quick``:
100 leaves, 500k parameters, 3 repeats), as the ``compile`` section of
``python -m benchmarks.run``, or as a script (``python benchmarks/bench_compile.py``) with
another checkout of the library first on ``PYTHONPATH`` to measure that one.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import adaptive_jax as aj
from benchmarks.bench_many_leaves import random_shapes

# (leaves, repeats, parameters in all)
FULL = (300, 7, 2_000_000)
QUICK = (100, 3, 500_000)

_OPERATION = re.compile(r'^\s*(?:%[^=]*=\s*)?"?stablehlo\.[a-z_0-9]+', re.MULTILINE)


def candidates(params: Any) -> dict[str, Callable[[], tuple[Any, tuple[Any, ...]]]]:
    """name -> a function returning a fresh (step function, its arguments)."""
    grads = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 0.01), params)
    otx, tx = optax.adam(1e-3), aj.adam(1e-3)
    ostate, state = otx.init(params), tx.init(params)

    def optax_closed():
        def step(p, s, g):
            updates, s = otx.update(g, s, p)
            return optax.apply_updates(p, updates), s

        return jax.jit(step, donate_argnums=(0, 1)), (params, ostate, grads)

    def ours_argument():
        def step(tx, p, s, g):
            updates, s = tx.update(g, s, p)
            return aj.apply_updates(p, updates), s

        return jax.jit(step, donate_argnums=(1, 2)), (tx, params, state, grads)

    def ours_closed():
        def step(p, s, g):
            updates, s = tx.update(g, s, p)
            return aj.apply_updates(p, updates), s

        return jax.jit(step, donate_argnums=(0, 1)), (params, state, grads)

    return {
        "optax.adam, closed over": optax_closed,
        "aj.adam, an argument": ours_argument,
        "aj.adam, closed over": ours_closed,
    }


def run(num_leaves: int, repeats: int, total: int) -> dict[str, Any]:
    shapes = random_shapes(num_leaves, total)
    params = {f"leaf_{i:04d}": jnp.full(shape, 0.1, jnp.float32) for i, shape in enumerate(shapes)}
    builders = candidates(params)
    phases = ("lower_s", "compile_s", "lower_cpu_s", "compile_cpu_s")
    samples: dict[str, dict[str, list[float]]] = {
        name: {phase: [] for phase in phases} for name in builders
    }
    operations = {}
    names = list(builders)
    for round_ in range(repeats + 1):  # round 0 warms up (imports, first traces)
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            jitted, arguments = builders[name]()
            start, start_cpu = time.perf_counter(), time.process_time()
            lowered = jitted.lower(*arguments)
            lowered_at, lowered_cpu = time.perf_counter(), time.process_time()
            lowered.compile()
            compiled_at, compiled_cpu = time.perf_counter(), time.process_time()
            if round_ == 0:
                operations[name] = len(_OPERATION.findall(lowered.as_text()))
                continue
            samples[name]["lower_s"].append(lowered_at - start)
            samples[name]["compile_s"].append(compiled_at - lowered_at)
            samples[name]["lower_cpu_s"].append(lowered_cpu - start_cpu)
            samples[name]["compile_cpu_s"].append(compiled_cpu - lowered_cpu)
    rows = {
        name: {phase: statistics.median(values) for phase, values in phases.items()}
        | {"operations": operations[name]}
        for name, phases in samples.items()
    }
    return {
        "adaptive_jax": os.path.dirname(aj.__file__),
        "num_leaves": num_leaves,
        "num_params": int(sum(np.prod(s) for s in shapes)),
        "repeats": repeats,
        "load_average_1min_end": os.getloadavg()[0],
        "rows": rows,
        "samples": samples,
    }


def table(payload: dict[str, Any]) -> str:
    rows = payload["rows"]
    reference = rows["optax.adam, closed over"]
    lines = [
        f"{payload['num_leaves']} leaves, {payload['num_params']:,} float32 parameters, "
        f"Adam step (update + apply_updates, donated), median of {payload['repeats']}; "
        f"adaptive_jax from {payload['adaptive_jax']}; "
        f"load average at end {payload['load_average_1min_end']:.1f}",
        "",
        "| step | StableHLO ops | trace+lower s | XLA compile s | total s | "
        "total vs optax (optax / this) | CPU: trace+lower s | CPU: XLA s | CPU total vs optax |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    optax_total = reference["lower_s"] + reference["compile_s"]
    optax_cpu = reference["lower_cpu_s"] + reference["compile_cpu_s"]
    for name, row in rows.items():
        total = row["lower_s"] + row["compile_s"]
        cpu = row["lower_cpu_s"] + row["compile_cpu_s"]
        lines.append(
            f"| {name} | {row['operations']} | {row['lower_s']:.3f} | {row['compile_s']:.3f} | "
            f"{total:.3f} | {optax_total / total:.2f}x | {row['lower_cpu_s']:.3f} | "
            f"{row['compile_cpu_s']:.3f} | {optax_cpu / cpu:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 leaves, 3 repeats")
    parser.add_argument("--leaves", type=int)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--total", type=int, help="parameters in all")
    args = parser.parse_args()
    leaves, repeats, total = QUICK if args.quick else FULL
    payload = run(args.leaves or leaves, args.repeats or repeats, args.total or total)
    print(table(payload), flush=True)


if __name__ == "__main__":
    main()
