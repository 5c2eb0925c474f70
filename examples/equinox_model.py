"""An Equinox MLP trained with ``eqx.partition`` + adaptive_jax.

    python examples/equinox_model.py

An Equinox model is a pytree that mixes arrays (the weights) with everything else
(activation functions, sizes).  ``eqx.partition(model, eqx.is_inexact_array)``
splits it into ``params`` (the arrays, ``None`` elsewhere) and ``static`` (the
rest); the optimizer only ever sees ``params``::

    params, static = eqx.partition(model, eqx.is_inexact_array)
    state = tx.init(params)
    updates, state = tx.update(grads, state, params)
    params = aj.apply_updates(params, updates)
    model = eqx.combine(params, static)

The jitted epoch takes ``tx`` as an argument (its hyperparameters are traced leaves);
``static`` is a closure constant.  Prints a table per optimizer and saves the loss
curves to ``examples/out/equinox_model.png``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import matplotlib
import numpy as np
from _digits import accuracy, cross_entropy, digits_split, minibatches, output_path, print_table
from tqdm import tqdm

import adaptive_jax as aj

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

EPOCHS = 25
BATCH_SIZE = 64

MODEL = eqx.nn.MLP(in_size=64, out_size=10, width_size=64, depth=2, key=jax.random.key(0))
INITIAL_PARAMS, STATIC = eqx.partition(MODEL, eqx.is_inexact_array)


def batch_loss(params, x, y):
    model = eqx.combine(params, STATIC)
    return cross_entropy(jax.vmap(model)(x), y)


@jax.jit
def train_epoch(tx, params, state, x_batches, y_batches):
    def step(carry, batch):
        params, state = carry
        grads = jax.grad(batch_loss)(params, *batch)
        updates, state = tx.update(grads, state, params)
        return (aj.apply_updates(params, updates), state), None

    (params, state), _ = jax.lax.scan(step, (params, state), (x_batches, y_batches))
    return params, state


@jax.jit
def evaluate(params, x, y):
    logits = jax.vmap(eqx.combine(params, STATIC))(x)
    return cross_entropy(logits, y), accuracy(logits, y)


def main():
    x_train, y_train, x_test, y_test = digits_split()
    optimizers = {
        "adam": aj.adam(3e-3),
        "rmsprop": aj.rmsprop(1e-3),
        "adagrad": aj.adagrad(0.05),
        "sgd + nesterov": aj.sgd(0.05, momentum=0.9, nesterov=True),
    }
    rows, curves = [], {}
    with tqdm(total=EPOCHS * len(optimizers), desc="equinox MLP", unit="epoch") as progress:
        for name, tx in optimizers.items():
            rng = np.random.default_rng(0)  # the same minibatches for every optimizer
            params, state = INITIAL_PARAMS, tx.init(INITIAL_PARAMS)
            curves[name] = [float(evaluate(params, x_train, y_train)[0])]
            for _ in range(EPOCHS):
                batches = np.stack(list(minibatches(len(y_train), BATCH_SIZE, rng)))
                params, state = train_epoch(tx, params, state, x_train[batches], y_train[batches])
                curves[name].append(float(evaluate(params, x_train, y_train)[0]))
                progress.update()
            test_loss, test_accuracy = evaluate(params, x_test, y_test)
            steps = int(aj.step_count(state))
            rows.append([name, steps, curves[name][-1], float(test_loss), float(test_accuracy)])

    print(f"\nEquinox MLP (depth 2, width 64) on digits, {EPOCHS} epochs\n")
    print_table(["optimizer", "steps", "train loss", "test loss", "test accuracy"], rows)

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, curve in curves.items():
        axes.semilogy(curve, label=name)
    axes.set(xlabel="epoch", ylabel="training cross-entropy", title="Equinox MLP + adaptive_jax")
    axes.legend()
    figure.tight_layout()
    path = output_path("equinox_model.png")
    figure.savefig(path, dpi=120)
    print(f"\nsaved {path}")


if __name__ == "__main__":
    main()
