"""Run every benchmark and print its markdown tables: ``python -m benchmarks.run [--quick]``.

Sections (each also runnable alone, each writing ``benchmarks/results/<name>.json``):

1. :mod:`benchmarks.bench_adam_step` — one Adam step at 2^24 parameters: donation,
   kernels, bytes moved, fraction of the bandwidth roofline, torch's fused Adam;
2. :mod:`benchmarks.bench_optimizers` — every named optimizer against optax and
   torch.optim from 2^14 to 2^24 parameters;
3. :mod:`benchmarks.bench_many_leaves` — 1000 leaves of random shapes: compile and
   step time against optax.adam;
4. :mod:`benchmarks.bench_meta` — hypergradient cost by mode (run as a subprocess);
5. :mod:`benchmarks.bench_compile` — trace+lower and XLA compile time of an Adam step on
   300 leaves against optax.adam, with the StableHLO operation counts.

``--only adam_step optimizers`` picks sections.  The full run takes tens of minutes
on a 2-core CPU (the many-leaf optax compile alone takes about a minute); ``--quick``
uses smaller sizes and fewer repeats.  Nothing asserts a time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from benchmarks import bench_adam_step, bench_compile, bench_many_leaves, bench_optimizers
from benchmarks.common import machine, write_json

SECTIONS = ("adam_step", "optimizers", "many_leaves", "meta", "compile")


def machine_table() -> str:
    info = machine()
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    return (
        f"Machine: {info['cpu']}, {info['cores']} cores ({info['device']}); {versions}; "
        f"1-minute load average at start {info['load_average_1min']:.1f}."
    )


def meta_section(quick: bool) -> str:
    command = [sys.executable, "-m", "benchmarks.bench_meta"]
    if quick:
        command += ["--steps", "16", "64", "--repeats", "2"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return f"(bench_meta failed:\n{done.stderr[-2000:]})"
    lines = done.stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Adam hypergradients")), 0)
    return "\n".join(lines[start:])


def compile_section(quick: bool) -> str:
    payload = bench_compile.run(*(bench_compile.QUICK if quick else bench_compile.FULL))
    write_json("compile", payload)
    return bench_compile.table(payload)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    args = parser.parse_args()
    print(f"## adaptive_jax benchmarks{' (quick)' if args.quick else ''}\n")
    print(machine_table() + "\n", flush=True)
    timings = {}
    for section in args.only:
        start = time.perf_counter()
        print(f"<!-- running {section} -->", flush=True)
        if section == "adam_step":
            text = bench_adam_step.tables(bench_adam_step.run(args.quick))
        elif section == "optimizers":
            text = bench_optimizers.tables(bench_optimizers.run(args.quick))
        elif section == "many_leaves":
            text = bench_many_leaves.tables(bench_many_leaves.run(args.quick))
        elif section == "compile":
            text = "### Compile time against optax\n\n" + compile_section(args.quick)
        else:
            text = "### Hypergradient cost by mode\n\n" + meta_section(args.quick)
        timings[section] = time.perf_counter() - start
        print(text + "\n", flush=True)
    write_json("run", {"machine": machine(), "quick": args.quick, "section_seconds": timings})


if __name__ == "__main__":
    main()
