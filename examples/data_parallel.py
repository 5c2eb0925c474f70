"""Data-parallel training on 8 (simulated) devices with JAX's SPMD partitioner.

The batch is sharded over a ``data`` mesh axis, parameters and optimizer state are
replicated, and ``jax.jit`` inserts the gradient all-reduce itself.  The same steps run
on one device for comparison; the script prints the largest difference.

Run:  python examples/data_parallel.py
"""

import os

# Simulate 8 CPU devices; must happen before JAX initialises its backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import adaptive_jax as aj  # noqa: E402

STEPS = 200
BATCH = 256  # divisible by the number of devices


def init_mlp(key, sizes=(64, 64, 10)):
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        key, sub = jax.random.split(key)
        params.append(
            {
                "w": jax.random.normal(sub, (fan_in, fan_out)) / np.sqrt(fan_in),
                "b": jnp.zeros(fan_out),
            }
        )
    return params


def loss_fn(params, x, y):
    for layer in params[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    logits = x @ params[-1]["w"] + params[-1]["b"]
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


def train_step(tx, params, state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, state = tx.update(grads, state, params)
    return aj.apply_updates(params, updates), state, loss


def batches():
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    rng = np.random.default_rng(0)
    for _ in range(STEPS):
        index = rng.choice(len(x), BATCH, replace=False)
        yield x[index], y[index]


def run(step, params, state, place_batch):
    losses = []
    for x, y in batches():
        params, state, loss = step(aj.adam(3e-3), params, state, *place_batch(x, y))
        losses.append(float(loss))
    return params, losses


def main():
    devices = jax.devices()
    mesh = jax.make_mesh((len(devices),), ("data",))
    replicated = NamedSharding(mesh, P())
    by_data = NamedSharding(mesh, P("data"))

    params = jax.tree_util.tree_map(np.asarray, init_mlp(jax.random.key(0)))  # host copy
    tx = aj.adam(3e-3)

    sharded_step = jax.jit(train_step, donate_argnums=(1, 2))
    params_dp = jax.device_put(params, replicated)
    state_dp = jax.device_put(tx.init(params), replicated)
    params_dp, losses_dp = run(
        sharded_step,
        params_dp,
        state_dp,
        lambda x, y: (jax.device_put(x, by_data), jax.device_put(y, by_data)),
    )

    single = jax.devices()[0]
    single_step = jax.jit(train_step)
    params_1, losses_1 = run(
        single_step,
        jax.device_put(params, single),
        jax.device_put(tx.init(params), single),
        lambda x, y: (jax.device_put(x, single), jax.device_put(y, single)),
    )

    diff = max(
        float(jnp.max(jnp.abs(a - jax.device_put(b, a.sharding))))
        for a, b in zip(jax.tree_util.tree_leaves(params_dp), jax.tree_util.tree_leaves(params_1))
    )
    print(
        "| devices | steps | final loss (data parallel) | final loss (1 device) | max |param diff| |"
    )
    print("|---|---|---|---|---|")
    print(f"| {len(devices)} | {STEPS} | {losses_dp[-1]:.4f} | {losses_1[-1]:.4f} | {diff:.2e} |")
    return diff


if __name__ == "__main__":
    main()
