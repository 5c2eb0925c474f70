"""One JAX job of tests/test_multi_process.py: ``python tests/multi_process_job.py PHASE DIR``.

Started by :func:`adaptive_jax.sharding.launch_local_processes` as 2 processes x 4 CPU
devices, or as 1 process x 8 devices, it writes what it computed to ``DIR`` (``.npz``
files, by process 0) and the orbax checkpoints to ``DIR/ckpt_*``.  Not collected by
pytest (its name does not start with ``test_``).

Phases (the test runs ``train`` and ``single`` side by side, then ``reshape`` and
``resume``):

* ``train`` (2 x 4): data-parallel Adam with ZeRO-1 state, a population of learning
  rates sharded over the 8 devices, then a checkpointed run in which process 1 kills
  itself with SIGKILL right after starting the save of step ``CRASH_STEP``.
* ``single`` (1 x 8): the same data-parallel run and population in one process; on 4 of
  its devices the uninterrupted run, a checkpoint at ``RESHAPE_STEP`` for the change of
  shape 1 -> 2 processes, and a run that switches to new hyperparameters there.
* ``reshape`` (1 x 4): the 2-process checkpoint restored on a 4-device mesh and resumed,
  with the same and with new hyperparameters.
* ``resume`` (2 x 4): a restart from the latest complete checkpoint after the crash, and
  a resume of the 1-process checkpoint.

A data-parallel gradient summed by an all-reduce depends on the layout (the partial sums
differ), so runs that change shape use ``invariant_step``: the gradient of each of
``GROUPS`` fixed groups of examples is computed alone, all-gathered (an exact copy) and
the groups are added in a fixed order, so the bits do not depend on the number of
processes or devices.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
from pathlib import Path

import jax

import adaptive_jax as aj

if aj.sharding.is_launched_process() and int(os.environ["ADAPTIVE_JAX_NUM_PROCESSES"]) > 1:
    aj.sharding.initialize_local_process()
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

STEPS, BATCH, FEATURES, GROUPS = 8, 32, 16, 8
SAVE_EVERY, CRASH_STEP, RESHAPE_STEP = 2, 6, 4
LEARNING_RATE, NEW_LEARNING_RATE = 0.05, 0.02
RATES = np.logspace(-3, -0.5, 16)  # the population: two learning rates per device
POPULATION_STEPS = 30

rng = np.random.default_rng(0)
DATA_X = rng.normal(size=(STEPS, BATCH, FEATURES))
DATA_Y = rng.normal(size=(STEPS, BATCH))
INITIAL = {
    "w1": rng.normal(size=(FEATURES, 32)) / 4,
    "b1": np.zeros(32),
    "w2": rng.normal(size=(32, 1)) / 6,
    "b2": np.zeros(()),
}


def loss(params, x, y):
    hidden = jnp.tanh(x @ params["w1"] + params["b1"])
    return jnp.mean(((hidden @ params["w2"])[:, 0] + params["b2"] - y) ** 2)


def quadratic(w):
    return jnp.sum((w - 1.0) ** 2 * jnp.arange(1.0, 5.0))


def global_array(host, sharding):
    """A global array from a host array every process holds whole."""
    host = np.asarray(host)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def gathered(tree):
    """Every leaf as one host array, on every process."""
    return jax.tree_util.tree_map(
        lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True)), tree
    )


def save_npz(directory, name, tree):
    if jax.process_index() == 0:
        leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
        np.savez(Path(directory) / f"{name}.npz", **{jax.tree_util.keystr(k): v for k, v in leaves})


class Layout:
    """A data-parallel mesh over ``devices``: parameters replicated, state ZeRO-1."""

    def __init__(self, tx, devices):
        auto = (jax.sharding.AxisType.Auto,)  # XLA's partitioner places what is not pinned
        self.mesh = jax.make_mesh((len(devices),), ("data",), devices=devices, axis_types=auto)
        self.replicated = NamedSharding(self.mesh, P())
        self.by_data = NamedSharding(self.mesh, P("data"))
        self.state_specs = aj.sharding.zero1_state_shardings(tx, INITIAL, self.mesh)

    def params(self, host):
        return jax.tree_util.tree_map(lambda x: global_array(x, self.replicated), host)

    def batch(self, t):
        return global_array(DATA_X[t], self.by_data), global_array(DATA_Y[t], self.by_data)

    def hyperparameters(self, tx):
        return jax.tree_util.tree_map(lambda x: global_array(x, self.replicated), tx)

    def init(self, tx, params):
        return jax.jit(tx.init, out_shardings=self.state_specs)(params)

    def target(self, tx):
        """What orbax restores into: shapes, dtypes and this layout's shardings."""
        return {
            "params": aj.sharding.abstract_state(lambda p: p, INITIAL, self.replicated),
            "opt_state": aj.sharding.abstract_state(tx.init, INITIAL, self.state_specs),
        }


TRACES = {"invariant_step": 0}


def psum_step(tx, params, state, x, y):
    """The usual data-parallel step: XLA all-reduces the gradient of the sharded batch."""
    grads = jax.grad(loss)(params, x, y)
    updates, state = tx.update(grads, state, params)
    return aj.apply_updates(params, updates), state


def invariant_step(tx, params, state, x, y, *, mesh):
    """A data-parallel step whose bits do not depend on the layout (see the module doc)."""
    TRACES["invariant_step"] += 1

    def mean_gradient(params, x, y):  # on each device, for its groups of examples
        groups = (x.reshape(-1, BATCH // GROUPS, FEATURES), y.reshape(-1, BATCH // GROUPS))
        # One group at a time (not vmap: a batched dot's rounding depends on the batch size).
        per_group = jax.lax.map(lambda group: jax.grad(loss)(params, *group), groups)
        per_group = jax.lax.all_gather(per_group, "data", tiled=True)  # exact copies
        return jax.tree_util.tree_map(
            lambda g: functools.reduce(jnp.add, [g[i] for i in range(GROUPS)]) / GROUPS,
            per_group,
        )

    in_specs = (P(), P("data"), P("data"))
    # check_vma=False: the all-gathered sum is the same on every device, as out_specs says.
    grads = jax.shard_map(
        mean_gradient, mesh=mesh, in_specs=in_specs, out_specs=P(), check_vma=False
    )(params, x, y)
    updates, state = tx.update(grads, state, params)
    return aj.apply_updates(params, updates), state


@functools.cache
def compiled(layout, kind):
    out = (layout.replicated, layout.state_specs)
    if kind == "psum":
        return jax.jit(psum_step, out_shardings=out)
    step = functools.partial(invariant_step, mesh=layout.mesh)
    return jax.jit(step, out_shardings=out)


def train(layout, tx, params, state, steps, kind="invariant", manager=None, crash_at=None):
    step = compiled(layout, kind)
    tx_arrays = layout.hyperparameters(tx)
    for t in steps:
        params, state = step(tx_arrays, params, state, *layout.batch(t))
        # One step in flight at a time: with many queued, gloo's collectives between the
        # processes were seen to stall (JAX 0.10.2, CPU).
        jax.block_until_ready(params)
        if manager is not None and (t + 1) % SAVE_EVERY == 0:
            manager.save(t + 1, args=ocp.args.StandardSave({"params": params, "opt_state": state}))
        if crash_at == t + 1:
            print(f"process {jax.process_index()}: SIGKILL at step {t + 1}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no finished save
    return params, state


def manager_at(path, **options):
    return ocp.CheckpointManager(
        Path(path).absolute(),
        options=ocp.CheckpointManagerOptions(save_interval_steps=SAVE_EVERY, **options),
    )


def restore(layout, tx, path, step=None):
    with manager_at(path) as manager:
        step = manager.latest_step() if step is None else step
        restored = manager.restore(step, args=ocp.args.StandardRestore(layout.target(tx)))
    return step, restored["params"], restored["opt_state"]


def state_bytes_per_device(state):
    device = jax.local_devices()[0]
    return sum(
        shard.data.nbytes
        for leaf in jax.tree_util.tree_leaves(state)
        for shard in leaf.addressable_shards
        if shard.device == device
    )


def data_parallel_and_population(directory, tag):
    """Part 1: data-parallel ZeRO-1 Adam and a sharded population over all devices."""
    tx = aj.adam(LEARNING_RATE)
    layout = Layout(tx, jax.devices())
    params = layout.params(INITIAL)
    state = layout.init(tx, params)
    replicated_state = jax.jit(tx.init, out_shardings=layout.replicated)(params)
    params, state = train(layout, tx, params, state, range(STEPS), kind="psum")
    save_npz(directory, f"dp_{tag}", {"params": gathered(params), "opt_state": gathered(state)})

    def final_loss(rate):  # Adam at this rate on a small quadratic
        tx = aj.adam(rate)

        def body(carry, _):
            w, state = carry
            updates, state = tx.update(jax.grad(quadratic)(w), state, w)
            return (aj.apply_updates(w, updates), state), None

        w = jnp.zeros(4)
        (w, _), _ = jax.lax.scan(body, (w, tx.init(w)), None, length=POPULATION_STEPS)
        return quadratic(w)

    population = jax.jit(jax.vmap(final_loss), out_shardings=layout.by_data)
    losses = population(global_array(RATES, layout.by_data))
    local_rates = {shard.data.shape for shard in losses.addressable_shards}
    save_npz(directory, f"population_{tag}", {"losses": gathered(losses)})
    if jax.process_index() == 0:
        info = {
            "processes": jax.process_count(),
            "devices": jax.device_count(),
            "local_devices": jax.local_device_count(),
            "population_shard_shapes": sorted(local_rates),
            "zero1_state_bytes_per_device": state_bytes_per_device(state),
            "replicated_state_bytes_per_device": state_bytes_per_device(replicated_state),
        }
        (Path(directory) / f"layout_{tag}.json").write_text(json.dumps(info))


def phase_train(directory):
    data_parallel_and_population(directory, "2x4")
    multihost_utils.sync_global_devices("part 1 written")
    tx = aj.adam(LEARNING_RATE)
    layout = Layout(tx, jax.devices())
    params = layout.params(INITIAL)
    crash = CRASH_STEP if jax.process_index() == 1 else None
    with manager_at(directory / "ckpt_2p") as manager:
        train(
            layout,
            tx,
            params,
            layout.init(tx, params),
            range(STEPS),
            manager=manager,
            crash_at=crash,
        )
    raise AssertionError("process 1 should have killed itself")


def phase_single(directory):
    data_parallel_and_population(directory, "1x8")
    tx = aj.adam(LEARNING_RATE)
    four = Layout(tx, jax.devices()[:4])
    params = four.params(INITIAL)
    params, state = train(four, tx, params, four.init(tx, params), range(RESHAPE_STEP))
    with manager_at(directory / "ckpt_1p") as manager:  # for the reverse change of shape
        manager.save(
            RESHAPE_STEP, args=ocp.args.StandardSave({"params": params, "opt_state": state})
        )
    final = train(four, tx, params, state, range(RESHAPE_STEP, STEPS))
    save_npz(directory, "uninterrupted", gathered(final))
    new_tx = aj.adam(NEW_LEARNING_RATE)  # same tree structure, new values
    switched = train(four, new_tx, params, state, range(RESHAPE_STEP, STEPS))
    save_npz(directory, "switched_in_memory", gathered(switched))


def phase_reshape(directory):
    tx = aj.adam(LEARNING_RATE)
    four = Layout(tx, jax.devices())  # 1 x 4: another mesh than the 2 x 4 job's
    _, params, state = restore(four, tx, directory / "ckpt_2p", RESHAPE_STEP)
    mu = state.inner[0].mu["w1"]
    placement = {
        "devices": len(mu.sharding.device_set),
        "shard": mu.addressable_shards[0].data.shape,
    }
    (directory / "restored_placement.json").write_text(json.dumps(placement))
    final = train(four, tx, params, state, range(RESHAPE_STEP, STEPS))
    save_npz(directory, "resumed_2p_to_1p", gathered(final))
    traces = TRACES["invariant_step"]
    new_tx = aj.adam(NEW_LEARNING_RATE)
    switched = train(four, new_tx, params, state, range(RESHAPE_STEP, STEPS))
    save_npz(directory, "switched_after_restore", gathered(switched))
    (directory / "traces.json").write_text(
        json.dumps({"first_run": traces, "after_new_hyperparameters": TRACES["invariant_step"]})
    )


def phase_resume(directory):
    tx = aj.adam(LEARNING_RATE)
    layout = Layout(tx, jax.devices())
    step, params, state = restore(layout, tx, directory / "ckpt_2p")
    final = train(layout, tx, params, state, range(step, STEPS))
    save_npz(directory, "resumed_after_crash", gathered(final))
    if jax.process_index() == 0:
        (directory / "restart_step.json").write_text(json.dumps(step))
    _, params, state = restore(layout, tx, directory / "ckpt_1p", RESHAPE_STEP)
    final = train(layout, tx, params, state, range(RESHAPE_STEP, STEPS))
    save_npz(directory, "resumed_1p_to_2p", gathered(final))


if __name__ == "__main__":
    phase, directory = sys.argv[1], Path(sys.argv[2])
    phases = {
        "train": phase_train,
        "single": phase_single,
        "reshape": phase_reshape,
        "resume": phase_resume,
    }
    phases[phase](directory)
