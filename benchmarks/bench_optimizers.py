"""Every named optimizer against optax and torch.optim, from 2^14 to 2^24 parameters.

For each size and optimizer, three candidates advance a float32 parameter vector of
that size with a fixed gradient, timed interleaved (see :mod:`benchmarks.common`):

* **adaptive_jax** through its recommended step, ``aj.update_step`` (jitted, params
  and state donated, the transformation an argument);
* **optax**, the same-named optax optimizer in the step an optax user writes:
  ``jax.jit(step, donate_argnums=(0, 1))`` with ``step(params, state, grads)``;
* **torch**, the same-named ``torch.optim`` class with ``fused=True`` where its CPU
  kernel exists, else ``foreach=True``.

The speedup is optax's median time divided by ours (above 1: we are faster).  The
fraction of roofline is the least number of bytes a step must move (params read and
written, gradient read, every per-parameter state buffer read and written) over the
in-place bandwidth measured in the same run, divided by the measured time.

Run ``python -m benchmarks.bench_optimizers [--quick]``.
"""

from __future__ import annotations

import argparse
import gc
from typing import Any

import jax
import jax.numpy as jnp
import optax

import adaptive_jax as aj
from benchmarks.common import (
    Candidate,
    fmt_ms,
    fmt_ratio,
    machine,
    markdown_table,
    time_interleaved,
    triad_bandwidth,
    write_json,
)
from benchmarks.counterparts import named_optimizers, optax_counterpart, torch_counterpart

FULL_EXPONENTS = (14, 16, 18, 20, 22, 24)
QUICK_EXPONENTS = (14, 18, 22)


def minimum_bytes(state: Any, size: int, param_bytes: int = 4) -> int:
    """Bytes a step must move: params (r+w), gradient (r), per-parameter state (r+w)."""
    buffers = [x for x in jax.tree_util.tree_leaves(state) if jnp.size(x) == size]
    state_bytes = sum(2 * x.dtype.itemsize * size for x in buffers)
    return 3 * param_bytes * size + state_bytes


def candidates_for(name: str, factory, kwargs, size: int):
    """The three candidates for one optimizer at one size, and its minimum bytes."""
    key = jax.random.PRNGKey(size)
    grads = jax.random.normal(key, (size,), jnp.float32) * 1e-2
    start = jnp.linspace(-1.0, 1.0, size, dtype=jnp.float32)
    tx = factory(**kwargs)
    ours = {"params": start + 0.0, "state": tx.init(start)}
    bytes_moved = minimum_bytes(ours["state"], size)

    def ours_step():
        ours["params"], ours["state"] = aj.update_step(tx, ours["params"], ours["state"], grads)
        return ours["params"]

    found = [Candidate("adaptive_jax", ours_step)]
    counterpart = optax_counterpart(name, factory, kwargs)
    if counterpart is not None:

        def optax_update(params, state, grads):
            updates, state = counterpart.update(grads, state, params)
            return optax.apply_updates(params, updates), state

        compiled = jax.jit(optax_update, donate_argnums=(0, 1))
        theirs = {"params": start + 0.0, "state": counterpart.init(start)}

        def optax_step():
            theirs["params"], theirs["state"] = compiled(theirs["params"], theirs["state"], grads)
            return theirs["params"]

        found.append(Candidate("optax", optax_step))
    torch_name = None
    try:
        import torch

        param = torch.nn.Parameter(torch.linspace(-1.0, 1.0, size))
        param.grad = torch.from_numpy(jax.device_get(grads).copy())
        made = torch_counterpart(name, factory, kwargs, param)
        if made is not None:
            torch_name, optimizer = made

            def torch_step():
                optimizer.step()
                return None

            found.append(Candidate("torch", torch_step))
    except ImportError:
        pass
    return found, bytes_moved, torch_name


def run(quick: bool = False, repeats: int | None = None) -> dict[str, Any]:
    exponents = QUICK_EXPONENTS if quick else FULL_EXPONENTS
    repeats = repeats or (5 if quick else 11)
    catalog = named_optimizers()
    info = machine()
    bandwidth = triad_bandwidth(1 << max(exponents), repeats)
    results: dict[str, Any] = {name: {} for name in catalog}
    for exponent in exponents:
        size = 1 << exponent
        for name, (factory, kwargs) in catalog.items():
            found, bytes_moved, torch_name = candidates_for(name, factory, kwargs, size)
            times = time_interleaved(found, repeats)
            results[name][str(size)] = {
                "seconds": times,
                "bytes": bytes_moved,
                "torch": torch_name,
            }
            del found
            gc.collect()
        print(f"  2^{exponent} done", flush=True)
    info["load_average_1min_end"] = __import__("os").getloadavg()[0]
    payload = {
        "machine": info,
        "bandwidth_bytes_per_s": bandwidth,
        "exponents": list(exponents),
        "repeats": repeats,
        "results": results,
    }
    write_json("optimizers", payload)
    return payload


def tables(payload: dict[str, Any]) -> str:
    exponents = payload["exponents"]
    bandwidth = max(payload["bandwidth_bytes_per_s"].values())
    largest = str(1 << max(exponents))
    header = ["optimizer"] + [f"2^{e}" for e in exponents]
    speedups, details = [], []
    for name, by_size in payload["results"].items():
        row = [name]
        for e in exponents:
            times = by_size[str(1 << e)]["seconds"]
            ratio = times["optax"] / times["adaptive_jax"] if "optax" in times else None
            row.append(fmt_ratio(ratio))
        speedups.append(row)
        last = by_size[largest]
        times = last["seconds"]
        roofline = last["bytes"] / bandwidth
        details.append(
            [
                name,
                fmt_ms(times["adaptive_jax"]),
                fmt_ms(times.get("optax")),
                f"{fmt_ms(times['torch'])} ({last['torch']})" if "torch" in times else "n/a",
                last["bytes"] // (1 << max(exponents)),
                fmt_ratio(roofline / times["adaptive_jax"]),
                fmt_ratio(roofline / times["optax"]) if "optax" in times else "n/a",
                fmt_ratio(roofline / times["torch"]) if "torch" in times else "n/a",
            ]
        )
    bw = payload["bandwidth_bytes_per_s"]
    text = [
        "### Speedup over optax (optax median / adaptive_jax median; > 1 is faster)",
        "",
        markdown_table(header, speedups),
        "",
        f"### At 2^{max(exponents)} parameters: milliseconds per step and fraction of roofline",
        "",
        "In-place bandwidth (a += b) measured in this run: "
        + ", ".join(f"{k} {v / 1e9:.1f} GB/s" for k, v in bw.items())
        + "; the roofline uses the largest.",
        "",
        markdown_table(
            [
                "optimizer",
                "adaptive_jax ms",
                "optax ms",
                "torch ms",
                "bytes/param",
                "roofline (ours)",
                "roofline (optax)",
                "roofline (torch)",
            ],
            details,
        ),
    ]
    return "\n".join(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(tables(run(args.quick)))


if __name__ == "__main__":
    main()
