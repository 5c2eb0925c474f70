"""Runs tests/sharding_suite.py on 8 simulated CPU devices in a fresh interpreter."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The suite's XLA flags (tests/conftest.py) with 8 simulated CPU devices.
EIGHT_DEVICES = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8"


def test_sharding_suite_on_eight_simulated_devices():
    env = dict(os.environ, XLA_FLAGS=EIGHT_DEVICES)
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
        env=dict(os.environ, XLA_FLAGS=EIGHT_DEVICES),
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


def test_multi_process_example_matches_one_process_of_eight_devices():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "examples/multi_process.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "x" in line]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows[1:]]
    assert [row[0] for row in cells] == ["2 x 4", "1 x 8"]
    # Adam's mu and nu of the 64-32-10 MLP in float64, plus the int32 count; ZeRO-1 splits
    # every buffer 8 ways except the 10 biases of the last layer (10 is not divisible by 8).
    params = 64 * 32 + 32 + 32 * 10 + 10
    assert int(cells[0][1]) == 2 * 8 * params + 4
    assert int(cells[0][2]) == 2 * 8 * (params - 10) // 8 + 2 * 8 * 10 + 4
    # float64; the two all-reduces add the same partial sums in another order.
    assert float(cells[0][4]) < 1e-14
    assert cells[0][3] == cells[1][3]
