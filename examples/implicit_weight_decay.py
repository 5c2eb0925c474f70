"""Tune one weight decay per input pixel by implicit hypergradients (digits, logistic regression).

    python examples/implicit_weight_decay.py

A multinomial logistic regression on 300 of scikit-learn's digits is trained to convergence
with an L2 penalty whose strength is a separate hyperparameter for each of the 64 pixels
(shared by the ten classes).  64 hyperparameters are too many for a grid; their gradient
is cheap: at the converged weights, the implicit function theorem gives the derivative of
the validation loss with one conjugate-gradient solve with the training Hessian
(``aj.meta.implicit_hypergradient``), however many steps training took.  An outer Adam
follows it in log coordinates; each outer step re-trains warm-started from the previous
weights.

The baseline is the usual grid search over one shared weight decay, each point trained to
convergence; the per-pixel search starts from the grid's best value.  Prints a table
(validation and test loss / accuracy, and the optimality residual ``|grad L_train|`` that
says how converged the weights were) and saves ``examples/out/implicit_weight_decay.png``:
the validation loss over outer steps against the grid's best, and the learned decays as
an 8x8 image.

Reference: Lorraine, Vicol & Duvenaud, "Optimizing Millions of Hyperparameters by
Implicit Differentiation", AISTATS 2020.
"""

from __future__ import annotations

import os

import jax

jax.config.update("jax_enable_x64", True)  # an implicit derivative is as exact as the solve

import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402
from _digits import accuracy, cross_entropy, digits_split, output_path, print_table  # noqa: E402

import adaptive_jax as aj  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tqdm import tqdm  # noqa: E402

TRAIN_EXAMPLES = 300  # few examples: regularisation matters
GRID = np.logspace(-4, 0, 9)  # shared weight decay, 10^-4 ... 1
TRAIN_STEPS = 400  # Nesterov gradient steps per (re-)training
OUTER_STEPS = int(os.environ.get("IMPLICIT_EXAMPLE_OUTER_STEPS", 40))
OUTER_LEARNING_RATE = 0.1  # Adam on log(decay)

x_all, y_all, x_test, y_test = (
    a.astype(jnp.float64) if a.dtype == jnp.float32 else a for a in digits_split()
)
x_train, y_train = x_all[:TRAIN_EXAMPLES], y_all[:TRAIN_EXAMPLES]
x_val, y_val = x_all[TRAIN_EXAMPLES:], y_all[TRAIN_EXAMPLES:]


def logits(params, x):
    return x @ params["w"] + params["b"]


def train_loss(params, log_decay):
    """Cross-entropy plus (1/2) sum_j decay_j |w_j|^2, one decay per input pixel j."""
    decay = jnp.exp(log_decay)
    penalty = 0.5 * jnp.sum(decay[:, None] * params["w"] ** 2)
    return cross_entropy(logits(params, x_train), y_train) + penalty


def val_loss(params, log_decay):
    del log_decay  # the validation loss has no penalty
    return cross_entropy(logits(params, x_val), y_val)


inner = aj.sgd(learning_rate=0.5, momentum=0.9, nesterov=True)


@jax.jit
def train(params, log_decay):
    """``TRAIN_STEPS`` full-batch steps from ``params``; returns the weights and |grad|."""

    def step(carry, _):
        params, state = carry
        updates, state = inner.update(jax.grad(train_loss)(params, log_decay), state, params)
        return (aj.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, inner.init(params)), None, TRAIN_STEPS)
    residual = jnp.sqrt(
        sum(jnp.sum(g**2) for g in jax.tree.leaves(jax.grad(train_loss)(params, log_decay)))
    )
    return params, residual


hypergradient = jax.jit(
    lambda params, log_decay: aj.meta.implicit_hypergradient(
        train_loss, val_loss, params, log_decay
    )
)


def evaluate(params):
    test_logits = logits(params, x_test)
    return (
        float(val_loss(params, None)),
        float(cross_entropy(test_logits, y_test)),
        float(accuracy(test_logits, y_test)),
    )


def main():
    zeros = {"w": jnp.zeros((64, 10)), "b": jnp.zeros(10)}

    grid_results = []
    for decay in GRID:
        params, residual = train(zeros, jnp.full(64, np.log(decay)))
        grid_results.append((decay, params, float(residual)))
    best_decay, best_params, best_residual = min(
        grid_results, key=lambda r: float(val_loss(r[1], None))
    )

    log_decay = jnp.full(64, np.log(best_decay))
    outer = aj.adam(OUTER_LEARNING_RATE)
    outer_state = outer.init(log_decay)
    params, history = best_params, []
    for _ in tqdm(range(OUTER_STEPS), desc="per-pixel decay", unit="outer step"):
        params, _ = train(params, log_decay)  # warm start
        value, gradient = hypergradient(params, log_decay)
        history.append(float(value))
        updates, outer_state = outer.update(gradient, outer_state, log_decay)
        log_decay = aj.apply_updates(log_decay, updates)
    params, residual = train(params, log_decay)

    print(f"{len(GRID)}-point grid over one shared decay: best {best_decay:.0e}")
    print_table(
        ["weight decay", "val loss", "test loss", "test accuracy", "optimality residual"],
        [
            (
                f"shared, grid best ({best_decay:.0e})",
                *evaluate(best_params),
                f"{best_residual:.1e}",
            ),
            (
                f"per pixel, {OUTER_STEPS} implicit steps",
                *evaluate(params),
                f"{float(residual):.1e}",
            ),
        ],
    )

    figure, (curve, image) = plt.subplots(1, 2, figsize=(10, 4))
    curve.plot(range(1, len(history) + 1), history, label="per-pixel decay (implicit)")
    curve.axhline(evaluate(best_params)[0], color="gray", ls="--", label="grid best (shared)")
    curve.set(xlabel="outer step", ylabel="validation cross-entropy", title="Validation loss")
    curve.legend()
    shown = image.imshow(np.log10(np.exp(np.asarray(log_decay))).reshape(8, 8), cmap="viridis")
    image.set(title="learned log10(decay) per pixel", xticks=[], yticks=[])
    figure.colorbar(shown, ax=image)
    figure.tight_layout()
    figure.savefig(output_path("implicit_weight_decay.png"), dpi=120)


if __name__ == "__main__":
    main()
