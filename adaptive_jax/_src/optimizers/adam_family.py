r"""Adam and its relatives: one chain, each member swapping or inserting one block.

Adam is the chain of its formulas:

* first moment :math:`m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t` — ``ema_of_gradients(b1)``
* second moment :math:`v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2` — ``ema_of_squares(b2)``
* correction :math:`\hat m_t = m_t/(1-\beta_1^t),\ \hat v_t = v_t/(1-\beta_2^t)` — ``debias()``
* precondition :math:`d_t = \hat m_t / (\sqrt{\hat v_t + \epsilon_r} + \epsilon)` — ``precondition(eps, eps_root)``
* learning rate :math:`\theta_t = \theta_{t-1} - \alpha d_t` — ``scale_by_learning_rate(learning_rate)``

=========== ==========================================================================
member      what changes
=========== ==========================================================================
adamw       ``add_decoupled_weight_decay`` before the learning rate
nadam(w)    first moment → ``nesterov_ema_of_gradients`` (look-ahead)
amsgrad     ``amsgrad_max`` after ``debias``
adabelief   second moment → ``belief_second_moment`` (variance of the prediction error)
yogi        both moments → ``yogi_moments`` (additive second moment)
adamax(w)   second moment → ``infinity_norm_second_moment``; ``eps`` moves into it
radam       ``precondition`` → ``rectified_precondition``
lamb        ``add_decoupled_weight_decay`` and ``scale_by_trust_ratio`` inserted
=========== ==========================================================================

Every member takes the family's arguments (``learning_rate, b1, b2, eps, eps_root,
*, mu_dtype, nu_dtype``; see :mod:`adaptive_jax._src.optimizers.family`), and ``b1``/``b2``
can be found by those names (:func:`~adaptive_jax.get_hyperparameter`).
"""

from __future__ import annotations

import inspect
from typing import Any

from adaptive_jax._src.core.combine import Chain, aliased_chain
from adaptive_jax._src.core.protocol import Transform
from adaptive_jax._src.optimizers.family import Family
from adaptive_jax._src.transforms.moments.corrections import amsgrad_max, debias
from adaptive_jax._src.transforms.moments.first import ema_of_gradients, nesterov_ema_of_gradients
from adaptive_jax._src.transforms.moments.second import ema_of_squares
from adaptive_jax._src.transforms.moments.second_variants import (
    belief_second_moment,
    yogi_moments,
)
from adaptive_jax._src.transforms.preconditioning import precondition
from adaptive_jax._src.transforms.preconditioning_variants import (
    infinity_norm_precondition,
    rectified_precondition,
)
from adaptive_jax._src.transforms.regularisation import add_decoupled_weight_decay
from adaptive_jax._src.transforms.scaling import scale_by_learning_rate
from adaptive_jax._src.transforms.trust_ratio import scale_by_trust_ratio

_P = inspect.Parameter
ADAM_FAMILY = Family(
    [
        _P("learning_rate", _P.POSITIONAL_OR_KEYWORD, default=1e-3),
        _P("b1", _P.POSITIONAL_OR_KEYWORD, default=0.9),
        _P("b2", _P.POSITIONAL_OR_KEYWORD, default=0.999),
        _P("eps", _P.POSITIONAL_OR_KEYWORD, default=1e-8),
        _P("eps_root", _P.POSITIONAL_OR_KEYWORD, default=0.0),
        _P("mu_dtype", _P.KEYWORD_ONLY, default=None),
        _P("nu_dtype", _P.KEYWORD_ONLY, default=None),
    ]
)
MOMENT_ALIASES = {"b1": "transforms[0].decay", "b2": "transforms[1].decay"}
# Adamax: ema_of_gradients, debias, infinity_norm_precondition (which holds b2).
INFINITY_NORM_ALIASES = {"b1": "transforms[0].decay", "b2": "transforms[2].decay"}


def adam_chain(
    *blocks: Transform, learning_rate: Any, aliases: dict[str, str] = MOMENT_ALIASES
) -> Chain:
    """``blocks`` followed by ``scale_by_learning_rate``, with ``b1``/``b2`` named in ``aliases``."""
    return aliased_chain(*blocks, scale_by_learning_rate(learning_rate), aliases=aliases)


def first_moment(b1: Any, mu_dtype: Any, nesterov: bool) -> Transform:
    """Adam's first-moment block, or NAdam's look-ahead one."""
    return (nesterov_ema_of_gradients if nesterov else ema_of_gradients)(b1, mu_dtype)


@ADAM_FAMILY.member(options={"nesterov": False})
def adam(learning_rate, b1, b2, eps, eps_root, mu_dtype, nu_dtype, nesterov) -> Chain:
    r"""Adam: :math:`\theta_t = \theta_{t-1} - \alpha\, \hat m_t / (\sqrt{\hat v_t + \epsilon_r} + \epsilon)`.

    Bias correction counts :math:`t` from 1.  Defaults and numbers match
    ``torch.optim.Adam`` and ``optax.adam``.

    Args:
        learning_rate: :math:`\alpha`: a number, a schedule, or a per-parameter tree.
        b1: :math:`\beta_1` in :math:`[0, 1)`, or a per-parameter tree.
        b2: :math:`\beta_2` in :math:`[0, 1)`, or a per-parameter tree.
        eps: :math:`\epsilon \ge 0`, added to :math:`\sqrt{\hat v_t}`.
        eps_root: :math:`\epsilon_r \ge 0`, added under the root.
        mu_dtype: dtype to store :math:`m_t` in (e.g. float32 for bfloat16 parameters).
        nu_dtype: dtype to store :math:`v_t` in.
        nesterov: use NAdam's look-ahead first moment (see :func:`nadam`).

    Returns:
        The chain ``ema_of_gradients → ema_of_squares → debias → precondition →
        scale_by_learning_rate``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.adam(0.1)
        >>> params = jnp.array([1.0, -1.0])
        >>> updates, state = tx.update(jnp.array([3.0, -0.5]), tx.init(params), params)
        >>> [round(u, 6) for u in updates.tolist()]  # first step: -alpha * sign(g)
        [-0.1, 0.1]

    Reference: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    """
    return adam_chain(
        first_moment(b1, mu_dtype, nesterov),
        ema_of_squares(b2, nu_dtype),
        debias(),
        precondition(eps, eps_root),
        learning_rate=learning_rate,
    )


@ADAM_FAMILY.variant(adam, nesterov=True)
def nadam():
    r"""NAdam: Adam with a Nesterov look-ahead in the first moment.

    .. math::
       \theta_t = \theta_{t-1} - \alpha\,
       \frac{\beta_1 m_t/(1-\beta_1^{t+1}) + (1-\beta_1) g_t/(1-\beta_1^t)}
            {\sqrt{\hat v_t + \epsilon_r} + \epsilon}

    :func:`adam` with ``nesterov=True`` (as ``optax.nadam``), whose numbers it matches.
    ``torch.optim.NAdam`` uses a different first moment: Dozat's momentum schedule
    :math:`\mu_t = \beta_1(1 - \tfrac12\, 0.96^{t\psi})` (``momentum_decay`` :math:`\psi`,
    default 0.004) with the product :math:`\prod_{k\le t}\mu_k` in place of
    :math:`\beta_1^t`.  The two coincide when :math:`0.96^{t\psi} = 0`, i.e. for a
    ``momentum_decay`` so large that :math:`\mu_t = \beta_1` at every step.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.nadam(0.1)
        >>> params = jnp.array([1.0, -1.0])
        >>> updates, _ = tx.update(jnp.array([3.0, -0.5]), tx.init(params), params)
        >>> [round(u, 4) for u in updates.tolist()]  # -alpha sign(g) (1 + b1 / (1 + b1)) at step 1
        [-0.1474, 0.1474]

    Reference: Dozat, "Incorporating Nesterov Momentum into Adam", ICLR workshop 2016.
    """


@ADAM_FAMILY.member(extra={"weight_decay": 1e-2}, options={"nesterov": False})
def adamw(
    learning_rate, b1, b2, eps, eps_root, weight_decay, mu_dtype, nu_dtype, nesterov
) -> Chain:
    r"""AdamW: Adam with decoupled weight decay, :math:`\theta \leftarrow \theta - \alpha(d_t + \lambda\theta)`.

    Adam's chain with ``add_decoupled_weight_decay`` before the learning rate; the same
    numbers as ``torch.optim.AdamW`` (default ``weight_decay=1e-2`` as in torch;
    optax's default is ``1e-4``).  ``weight_decay`` may be a schedule or a
    per-parameter tree (e.g. 0 for biases and norms).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.adamw(0.1, weight_decay=0.5)
        >>> params = jnp.array([1.0, -1.0])
        >>> updates, state = tx.update(jnp.array([3.0, -0.5]), tx.init(params), params)
        >>> [round(u, 6) for u in updates.tolist()]  # first step: -alpha (sign(g) + lambda theta)
        [-0.15, 0.15]

    Reference: Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
    """
    return adam_chain(
        first_moment(b1, mu_dtype, nesterov),
        ema_of_squares(b2, nu_dtype),
        debias(),
        precondition(eps, eps_root),
        add_decoupled_weight_decay(weight_decay),
        learning_rate=learning_rate,
    )


@ADAM_FAMILY.variant(adamw, nesterov=True)
def nadamw():
    r"""NAdamW: :func:`adamw` with NAdam's look-ahead first moment (``optax.nadamw``).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.nadamw(0.1, weight_decay=0.0)
        >>> params = jnp.array([1.0, -1.0])
        >>> updates, _ = tx.update(jnp.array([3.0, -0.5]), tx.init(params), params)
        >>> [round(u, 4) for u in updates.tolist()]  # as nadam without decay
        [-0.1474, 0.1474]

    References: Dozat, ICLR workshop 2016; Loshchilov & Hutter, ICLR 2019.
    """


@ADAM_FAMILY.member(options={"maximum_of": "corrected"})
def amsgrad(learning_rate, b1, b2, eps, eps_root, mu_dtype, nu_dtype, maximum_of) -> Chain:
    r"""AMSGrad: Adam whose second moment is replaced by its running maximum.

    By default the maximum is over the bias-corrected :math:`\hat v_t`
    (``amsgrad_max`` after ``debias``), so the effective denominator
    :math:`\sqrt{\hat v^{\max}_t} + \epsilon` never decreases and the effective step
    size never grows — the property that fixes Adam's divergence on Reddi et al.'s
    problem.  These are ``optax.amsgrad``'s numbers.

    ``maximum_of="raw"`` takes the maximum of the raw :math:`v_t` and bias-corrects it
    afterwards: the numbers of ``torch.optim.Adam(amsgrad=True)``.  There the
    denominator :math:`\sqrt{\max_k v_k/(1-\beta_2^t)}` shrinks as :math:`1-\beta_2^t`
    grows, even when no :math:`v_k` changes.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.amsgrad(0.1, b1=0.0, b2=0.5)
        >>> params = jnp.zeros(1)
        >>> state = tx.init(params)
        >>> for g in (4.0, 1.0):
        ...     updates, state = tx.update(jnp.array([g]), state, params)
        >>> round(updates.item(), 4)  # v_hat: 16, then 4.5 / 0.75 = 6; the max 16 is kept
        -0.025

    Reference: Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", ICLR 2018.
    """
    if maximum_of not in ("corrected", "raw"):
        raise ValueError(f"maximum_of={maximum_of!r} is invalid: expected 'corrected' or 'raw'")
    maximum = amsgrad_max(nu_dtype)
    corrections = [debias(), maximum] if maximum_of == "corrected" else [maximum, debias()]
    return adam_chain(
        ema_of_gradients(b1, mu_dtype),
        ema_of_squares(b2, nu_dtype),
        *corrections,
        precondition(eps, eps_root),
        learning_rate=learning_rate,
    )


@ADAM_FAMILY.member(eps=1e-16, eps_root=1e-16)
def adabelief(learning_rate, b1, b2, eps, eps_root, mu_dtype, nu_dtype) -> Chain:
    r"""AdaBelief: Adam whose second moment tracks :math:`(g_t - m_t)^2`, the surprise.

    .. math::
       s_t = \beta_2 s_{t-1} + (1-\beta_2)(g_t - m_t)^2 + \epsilon_r, \qquad
       \theta_t = \theta_{t-1} - \alpha\, \hat m_t / (\sqrt{\hat s_t} + \epsilon)

    ``eps_root`` sits inside the recursion (:func:`belief_second_moment`).  The
    numbers (and defaults) of ``optax.adabelief``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.adabelief(0.1)
        >>> params = jnp.array([1.0, -1.0])
        >>> updates, _ = tx.update(jnp.array([3.0, -0.5]), tx.init(params), params)
        >>> [round(u, 4) for u in updates.tolist()]  # s_hat_1 = (b1 g)^2: -alpha sign(g) / b1
        [-0.1111, 0.1111]

    Reference: Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in
    Observed Gradients", NeurIPS 2020.
    """
    return adam_chain(
        ema_of_gradients(b1, mu_dtype),
        belief_second_moment(b2, eps_root, nu_dtype),
        debias(),
        precondition(eps),
        learning_rate=learning_rate,
    )


@ADAM_FAMILY.member(learning_rate=1e-2, eps=1e-3, extra={"initial_accumulator_value": 1e-6})
def yogi(
    learning_rate, b1, b2, eps, eps_root, initial_accumulator_value, mu_dtype, nu_dtype
) -> Chain:
    r"""Yogi: Adam with an additive second moment :math:`v_t = v_{t-1} - (1-\beta_2)\,\mathrm{sign}(v_{t-1}-g_t^2)\,g_t^2`.

    Both moments start at ``initial_accumulator_value`` (:func:`yogi_moments`).  The
    numbers (and defaults) of ``optax.yogi``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.yogi(0.1, b1=0.0, b2=0.5, eps=0.0, initial_accumulator_value=0.0)
        >>> params = jnp.zeros(1)
        >>> state = tx.init(params)
        >>> for g in (4.0, 1.0):
        ...     updates, state = tx.update(jnp.array([g]), state, params)
        >>> round(updates.item(), 4)  # v_2 = 8 - 0.5 * 1 = 7.5 (Adam: 4.5): -0.1 / sqrt(7.5 / 0.75)
        -0.0316

    Reference: Zaheer et al., "Adaptive Methods for Nonconvex Optimization", NeurIPS 2018.
    """
    return adam_chain(
        yogi_moments(b1, b2, initial_accumulator_value, mu_dtype, nu_dtype),
        debias(),
        precondition(eps, eps_root),
        learning_rate=learning_rate,
        aliases={"b1": "transforms[0].b1", "b2": "transforms[0].b2"},
    )


@ADAM_FAMILY.member(learning_rate=2e-3, without=("eps_root",))
def adamax(learning_rate, b1, b2, eps, mu_dtype, nu_dtype) -> Chain:
    r"""Adamax: Adam with the infinity norm, :math:`\theta_t = \theta_{t-1} - \alpha\,\hat m_t / u_t`.

    :math:`u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon)` (``eps`` inside the maximum, the
    placement of both ``torch.optim.Adamax`` and ``optax.adamax``, whose numbers this
    matches); only :math:`m_t` is bias-corrected, and there is no ``eps_root``.  Default
    learning rate 2e-3 as in the paper and torch.

    Returns:
        The chain ``ema_of_gradients → debias → infinity_norm_precondition →
        scale_by_learning_rate``: :math:`u_t` divides :math:`\hat m_t` directly.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.adamax(0.1)
        >>> params = jnp.array([1.0, -1.0])
        >>> updates, _ = tx.update(jnp.array([3.0, -0.5]), tx.init(params), params)
        >>> print(updates.round(6))  # first step: -alpha * g / |g|
        [-0.1  0.1]

    Reference: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, §7.1.
    """
    return adam_chain(
        ema_of_gradients(b1, mu_dtype),
        debias(),
        infinity_norm_precondition(b2, eps, nu_dtype),
        learning_rate=learning_rate,
        aliases=INFINITY_NORM_ALIASES,
    )


@ADAM_FAMILY.member(learning_rate=2e-3, without=("eps_root",), extra={"weight_decay": 1e-4})
def adamaxw(learning_rate, b1, b2, eps, weight_decay, mu_dtype, nu_dtype) -> Chain:
    r"""AdamaxW: :func:`adamax` with decoupled weight decay (``optax.adamaxw``, default ``1e-4``).

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.adamaxw(0.1, weight_decay=0.5)
        >>> params = jnp.array([1.0, -1.0])
        >>> updates, _ = tx.update(jnp.array([3.0, -0.5]), tx.init(params), params)
        >>> print(updates.round(6))  # -alpha (g / |g| + lambda theta)
        [-0.15  0.15]

    References: Kingma & Ba, ICLR 2015, §7.1; Loshchilov & Hutter, ICLR 2019.
    """
    return adam_chain(
        ema_of_gradients(b1, mu_dtype),
        debias(),
        infinity_norm_precondition(b2, eps, nu_dtype),
        add_decoupled_weight_decay(weight_decay),
        learning_rate=learning_rate,
        aliases=INFINITY_NORM_ALIASES,
    )


@ADAM_FAMILY.member(extra={"threshold": 5.0})
def radam(learning_rate, b1, b2, eps, eps_root, threshold, mu_dtype, nu_dtype) -> Chain:
    r"""RAdam: Adam with its adaptive step rectified by :math:`r_t`, momentum SGD while :math:`\rho_t` < threshold.

    See :func:`rectified_precondition` for the formula.  The numbers of ``optax.radam``
    (rectify when :math:`\rho_t \ge 5`); ``torch.optim.RAdam`` rectifies when
    :math:`\rho_t > 5` and places ``eps`` before the bias correction, so the two agree
    for ``eps=0``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.radam(0.1)
        >>> params = jnp.array([1.0, -1.0])
        >>> updates, _ = tx.update(jnp.array([3.0, -0.5]), tx.init(params), params)
        >>> [round(u, 4) for u in updates.tolist()]  # rho_1 = 1 < 5: momentum step -alpha g
        [-0.3, 0.05]

    Reference: Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond",
    ICLR 2020.
    """
    return adam_chain(
        ema_of_gradients(b1, mu_dtype),
        ema_of_squares(b2, nu_dtype),
        debias(),
        rectified_precondition(eps, eps_root, threshold),
        learning_rate=learning_rate,
    )


@ADAM_FAMILY.member(eps=1e-6, extra={"weight_decay": 0.0})
def lamb(learning_rate, b1, b2, eps, eps_root, weight_decay, mu_dtype, nu_dtype) -> Chain:
    r"""LAMB: AdamW's step rescaled per tensor by the trust ratio :math:`\|\theta\|/\|r_t\|`.

    .. math::
       r_t = \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_r} + \epsilon} + \lambda\theta_{t-1},
       \qquad
       \theta_t = \theta_{t-1} - \alpha\,\frac{\|\theta_{t-1}\|}{\|r_t\|}\, r_t

    (norms per parameter tensor; ratio 1 where either is 0).  The numbers (and defaults)
    of ``optax.lamb``.

    Example:
        >>> import jax.numpy as jnp
        >>> import adaptive_jax as aj
        >>> tx = aj.lamb(0.1)
        >>> params = jnp.array([3.0, 4.0])  # norm 5
        >>> updates, _ = tx.update(jnp.array([1.0, -1.0]), tx.init(params), params)
        >>> [round(u, 4) for u in updates.tolist()]  # sign(g) rescaled to length alpha ||theta||
        [-0.3536, 0.3536]

    Reference: You et al., "Large Batch Optimization for Deep Learning: Training BERT in
    76 minutes", ICLR 2020.
    """
    return adam_chain(
        ema_of_gradients(b1, mu_dtype),
        ema_of_squares(b2, nu_dtype),
        debias(),
        precondition(eps, eps_root),
        add_decoupled_weight_decay(weight_decay),
        scale_by_trust_ratio(),
        learning_rate=learning_rate,
    )
