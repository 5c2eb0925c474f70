"""Two JAX processes with four devices each, training like one process with eight.

Training that outgrows one machine runs one JAX process per host, joined by
``jax.distributed.initialize``; here both "hosts" are processes on this machine
(127.0.0.1, gloo collectives between CPU processes, 4 simulated devices each).  The
global mesh has 8 devices on one ``data`` axis: every process feeds its devices their
slice of the batch, parameters are replicated, and Adam's state is split over the 8
devices (ZeRO-1, :func:`adaptive_jax.sharding.zero1_state_shardings`), so each device
holds an eighth of it.  The same program then runs as one process with 8 devices; the
script prints both and their largest parameter difference (float64: the two all-reduces
add the partial sums in another order, so expect about 1e-16, not 0).

Run:  python examples/multi_process.py
(it starts its own processes with :func:`adaptive_jax.sharding.launch_local_processes`)
"""

import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import adaptive_jax as aj

if aj.sharding.is_launched_process() and os.environ["ADAPTIVE_JAX_NUM_PROCESSES"] != "1":
    aj.sharding.initialize_local_process()  # before anything starts JAX's backend

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

STEPS = 40
BATCH = 128  # divisible by the 8 devices


def init_mlp(key, sizes=(64, 32, 10)):
    params = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        key, sub = jax.random.split(key)
        params[f"w{i}"] = np.asarray(jax.random.normal(sub, (fan_in, fan_out))) / np.sqrt(fan_in)
        params[f"b{i}"] = np.zeros(fan_out)
    return params


def loss_fn(params, x, y):
    hidden = jnp.tanh(x @ params["w0"] + params["b0"])
    logits = hidden @ params["w1"] + params["b1"]
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


def global_array(host, sharding):
    """A global array from a host array that every process holds whole (here: the same
    batches, drawn from the same seed); each process places only its devices' slices."""
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def state_bytes_per_device(state):
    device = jax.local_devices()[0]
    shards = [s for leaf in jax.tree_util.tree_leaves(state) for s in leaf.addressable_shards]
    return sum(s.data.nbytes for s in shards if s.device == device)


def train(out_dir):
    """One process's part of the job: the same program on every process."""
    tx = aj.adam(3e-3)
    auto = (jax.sharding.AxisType.Auto,)  # XLA's partitioner places what is not pinned
    mesh = jax.make_mesh((jax.device_count(),), ("data",), axis_types=auto)
    replicated, by_data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    host_params = init_mlp(jax.random.key(0))
    state_specs = aj.sharding.zero1_state_shardings(tx, host_params, mesh)

    def step(params, state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)  # XLA all-reduces grads
        updates, state = tx.update(grads, state, params)
        return aj.apply_updates(params, updates), state, loss

    step = jax.jit(step, out_shardings=(replicated, state_specs, replicated))
    params = jax.tree_util.tree_map(lambda x: global_array(x, replicated), host_params)
    state = jax.jit(tx.init, out_shardings=state_specs)(params)
    replicated_bytes = state_bytes_per_device(jax.jit(tx.init, out_shardings=replicated)(params))

    digits = load_digits()
    images, labels = digits.data / 16.0, digits.target.astype(np.int32)
    rng = np.random.default_rng(0)
    for _ in range(STEPS):
        index = rng.choice(len(images), BATCH, replace=False)
        x, y = global_array(images[index], by_data), global_array(labels[index], by_data)
        params, state, loss = step(params, state, x, y)
        # Wait for each step: with many steps in flight, gloo's collectives between the
        # processes were seen to stall (JAX 0.10.2, CPU).
        loss.block_until_ready()

    zero1_bytes = state_bytes_per_device(state)
    params = jax.tree_util.tree_map(lambda p: np.asarray(p.addressable_data(0)), params)
    multihost_utils.sync_global_devices("trained")
    if jax.process_index() == 0:
        layout = f"{jax.process_count()} x {jax.local_device_count()}"
        np.savez(
            Path(out_dir) / f"{jax.process_count()}.npz",
            layout=layout,
            loss=float(loss.addressable_data(0)),
            replicated_bytes=replicated_bytes,
            zero1_bytes=zero1_bytes,
            **params,
        )


def main():
    with tempfile.TemporaryDirectory() as out_dir, ThreadPoolExecutor(2) as pool:
        argv = [sys.executable, os.path.abspath(__file__), out_dir]
        jobs = list(
            pool.map(
                lambda layout: aj.sharding.launch_local_processes(argv, *layout, timeout=600),
                [(2, 4), (1, 8)],
            )
        )
        for job in jobs:
            if not job.ok:
                sys.exit(job.describe())
        runs = [dict(np.load(Path(out_dir) / f"{n}.npz")) for n in (2, 1)]
    names = [k for k in runs[0] if k.startswith(("w", "b"))]
    diff = max(float(np.max(np.abs(runs[0][k] - runs[1][k]))) for k in names)
    print(
        "| processes x devices | state bytes per device (replicated) | (ZeRO-1) "
        "| final loss | max |param diff| vs 1 x 8 |"
    )
    print("|---|---|---|---|---|")
    for run in runs:
        print(
            f"| {run['layout']} | {int(run['replicated_bytes'])} | {int(run['zero1_bytes'])} "
            f"| {float(run['loss']):.6f} | {diff if run is runs[0] else 0.0:.1e} |"
        )
    return diff


if __name__ == "__main__":
    if aj.sharding.is_launched_process():
        train(sys.argv[1])
    else:
        main()
