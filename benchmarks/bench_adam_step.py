"""Anatomy of one Adam step at 2^24 parameters: what makes it fast, against the roofline.

Every row advances a 16M-parameter float32 vector by one Adam step, timed
interleaved with the others and with an in-place triad that measures the memory
bandwidth in the same run.  Rows:

* optax.adam in a jitted step without / with buffer donation;
* adaptive_jax's Adam in a user-written jitted step without donation; through
  ``aj.update_step`` (donated; the recommended step: on one CPU device the whole step
  is one generated native loop, :mod:`adaptive_jax.performance.native`); the same
  donated step on XLA's own loops; and with bfloat16 moments (20 bytes per parameter
  instead of 28);
* torch.optim.Adam with ``fused=True`` and with ``foreach=True``.

Each row reports the loop kernels XLA emitted (fusions in the entry computation),
the bytes a step must move, and the fraction of the roofline that achieves.

Run ``python -m benchmarks.bench_adam_step [--quick]``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import jax
import jax.numpy as jnp
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
    triad_bandwidth,
    write_json,
)


def _jitted_candidate(name, update, params, state, grads, donate, bytes_per_param, rows):
    compiled = jax.jit(update, donate_argnums=(0, 1) if donate else ())
    kernels = count_kernels(compiled.lower(params, state, grads).compile())
    box = {"params": params, "state": state}

    def step():
        box["params"], box["state"] = compiled(box["params"], box["state"], grads)
        return box["params"]

    rows[name] = {"kernels": kernels, "bytes_per_param": bytes_per_param}
    return Candidate(name, step)


def run(quick: bool = False) -> dict[str, Any]:
    size = 1 << (22 if quick else 24)
    repeats = 7 if quick else 15
    grads = jax.random.normal(jax.random.PRNGKey(0), (size,), jnp.float32) * 1e-2
    start = jnp.linspace(-1.0, 1.0, size, dtype=jnp.float32)
    rows: dict[str, dict[str, Any]] = {}
    candidates = []

    otx = optax.adam(1e-3)

    def optax_update(params, state, grads):
        updates, state = otx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    for donate in (False, True):
        name = f"optax.adam, jit{' + donate' if donate else ''}"
        candidates.append(
            _jitted_candidate(
                name, optax_update, start + 0.0, otx.init(start), grads, donate, 28, rows
            )
        )

    tx = aj.adam(1e-3)

    def ours_update(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return aj.apply_updates(params, updates), state

    candidates.append(
        _jitted_candidate(
            "aj.adam, jit", ours_update, start + 0.0, tx.init(start), grads, False, 28, rows
        )
    )

    def via(step_fn, tx, name, bytes_per_param, native=True):
        box = {"params": start + 0.0, "state": tx.init(start)}

        def step():
            box["params"], box["state"] = step_fn(tx, box["params"], box["state"], grads)
            return box["params"]

        body = jax.jit(lambda t, p, s, g: aj.performance.apply_step(t, p, s, g, native=native))
        lowered = body.lower(tx, box["params"], box["state"], grads)
        rows[name] = {
            "kernels": count_kernels(lowered.compile()),
            "bytes_per_param": bytes_per_param,
        }
        return Candidate(name, step)

    candidates.append(via(aj.update_step, tx, "aj.adam, aj.update_step (recommended)", 28))
    xla_loops = aj.performance.DonatingStep(aj.performance.apply_step, "update_step", native=False)
    candidates.append(via(xla_loops, tx, "aj.adam, update_step on XLA's loops", 28, native=False))
    low = aj.adam(1e-3, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16)
    candidates.append(via(aj.update_step, low, "aj.adam bf16 moments, aj.update_step", 20))

    try:
        import torch

        for mode in ("fused", "foreach"):
            param = torch.nn.Parameter(torch.linspace(-1.0, 1.0, size))
            param.grad = torch.from_numpy(jax.device_get(grads).copy())
            optimizer = torch.optim.Adam([param], lr=1e-3, **{mode: True})

            def torch_step(optimizer=optimizer):
                optimizer.step()

            name = f"torch.optim.Adam({mode}=True)"
            rows[name] = {"kernels": None, "bytes_per_param": 28}
            candidates.append(Candidate(name, torch_step))
    except ImportError:
        pass

    bandwidth = triad_bandwidth(size, repeats)
    times = time_interleaved(candidates, repeats)
    roofline_bw = max(bandwidth.values())
    for name, seconds in times.items():
        rows[name]["seconds"] = seconds
        rows[name]["roofline_fraction"] = (
            rows[name]["bytes_per_param"] * size / roofline_bw / seconds
        )
    info = machine()
    info["load_average_1min_end"] = os.getloadavg()[0]
    payload = {"machine": info, "size": size, "bandwidth_bytes_per_s": bandwidth, "rows": rows}
    write_json("adam_step", payload)
    return payload


def tables(payload: dict[str, Any]) -> str:
    size, bw = payload["size"], payload["bandwidth_bytes_per_s"]
    roofline_bw = max(bw.values())
    body = []
    for name, row in payload["rows"].items():
        body.append(
            [
                name,
                fmt_ms(row["seconds"]),
                "n/a" if row["kernels"] is None else row["kernels"],
                row["bytes_per_param"],
                f"{row['bytes_per_param'] * size / row['seconds'] / 1e9:.1f}",
                fmt_ratio(row["roofline_fraction"]),
                fmt_ratio(row["bytes_per_param"] * size / bw["jax"] / row["seconds"]),
            ]
        )
    header = [
        "step",
        "ms",
        "kernels",
        "bytes/param",
        "GB/s moved",
        "fraction of roofline",
        "fraction of XLA-buffer triad",
    ]
    return "\n".join(
        [
            f"### One Adam step, {size:,} float32 parameters",
            "",
            "In-place bandwidth (a += b) in this run: "
            + ", ".join(f"{k} {v / 1e9:.1f} GB/s" for k, v in bw.items())
            + f". Roofline for 28 bytes/param at the fastest: "
            f"{28 * size / roofline_bw * 1e3:.2f} ms.",
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
