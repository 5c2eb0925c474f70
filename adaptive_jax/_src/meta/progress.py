"""The progress bar of :func:`~adaptive_jax.meta.meta_train`: tqdm's, or one line on stderr."""

from __future__ import annotations

import sys
from typing import Any


class StderrProgress:
    """A one-line progress report for when tqdm is not installed."""

    def __init__(self, total: int, initial: int = 0):
        self.total, self.done = total, initial

    def update(self, steps: int, loss: float) -> None:
        self.done += steps
        print(
            f"\rmeta-train {self.done}/{self.total}  meta-loss {loss:.4g}",
            end="",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        print(file=sys.stderr, flush=True)


class TqdmProgress:
    def __init__(self, tqdm: Any, total: int, initial: int = 0):
        self.bar = tqdm(total=total, initial=initial, desc="meta-train")

    def update(self, steps: int, loss: float) -> None:
        self.bar.set_postfix(meta_loss=f"{loss:.4g}", refresh=False)
        self.bar.update(steps)

    def close(self) -> None:
        self.bar.close()


def progress_bar(total: int, initial: int = 0) -> Any:
    """tqdm's bar if it is installed, else one line on stderr."""
    try:
        from tqdm import tqdm
    except ImportError:
        return StderrProgress(total, initial)
    return TqdmProgress(tqdm, total, initial)
