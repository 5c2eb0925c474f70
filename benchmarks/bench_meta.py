"""Hypergradient cost by mode: compiled temporary memory and time relative to the plain unroll.

Model: a 64-320-256-10 tanh MLP (105,546 float32 parameters) trained by Adam on
synthetic classification batches of 32 drawn as a function of the step, so no input
array grows with T.  The meta-objective is the training loss after T steps; its
hypergradient is taken with respect to Adam's k = 5 hyperparameters
(learning rate, b1, b2, eps, eps_root).

For each T: the temporary memory XLA reports for the compiled program
(``memory_analysis().temp_size_in_bytes``) and the median wall-clock time of each mode
divided by the median time of the plain unroll (same T, same run, interleaved).

Run with ``python -m benchmarks.bench_meta`` (or ``python benchmarks/bench_meta.py``);
``--steps 16 64`` and ``--repeats 3`` pick the horizons and repeats.  Writes
``benchmarks/results/meta.json``.  Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import adaptive_jax as aj

LAYERS = (64, 320, 256, 10)
BATCH = 32
HYPERGRADIENT_MODES = {
    "reverse": aj.meta.Reverse(),
    "reverse_step": aj.meta.Reverse(aj.meta.EveryStep()),
    "reverse_sqrt": aj.meta.Reverse(aj.meta.SqrtBlocks()),
    "reverse_recursive": aj.meta.Reverse(aj.meta.Bisection()),
    "forward": aj.meta.Forward(),
}
MODES = ("unroll", *HYPERGRADIENT_MODES)
RESULTS = Path(__file__).resolve().parent / "results" / "meta.json"


def init_mlp(key):
    params = []
    for fan_in, fan_out in zip(LAYERS[:-1], LAYERS[1:]):
        key, sub = jax.random.split(key)
        weight = jax.random.normal(sub, (fan_in, fan_out), jnp.float32) / jnp.sqrt(fan_in)
        params.append({"w": weight, "b": jnp.zeros(fan_out, jnp.float32)})
    return params


def mlp(params, x):
    for layer in params[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


# A fixed random "teacher" labels the inputs, so the task is learnable.
TEACHER = jax.random.normal(jax.random.PRNGKey(1), (LAYERS[0], LAYERS[-1]), jnp.float32)


def batch_at(step):
    x = jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(0), step), (BATCH, LAYERS[0]))
    return x, jnp.argmax(x @ TEACHER, axis=-1)


def loss(params, batch):
    x, labels = batch
    logits = mlp(params, x)
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))


def program(mode, num_steps, params):
    """A jittable function of the transformation for one mode."""
    objective = aj.meta.unrolled_objective(
        params,
        loss,
        lambda run: loss(run.params, batch_at(num_steps)),
        batch_at,
        num_steps=num_steps,
    )
    if mode == "unroll":
        return objective
    return lambda tx: aj.meta.hypergradient(objective, tx, mode=HYPERGRADIENT_MODES[mode])


def seconds(compiled, tx):
    start = time.perf_counter()
    jax.block_until_ready(compiled(tx))
    return time.perf_counter() - start


def measure(num_steps, repeats, time_budget, params, tx):
    compiled = {}
    row = {}
    for mode in MODES:
        start = time.perf_counter()
        compiled[mode] = jax.jit(program(mode, num_steps, params)).lower(tx).compile()
        analysis = compiled[mode].memory_analysis()
        row[mode] = {
            "temp_bytes": None if analysis is None else int(analysis.temp_size_in_bytes),
            "compile_s": time.perf_counter() - start,
        }
    # Warm up once; skip timing a horizon whose first pass already exceeds the budget.
    warm = {mode: seconds(compiled[mode], tx) for mode in MODES}
    if sum(warm.values()) * repeats > time_budget:
        for mode in MODES:
            row[mode]["time_s"] = None
        return (
            row,
            f"T={num_steps}: timing skipped (one pass of all modes took {sum(warm.values()):.0f} s)",
        )
    samples = {mode: [] for mode in MODES}
    for _ in range(repeats):  # interleaved, so drifting machine load hits every mode alike
        for mode in MODES:
            samples[mode].append(seconds(compiled[mode], tx))
    for mode in MODES:
        row[mode]["time_s"] = statistics.median(samples[mode])
    return row, None


def markdown_tables(results, steps, num_hyper):
    lines = ["### Compiled temporary memory (MiB)", ""]
    lines.append("| mode | " + " | ".join(f"T={t}" for t in steps) + " |")
    lines.append("| --- |" + " ---: |" * len(steps))
    for mode in MODES:
        cells = []
        for t in steps:
            temp = results[str(t)][mode]["temp_bytes"]
            cells.append("n/a" if temp is None else f"{temp / 2**20:.1f}")
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    lines += ["", "### Time relative to the plain unroll (median)", ""]
    lines.append("| mode | " + " | ".join(f"T={t}" for t in steps) + " |")
    lines.append("| --- |" + " ---: |" * len(steps))
    for mode in MODES:
        cells = []
        for t in steps:
            row = results[str(t)]
            if row[mode]["time_s"] is None:
                cells.append("skipped")
            elif mode == "unroll":
                cells.append(f"1 ({row[mode]['time_s'] * 1e3:.0f} ms)")
            else:
                cells.append(f"{row[mode]['time_s'] / row['unroll']['time_s']:.2f}x")
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Targets (issue 4): reverse <= 4x the unroll; forward <= 1 + 2k = {1 + 2 * num_hyper}x "
        f"for k = {num_hyper} hyperparameters.",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[16, 64, 256, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--time-budget",
        type=float,
        default=240.0,
        help="skip timing a horizon whose repeats would take longer than this many seconds",
    )
    args = parser.parse_args()

    params = init_mlp(jax.random.PRNGKey(2))
    tx = aj.adam(1e-3, eps_root=1e-8)
    num_params = sum(x.size for x in jax.tree_util.tree_leaves(params))
    num_hyper = len(aj.meta.differentiable_leaves(tx)[0])
    results, notes = {}, []
    for num_steps in args.steps:
        row, note = measure(num_steps, args.repeats, args.time_budget, params, tx)
        results[str(num_steps)] = row
        if note:
            notes.append(note)
        print(f"T={num_steps} done", flush=True)

    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {jax.devices()[0]}"
    )
    print()
    print(
        f"Adam hypergradients, {num_params:,}-parameter MLP, batch {BATCH}; {machine}; jax {jax.__version__}"
    )
    print()
    print(markdown_tables(results, args.steps, num_hyper))
    for note in notes:
        print(note)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": machine,
                "jax": jax.__version__,
                "num_params": int(num_params),
                "num_hyperparameters": num_hyper,
                "results": results,
                "notes": notes,
            },
            indent=2,
        )
    )
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
