r"""Checkpointed scans: the same loop as ``lax.scan``, with less memory for reverse mode.

Reverse-mode differentiation of a :math:`T`-step scan stores every step's
intermediates (the "residuals") and so needs memory proportional to :math:`T`.
Rematerialisation (``jax.checkpoint``) trades memory for recomputation.  Every scheme
below computes exactly the same numbers; they differ only in what the backward pass
keeps and what it recomputes:

================= ======================================= =====================================
scheme            stored during the forward sweep         extra forward work in the backward
================= ======================================= =====================================
``None``          :math:`T` steps' residuals              none
``"step"``        :math:`T` carries (params + opt state)  one pass (:math:`1\times`)
``"sqrt"``        :math:`\approx\sqrt T` carries, then    one pass (:math:`1\times`)
                  :math:`\approx\sqrt T` steps' residuals
``"recursive"``   :math:`2\log_2 T` carries               about :math:`\log_2 T` passes
================= ======================================= =====================================

``"sqrt"`` is a two-level nested scan: :math:`\lfloor\sqrt T\rfloor` blocks whose
bodies are checkpointed, so only block-boundary carries are stored and each block is
re-run (storing its own residuals) when the backward sweep reaches it (Chen et al.,
"Training Deep Nets with Sublinear Memory Cost", 2016).

``"recursive"`` is bisection checkpointing, a simple variant of Griewank's binomial
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

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

Body = Callable[[Any, Any], tuple[Any, Any]]

REMAT_SCHEMES = (None, "step", "sqrt", "recursive")


def checkpointed_scan(
    body: Body, carry: Any, xs: Any, length: int, scheme: str | None = None
) -> tuple[Any, Any]:
    """``lax.scan(body, carry, xs, length=length)`` with the checkpointing ``scheme``.

    ``scheme`` is one of ``None``, ``"step"``, ``"sqrt"``, ``"recursive"`` (see the
    module docstring).  Returns ``(final_carry, stacked_outputs)`` exactly as
    ``lax.scan`` does.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> body = lambda c, x: (c * x, c)
        >>> xs = jnp.linspace(0.5, 1.5, 10)
        >>> plain = jax.grad(lambda c: checkpointed_scan(body, c, xs, 10)[0])(2.0)
        >>> nested = jax.grad(lambda c: checkpointed_scan(body, c, xs, 10, "sqrt")[0])(2.0)
        >>> bool(jnp.allclose(plain, nested))
        True
    """
    if scheme not in REMAT_SCHEMES:
        raise ValueError(f"remat must be one of {REMAT_SCHEMES}, got {scheme!r}")
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    if scheme is None:
        return lax.scan(body, carry, xs, length=length)
    if scheme == "step":
        return lax.scan(jax.checkpoint(body, prevent_cse=False), carry, xs, length=length)
    if scheme == "sqrt":
        return _nested_scan(body, carry, xs, length, _sqrt_blocks, depth=0)
    return _nested_scan(body, carry, xs, length, _bisection_blocks, depth=0)


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
