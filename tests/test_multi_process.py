"""Many processes: 2 JAX processes x 4 CPU devices, joined by ``jax.distributed`` (gloo).

Four jobs of ``tests/multi_process_job.py`` (read its docstring) run once for the
module, two at a time, each bounded in time, with every process killed on failure: a
2-process job that trains and is killed mid-run beside a 1-process job on 8 devices,
then a 1-process job that restores the 2-process checkpoint beside a 2-process job that
restarts.  The checks compare their outputs:

* data-parallel ZeRO-1 Adam and a sharded population give the numbers of one process
  with 8 devices (and, to rounding, of a plain single-device loop);
* a checkpoint saved by 2 processes resumes in 1 process on a 4-device mesh, and the
  reverse, bit for bit as an uninterrupted run (a layout-invariant gradient sum, see the
  job's docstring); new hyperparameters after a restore recompile nothing;
* after a SIGKILL the job restarts from the latest complete checkpoint, never from a
  half-written one, and ends bit for bit where the uninterrupted run ends.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptive_jax as aj
from tests import multi_process_job as job

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 300


def run_phase(phase, directory, num_processes, devices_per_process):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return aj.sharding.launch_local_processes(
        [sys.executable, str(ROOT / "tests" / "multi_process_job.py"), phase, str(directory)],
        num_processes,
        devices_per_process,
        timeout=TIMEOUT_S,
        env=env,
        cwd=ROOT,
    )


def plant_a_half_written_checkpoint(checkpoints, step):
    """A copy of a complete checkpoint under an unfinished name, one file missing."""
    complete = checkpoints / str(job.RESHAPE_STEP)
    if complete.exists():
        partial = checkpoints / f"{step}.orbax-checkpoint-tmp-1764000000"
        shutil.copytree(complete, partial)
        next(path for path in sorted(partial.rglob("*")) if path.is_file()).unlink()


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    """The four jobs, two at a time; (folder, {phase: LocalJob}).  No process outlives it."""
    directory = tmp_path_factory.mktemp("multi_process")
    layouts = {"train": (2, 4), "single": (1, 8), "reshape": (1, 4), "resume": (2, 4)}

    def run(phase):
        return phase, run_phase(phase, directory, *layouts[phase])

    with ThreadPoolExecutor(2) as pool:
        done = dict(pool.map(run, ["train", "single"]))
        plant_a_half_written_checkpoint(directory / "ckpt_2p", step=job.STEPS)
        done.update(pool.map(run, ["reshape", "resume"]))
    return directory, done


def finished(jobs, phase):
    """The folder, once ``phase`` ended as planned (the train job: process 1 killed itself)."""
    directory, done = jobs
    if phase == "train":
        crashed = done["train"]
        processes = crashed.processes
        assert not crashed.timed_out, crashed.describe()
        assert "SIGKILL" in processes[1].stdout, crashed.describe()
        # Process 1 died by SIGKILL; process 0 did not fail, it was stopped by the launcher.
        assert [p.returncode for p in processes] == [-9, -9], crashed.describe()
    else:
        assert done[phase].ok, done[phase].describe()
    return directory


def load(directory, name):
    with np.load(directory / f"{name}.npz") as saved:
        return {key: saved[key] for key in saved.files}


def max_difference(a, b):
    assert a.keys() == b.keys()
    return max(float(np.max(np.abs(a[k] - b[k]), initial=0.0)) for k in a)


def assert_bit_identical(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].tobytes() == b[key].tobytes(), key


# --- the launcher ---------------------------------------------------------------------


def python(code):
    return [sys.executable, "-c", code]


def test_launcher_gives_each_process_its_id_and_one_coordinator():
    code = (
        "import os; print(os.environ['ADAPTIVE_JAX_PROCESS_ID'], "
        "os.environ['JAX_COORDINATOR_ADDRESS'], os.environ['XLA_FLAGS'])"
    )
    env = dict(
        os.environ, XLA_FLAGS="--xla_dump_to=/nowhere --xla_force_host_platform_device_count=5"
    )
    result = aj.sharding.launch_local_processes(python(code), 3, 2, timeout=60, env=env)
    assert result.ok, result.describe()
    lines = [p.stdout.split() for p in result.processes]
    assert [line[0] for line in lines] == ["0", "1", "2"]
    assert len({line[1] for line in lines}) == 1 and lines[0][1].startswith("127.0.0.1:")
    # The device count replaced, the caller's other XLA flags kept.
    flags = {tuple(line[2:]) for line in lines}
    assert flags == {("--xla_dump_to=/nowhere", "--xla_force_host_platform_device_count=2")}


def alive(pid):
    """Running (a zombie, dead but not yet reaped by its new parent, is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_launcher_kills_every_survivor_when_one_process_fails():
    # Process 0 starts a grandchild and waits (as in a collective); process 1 fails.
    code = (
        "import os, subprocess, sys, time\n"
        "if os.environ['ADAPTIVE_JAX_PROCESS_ID'] == '1':\n"
        "    time.sleep(0.5); sys.exit(3)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(os.getpid(), child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    start = time.monotonic()
    result = aj.sharding.launch_local_processes(python(code), 2, 1, timeout=60)
    assert time.monotonic() - start < 30
    assert not result.ok and not result.timed_out
    assert [p.returncode for p in result.processes] == [-9, 3]
    pids = [int(pid) for pid in result.processes[0].stdout.split()]
    time.sleep(0.2)
    assert pids and not any(alive(pid) for pid in pids)


def test_launcher_kills_the_whole_job_at_its_timeout():
    start = time.monotonic()
    result = aj.sharding.launch_local_processes(
        python("import time; time.sleep(60)"), 2, 1, timeout=1.0
    )
    assert result.timed_out and not result.ok
    assert [p.returncode for p in result.processes] == [-9, -9]
    assert time.monotonic() - start < 20


def test_initialize_local_process_outside_a_launched_job_says_how_to_start_it(monkeypatch):
    monkeypatch.delenv("ADAPTIVE_JAX_PROCESS_ID", raising=False)
    with pytest.raises(RuntimeError, match="ADAPTIVE_JAX_PROCESS_ID.*launch_local_processes"):
        aj.sharding.initialize_local_process()


# --- 2 processes x 4 devices against 1 process x 8 ------------------------------------


@jax.jit
def reference_adam_run():
    """The data-parallel run's updates on one device, without sharding."""
    tx = aj.adam(job.LEARNING_RATE)

    def step(carry, batch):
        params, state = carry
        updates, state = tx.update(jax.grad(job.loss)(params, *batch), state, params)
        return (aj.apply_updates(params, updates), state), None

    params = jax.tree_util.tree_map(jnp.asarray, job.INITIAL)
    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), (job.DATA_X, job.DATA_Y))
    return params


def test_two_processes_train_like_one_process_of_eight_devices(jobs):
    directory = finished(jobs, "train") and finished(jobs, "single")
    layout = json.loads((directory / "layout_2x4.json").read_text())
    assert (layout["processes"], layout["devices"], layout["local_devices"]) == (2, 8, 4)
    two, one = load(directory, "dp_2x4"), load(directory, "dp_1x8")
    # Gloo's all-reduce between processes adds the partial sums in another order.
    assert max_difference(two, one) < 1e-15
    reference = reference_adam_run()
    for key, value in reference.items():
        np.testing.assert_allclose(two[f"['params']['{key}']"], value, rtol=1e-12, atol=1e-15)


def test_zero1_state_per_device_is_an_eighth_of_the_replicated_state(jobs):
    directory = finished(jobs, "train")
    layout = json.loads((directory / "layout_2x4.json").read_text())
    # Adam keeps mu and nu (float64) per parameter and an int32 count.  ZeRO-1 splits
    # every buffer with a dimension divisible by 8; the scalar b2 stays whole.
    sizes = {name: np.size(value) for name, value in job.INITIAL.items()}
    replicated = 2 * 8 * sum(sizes.values()) + 4
    zero1 = 2 * 8 * (sum(sizes.values()) - sizes["b2"]) // 8 + 2 * 8 * sizes["b2"] + 4
    assert layout["replicated_state_bytes_per_device"] == replicated
    assert layout["zero1_state_bytes_per_device"] == zero1


def test_population_sharded_over_both_processes_matches_one_process(jobs):
    directory = finished(jobs, "train") and finished(jobs, "single")
    layout = json.loads((directory / "layout_2x4.json").read_text())
    assert layout["population_shard_shapes"] == [[len(job.RATES) // 8]]
    two, one = load(directory, "population_2x4"), load(directory, "population_1x8")
    # Each member trains alone on its device: no cross-device sum, the same bits.
    assert_bit_identical(two, one)


# --- checkpoints across a change of shape ---------------------------------------------


def test_two_process_checkpoint_resumes_in_one_process_on_a_four_device_mesh(jobs):
    directory = finished(jobs, "reshape")
    placement = json.loads((directory / "restored_placement.json").read_text())
    # Resharded on restore: mu of w1 (16 x 32) split 4 ways along its 32 columns.
    assert placement == {"devices": 4, "shard": [16, 8]}
    assert_bit_identical(load(directory, "resumed_2p_to_1p"), load(directory, "uninterrupted"))


def test_one_process_checkpoint_resumes_in_two_processes(jobs):
    directory = finished(jobs, "resume")
    assert_bit_identical(load(directory, "resumed_1p_to_2p"), load(directory, "uninterrupted"))


def test_new_hyperparameters_after_a_restore_keep_the_state_and_do_not_recompile(jobs):
    directory = finished(jobs, "single") and finished(jobs, "reshape")
    traces = json.loads((directory / "traces.json").read_text())
    assert traces["after_new_hyperparameters"] == traces["first_run"] == 1
    switched = load(directory, "switched_after_restore")
    assert_bit_identical(switched, load(directory, "switched_in_memory"))
    assert max_difference(switched, load(directory, "uninterrupted")) > 1e-3  # the new rate


# --- surviving a crash -----------------------------------------------------------------


def test_a_killed_job_restarts_from_its_latest_complete_checkpoint(jobs):
    directory = finished(jobs, "train")  # process 1 SIGKILLed, mid-run, during a save
    checkpoints = directory / "ckpt_2p"
    complete = sorted(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())
    assert complete == [2, 4]  # the save of step 6 never finished
    restarted = finished(jobs, "resume")
    # Not the planted half-written step 8, nor the unfinished step 6.
    assert json.loads((restarted / "restart_step.json").read_text()) == job.RESHAPE_STEP
    assert_bit_identical(load(directory, "resumed_after_crash"), load(directory, "uninterrupted"))


def test_launched_processes_die_with_a_killed_launcher(tmp_path):
    launcher = (
        "import sys, adaptive_jax as aj\n"
        'child = \'import os, time; open(os.path.join(sys.argv[1], str(os.getpid())), "w"); '
        "time.sleep(60)'\n"
        "aj.sharding.launch_local_processes([sys.executable, '-c', 'import sys; ' + child, "
        "sys.argv[1]], 2, 1, timeout=120)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen(python(launcher) + [str(tmp_path)], env=env)
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        pids = [int(path.name) for path in tmp_path.iterdir()]
        assert len(pids) == 2 and all(alive(pid) for pid in pids)
        process.kill()  # SIGKILL: the launcher's own clean-up never runs
        process.wait()
        time.sleep(0.5)
        assert not any(alive(pid) for pid in pids)
    finally:
        process.kill()
        process.wait()
