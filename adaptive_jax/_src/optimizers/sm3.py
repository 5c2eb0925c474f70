r"""SM3: Adagrad with one accumulator per row and column instead of per entry."""

from __future__ import annotations

from adaptive_jax._src.core.combine import Chain, aliased_chain, chain
from adaptive_jax._src.core.hyperparameter import PerParameter
from adaptive_jax._src.core.inspect import checks_arguments_by_name
from adaptive_jax._src.transforms.moments.second_reduced import sm3_second_moment
from adaptive_jax._src.transforms.momentum import ema_of_updates
from adaptive_jax._src.transforms.preconditioning import precondition
from adaptive_jax._src.transforms.scaling import scale_by_learning_rate

# optax's scale_by_sm3 divides by sqrt(nu + 1e-8): a fixed epsilon under the root.
SM3_EPS_ROOT = 1e-8


@checks_arguments_by_name
def sm3(learning_rate: PerParameter, momentum: PerParameter | None = 0.9) -> Chain:
    r"""SM3: :math:`\theta_t = \theta_{t-1} - \eta\, m_t`, :math:`m_t = \beta m_{t-1} + (1-\beta)\, g_t / \sqrt{\nu_t + 10^{-8}}`.

    :math:`\nu_t` is SM3-II's cover-based bound on Adagrad's sum of squared gradients
    (:func:`~adaptive_jax.sm3_second_moment`): for a matrix, one accumulator per row
    and per column instead of one per entry, so the state of an :math:`m\times n`
    matrix is :math:`m+n` numbers besides the momentum.  The chain
    ``sm3_second_moment → precondition(eps=0, eps_root=1e-8) → ema_of_updates(momentum)
    → scale_by_learning_rate``; the numbers of ``optax.sm3``.  Unlike optax, a rank-0
    parameter is accepted (optax raises an ``IndexError``), ``momentum=None`` drops the
    momentum (optax fails), and ``learning_rate`` may be a schedule.  The fixed
    :math:`10^{-8}` is the chain's ``eps_root``.  torch.optim has no SM3.

    Args:
        learning_rate: :math:`\eta`: a number, a schedule, or a per-parameter tree.
        momentum: :math:`\beta` in :math:`[0, 1)` (an EMA of the preconditioned step,
            without bias correction), a per-parameter tree, or ``None``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.sm3(0.1, momentum=None)
        >>> params = jnp.zeros((2, 2))
        >>> updates, _ = tx.update(jnp.array([[3.0, 0.0], [0.0, -0.5]]), tx.init(params), params)
        >>> [[round(u, 6) + 0.0 for u in row] for row in updates.tolist()]  # step 1: -eta g/|g|
        [[-0.1, 0.0], [0.0, 0.1]]

    Reference: Anil, Gupta, Koren & Singer, "Memory-Efficient Adaptive Optimization",
    NeurIPS 2019.
    """
    direction = [sm3_second_moment(), precondition(eps=0.0, eps_root=SM3_EPS_ROOT)]
    if momentum is None:
        return chain(*direction, scale_by_learning_rate(learning_rate))
    return aliased_chain(
        *direction,
        ema_of_updates(momentum),
        scale_by_learning_rate(learning_rate),
        aliases={"momentum": "transforms[2].decay"},
    )
