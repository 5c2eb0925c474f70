"""Meta-learned hyperparameters against grid and random search, at an equal inner-step budget.

Three tasks on data that ships with the installed packages:

* ``digits_mlp`` — a 64-32-10 ReLU MLP on scikit-learn's digits;
* ``digits_cnn`` — a small convolutional network (3x3 conv, 8 channels, 2x2 average
  pooling, linear read-out) on the same 8x8 images;
* ``char_mlp`` — a next-character model (8 characters of context, 16-dimensional
  embeddings, a 64-unit tanh layer) on source files of the Python standard library.

Each search tunes AdamW, trained for ``T`` minibatch steps from a fixed initialisation,
by the validation loss after those steps, and is given the same number of inner training
steps, ``M x T``:

* **grid** — ``M`` learning rates on a log grid (the other settings at their defaults),
  trained as one vmapped population;
* **random** — ``M`` draws of (learning rate, 1 - beta1, 1 - beta2, weight decay), each
  log-uniform over a range around common practice, also one population;
* **meta** — ``M`` outer steps of :func:`adaptive_jax.meta.meta_train` (unconstrained
  coordinates, best iterate kept, roll-back on explosions) on per-layer learning rates,
  beta1, beta2 and the weight decay, from AdamW's defaults, the hypergradient through the
  whole unrolled run (reverse mode); once with the default outer optimizer and once with
  ``adam(1.0)``, the two candidates for that default.

Each search's choice is then judged on fresh runs — new initialisations and new
minibatches — by the mean loss on a held-out test split.  Several seeds; the table gives the
median held-out loss, its spread (min-max), and the search's wall time (compilation
included: it is part of what a search costs).

``python -m benchmarks.bench_meta_learning [--quick] [--seeds 3]`` prints the table and
writes ``benchmarks/results/meta_learning.json``.  Nothing here asserts a result.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import adaptive_jax as aj
from benchmarks.common import machine, write_json

GRID_RANGE = (1e-4, 1.0)  # learning rates of the grid
RANDOM_RANGES = {  # log-uniform ranges of random search
    "learning_rate": (1e-4, 1.0),
    "one_minus_b1": (1e-2, 0.5),
    "one_minus_b2": (1e-4, 1e-1),
    "weight_decay": (1e-6, 1e-1),
}


class Task(NamedTuple):
    """A supervised problem: ``init(seed)``, ``loss(params, batch)``, data and layer names."""

    name: str
    init: Callable[[int], Any]
    loss: Callable[[Any, tuple[jax.Array, jax.Array]], jax.Array]
    train: tuple[jax.Array, jax.Array]
    val: tuple[jax.Array, jax.Array]
    test: tuple[jax.Array, jax.Array]
    batch_size: int


def cross_entropy(logits, labels):
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))


def dense(rng, fan_in, fan_out, gain=2.0):
    weight = rng.normal(size=(fan_in, fan_out)) * np.sqrt(gain / fan_in)
    return {"w": jnp.asarray(weight, jnp.float32), "b": jnp.zeros(fan_out, jnp.float32)}


def digits_data():
    images, labels = load_digits(return_X_y=True)
    x_rest, x_test, y_rest, y_test = train_test_split(
        images, labels, test_size=0.25, random_state=0, stratify=labels
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=0.2, random_state=0, stratify=y_rest
    )
    mean, std = x_train.mean(axis=0), np.where(x_train.std(axis=0) > 0, x_train.std(axis=0), 1)

    def prepare(x, y):
        return jnp.asarray((x - mean) / std, jnp.float32), jnp.asarray(y, jnp.int32)

    return prepare(x_train, y_train), prepare(x_val, y_val), prepare(x_test, y_test)


def digits_mlp_task() -> Task:
    def init(seed):
        rng = np.random.default_rng(seed)
        return {"hidden": dense(rng, 64, 32), "out": dense(rng, 32, 10, gain=1.0)}

    def loss(params, batch):
        x, y = batch
        h = jax.nn.relu(x @ params["hidden"]["w"] + params["hidden"]["b"])
        return cross_entropy(h @ params["out"]["w"] + params["out"]["b"], y)

    return Task("digits_mlp", init, loss, *digits_data(), batch_size=128)


def digits_cnn_task() -> Task:
    def init(seed):
        rng = np.random.default_rng(seed)
        kernel = rng.normal(size=(3, 3, 1, 8)) * np.sqrt(2.0 / 9)
        return {
            "conv": {"w": jnp.asarray(kernel, jnp.float32), "b": jnp.zeros(8, jnp.float32)},
            "out": dense(rng, 4 * 4 * 8, 10, gain=1.0),
        }

    def loss(params, batch):
        x, y = batch
        images = x.reshape(-1, 8, 8, 1)
        h = jax.lax.conv_general_dilated(
            images, params["conv"]["w"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        h = jax.nn.relu(h + params["conv"]["b"])
        h = h.reshape(-1, 4, 2, 4, 2, 8).mean(axis=(2, 4)).reshape(len(x), -1)
        return cross_entropy(h @ params["out"]["w"] + params["out"]["b"], y)

    return Task("digits_cnn", init, loss, *digits_data(), batch_size=128)


CONTEXT = 8
STDLIB_FILES = ("textwrap.py", "string.py", "difflib.py", "fractions.py", "heapq.py", "bisect.py")


def char_data():
    """Windows of 8 characters and the next one, from standard-library sources.

    Characters outside printable ASCII map to one "other" symbol.  The text is split by
    position: the first 80 % train, then 10 % validation, 10 % test.
    """
    folder = Path(sysconfig.get_paths()["stdlib"])
    text = "\n".join((folder / name).read_text(encoding="utf-8") for name in STDLIB_FILES)
    codes = np.frombuffer(text.encode("ascii", "replace"), np.uint8).astype(np.int32)
    codes = np.where((codes >= 32) & (codes < 127), codes - 32, 95)
    codes = np.where(np.frombuffer(text.encode("ascii", "replace"), np.uint8) == 10, 96, codes)
    windows = np.lib.stride_tricks.sliding_window_view(codes, CONTEXT + 1)[::3]
    n = len(windows)
    parts = np.split(windows, [int(0.8 * n), int(0.9 * n)])
    return tuple((jnp.asarray(p[:, :-1]), jnp.asarray(p[:, -1])) for p in parts)


VOCABULARY = 97


def char_mlp_task() -> Task:
    def init(seed):
        rng = np.random.default_rng(seed)
        embed = jnp.asarray(rng.normal(size=(VOCABULARY, 16)) * 0.3, jnp.float32)
        return {
            "embed": embed,
            "hidden": dense(rng, CONTEXT * 16, 64, gain=1.0),
            "out": dense(rng, 64, VOCABULARY, gain=1.0),
        }

    def loss(params, batch):
        x, y = batch
        e = params["embed"][x].reshape(len(x), -1)
        h = jnp.tanh(e @ params["hidden"]["w"] + params["hidden"]["b"])
        return cross_entropy(h @ params["out"]["w"] + params["out"]["b"], y)

    train, val, test = char_data()
    # held-out losses on a fixed 4096-window subset keep evaluation cheap
    return Task(
        "char_mlp",
        init,
        loss,
        train,
        (val[0][:4096], val[1][:4096]),
        (test[0][:4096], test[1][:4096]),
        batch_size=128,
    )


def batches(task: Task, seed: int, steps: int):
    index = np.random.default_rng(seed).integers(0, len(task.train[1]), (steps, task.batch_size))
    return task.train[0][index], task.train[1][index]


def per_layer(value: float, params) -> dict:
    """A learning-rate tree with one value per top-level layer (its leaves share it)."""
    return {
        layer: jax.tree.map(lambda _: jnp.asarray(value, jnp.float32), leaves)
        for layer, leaves in params.items()
    }


def trained(task: Task, tx, seed: int, steps: int):
    """Parameters after ``steps`` AdamW steps from ``task.init(seed)`` on seed's minibatches."""
    run = aj.meta.unroll(tx, task.init(seed), task.loss, batches(task, seed, steps))
    return run.params


def grid_search(task: Task, seed: int, steps: int, budget: int):
    rates = np.geomspace(*GRID_RANGE, budget)
    return population_search(task, [aj.adamw(float(r)) for r in rates], seed, steps)


def random_search(task: Task, seed: int, steps: int, budget: int):
    rng = np.random.default_rng(1000 + seed)

    def draw(name):
        low, high = RANDOM_RANGES[name]
        return float(np.exp(rng.uniform(np.log(low), np.log(high))))

    members = [
        aj.adamw(
            draw("learning_rate"),
            b1=1 - draw("one_minus_b1"),
            b2=1 - draw("one_minus_b2"),
            weight_decay=draw("weight_decay"),
        )
        for _ in range(budget)
    ]
    return population_search(task, members, seed, steps)


def population_search(task: Task, members, seed: int, steps: int):
    population = aj.meta.stack_population(members)

    @jax.jit
    def validation(tx):
        return task.loss(trained(task, tx, seed, steps), task.val)

    losses = jax.vmap(validation)(population)
    losses = jnp.where(jnp.isfinite(losses), losses, jnp.inf)
    return members[int(jnp.argmin(losses))]


def meta_search(task: Task, seed: int, steps: int, budget: int, outer_learning_rate=None):
    start = aj.adamw(per_layer(1e-3, task.init(seed)))

    def meta_loss(tx):
        return task.loss(trained(task, tx, seed, steps), task.val)

    result = aj.meta.meta_train(
        meta_loss,
        start,
        None if outer_learning_rate is None else aj.adam(outer_learning_rate),
        num_iterations=budget,
        learn=["learning_rate", "b1", "b2", "weight_decay"],
        progress=False,
    )
    return result.best_meta_params


SEARCHES = {
    "grid": grid_search,
    "random": random_search,
    "meta (default outer adam(0.1))": meta_search,
    "meta (outer adam(1.0))": functools.partial(meta_search, outer_learning_rate=1.0),
}
FRESH_RUNS = 4


def held_out_loss(task: Task, tx, seed: int, steps: int) -> float:
    """Mean test loss of ``FRESH_RUNS`` fresh runs (new initialisations, new minibatches).

    One fresh run at these short horizons varies by a factor of two or more with the
    initialisation; the mean judges the setting, not the draw.  A diverged run counts
    as infinite.
    """

    @jax.jit
    def test_loss(tx, params, data):
        run = aj.meta.unroll(tx, params, task.loss, data)
        return task.loss(run.params, task.test)

    losses = []
    for fresh in range(FRESH_RUNS):
        fresh_seed = 10_000 + 100 * seed + fresh
        data = batches(task, fresh_seed, steps)
        losses.append(float(test_loss(tx, task.init(fresh_seed), data)))
    value = float(np.mean(losses))
    return value if np.isfinite(value) else float("inf")


def run(quick: bool, seeds: int) -> dict:
    steps, budget = (20, 8) if quick else (80, 40)
    tasks = [digits_mlp_task(), digits_cnn_task(), char_mlp_task()]
    results: dict[str, Any] = {"steps": steps, "budget": budget, "seeds": seeds, "tasks": {}}
    searches = dict(list(SEARCHES.items())[:3]) if quick else SEARCHES
    for task in tasks:
        per_search = {}
        for name, search in searches.items():
            losses, seconds = [], []
            for seed in range(seeds):
                start = time.perf_counter()
                choice = search(task, seed, steps, budget)
                jax.block_until_ready(jax.tree.leaves(choice))
                seconds.append(time.perf_counter() - start)
                losses.append(held_out_loss(task, choice, seed, steps))
                print(f"{task.name} {name} seed {seed}: {losses[-1]:.4f}", file=sys.stderr)
            per_search[name] = {"held_out": losses, "seconds": seconds}
        results["tasks"][task.name] = per_search
    return results


def table(results: dict) -> str:
    lines = [
        f"Equal budget: {results['budget']} x {results['steps']} inner steps per search, "
        f"{results['seeds']} seeds; held-out: mean test loss of {FRESH_RUNS} fresh runs "
        "(new initialisation and minibatches) with the chosen setting.",
        "",
        "| task | search | held-out loss (median) | min-max | search wall time (s, median) |",
        "|---|---|---|---|---|",
    ]
    for task, per_search in results["tasks"].items():
        for name, row in per_search.items():
            losses = row["held_out"]
            lines.append(
                f"| {task} | {name} | {statistics.median(losses):.4f} | "
                f"{min(losses):.4f}-{max(losses):.4f} | {statistics.median(row['seconds']):.1f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="budget 8 x 20 steps")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    results = run(args.quick, args.seeds)
    print(table(results))
    write_json("meta_learning", {"machine": machine(), "quick": args.quick, **results})


if __name__ == "__main__":
    main()
