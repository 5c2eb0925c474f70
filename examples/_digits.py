"""Shared helpers for the examples: scikit-learn's digits, a small MLP, a table printer.

The digits data set (1,797 8x8 images of handwritten digits, 10 classes) ships inside
scikit-learn, so the examples need no download.  Pixels are standardised with the
training split's statistics: Adam is robust to badly scaled features, SGD is not.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

DEFAULT_OUT_DIR = Path(__file__).resolve().parent / "out"


def output_path(name: str) -> Path:
    """``examples/out/<name>`` (or under ``$ADAPTIVE_JAX_OUT_DIR``), creating the folder."""
    folder = Path(os.environ.get("ADAPTIVE_JAX_OUT_DIR", DEFAULT_OUT_DIR))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def digits_split(test_fraction: float = 0.25, seed: int = 0):
    """``(x_train, y_train, x_test, y_test)``: standardised float32 pixels, int32 labels."""
    images, labels = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # some border pixels are always 0

    def prepare(x, y):
        return jnp.asarray((x - mean) / std, jnp.float32), jnp.asarray(y, jnp.int32)

    return (*prepare(x_train, y_train), *prepare(x_test, y_test))


def minibatches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Indices of one shuffled epoch, in full batches (the remainder is dropped)."""
    order = rng.permutation(n)
    for start in range(0, n - batch_size + 1, batch_size):
        yield order[start : start + batch_size]


def init_mlp(
    seed: int = 0, sizes: Sequence[int] = (64, 64, 10), dtype=jnp.float32
) -> list[dict[str, jax.Array]]:
    """Weights with He (fan-in) scaling and zero biases, one dict per layer.

    Drawn with NumPy: the same numbers on every machine and no JAX compilation.
    """
    rng = np.random.default_rng(seed)
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        w = rng.normal(size=(fan_in, fan_out)) * np.sqrt(2.0 / fan_in)
        layers.append({"w": jnp.asarray(w, dtype), "b": jnp.zeros(fan_out, dtype)})
    return layers


def mlp(params: list[dict[str, jax.Array]], x: jax.Array) -> jax.Array:
    """Logits of a ReLU MLP."""
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy."""
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of correct arg-max predictions."""
    return jnp.mean(jnp.argmax(logits, axis=1) == labels)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a Markdown table (the tests parse it); floats get 4 decimals."""

    def cell(value: object) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in lines:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(line, widths)) + " |")
