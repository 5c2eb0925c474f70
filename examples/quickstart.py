"""Quickstart: a small MLP on scikit-learn's digits, trained with several adaptive_jax optimizers.

    python examples/quickstart.py

Prints one row per optimizer (final training loss, test loss, test accuracy) and
saves the training-loss curves to ``examples/out/quickstart_loss.png``.

Three things to notice:

* an optimizer is a value, ``tx = aj.adam(1e-3)``, with the optax protocol:
  ``state = tx.init(params)``, ``updates, state = tx.update(grads, state, params)``;
* ``train_epoch`` takes ``tx`` as an argument of a jitted function: its hyperparameters
  are pytree leaves, so changing a learning rate reuses the compiled code (a
  different optimizer, with a different chain, compiles once);
* every optimizer starts from the same weights and sees the same minibatches.
"""

from __future__ import annotations

import jax
import matplotlib
import numpy as np
from _digits import (
    accuracy,
    cross_entropy,
    digits_split,
    init_mlp,
    minibatches,
    mlp,
    output_path,
    print_table,
)
from tqdm import tqdm

import adaptive_jax as aj

matplotlib.use("Agg")  # write PNG files; no display needed
import matplotlib.pyplot as plt  # noqa: E402

EPOCHS = 30
BATCH_SIZE = 64


def make_optimizers(total_steps: int) -> dict[str, aj.Transform]:
    """The contenders, with learning rates in each method's usual range."""
    warmup = total_steps // 10  # then cosine decay to 0 over the remaining steps
    cosine = aj.schedules.warmup_cosine_decay(3e-3, warmup, total_steps - warmup)
    return {
        "sgd": aj.sgd(0.05),
        "sgd + momentum": aj.sgd(0.05, momentum=0.9),
        "adagrad": aj.adagrad(0.05),
        "rmsprop": aj.rmsprop(1e-3),
        "adam": aj.adam(3e-3),
        "adamw": aj.adamw(3e-3, weight_decay=1e-2),
        "amsgrad": aj.amsgrad(3e-3),
        "adam + warmup/cosine": aj.adam(cosine),
        "sign descent": aj.sign_descent(1e-3),
    }


def batch_loss(params, x, y):
    return cross_entropy(mlp(params, x), y)


@jax.jit
def train_epoch(tx, params, state, x_batches, y_batches):
    """One pass over the minibatches, as a ``lax.scan`` of optimizer steps (one dispatch)."""

    def step(carry, batch):
        params, state = carry
        grads = jax.grad(batch_loss)(params, *batch)
        updates, state = tx.update(grads, state, params)
        return (aj.apply_updates(params, updates), state), None

    (params, state), _ = jax.lax.scan(step, (params, state), (x_batches, y_batches))
    return params, state


@jax.jit
def evaluate(params, x, y):
    logits = mlp(params, x)
    return cross_entropy(logits, y), accuracy(logits, y)


def train(name, tx, params, data, progress):
    """Train for ``EPOCHS`` epochs; return the final weights and the loss after each epoch."""
    x_train, y_train, _, _ = data
    rng = np.random.default_rng(0)  # the same minibatches for every optimizer
    state = tx.init(params)
    curve = [float(evaluate(params, x_train, y_train)[0])]
    for _ in range(EPOCHS):
        batches = np.stack(list(minibatches(len(y_train), BATCH_SIZE, rng)))
        params, state = train_epoch(tx, params, state, x_train[batches], y_train[batches])
        curve.append(float(evaluate(params, x_train, y_train)[0]))
        progress.set_postfix(optimizer=name, loss=f"{curve[-1]:.3f}")
        progress.update()
    return params, curve


def main():
    data = digits_split()
    x_train, y_train, x_test, y_test = data
    initial = init_mlp(seed=0)
    steps_per_epoch = len(y_train) // BATCH_SIZE
    optimizers = make_optimizers(EPOCHS * steps_per_epoch)

    rows, curves = [], {}
    with tqdm(total=EPOCHS * len(optimizers), desc="training", unit="epoch") as progress:
        for name, tx in optimizers.items():
            params, curves[name] = train(name, tx, initial, data, progress)
            test_loss, test_accuracy = evaluate(params, x_test, y_test)
            rows.append([name, curves[name][-1], float(test_loss), float(test_accuracy)])

    print(
        f"\nMLP 64-64-10 on digits: {len(y_train)} train / {len(y_test)} test images, "
        f"{EPOCHS} epochs of minibatches of {BATCH_SIZE}\n"
    )
    print_table(["optimizer", "train loss", "test loss", "test accuracy"], rows)

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, curve in curves.items():
        axes.semilogy(range(len(curve)), curve, label=name)
    axes.set_xlabel("epoch")
    axes.set_ylabel("training cross-entropy")
    axes.set_title("Small MLP on scikit-learn digits")
    axes.legend(fontsize=8)
    figure.tight_layout()
    path = output_path("quickstart_loss.png")
    figure.savefig(path, dpi=120)
    print(f"\nsaved {path}")


if __name__ == "__main__":
    main()
