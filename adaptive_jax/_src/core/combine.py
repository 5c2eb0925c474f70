r"""Composition: :func:`chain` and adapters for foreign (optax) transformations.

``chain(a, b, c)`` applies ``a``, then ``b``, then ``c`` to the updates:
:math:`u = c(b(a(g)))`.  A chain keeps one step counter for all of its members
(also for nested chains); a foreign optax transformation inside it keeps its own
state, untouched.  Extra keyword arguments of an update (optax's
``GradientTransformationExtraArgs``, e.g. ``value=loss`` for
``optax.contrib.reduce_on_plateau``) are passed to every member that takes them.

A named optimizer is a chain with *names*: ``adam``'s :math:`\beta_2` is the ``decay``
of its second-moment block, and the chain records that ``b2`` is an alias of that field, so
:func:`~adaptive_jax.get_hyperparameter` and meta-learning find it by the name the
constructor took.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from adaptive_jax._src.core.module import child, static
from adaptive_jax._src.core.protocol import PyTree, Transform


def takes_extra_args(update: Any) -> bool:
    """Whether an ``update`` function accepts extra keyword arguments (``**extra_args``)."""
    try:
        parameters = inspect.signature(update).parameters.values()
    except (TypeError, ValueError):  # a builtin or C function: give it nothing extra
        return False
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


class OptaxAdapter(Transform):
    """Wraps any object with optax's ``init``/``update`` so it can sit in :func:`chain`.

    The wrapped transformation is configuration (static): its hyperparameters live in
    its own closures, as optax transformations do.  Extra update arguments (``value=``)
    reach it when its ``update`` accepts ``**extra_args``.
    """

    inner: Any = static()
    forward_extra_args: bool = static(default=False)
    takes_extra_args = True

    def init_state(self, params: PyTree) -> PyTree:
        return self.inner.init(params)

    def apply(self, updates, state, params, count, **extra_args):
        del count
        if not self.forward_extra_args:
            extra_args = {}
        return self.inner.update(updates, state, params, **extra_args)


def as_transform(tx: Any, name: str = "tx") -> Transform:
    """``tx`` itself if it is an adaptive_jax transform, else an :class:`OptaxAdapter`.

    Raises ``TypeError`` naming ``name`` if ``tx`` has no ``init``/``update``.
    """
    if isinstance(tx, Transform):
        return tx
    if callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None)):
        return OptaxAdapter(tx, takes_extra_args(tx.update))
    raise TypeError(
        f"{name} must be a gradient transformation (an object with init and update, from "
        f"adaptive_jax or optax), got {type(tx).__name__}: {tx!r}"
    )


def _as_members(transforms: Any) -> tuple[Transform, ...]:
    return tuple(as_transform(tx, f"chain member {i}") for i, tx in enumerate(transforms))


class Chain(Transform):
    """Apply ``transforms`` in order, sharing one step counter.  Build with :func:`chain`.

    ``aliases`` maps a name a constructor took (``"b2"``) to the path of the field that
    holds it, relative to the chain (``"transforms[1].decay"``).
    """

    transforms: tuple[Transform, ...] = child(converter=_as_members)
    aliases: tuple[tuple[str, str], ...] = static(default=())
    takes_extra_args = True

    def init_state(self, params: PyTree) -> tuple[PyTree, ...]:
        return tuple(tx.init_state(params) for tx in self.transforms)

    def apply(self, updates, state, params, count, **extra_args):
        if len(state) != len(self.transforms):
            raise ValueError(
                f"chain of {len(self.transforms)} transforms got a state with {len(state)} entries"
            )
        new_state = []
        for tx, tx_state in zip(self.transforms, state):
            if tx.takes_extra_args:
                updates, tx_state = tx.apply(updates, tx_state, params, count, **extra_args)
            else:
                updates, tx_state = tx.apply(updates, tx_state, params, count)
            new_state.append(tx_state)
        return updates, tuple(new_state)


def chain(*transforms: Any) -> Chain:
    """Compose transformations: ``chain(a, b)(g) = b(a(g))`` with one shared step count.

    Args:
        *transforms: adaptive_jax transformations or any object with optax's
            ``init``/``update`` (wrapped in an :class:`OptaxAdapter`).

    Returns:
        A :class:`Chain`: its ``init`` starts one step counter and each member's state;
        its ``update`` runs the members in order.

    Raises:
        TypeError: a member is not a gradient transformation.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.chain(aj.clip_by_global_norm(1.0), aj.scale_by_adam(), aj.scale_by_learning_rate(1e-3))
        >>> params = {"w": jnp.ones(3)}
        >>> state = tx.init(params)
        >>> updates, state = tx.update({"w": jnp.ones(3)}, state, params)
        >>> int(state.count)
        1
    """
    return Chain(transforms)


def aliased_chain(*transforms: Any, aliases: Mapping[str, str]) -> Chain:
    """A :func:`chain` whose hyperparameters can also be found by the names in ``aliases``.

    ``aliases`` maps a constructor's argument name to the path of the field holding it,
    relative to the chain: ``aliased_chain(ema_of_gradients(b1), ema_of_squares(b2), ...,
    aliases={"b1": "transforms[0].decay", "b2": "transforms[1].decay"})``.
    """
    return Chain(transforms, tuple(aliases.items()))


def flatten_chain(tx: Transform) -> list[Transform]:
    """The leaf transforms of a (possibly nested) chain, in application order."""
    if isinstance(tx, Chain):
        return [leaf for member in tx.transforms for leaf in flatten_chain(member)]
    return [tx]
