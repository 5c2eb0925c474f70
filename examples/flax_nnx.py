"""A Flax NNX model trained through ``flax.nnx.Optimizer`` with an adaptive_jax optimizer.

    python examples/flax_nnx.py

``nnx.Optimizer`` accepts anything with optax's ``init``/``update`` protocol, so an
adaptive_jax transformation drops in where ``optax.adamw(...)`` would go::

    optimizer = nnx.Optimizer(model, aj.adamw(schedule, weight_decay=1e-2), wrt=nnx.Param)

The optimizer's state is adaptive_jax's own, so the inspection helpers read it:
``aj.step_count(optimizer.opt_state)`` and
``aj.current_learning_rate(optimizer.tx, optimizer.opt_state)``.

Prints the training progress as a table and saves the loss and learning-rate curves to
``examples/out/flax_nnx.png``.
"""

from __future__ import annotations

import jax
import matplotlib
import numpy as np
from _digits import accuracy, cross_entropy, digits_split, minibatches, output_path, print_table
from flax import nnx
from tqdm import tqdm

import adaptive_jax as aj

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

EPOCHS = 20
BATCH_SIZE = 64
REPORT_EVERY = 4


class MLP(nnx.Module):
    """64 -> 64 -> 10 with a ReLU."""

    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(64, 64, rngs=rngs)
        self.out = nnx.Linear(64, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(x)))


@nnx.jit
def train_step(model: MLP, optimizer: nnx.Optimizer, x, y):
    loss, grads = nnx.value_and_grad(lambda m: cross_entropy(m(x), y))(model)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def evaluate(model: MLP, x, y):
    logits = model(x)
    return cross_entropy(logits, y), accuracy(logits, y)


@nnx.jit
def learning_rate(optimizer: nnx.Optimizer):
    # Evaluates the schedule at the state's step count (jitted: one compile, not one per op).
    return aj.current_learning_rate(optimizer.tx, optimizer.opt_state)


def main():
    x_train, y_train, x_test, y_test = digits_split()
    steps_per_epoch = len(y_train) // BATCH_SIZE
    total_steps = EPOCHS * steps_per_epoch
    warmup = total_steps // 10  # then cosine decay to 0 over the remaining steps
    schedule = aj.schedules.warmup_cosine_decay(3e-3, warmup, total_steps - warmup)

    model = MLP(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, aj.adamw(schedule, weight_decay=1e-2), wrt=nnx.Param)

    rng = np.random.default_rng(0)
    # cached_partial skips NNX's per-call graph traversal of model and optimizer.
    step = nnx.cached_partial(train_step, model, optimizer)
    rows, losses, rates = [], [], []
    for epoch in tqdm(range(1, EPOCHS + 1), desc="adamw (flax nnx)", unit="epoch"):
        rates.append(float(learning_rate(optimizer)))
        for batch in minibatches(len(y_train), BATCH_SIZE, rng):
            losses.append(step(x_train[batch], y_train[batch]))
        if epoch % REPORT_EVERY == 0 or epoch == 1:
            train_loss, _ = evaluate(model, x_train, y_train)
            _, test_accuracy = evaluate(model, x_test, y_test)
            steps = int(aj.step_count(optimizer.opt_state))
            rate = float(learning_rate(optimizer))
            rows.append([epoch, steps, rate, float(train_loss), float(test_accuracy)])

    print(f"\nFlax NNX MLP on digits, adamw with warm-up + cosine decay, {total_steps} steps\n")
    print_table(["epoch", "steps", "learning rate", "train loss", "test accuracy"], rows)

    figure, (loss_axes, rate_axes) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axes.semilogy(np.asarray(losses), linewidth=0.8)
    loss_axes.set(xlabel="step", ylabel="minibatch cross-entropy", title="Flax NNX + aj.adamw")
    rate_axes.plot(np.arange(EPOCHS) * steps_per_epoch, rates, marker=".")
    rate_axes.set(xlabel="step", ylabel="learning rate", title="aj.current_learning_rate")
    figure.tight_layout()
    path = output_path("flax_nnx.png")
    figure.savefig(path, dpi=120)
    print(f"\nsaved {path}")


if __name__ == "__main__":
    main()
