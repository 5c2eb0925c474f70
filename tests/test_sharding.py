"""Runs tests/sharding_suite.py on 8 simulated CPU devices in a fresh interpreter."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_sharding_suite_on_eight_simulated_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/sharding_suite.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]


def test_data_parallel_example_matches_single_device():
    result = subprocess.run(
        [sys.executable, "examples/data_parallel.py"],
        cwd=ROOT,
        env=dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    last_row = result.stdout.strip().splitlines()[-1]
    devices, steps, loss_dp, loss_single, diff = (c.strip() for c in last_row.strip("|").split("|"))
    assert int(devices) == 8
    # float32 all-reduce sums in a different order than the single-device reduction.
    assert float(diff) < 1e-5
    assert abs(float(loss_dp) - float(loss_single)) < 1e-3
