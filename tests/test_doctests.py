"""Every docstring example in adaptive_jax runs, and every public name has a docstring.

Doctests run in ONE subprocess with JAX's default configuration (float32, standard
dtype promotion): the configuration a reader who pastes an example meets, and the one
the printed numbers are written for.  This suite's conftest (float64, strict
promotion) would change those numbers, so the examples are not run in-process.
"""

import dataclasses
import importlib
import inspect
import json
import os
import pkgutil
import re
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import adaptive_jax
import adaptive_jax as aj

RUNNER = r"""
import doctest, importlib, io, json, pkgutil, sys, traceback
import adaptive_jax

flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
results = {}
for info in pkgutil.walk_packages(adaptive_jax.__path__, "adaptive_jax."):
    name = info.name
    try:
        module = importlib.import_module(name)
    except Exception:
        results[name] = {"attempted": 0, "failed": 1, "report": traceback.format_exc()}
        continue
    runner = doctest.DocTestRunner(optionflags=flags)
    report = io.StringIO()
    for test in doctest.DocTestFinder().find(module, name):
        runner.run(test, out=report.write)
    outcome = runner.summarize(verbose=False)
    results[name] = {
        "attempted": outcome.attempted, "failed": outcome.failed, "report": report.getvalue()
    }
sys.stdout.write("\n" + json.dumps(results))
"""


def package_modules():
    return ["adaptive_jax"] + [
        info.name for info in pkgutil.walk_packages(adaptive_jax.__path__, "adaptive_jax.")
    ]


@pytest.fixture(scope="module")
def doctest_results():
    env = dict(os.environ)
    for variable in ("JAX_ENABLE_X64", "JAX_NUMPY_DTYPE_PROMOTION"):
        env.pop(variable, None)
    completed = subprocess.run(
        [sys.executable, "-c", RUNNER], capture_output=True, text=True, env=env, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.splitlines()[-1])


@pytest.mark.parametrize("module_name", package_modules()[1:])
def test_docstring_examples_pass(doctest_results, module_name):
    result = doctest_results[module_name]
    assert result["failed"] == 0, f"\n{result['report']}"
    source = inspect.getsource(importlib.import_module(module_name))
    if re.search(r"^\s*>>> ", source, re.MULTILINE):
        assert result["attempted"] > 0, "the module has examples but doctest found none"


def public_objects():
    """(qualified name, object) for every public function, class and module of adaptive_jax.

    Includes the public members of the subpackages it exports (``aj.schedules``, ...).
    Constants (numbers, tuples) cannot carry their own docstring and are left out.
    """
    found = []
    for name in dir(adaptive_jax):
        obj = getattr(adaptive_jax, name)
        if name.startswith("_") or not (callable(obj) or isinstance(obj, types.ModuleType)):
            continue
        found.append((f"adaptive_jax.{name}", obj))
        if isinstance(obj, types.ModuleType):
            for member_name, member in vars(obj).items():
                defined_here = getattr(member, "__module__", None) == obj.__name__
                if not member_name.startswith("_") and defined_here and callable(member):
                    found.append((f"{obj.__name__}.{member_name}", member))
    return found


def is_generated_docstring(obj, doc):
    """dataclasses and NamedTuple write ``Name(field, ...)`` when a class has no docstring."""
    if not isinstance(obj, type):
        return False
    generated = dataclasses.is_dataclass(obj) or issubclass(obj, tuple)
    return generated and re.fullmatch(rf"{re.escape(obj.__name__)}\(.*\)", doc, re.DOTALL)


@pytest.mark.parametrize(
    "qualified_name, obj", public_objects(), ids=[name for name, _ in public_objects()]
)
def test_every_public_name_has_a_docstring(qualified_name, obj):
    doc = (obj.__doc__ or "").strip()
    assert doc, f"{qualified_name} has no docstring"
    assert not is_generated_docstring(obj, doc), f"{qualified_name} has only a generated docstring"


# --- The recipes of docs/migrating_from_optax_and_torch.md, run against the library they replace.

W0 = {"a": np.array([0.3, -1.2, 2.0]), "b": np.array([[0.5, -0.1], [1.5, -2.5]])}
STEPS = 30


def jax_loss(w):
    return jnp.sum(jnp.cos(w["a"]) * w["a"] ** 2) + jnp.sum(w["b"] ** 4)


def run_jax(tx):
    """``STEPS`` updates of ``tx`` on ``jax_loss`` from ``W0`` (one jitted scan)."""

    def step(carry, _):
        w, state = carry
        updates, state = tx.update(jax.grad(jax_loss)(w), state, w)
        return (optax.apply_updates(w, updates), state), None

    with jax.numpy_dtype_promotion("standard"):  # optax internals and plain-lambda schedules
        w = jax.tree_util.tree_map(jnp.asarray, W0)
        run = jax.jit(lambda w: jax.lax.scan(step, (w, tx.init(w)), length=STEPS)[0][0])
        return run(w)


OPTAX_RECIPES = {
    "adagrad": (
        optax.adagrad(0.05),
        aj.chain(
            aj.scale_by_adagrad(eps=0.0, eps_root=1e-7, initial_accumulator_value=0.1),
            aj.scale_by_learning_rate(0.05),
        ),
    ),
    "rmsprop eps in the root": (
        optax.rmsprop(0.01, decay=0.9, eps=1e-8),
        aj.chain(aj.scale_by_rms(0.9, eps=0.0, eps_root=1e-8), aj.scale_by_learning_rate(0.01)),
    ),
    "rmsprop eps outside": (optax.rmsprop(0.01, eps_in_sqrt=False), aj.rmsprop(0.01)),
    "amsgrad": (optax.amsgrad(0.05), aj.amsgrad(0.05)),
    "adamw default decay": (optax.adamw(0.05), aj.adamw(0.05, weight_decay=1e-4)),
    "adamw mask": (
        optax.adamw(0.05, weight_decay=0.1, mask={"a": True, "b": False}),
        aj.adamw(0.05, weight_decay={"a": 0.1, "b": 0.0}),
    ),
    "multi_transform": (
        optax.multi_transform(
            {"slow": optax.adam(1e-3), "fast": optax.adam(0.05)}, {"a": "slow", "b": "fast"}
        ),
        aj.adam({"a": 1e-3, "b": 0.05}),
    ),
    "adam nesterov": (optax.adam(0.05, nesterov=True), aj.nadam(0.05)),
    "normalized gd": (
        optax.chain(optax.normalize_by_update_norm(eps=0.0), optax.scale_by_learning_rate(0.05)),
        aj.normalized_gd(0.05),
    ),
    "adadelta": (optax.adadelta(learning_rate=1.0), aj.adadelta()),
    "sign_sgd": (optax.sign_sgd(0.05), aj.sign_descent(0.05)),
}


@pytest.mark.parametrize("recipe", OPTAX_RECIPES)
def test_migration_guide_optax_recipes(recipe):
    optax_tx, ours = OPTAX_RECIPES[recipe]
    expected, actual = run_jax(optax_tx), run_jax(ours)
    for key in W0:
        np.testing.assert_allclose(actual[key], expected[key], rtol=1e-10, atol=1e-12)


def test_optax_adadelta_default_learning_rate_ascends():
    # The guide's warning: optax.adadelta() (learning_rate=None) moves uphill.
    start = float(jax_loss(jax.tree_util.tree_map(jnp.asarray, W0)))
    assert float(jax_loss(run_jax(optax.adadelta()))) > start
    assert float(jax_loss(run_jax(aj.adadelta()))) < start


def test_migration_guide_warmup_cosine_mapping():
    theirs = optax.warmup_cosine_decay_schedule(0.0, 1.0, 10, 110, end_value=0.1)
    ours = aj.schedules.warmup_cosine_decay(1.0, 10, 110 - 10, 0.0, end_value=0.1)
    steps = jnp.arange(130)
    with jax.numpy_dtype_promotion("standard"):
        np.testing.assert_allclose(jax.vmap(ours)(steps), jax.vmap(theirs)(steps), atol=1e-12)


def run_torch(make_optimizer, clip_norm=None):
    weights = {k: torch.tensor(v, requires_grad=True) for k, v in W0.items()}
    optimizer = make_optimizer(weights)
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = torch.sum(torch.cos(weights["a"]) * weights["a"] ** 2)
        (loss + torch.sum(weights["b"] ** 4)).backward()
        if clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(list(weights.values()), clip_norm)
        optimizer.step()
    return {k: v.detach().numpy() for k, v in weights.items()}


TORCH_RECIPES = {
    "rmsprop alpha": (lambda w: torch.optim.RMSprop(w.values(), lr=0.01), aj.rmsprop(0.01, 0.99)),
    "adam weight_decay is L2": (
        lambda w: torch.optim.Adam(w.values(), lr=0.05, weight_decay=0.1),
        aj.chain(aj.add_l2_regularization(0.1), aj.adam(0.05)),
    ),
    "sgd weight_decay is L2": (
        lambda w: torch.optim.SGD(w.values(), lr=0.01, momentum=0.9, weight_decay=0.1),
        aj.chain(aj.add_l2_regularization(0.1), aj.sgd(0.01, momentum=0.9)),
    ),
    "adagrad lr_decay": (
        lambda w: torch.optim.Adagrad(w.values(), lr=0.1, lr_decay=0.05),
        aj.adagrad(lambda step: 0.1 / (1 + 0.05 * step)),
    ),
    "maximize": (
        lambda w: torch.optim.Adam(w.values(), lr=0.05, maximize=True),
        aj.adam(-0.05),
    ),
    "adamw": (lambda w: torch.optim.AdamW(w.values(), lr=0.05), aj.adamw(0.05)),
    "amsgrad": (
        lambda w: torch.optim.Adam(w.values(), lr=0.05, amsgrad=True),
        aj.amsgrad(0.05, maximum_of="raw"),
    ),
    "parameter groups": (
        lambda w: torch.optim.SGD(
            [{"params": [w["a"]], "lr": 0.03}, {"params": [w["b"]]}], lr=0.01
        ),
        aj.sgd({"a": 0.03, "b": 0.01}),
    ),
    "adadelta": (lambda w: torch.optim.Adadelta(w.values()), aj.adadelta()),
}


@pytest.mark.parametrize("recipe", TORCH_RECIPES)
def test_migration_guide_torch_recipes(recipe):
    make_optimizer, ours = TORCH_RECIPES[recipe]
    expected, actual = run_torch(make_optimizer), run_jax(ours)
    for key in W0:
        np.testing.assert_allclose(actual[key], expected[key], rtol=1e-10, atol=1e-12)


def test_migration_guide_torch_gradient_clipping():
    expected = run_torch(lambda w: torch.optim.Adam(w.values(), lr=0.05), clip_norm=0.5)
    actual = run_jax(aj.chain(aj.clip_by_global_norm(0.5), aj.adam(0.05)))
    for key in W0:  # torch divides by (norm + 1e-6): agreement to ~1e-6, not to rounding
        np.testing.assert_allclose(actual[key], expected[key], rtol=1e-5)
