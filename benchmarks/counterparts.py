"""Every named optimizer and its optax and torch.optim counterparts, found by name.

The list of named optimizers is ``tests/optimizer_catalog.py`` (name -> factory and
hyperparameters), so an optimizer added there joins the benchmarks by itself.  Its
optax counterpart is the optax function of the same name (``optax.adam`` for
``aj.adam``), called with the hyperparameters its signature accepts; its torch
counterpart is the ``torch.optim`` class of the same name, with the keyword names
translated (``learning_rate -> lr``, ``b1, b2 -> betas``, ``decay -> alpha``).
Counterparts do the same work per parameter; their defaults may differ in detail
(optax's Adagrad starts its accumulator at 0.1, for example), which does not change
the cost of a step.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import optax
import optax.contrib

# Names whose counterpart is not the same-named function/class.
OPTAX_ALIASES: dict[str, Callable[..., Any]] = {
    "sign_descent": lambda learning_rate, **_: optax.sign_sgd(learning_rate),
    "normalized_gd": lambda learning_rate, eps=0.0, **_: optax.chain(
        optax.normalize_by_update_norm(scale_factor=1.0, eps=max(eps, 1e-30)),
        optax.scale(-learning_rate),
    ),
    "ademamix": lambda **kwargs: optax.contrib.ademamix(
        **_accepted(optax.contrib.ademamix, kwargs)
    ),
    "adopt": lambda **kwargs: optax.contrib.adopt(**_accepted(optax.contrib.adopt, kwargs)),
    "dadapt_adamw": lambda **kwargs: optax.contrib.dadapt_adamw(
        **_accepted(optax.contrib.dadapt_adamw, kwargs)
    ),
    "dog": lambda **kwargs: optax.contrib.dog(**_accepted(optax.contrib.dog, kwargs)),
    "madgrad": lambda **kwargs: optax.contrib.madgrad(**_accepted(optax.contrib.madgrad, kwargs)),
    "prodigy": lambda **kwargs: optax.contrib.prodigy(**_accepted(optax.contrib.prodigy, kwargs)),
    "schedule_free_adamw": lambda **kwargs: optax.contrib.schedule_free_adamw(
        **_accepted(optax.contrib.schedule_free_adamw, kwargs)
    ),
    "schedule_free_sgd": lambda **kwargs: optax.contrib.schedule_free_sgd(
        **_accepted(optax.contrib.schedule_free_sgd, kwargs)
    ),
}
TORCH_ALIASES = {"amsgrad": ("Adam", {"amsgrad": True})}
# Counterparts whose arguments do not translate by name: the torch keyword arguments.
# torch's Adafactor has no momentum buffer, its own eps pair and a clipping threshold
# of at least 1 (its default 1 is kept): the same kind of step, slightly less work.
TORCH_ARGUMENTS: dict[str, Callable[..., dict[str, Any]]] = {
    "adafactor": lambda learning_rate, decay_rate=0.8, **_: dict(
        lr=learning_rate, beta2_decay=-decay_rate
    ),
}


def named_optimizers() -> dict[str, tuple[Callable[..., Any], dict[str, Any]]]:
    """``{name: (factory, kwargs)}`` from the test catalog."""
    from tests.optimizer_catalog import NAMED_OPTIMIZERS, NEEDS_VALUE

    # The timed steps pass gradients only; polyak_sgd's update also needs the loss.
    return {name: entry for name, entry in NAMED_OPTIMIZERS.items() if name not in NEEDS_VALUE}


def _accepted(function: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    parameters = inspect.signature(function).parameters
    return {k: v for k, v in kwargs.items() if k in parameters}


def optax_counterpart(name: str, factory: Callable[..., Any], kwargs: dict[str, Any]):
    """The optax transformation doing the same work, or None."""
    if name in OPTAX_ALIASES:
        return OPTAX_ALIASES[name](**kwargs)
    function = getattr(optax, factory.__name__, None)
    if function is None:
        return None
    return function(**_accepted(function, kwargs))


def torch_counterpart(name: str, factory: Callable[..., Any], kwargs: dict[str, Any], param):
    """``(description, torch optimizer)`` for ``param`` (fused if supported, else foreach)."""
    import torch

    class_name, extra = TORCH_ALIASES.get(name, (None, {}))
    if class_name is None:
        matches = [n for n in dir(torch.optim) if n.lower() == factory.__name__.lower()]
        if not matches:
            return None
        class_name = matches[0]
    cls = getattr(torch.optim, class_name)
    translated = dict(extra)
    for key, value in kwargs.items():
        if key == "learning_rate":
            translated["lr"] = value
        elif key == "decay":
            translated["alpha"] = value
        elif key not in ("b1", "b2", "eps_root", "threshold", "initial_accumulator_value"):
            translated[key] = value
    if "b1" in kwargs:
        translated["betas"] = (kwargs["b1"], kwargs.get("b2", 0.999))
    if "eta_minus" in kwargs:  # Rprop's factors and step-size bounds
        translated["etas"] = (kwargs["eta_minus"], kwargs["eta_plus"])
        translated["step_sizes"] = (kwargs["min_step_size"], kwargs["max_step_size"])
    if name in TORCH_ARGUMENTS:
        translated = TORCH_ARGUMENTS[name](**kwargs)
    translated = _accepted(cls, translated)
    for mode in ("fused", "foreach"):
        if mode not in inspect.signature(cls).parameters:
            continue
        try:
            optimizer = cls([param], **translated, **{mode: True})
            optimizer.step()  # fused=True raises here where the CPU kernel is missing
        except (RuntimeError, ValueError, TypeError):
            continue
        return f"{class_name}({mode})", optimizer
    return f"{class_name}(for-loop)", cls([param], **translated)
