"""The README's tour runs as written: its python blocks, in order, in a fresh process.

The process has JAX's default configuration (float32, standard dtype promotion): what a
reader who pastes the blocks meets.
"""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)


def test_the_tour_has_blocks():
    assert len(python_blocks()) >= 4


def test_the_tour_runs_in_order_as_written():
    program = "\n".join(python_blocks())
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout
    assert "0.999" in output  # get_hyperparameter(adamw, "b2")
    loss = float(re.search(r"loss after 200 steps: (\S+)", output).group(1))
    assert loss < 1e-3  # a noiseless linear regression: Adam gets close to exact
