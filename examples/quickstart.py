"""Quickstart: a small MLP on scikit-learn's digits, trained with several adaptive_jax optimizers.

    python examples/quickstart.py

Prints one row per optimizer (final training loss, test loss, test accuracy) and
saves two panels to ``examples/out/quickstart_loss.png``: the training loss and the
test accuracy after every epoch, one line style and marker per optimizer (Adam, AdamW
and AMSGrad follow nearly the same path here, so colour alone would hide some).

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
    """Train for ``EPOCHS`` epochs; return the final weights, and the training loss and
    test accuracy after each epoch."""
    x_train, y_train, x_test, y_test = data
    rng = np.random.default_rng(0)  # the same minibatches for every optimizer
    state = tx.init(params)
    losses = [float(evaluate(params, x_train, y_train)[0])]
    accuracies = [float(evaluate(params, x_test, y_test)[1])]
    for _ in range(EPOCHS):
        batches = np.stack(list(minibatches(len(y_train), BATCH_SIZE, rng)))
        params, state = train_epoch(tx, params, state, x_train[batches], y_train[batches])
        losses.append(float(evaluate(params, x_train, y_train)[0]))
        accuracies.append(float(evaluate(params, x_test, y_test)[1]))
        progress.set_postfix(optimizer=name, loss=f"{losses[-1]:.3f}")
        progress.update()
    return params, losses, accuracies


STYLES = ["-", "--", "-.", ":"]
MARKERS = ["o", "s", "^", "v", "D", "x", "+", "*", "P"]


def plot(curves, accuracies, path):
    """Training loss and test accuracy per epoch; a distinct line style and marker each."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for index, name in enumerate(curves):
        style = dict(
            linestyle=STYLES[index % len(STYLES)],
            marker=MARKERS[index % len(MARKERS)],
            markevery=(index % 5, 5),
            markersize=4,
            color=plt.get_cmap("tab10")(index % 10),
            label=name,
        )
        left.semilogy(range(len(curves[name])), curves[name], **style)
        right.plot(range(len(accuracies[name])), accuracies[name], **style)
    left.set_xlabel("epoch")
    left.set_ylabel("training cross-entropy")
    left.set_title("Training loss")
    right.set_xlabel("epoch")
    right.set_ylabel("test accuracy")
    right.set_ylim(0.8, 1.0)
    right.set_title("Test accuracy")
    right.legend(fontsize=8, loc="lower right")
    figure.suptitle("MLP 64-64-10 on scikit-learn digits")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main():
    data = digits_split()
    x_train, y_train, x_test, y_test = data
    initial = init_mlp(seed=0)
    steps_per_epoch = len(y_train) // BATCH_SIZE
    optimizers = make_optimizers(EPOCHS * steps_per_epoch)

    rows, curves, accuracies = [], {}, {}
    with tqdm(total=EPOCHS * len(optimizers), desc="training", unit="epoch") as progress:
        for name, tx in optimizers.items():
            params, curves[name], accuracies[name] = train(name, tx, initial, data, progress)
            test_loss, test_accuracy = evaluate(params, x_test, y_test)
            rows.append([name, curves[name][-1], float(test_loss), float(test_accuracy)])

    print(
        f"\nMLP 64-64-10 on digits: {len(y_train)} train / {len(y_test)} test images, "
        f"{EPOCHS} epochs of minibatches of {BATCH_SIZE}\n"
    )
    print_table(["optimizer", "train loss", "test loss", "test accuracy"], rows)

    path = output_path("quickstart_loss.png")
    plot(curves, accuracies, path)
    print(f"\nsaved {path}")


if __name__ == "__main__":
    main()
