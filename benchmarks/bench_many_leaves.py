"""A model with 1000 leaves of random shapes: compile time and step time against optax.adam.

The parameters are 1000 float32 arrays of random shapes (vectors, matrices and 4-D
convolution kernels, sizes log-uniform) adding up to about 18M parameters (200 leaves
and 2M in ``--quick``).  Rows, each an Adam step on the same gradients, compiled with
the parameters and state donated:

* ``optax.adam`` on the tree;
* ``aj.adam`` on the tree;
* ``aj.performance.flatten(aj.adam)`` on the tree: the state in one buffer, the parameters a tree;
* ``aj.adam`` on ``aj.ravel_params(params)``: parameters, gradients and state flat
  (the recommended layout for many leaves).

Compile time is ``lower(...).compile()`` wall time; step time is the interleaved
median.  Run ``python -m benchmarks.bench_many_leaves [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import adaptive_jax as aj
from benchmarks.common import (
    Candidate,
    count_kernels,
    fmt_ms,
    fmt_ratio,
    machine,
    markdown_table,
    time_interleaved,
    write_json,
)


def random_shapes(num_leaves: int, total: int, seed: int = 0) -> list[tuple[int, ...]]:
    """Shapes of ``num_leaves`` arrays of log-uniform sizes adding up to about ``total``."""
    rng = np.random.default_rng(seed)
    sizes = np.exp(rng.uniform(np.log(8), np.log(total / num_leaves * 20), num_leaves))
    sizes = np.maximum(1, sizes / sizes.sum() * total).astype(int)
    shapes: list[tuple[int, ...]] = []
    for size in sizes:
        kind = rng.integers(3)
        if kind == 0 or size < 64:
            shapes.append((int(size),))
        elif kind == 1:
            rows = int(2 ** rng.integers(2, 9))
            shapes.append((rows, max(1, int(size) // rows)))
        else:
            channels = int(2 ** rng.integers(2, 6))
            shapes.append((3, 3, channels, max(1, int(size) // (9 * channels))))
    return shapes


def run(quick: bool = False) -> dict[str, Any]:
    num_leaves, total = (200, 2_000_000) if quick else (1000, 18_000_000)
    repeats = 5 if quick else 9
    shapes = random_shapes(num_leaves, total)
    params = {f"leaf_{i:04d}": jnp.full(shape, 0.1, jnp.float32) for i, shape in enumerate(shapes)}
    grads = {k: jnp.full(v.shape, 0.01, jnp.float32) for k, v in params.items()}
    num_params = sum(x.size for x in params.values())

    def copy(tree):
        return jax.tree_util.tree_map(lambda x: x + 0.0, tree)

    otx = optax.adam(1e-3)
    tx = aj.adam(1e-3)
    flat_params, flat_grads = aj.ravel_params(params), aj.ravel_params(grads)
    cases = {
        "optax.adam, tree": (otx, params, grads, False),
        "aj.adam, tree": (tx, params, grads, False),
        "aj.performance.flatten(aj.adam), tree params": (
            aj.performance.flatten(tx),
            params,
            grads,
            False,
        ),
        "aj.adam, aj.ravel_params (flat), XLA loops": (tx, flat_params, flat_grads, False),
        # What update_step / make_train_step do on one CPU device: one native loop.
        "aj.adam, aj.ravel_params (flat), native loop": (tx, flat_params, flat_grads, True),
    }
    rows: dict[str, dict[str, Any]] = {}
    candidates = []
    for name, (opt, p, g, native) in cases.items():
        if isinstance(opt, aj.Transform):

            def update(params, state, grads, opt=opt, native=native):
                return aj.performance.apply_step(opt, params, state, grads, native=native)
        else:

            def update(params, state, grads, opt=opt):
                updates, state = opt.update(grads, state, params)
                return optax.apply_updates(params, updates), state

        state = opt.init(p)
        start = time.perf_counter()
        compiled = jax.jit(update, donate_argnums=(0, 1)).lower(p, state, g).compile()
        compile_s = time.perf_counter() - start
        rows[name] = {"compile_s": compile_s, "kernels": count_kernels(compiled)}
        box = {"params": copy(p), "state": state}

        def step(compiled=compiled, box=box, g=g):
            box["params"], box["state"] = compiled(box["params"], box["state"], g)
            return box["params"]

        candidates.append(Candidate(name, step))
        print(f"  compiled {name}: {compile_s:.1f} s", flush=True)
    for name, seconds in time_interleaved(candidates, repeats).items():
        rows[name]["seconds"] = seconds
    info = machine()
    info["load_average_1min_end"] = os.getloadavg()[0]
    payload = {
        "machine": info,
        "num_leaves": num_leaves,
        "num_params": int(num_params),
        "rows": rows,
    }
    write_json("many_leaves", payload)
    return payload


def tables(payload: dict[str, Any]) -> str:
    rows = payload["rows"]
    reference = rows["optax.adam, tree"]
    body = [
        [
            name,
            f"{row['compile_s']:.2f}",
            fmt_ratio(reference["compile_s"] / row["compile_s"]),
            fmt_ms(row["seconds"]),
            fmt_ratio(reference["seconds"] / row["seconds"]),
            row["kernels"],
        ]
        for name, row in rows.items()
    ]
    header = [
        "step",
        "compile s",
        "compile speedup vs optax",
        "step ms",
        "step speedup vs optax",
        "kernels",
    ]
    return "\n".join(
        [
            f"### {payload['num_leaves']} leaves of random shapes, "
            f"{payload['num_params']:,} float32 parameters, Adam",
            "",
            markdown_table(header, body),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(tables(run(args.quick)))


if __name__ == "__main__":
    main()
