r"""Checkpointed scans: the same loop as ``lax.scan``, with less memory for reverse mode.

Reverse-mode differentiation of a :math:`T`-step scan stores every step's
intermediates (the "residuals") and so needs memory proportional to :math:`T`.
Rematerialisation (``jax.checkpoint``) trades memory for recomputation.  Every scheme
below computes exactly the same numbers; they differ only in what the backward pass
keeps and what it recomputes:

==================== ======================================= =====================================
policy               stored during the forward sweep         extra forward work in the backward
==================== ======================================= =====================================
:class:`StoreAll`    :math:`T` steps' residuals              none
:class:`EveryStep`   :math:`T` carries (params + opt state)  one pass (:math:`1\times`)
:class:`SqrtBlocks`  :math:`\approx\sqrt T` carries, then    one pass (:math:`1\times`)
                     :math:`\approx\sqrt T` steps' residuals
:class:`Bisection`   :math:`2\log_2 T` carries               about :math:`\log_2 T` passes
==================== ======================================= =====================================

A policy is an object with one method, ``scan(body, carry, xs, length)``; a new one
is a new final subclass of :class:`Checkpointing`.  :class:`~adaptive_jax.meta.Reverse`
takes one (``Reverse(checkpointing=SqrtBlocks())``) and every
:func:`~adaptive_jax.meta.unroll` traced inside it uses it, so objectives do not take a
checkpointing argument of their own.

:class:`SqrtBlocks` is a two-level nested scan: :math:`\lfloor\sqrt T\rfloor` blocks whose
bodies are checkpointed, so only block-boundary carries are stored and each block is
re-run (storing its own residuals) when the backward sweep reaches it (Chen et al.,
"Training Deep Nets with Sublinear Memory Cost", 2016).

:class:`Bisection` is bisection checkpointing, a simple variant of Griewank's binomial
scheme (Griewank, "Achieving logarithmic growth of temporal and spatial complexity in
reverse automatic differentiation", 1992): the scan is split into two checkpointed
halves, each half again into two, down to blocks of at most two steps.  The traced
program has :math:`O(\log T)` nested scans (not :math:`T` unrolled calls), so it
compiles fast.
(A carry is the scan's state: here the parameters and the optimizer state.)

A remainder that does not divide evenly is run as one extra checkpointed plain scan
of fewer steps than a block.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from adaptive_jax._src.core.module import Module

Body = Callable[[Any, Any], tuple[Any, Any]]


class Checkpointing(Module, abstract=True):
    """What the backward pass of a scan stores and what it recomputes (never the numbers)."""

    def scan(self, body: Body, carry: Any, xs: Any, length: int) -> tuple[Any, Any]:
        """``lax.scan(body, carry, xs, length=length)`` under this policy."""
        raise NotImplementedError


class StoreAll(Checkpointing):
    """Plain ``lax.scan``: every step's residuals are kept (memory :math:`O(T)`, no recomputation)."""

    def scan(self, body, carry, xs, length):
        return lax.scan(body, carry, xs, length=length)


class EveryStep(Checkpointing):
    """Each step checkpointed: only the :math:`T` carries are kept; each step is re-run once."""

    def scan(self, body, carry, xs, length):
        return lax.scan(jax.checkpoint(body, prevent_cse=False), carry, xs, length=length)


class SqrtBlocks(Checkpointing):
    r""":math:`\lfloor\sqrt T\rfloor` checkpointed blocks: memory :math:`O(\sqrt T)` (Chen et al. 2016)."""

    def scan(self, body, carry, xs, length):
        return _nested_scan(body, carry, xs, length, _sqrt_blocks, depth=0)


class Bisection(Checkpointing):
    r"""Recursive halving: memory :math:`O(\log T)` carries, about :math:`\log_2 T` re-runs (Griewank 1992)."""

    def scan(self, body, carry, xs, length):
        return _nested_scan(body, carry, xs, length, _bisection_blocks, depth=0)


_AMBIENT: contextvars.ContextVar[Checkpointing | None] = contextvars.ContextVar(
    "adaptive_jax_checkpointing", default=None
)


@contextlib.contextmanager
def checkpointing_for(policy: Checkpointing) -> Iterator[None]:
    """Every scan traced inside uses ``policy`` unless it is given one explicitly.

    Set by :class:`~adaptive_jax.meta.Reverse` while it traces an objective.  The policy
    changes memory and time, never the numbers, so a compiled function that was traced
    under another policy still returns the right values.
    """
    token = _AMBIENT.set(policy)
    try:
        yield
    finally:
        _AMBIENT.reset(token)


def current_checkpointing(explicit: Checkpointing | None = None) -> Checkpointing:
    """``explicit`` if given, else the policy of the enclosing :class:`~adaptive_jax.meta.Reverse`, else :class:`StoreAll`."""
    if explicit is not None:
        if not isinstance(explicit, Checkpointing):
            raise TypeError(
                f"checkpointing must be a Checkpointing policy (StoreAll(), EveryStep(), "
                f"SqrtBlocks(), Bisection()), got {explicit!r}"
            )
        return explicit
    return _AMBIENT.get() or StoreAll()


def checkpointed_scan(
    body: Body, carry: Any, xs: Any, length: int, checkpointing: Checkpointing | None = None
) -> tuple[Any, Any]:
    """``lax.scan(body, carry, xs, length=length)`` under a checkpointing policy.

    ``checkpointing`` defaults to the enclosing :class:`~adaptive_jax.meta.Reverse`'s
    policy (:func:`current_checkpointing`).  Returns ``(final_carry, stacked_outputs)``
    exactly as ``lax.scan`` does.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from adaptive_jax.meta import SqrtBlocks, checkpointed_scan
        >>> body = lambda c, x: (c * x, c)
        >>> xs = jnp.linspace(0.5, 1.5, 10)
        >>> plain = jax.grad(lambda c: checkpointed_scan(body, c, xs, 10)[0])(2.0)
        >>> nested = jax.grad(lambda c: checkpointed_scan(body, c, xs, 10, SqrtBlocks())[0])(2.0)
        >>> bool(jnp.allclose(plain, nested))
        True
    """
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    return current_checkpointing(checkpointing).scan(body, carry, xs, length)


def _sqrt_blocks(length: int, depth: int) -> int | None:
    """Top level only: about sqrt(T) blocks of about sqrt(T) steps."""
    if depth > 0 or length < 4:
        return None
    return math.isqrt(length)


def _bisection_blocks(length: int, depth: int) -> int | None:
    """Two blocks at every level, down to blocks of at most two steps."""
    del depth
    return 2 if length > 2 else None


def _nested_scan(
    body: Body,
    carry: Any,
    xs: Any,
    length: int,
    blocks_for: Callable[[int, int], int | None],
    depth: int,
) -> tuple[Any, Any]:
    """Scan over ``blocks`` checkpointed sub-scans, recursing as ``blocks_for`` says."""
    blocks = blocks_for(length, depth)
    if blocks is None:
        return lax.scan(body, carry, xs, length=length)
    block_length, remainder = divmod(length, blocks)

    def run_block(block_carry, block_xs):
        return _nested_scan(body, block_carry, block_xs, block_length, blocks_for, depth + 1)

    head, tail = _split_leading(xs, blocks * block_length)
    carry, ys = lax.scan(
        jax.checkpoint(run_block, prevent_cse=False),
        carry,
        _fold_leading(head, blocks, block_length),
        length=blocks,
    )
    ys = _unfold_leading(ys)
    if remainder:
        # Fewer than `blocks` steps: a plain scan, itself checkpointed.
        run_rest = jax.checkpoint(
            lambda c, x: lax.scan(body, c, x, length=remainder), prevent_cse=False
        )
        carry, rest_ys = run_rest(carry, tail)
        ys = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), ys, rest_ys)
    return carry, ys


def _split_leading(tree: Any, index: int) -> tuple[Any, Any]:
    head = jax.tree_util.tree_map(lambda x: x[:index], tree)
    tail = jax.tree_util.tree_map(lambda x: x[index:], tree)
    return head, tail


def _fold_leading(tree: Any, outer: int, inner: int) -> Any:
    return jax.tree_util.tree_map(lambda x: x.reshape((outer, inner) + x.shape[1:]), tree)


def _unfold_leading(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda x: x.reshape((-1,) + x.shape[2:]), tree)
