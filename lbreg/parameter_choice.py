r"""Rules for the regularisation parameter :math:`\alpha` (PAPER_MATH §2, §4.4).

Three rules, each a plain function that returns a `ParameterChoice`: the chosen :math:`\alpha`
per sample, the solve (`Result`) at that :math:`\alpha`, and the trail of the values tried.

* :func:`discrepancy_principle` — Morozov's discrepancy principle: the largest :math:`\alpha`
  on a decreasing geometric sequence (refined by bisection in :math:`\log\alpha`) whose
  inversion explains the data to the noise level, :math:`\|\mathcal N(x_\alpha)-y^\delta\|
  \le\tau\delta`. It needs :math:`\delta`, not the ground truth. :func:`discrepancy_on_grid`
  applies the same rule to the solves of a grid that has already been computed.
* :func:`a_priori` — the rule of Example 1, :math:`\alpha(\delta)=\sqrt2\,\delta/\|v^\dagger\|`
  (:func:`lbreg.theory.example1_alpha`, which gives the rate :math:`O(\delta)` of Theorem 2,
  eq. (9)). It needs the norm of the source element :math:`v^\dagger` of (8).
* :func:`grid_search` — the paper's choice (PAPER_MATH §4.3–4.4): the :math:`\alpha` of a grid that
  maximises a metric against the ground truth (PSNR), an oracle. All grid values of all samples
  are solved as one batch with a per-sample :math:`\alpha`.

Every rule takes a solver by name (``"pdhg"`` for one layer, eq. (14); ``"admm"``, the fast
solver of the same one-layer objective; ``"lifted_cd"`` for any depth, eqs. (15)–(17)) with
keyword arguments for it, or a callable
``solve(y, alpha, x0) -> Result`` (see :func:`make_solve`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from lbreg._checks import (
    check_bool,
    check_int,
    check_positive,
    check_positive_values,
    check_real,
    check_real_tensor,
)
from lbreg.metrics import psnr
from lbreg.network import LiftedNetwork
from lbreg.regularizers import Regularizer
from lbreg.solvers import Result, admm, lifted_cd, pdhg
from lbreg.solvers.result import check_data, check_discrepancy_factor, check_network, sample_norm
from lbreg.theory import example1_alpha

__all__ = [
    "ParameterChoice",
    "Solve",
    "make_solve",
    "data_residual",
    "geometric_alphas",
    "MAX_ALPHAS",
    "discrepancy_principle",
    "discrepancy_on_grid",
    "a_priori_alpha",
    "a_priori",
    "grid_search",
    "restrict_grid",
]

Solve = Callable[[Tensor, Tensor, "Tensor | None"], Result]
"""``solve(y, alpha, x0) -> Result``: data ``(N, *output_shape)``, ``alpha`` ``(N,)``, start or None."""

SolverName = Literal["pdhg", "admm", "lifted_cd"]


@dataclass
class ParameterChoice:
    r"""Outcome of an :math:`\alpha` rule.

    Attributes:
        alpha: the chosen :math:`\alpha` per sample, ``(B,)`` (CPU, dtype of the data).
        result: the solve at the chosen :math:`\alpha`, one row per sample (rows gathered from
            the solves of the trail; per-sample ``history`` entries ``(K, B)`` are padded with
            NaN to a common length; the 1-D entries, which describe one solve and not the
            gathered rows, are dropped: the host timings and the iteration indices
            ``gap_iteration`` of `pdhg` and ``iteration`` of `admm`, whose last entry depends
            on when that solve stopped; the rows before it lie every ``check_every``
            iterations, from 0 for `pdhg`'s gap and from ``check_every`` for `admm`; its
            ``message`` joins the distinct messages of those solves by "; ", each counting and
            numbering the samples of its own solve, not of this result).
        trail: ``"alpha"`` and the rule's criterion (``"residual"``
            :math:`\|\mathcal N(x_\alpha)-y^\delta\|`, and ``"metric"`` for a grid search), each
            ``(K, B)`` on the CPU in the order tried; NaN where a sample tried fewer than
            ``K`` values.
        index: row of ``trail`` holding the chosen :math:`\alpha`, ``(B,)`` int64.
        rule: ``"discrepancy"``, ``"a-priori"`` or ``"grid"``.
        status: one word per sample saying how the choice ended (see each rule).
        target: :math:`\tau\delta` per sample for the discrepancy principle, else ``None``.
        solves: for a grid search, the solve of every grid point (row ``g * B + b`` holds
            sample ``b`` at ``trail["alpha"][g, b]``; per-sample histories as in ``result``, with
            the 1-D entries dropped whatever ``batch_size`` was); else ``None``.
        maximize: for a grid search (and :func:`discrepancy_on_grid` of one), whether its
            metric was maximised (:func:`restrict_grid` keeps the direction); else ``None``.
    """

    alpha: Tensor
    result: Result
    trail: dict[str, Tensor]
    index: Tensor
    rule: str
    status: list[str] = field(default_factory=list)
    target: Tensor | None = None
    solves: Result | None = None
    maximize: bool | None = None


# --------------------------------------------------------------------------- building blocks


def make_solve(
    network: LiftedNetwork,
    solver: SolverName | Solve = "lifted_cd",
    reg: Regularizer | None = None,
    **solver_kwargs: Any,
) -> Solve:
    r"""A callable ``solve(y, alpha, x0) -> Result`` for the rules of this module.

    Args:
        network: the `LiftedNetwork` to invert.
        solver: ``"pdhg"`` (depth 1, eq. (14)), ``"admm"`` (depth 1, the same objective,
            `lbreg.solvers.admm`), ``"lifted_cd"`` (any depth, eqs. (15)–(17)), or a callable
            of the signature above (its return value is checked to be a `Result`).
        reg: the regulariser (default isotropic TV, the solvers' default).
        **solver_kwargs: passed to the solver (``max_iter``, ``tol``, ...; not ``x0``, which the
            rules set: for another start pass a callable that supplies it when given ``None``).

    Returns:
        The callable. ``x0`` is the solver's warm start (``None``: the paper's zero start).
    """
    if callable(solver):
        if solver_kwargs or reg is not None:
            raise ValueError("solver is a callable: pass reg and solver options to it, not here")
        @functools.wraps(solver)
        def checked(y: Tensor, alpha: Tensor, x0: Tensor | None = None) -> Result:
            result = solver(y, alpha, x0)
            if not isinstance(result, Result):
                raise TypeError(f"the solver callable must return a lbreg.solvers.Result (what pdhg, admm "
                                f"and lifted_cd return), got {type(result).__name__}")
            return result

        return checked
    if "x0" in solver_kwargs:
        raise TypeError(
            "x0 is chosen by the rule (the zero start, or a warm start from the previous alpha); to "
            "start elsewhere pass a callable solver that replaces None, e.g. solver=lambda y, alpha, "
            "x0: lifted_cd(network, y, alpha, x0=y.new_full((len(y), *network.input_shape), 0.5) "
            "if x0 is None else x0)"
        )
    functions = {"pdhg": pdhg, "admm": admm, "lifted_cd": lifted_cd}
    if not isinstance(solver, str) or solver not in functions:
        raise ValueError(f"solver must be 'pdhg', 'admm', 'lifted_cd' or a callable, got {solver!r}")
    function = functions[solver]
    check_network(network)

    def solve(y: Tensor, alpha: Tensor, x0: Tensor | None = None) -> Result:
        return function(network, y, alpha, reg, x0=x0, **solver_kwargs)

    return solve


def data_residual(network: LiftedNetwork, x: Tensor, y_delta: Tensor) -> Tensor:
    r"""The discrepancy :math:`\|\mathcal N(x)-y^\delta\|` per sample.

    :math:`\mathcal N` is the whole network, eq. (1): for a multi-layer network the residual is
    that of the last layer evaluated at the *forward* states of :math:`x`,
    :math:`\|\sigma_L(W_L\,x_{L-1}(x)+b_L)-y^\delta\|`, not at the auxiliary variable
    :math:`x_{L-1}` of the lifted problem (3) (which need not be the forward state of
    :math:`x_0`). For an affine last layer (the CNN code layer) it equals
    :math:`\sqrt{2B_{\Psi_L}(y^\delta,W_Lx_{L-1}(x)+b_L)}`.

    Args:
        network: the network :math:`\mathcal N`.
        x: inputs ``(N, *input_shape)`` (or ``(N, prod(input_shape))``).
        y_delta: data ``(N, *output_shape)`` (or ``(N, prod(output_shape))``).

    Returns:
        ``(N,)``.

    Raises:
        TypeError: ``x`` or ``y_delta`` is not a real floating tensor.
        ValueError: ``x`` or ``y_delta`` has the wrong shape or non-finite entries, or they hold
            different numbers of samples.
    """
    check_network(network)
    x = network.check_input(x, "x")
    y_delta = network.check_output(y_delta, "y_delta")
    if y_delta.shape[0] != x.shape[0]:
        raise ValueError(f"y_delta must hold one sample per input of x ({x.shape[0]}), got shape {tuple(y_delta.shape)}")
    like = {"device": y_delta.device, "dtype": y_delta.dtype}  # as the solvers: the data decide
    with torch.no_grad():
        out = network.to(**like).forward(x.to(**like))
    return sample_norm(out - y_delta)


MAX_ALPHAS = 1_000
"""The longest sequence `geometric_alphas` builds."""


def geometric_alphas(alpha_max: float, alpha_min: float, factor: float) -> Tensor:
    r"""The decreasing sequence :math:`\alpha_k=\alpha_{\max}q^k` down to :math:`\alpha_{\min}`.

    The last value is :math:`\alpha_{\min}` itself (the sequence is cut there). Each argument is
    a real number or a one-element tensor. A sequence of more than ``MAX_ALPHAS`` values (a
    factor very close to 1; each value may cost a solve) is refused with a ValueError.

    Args:
        alpha_max: the first value, :math:`\alpha_{\max} > 0`.
        alpha_min: the last value, :math:`0 < \alpha_{\min} \le \alpha_{\max}`.
        factor: the ratio :math:`q\in(0,1)`.

    Returns:
        float64 ``(K,)``, strictly decreasing, from ``alpha_max`` to ``alpha_min``.
    """
    alpha_max = check_positive(alpha_max, "alpha_max", tensor=True)
    alpha_min = check_positive(alpha_min, "alpha_min", tensor=True)
    if alpha_min > alpha_max:
        raise ValueError(f"alpha_min must be <= alpha_max, got alpha_min={alpha_min}, alpha_max={alpha_max}")
    factor = check_real(factor, "factor", tensor=True)
    if not 0.0 < factor < 1.0:
        raise ValueError(f"factor must lie in (0, 1), got {factor}")
    steps = math.ceil(math.log(alpha_min / alpha_max) / math.log(factor) - 1e-9)
    if steps + 1 > MAX_ALPHAS:
        raise ValueError(f"factor={factor} from alpha_max={alpha_max:g} down to alpha_min={alpha_min:g} "
                         f"gives {steps + 1} values, more than MAX_ALPHAS={MAX_ALPHAS} (each may cost "
                         "a solve); choose a smaller factor or a narrower range")
    values = [alpha_max * factor**k for k in range(steps)] + [alpha_min]
    return torch.tensor(sorted(set(values), reverse=True), dtype=torch.float64)


# --------------------------------------------------------------------------- discrepancy principle


def discrepancy_principle(
    network: LiftedNetwork,
    y_delta: Tensor,
    delta: float | Tensor,
    *,
    solver: SolverName | Solve = "lifted_cd",
    tau: float = 1.0,
    alpha_max: float = 1e-2,
    alpha_min: float = 1e-4,
    factor: float = 0.5,
    band: float = 0.05,
    max_refine: int = 4,
    warm_start: bool = True,
    reg: Regularizer | None = None,
    **solver_kwargs: Any,
) -> ParameterChoice:
    r"""Morozov's discrepancy principle, batched: one :math:`\alpha` per sample.

    Chooses the largest :math:`\alpha` whose inversion :math:`x_\alpha` (problem (6) for one
    layer, (3) for several) explains the data to the noise level,

    .. math::
        \|\mathcal N(x_\alpha)-y^\delta\| \le \tau\,\delta,
        \qquad \delta=\|y^\delta-y\|,\ \tau\ge1,

    aiming at the band :math:`(1-\text{band})\,\tau\delta\le\|\mathcal N(x_\alpha)-y^\delta\|
    \le\tau\delta` (:func:`data_residual`; for a deep network the residual is the last layer's
    at the forward states of :math:`x_\alpha`). Here :math:`\delta` is the norm of the noise
    (as in `lbreg.solvers.landweber`, whose :math:`\eta` is this :math:`\tau`), not the
    :math:`\delta` of Theorem 2 (for an affine last layer that one is
    :math:`\|y^\delta-y\|/\sqrt2`, PAPER_MATH §4.4).

    1. **Descent.** :math:`\alpha_k=\alpha_{\max}q^k` (:func:`geometric_alphas`), each solve
       warm-started from the sample's previous solution, until the residual falls to
       :math:`\tau\delta`. For exact minimisers the data term is non-decreasing in
       :math:`\alpha`, so the first such :math:`\alpha_k` is the largest on the sequence.
    2. **Refinement.** Bisection in :math:`\log\alpha` between :math:`\alpha_k` (fits) and
       :math:`\alpha_{k-1}` (does not), warm-started from the larger one's solution, until the
       residual is in the band or ``max_refine`` bisections are done.

    Only the samples still searching are solved at each step, so samples stop independently.

    Status per sample: ``"band"`` (residual in the band), ``"fits"`` (below the band after the
    refinement budget), ``"alpha_max"`` (:math:`\alpha_{\max}` already fits: the rule would
    want a larger :math:`\alpha`), ``"alpha_min"`` (not even :math:`\alpha_{\min}` fits, e.g.
    :math:`\delta=0`; :math:`\alpha_{\min}` is returned).

    Args:
        network: the network :math:`\mathcal N`.
        y_delta: data ``(B, *output_shape)``.
        delta: :math:`\|y^\delta-y\|\ge0`, a number or ``(B,)``.
        solver: ``"lifted_cd"``, ``"pdhg"``, ``"admm"`` or a callable (:func:`make_solve`).
        tau: :math:`\tau\ge1`.
        alpha_max, alpha_min, factor: the sequence, :math:`0<\alpha_{\min}\le\alpha_{\max}`,
            :math:`q\in(0,1)`.
        band: relative width of the target band, in :math:`[0,1)`.
        max_refine: at most this many bisections per sample.
        warm_start: warm-start each solve from the sample's previous solution (else zero).
        reg: the regulariser (default TV).
        **solver_kwargs: passed to the solver.

    Returns:
        `ParameterChoice` with ``rule="discrepancy"``, ``target`` :math:`=\tau\delta` and the
        trail of ``alpha`` and ``residual``.

    Raises:
        ValueError: ``tau < 1``, ``delta < 0``, a non-positive ``alpha_max`` / ``alpha_min``,
            ``factor`` outside (0, 1), ``band`` outside [0, 1), or a negative ``max_refine``;
            ``y_delta`` as the solvers check it (shape, no samples, non-finite entries,
            data outside dom Ψ; TypeError for a non-tensor or a dtype other than float32/64);
            a solve that diverged (its iterate holds NaN or Inf).
        TypeError: ``delta`` or another number of the wrong type (a string, a bool), or a
            ``warm_start`` that is not a bool.
    """
    check_network(network)
    y_delta = check_data(network, y_delta, name="y_delta")
    tau = check_discrepancy_factor(tau, "tau")
    band = check_real(band, "band", tensor=True)
    if not 0.0 <= band < 1.0:
        raise ValueError(f"band must lie in [0, 1), got {band}")
    max_refine = check_int(max_refine, "max_refine")
    warm_start = check_bool(warm_start, "warm_start")
    sequence = geometric_alphas(alpha_max, alpha_min, factor)
    solve = make_solve(network, solver, reg, **solver_kwargs)
    batch = y_delta.shape[0]
    delta_t = _per_sample(delta, batch, "delta")
    target = (tau * delta_t).to(torch.float64)
    lower = (1.0 - band) * target

    trail_a: list[Tensor] = []
    trail_r: list[Tensor] = []
    count = torch.zeros(batch, dtype=torch.int64)
    best_row = torch.full((batch,), -1, dtype=torch.int64)
    status = [""] * batch
    pieces: list[tuple[Tensor, Tensor, Result]] = []  # (sample indices, trail rows, result)
    x_last: Tensor | None = None
    hi_alpha = torch.full((batch,), math.nan, dtype=torch.float64)
    hi_x: Tensor | None = None
    lo_alpha = torch.full((batch,), math.nan, dtype=torch.float64)

    def run(index: Tensor, alpha: Tensor, x0: Tensor | None) -> tuple[Result, Tensor, Tensor]:
        result = solve(y_delta[index], alpha.to(y_delta.dtype).to(y_delta.device), x0)
        _check_finite(result, alpha, index)
        residual = data_residual(network, result.x, y_delta[index]).to(torch.float64).cpu()
        rows = count[index].clone()
        _append(trail_a, trail_r, index, rows, alpha, residual, batch)
        count[index] += 1
        pieces.append((index, rows, result))
        return result, residual, rows

    # 1. descent along the geometric sequence
    active = torch.arange(batch)
    for k, a in enumerate(sequence.tolist()):
        if active.numel() == 0:
            break
        x0 = x_last[active] if (warm_start and x_last is not None) else None
        result, residual, rows = run(active, torch.full((active.numel(),), a, dtype=torch.float64), x0)
        if x_last is None:
            x_last = torch.zeros((batch, *result.x.shape[1:]), dtype=result.x.dtype, device=result.x.device)
            hi_x = x_last.clone()
        fits = residual <= target[active]
        last = k == len(sequence) - 1
        for j, b in enumerate(active.tolist()):
            if fits[j]:
                best_row[b], lo_alpha[b] = rows[j], a
                status[b] = "alpha_max" if k == 0 else ("band" if residual[j] >= lower[b] else "fits")
            elif last:
                best_row[b], status[b] = rows[j], "alpha_min"
            else:
                hi_alpha[b] = a
                hi_x[b] = result.x[j]
        x_last[active] = result.x
        active = active[:0] if last else active[~fits]

    # 2. bisection in log(alpha) for samples bracketed below the band
    for _ in range(max_refine):
        active = torch.tensor([b for b in range(batch) if status[b] == "fits"], dtype=torch.int64)
        if active.numel() == 0:
            break
        mid = torch.sqrt(lo_alpha[active] * hi_alpha[active])
        x0 = hi_x[active] if warm_start else None
        result, residual, rows = run(active, mid, x0)
        for j, b in enumerate(active.tolist()):
            if residual[j] <= target[b]:
                best_row[b], lo_alpha[b] = rows[j], float(mid[j])
                if residual[j] >= lower[b]:
                    status[b] = "band"
            else:
                hi_alpha[b] = float(mid[j])
                hi_x[b] = result.x[j]

    trail = {"alpha": torch.stack(trail_a), "residual": torch.stack(trail_r)}
    chosen = _gather(pieces, best_row, batch)
    alpha = trail["alpha"].gather(0, best_row[None])[0].to(y_delta.dtype)
    return ParameterChoice(alpha=alpha, result=chosen, trail=trail, index=best_row,
                           rule="discrepancy", status=status, target=target.to(y_delta.dtype))


def discrepancy_on_grid(
    grid: ParameterChoice,
    delta: float | Tensor,
    *,
    tau: float = 1.0,
) -> ParameterChoice:
    r"""The discrepancy principle on the solves of a grid search (no further solve).

    Among the grid values of each sample, take the largest :math:`\alpha` with
    :math:`\|\mathcal N(x_\alpha)-y^\delta\|\le\tau\delta` (the residuals are in
    ``grid.trail["residual"]``); this is the descent step of :func:`discrepancy_principle` on
    the grid, with every solve started from zero. Status: ``"fits"``, ``"alpha_max"`` (the
    largest grid value fits) or ``"alpha_min"`` (none fits; the smallest is returned).

    Args:
        grid: the outcome of :func:`grid_search` (with its ``solves``).
        delta: :math:`\|y^\delta-y\|\ge0`, a number or ``(B,)``.
        tau: :math:`\tau\ge1`.

    Returns:
        `ParameterChoice` with ``rule="discrepancy"`` and the grid's trail.

    Raises:
        TypeError: ``grid`` is not a `ParameterChoice`.
        ValueError: ``grid`` is not a grid search, ``tau < 1`` or ``delta < 0``.
    """
    _check_grid(grid, "residual")
    tau = check_discrepancy_factor(tau, "tau")
    alphas, residual = grid.trail["alpha"], grid.trail["residual"]
    batch = alphas.shape[1]
    target = (tau * _per_sample(delta, batch, "delta")).to(torch.float64)
    fits = residual <= target[None]
    score = torch.where(fits, alphas, torch.full_like(alphas, -math.inf))
    best = score.argmax(dim=0)
    none = ~fits.any(dim=0)
    smallest = alphas.argmin(dim=0)
    best = torch.where(none, smallest, best)
    largest = alphas.argmax(dim=0)
    status = ["alpha_min" if none[b] else ("alpha_max" if best[b] == largest[b] else "fits")
              for b in range(batch)]
    rows = best * batch + torch.arange(batch)
    return ParameterChoice(
        alpha=alphas.gather(0, best[None])[0].to(grid.alpha.dtype),
        result=_select(grid.solves, rows), trail=grid.trail, index=best, rule="discrepancy",
        status=status, target=target.to(grid.alpha.dtype), solves=grid.solves, maximize=grid.maximize,
    )


# --------------------------------------------------------------------------- a-priori rule


def a_priori_alpha(delta: float | Tensor, v_norm: float | Tensor, c: float = 1.0) -> Tensor:
    r"""The a-priori rule of Example 1, :math:`\alpha(\delta)=\delta\sqrt{c(1+c)}/\|v^\dagger\|`.

    For :math:`c=1`, :math:`\alpha=\sqrt2\,\delta/\|v^\dagger\|`, which balances the two terms of
    Theorem 2, eq. (9), and gives :math:`D^{\rm symm}_R(x_\alpha,x^\dagger)\le
    2\sqrt2\|v^\dagger\|\delta` (PAPER_MATH §2, Example 1; :func:`lbreg.theory.example1_alpha`).
    Here :math:`\delta` is Theorem 2's: :math:`\delta^2\ge B_\Psi(y^\delta,Wx^\dagger+b)`
    (:math:`\delta=\|y^\delta-y\|/\sqrt2` for an affine last layer).

    Args:
        delta: :math:`\delta\ge0`, a number or ``(B,)``.
        v_norm: :math:`\|v^\dagger\|>0`, a number or ``(B,)``.
        c: the constant :math:`c\in(0,1]` of (9).

    Returns:
        float64 tensor of the broadcast shape of ``delta`` and ``v_norm``.

    Raises:
        TypeError: ``delta`` or ``v_norm`` is not real numbers (a string, a bool, complex).
        ValueError: ``delta < 0``, ``v_norm <= 0``, shapes of ``delta`` and ``v_norm`` that do not
            broadcast, or ``c`` outside (0, 1].
    """
    what = "a real number or a tensor of them"
    return example1_alpha(check_real_tensor(delta, "delta", what), check_real_tensor(v_norm, "v_norm", what), c)


def a_priori(
    network: LiftedNetwork,
    y_delta: Tensor,
    delta: float | Tensor,
    v_norm: float | Tensor,
    *,
    c: float = 1.0,
    solver: SolverName | Solve = "lifted_cd",
    reg: Regularizer | None = None,
    **solver_kwargs: Any,
) -> ParameterChoice:
    r"""Solve at the a-priori :math:`\alpha(\delta)` of :func:`a_priori_alpha`, one per sample.

    Args:
        network: the network.
        y_delta: data ``(B, *output_shape)``.
        delta: Theorem 2's :math:`\delta>0`, a number or ``(B,)`` (:math:`\delta=0` gives
            :math:`\alpha=0`, no regularisation, which the solvers reject).
        v_norm: :math:`\|v^\dagger\|>0`, a number or ``(B,)``.
        c, solver, reg, **solver_kwargs: as in :func:`a_priori_alpha` and :func:`make_solve`.

    Returns:
        `ParameterChoice` with ``rule="a-priori"``; the trail holds the one :math:`\alpha` and
        its residual.
    """
    check_network(network)
    y_delta = check_data(network, y_delta, name="y_delta")
    batch = y_delta.shape[0]
    alpha = a_priori_alpha(_per_sample(delta, batch, "delta"), _per_sample(v_norm, batch, "v_norm"), c)
    if bool((alpha <= 0).any()):
        raise ValueError(f"delta must be > 0 for the a-priori rule (delta = 0 gives alpha = 0), got alpha={alpha.tolist()}")
    solve = make_solve(network, solver, reg, **solver_kwargs)
    result = solve(y_delta, alpha.to(y_delta.dtype).to(y_delta.device), None)
    _check_finite(result, alpha, torch.arange(batch))
    residual = data_residual(network, result.x, y_delta).to(torch.float64).cpu()
    return ParameterChoice(alpha=alpha.to(y_delta.dtype), result=result,
                           trail={"alpha": alpha[None], "residual": residual[None]},
                           index=torch.zeros(batch, dtype=torch.int64), rule="a-priori",
                           status=["a-priori"] * batch)


# --------------------------------------------------------------------------- grid search


def grid_search(
    network: LiftedNetwork,
    y_delta: Tensor,
    alphas: Sequence[float] | Tensor,
    reference: Tensor,
    *,
    metric: Callable[[Tensor, Tensor], Tensor] = psnr,
    maximize: bool = True,
    solver: SolverName | Solve = "lifted_cd",
    batch_size: int | None = None,
    reg: Regularizer | None = None,
    **solver_kwargs: Any,
) -> ParameterChoice:
    r"""Grid search by a metric against the ground truth (the paper's oracle, PAPER_MATH §4.3–4.4).

    For every sample :math:`b` and grid value :math:`\alpha_g`, solve for
    :math:`x_{\alpha_g}` and take

    .. math::
        \alpha_b = \arg\max_{\alpha_g}\ \mathrm{metric}\big(x_{\alpha_g}, x^\dagger_b\big)
        \quad(\arg\min \text{ if } \texttt{maximize=False}),

    e.g. PSNR (:func:`lbreg.metrics.psnr`). The ``G * B`` problems run as one batch with a
    per-sample :math:`\alpha` (row ``g * B + b``), or in chunks of ``batch_size`` rows. The
    residuals :math:`\|\mathcal N(x_{\alpha_g})-y^\delta\|` are recorded as well, so that
    :func:`discrepancy_on_grid` can reuse the solves.

    Args:
        network: the network.
        y_delta: data ``(B, *output_shape)``.
        alphas: the grid, distinct positive values (any order), at least one.
        reference: ground truth ``(B, *input_shape)``.
        metric: ``metric(x, reference) -> (N,)``, larger is better if ``maximize``; a NaN
            value cannot be ranked and raises, while ``±inf`` ranks as the extreme it is (PSNR is
            ``inf`` for a perfect reconstruction).
        maximize: maximise (True) or minimise the metric.
        solver: ``"lifted_cd"``, ``"pdhg"``, ``"admm"`` or a callable (:func:`make_solve`).
        batch_size: largest batch of one solve (default: all ``G * B`` at once).
        reg, **solver_kwargs: as in :func:`make_solve`.

    Returns:
        `ParameterChoice` with ``rule="grid"``, trail ``alpha``, ``metric`` and ``residual``
        ``(G, B)``, and ``solves`` holding every grid solve; status ``"grid"``, or ``"edge"``
        where the best value is the smallest or largest of the grid (the optimum may lie
        outside).

    Raises:
        ValueError: an empty grid, a non-positive or repeated grid value (``alphas``), a ``reference``
            of another batch size or shape or with non-finite entries, or ``batch_size < 1``;
            ``y_delta`` as in :func:`discrepancy_principle`; a solve that diverged (its iterate
            holds NaN or Inf); a ``metric`` that returns another shape than ``(N,)`` or NaN.
        TypeError: ``alphas`` that are not real numbers, a ``metric`` that is not callable or
            does not return a real tensor, a ``maximize`` that is not a bool.
    """
    check_network(network)
    maximize = check_bool(maximize, "maximize")
    y_delta = check_data(network, y_delta, name="y_delta")
    reference = network.check_input(reference, "reference")
    if not callable(metric):
        raise TypeError(f"metric must be a callable metric(x, reference) -> (N,), got {type(metric).__name__}")
    grid = check_real_tensor(alphas, "alphas", "positive real numbers (a sequence or a 1-D tensor)")
    if grid.dim() > 1:
        raise ValueError(f"alphas must be one grid, a sequence or a 1-D tensor, got shape {tuple(grid.shape)} "
                         "(one alpha per sample and grid point is not a grid search)")
    grid = grid.reshape(-1)
    if grid.numel() == 0:
        raise ValueError("alphas must hold at least one grid value, got an empty grid")
    check_positive_values(grid, "alphas")
    if grid.unique().numel() != grid.numel():
        raise ValueError(f"alphas must be distinct (each value is solved once), got {grid.tolist()}")
    batch = y_delta.shape[0]
    if reference.shape[0] != batch:
        raise ValueError(f"reference must hold one image per sample ({batch}), got shape {tuple(reference.shape)}")
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", minimum=1)
    solve = make_solve(network, solver, reg, **solver_kwargs)
    n_grid = grid.numel()
    y_all = y_delta.repeat(n_grid, *([1] * (y_delta.dim() - 1)))
    ref_all = reference.repeat(n_grid, *([1] * (reference.dim() - 1)))
    alpha_all = grid.repeat_interleave(batch)
    size = batch_size or y_all.shape[0]
    parts = []
    for start in range(0, y_all.shape[0], size):
        stop = min(start + size, y_all.shape[0])
        parts.append(solve(y_all[start:stop], alpha_all[start:stop].to(y_delta.dtype).to(y_delta.device), None))
    solves = _concat(parts)  # one part too: the same history entries however the grid was chunked
    _check_finite(solves, alpha_all, torch.arange(batch).repeat(n_grid))
    values = _metric_values(metric, solves.x, ref_all.to(solves.x), grid, batch)
    residual = data_residual(network, solves.x, y_all).to(torch.float64).cpu().reshape(n_grid, batch)
    trail = {"alpha": alpha_all.reshape(n_grid, batch), "metric": values, "residual": residual}
    best = (values if maximize else -values).argmax(dim=0)
    edge = (best == grid.argmin()) | (best == grid.argmax())
    status = ["edge" if (bool(edge[b]) and n_grid > 1) else "grid" for b in range(batch)]
    rows = best * batch + torch.arange(batch)
    return ParameterChoice(alpha=grid[best].to(y_delta.dtype), result=_select(solves, rows), trail=trail,
                           index=best, rule="grid", status=status, solves=solves, maximize=maximize)


def restrict_grid(
    grid: ParameterChoice,
    alpha_min: float | None = None,
    alpha_max: float | None = None,
    *,
    maximize: bool | None = None,
) -> ParameterChoice:
    r"""The grid search of ``grid`` on the sub-grid :math:`[\alpha_{\min},\alpha_{\max}]` (no solve).

    E.g. the paper's range :math:`[10^{-4},10^{-2}]` inside a wider grid that the discrepancy
    principle needs; the solves of ``grid`` are reused.

    Args:
        grid: the outcome of :func:`grid_search`.
        alpha_min, alpha_max: bounds of the sub-grid (``None``: unbounded), inclusive up to a
            relative 1e-6 (float32 grids).
        maximize: as in :func:`grid_search`; ``None`` (default) keeps the direction that
            ``grid`` was searched in.

    Returns:
        `ParameterChoice` with ``rule="grid"``; ``index`` refers to rows of ``grid.trail``.

    Raises:
        TypeError: ``grid`` is not a `ParameterChoice`, ``maximize`` is not a bool, or a bound
            is not a real number.
        ValueError: ``grid`` is not a grid search, no grid value lies in the bounds, or
            ``maximize`` contradicts the direction ``grid`` was searched in.
    """
    _check_grid(grid, "metric")
    if maximize is None:
        maximize = True if grid.maximize is None else grid.maximize
    maximize = check_bool(maximize, "maximize")
    if grid.maximize is not None and maximize != grid.maximize:
        raise ValueError(f"maximize={maximize}, but grid was searched with maximize={grid.maximize}: "
                         "its choice would rank the metric the other way; omit maximize")
    alphas = grid.trail["alpha"][:, 0]
    keep = torch.ones_like(alphas, dtype=torch.bool)
    if alpha_min is not None:
        keep &= alphas >= check_positive(alpha_min, "alpha_min", tensor=True) * (1 - 1e-6)
    if alpha_max is not None:
        keep &= alphas <= check_positive(alpha_max, "alpha_max", tensor=True) * (1 + 1e-6)
    if not bool(keep.any()):
        raise ValueError(f"no grid value lies in [alpha_min, alpha_max] = [{alpha_min}, {alpha_max}]; grid: {alphas.tolist()}")
    values = grid.trail["metric"] if maximize else -grid.trail["metric"]
    values = torch.where(keep[:, None], values.nan_to_num(nan=-math.inf), torch.full_like(values, -math.inf))
    best = values.argmax(dim=0)
    batch = values.shape[1]
    sub = alphas[keep]
    status = ["edge" if (keep.sum() > 1 and float(alphas[best[b]]) in (float(sub.min()), float(sub.max())))
              else "grid" for b in range(batch)]
    rows = best * batch + torch.arange(batch)
    return ParameterChoice(alpha=alphas[best].to(grid.alpha.dtype), result=_select(grid.solves, rows),
                           trail=grid.trail, index=best, rule="grid", status=status, solves=grid.solves,
                           maximize=maximize)


# --------------------------------------------------------------------------- helpers


def _per_sample(value: float | Tensor, batch: int, name: str) -> Tensor:
    """A float64 CPU ``(B,)`` tensor of finite values >= 0 from a number or ``(B,)``."""
    what = f"a real number or a tensor of one value per sample ({batch})"
    t = check_real_tensor(value, name, what).detach().cpu().reshape(-1)
    if t.numel() == 1:
        t = t.expand(batch)
    if t.numel() != batch:
        raise ValueError(f"{name} must be a number or hold one value per sample ({batch}), got {t.numel()} values")
    check_positive_values(t, name, allow_zero=True)
    return t.clone()


def _check_grid(grid: Any, key: str) -> None:
    """Raise unless ``grid`` is the outcome of `grid_search` (its solves and ``trail[key]``)."""
    if not isinstance(grid, ParameterChoice):
        raise TypeError(f"grid must be the ParameterChoice returned by grid_search, got {type(grid).__name__}")
    if grid.solves is None or key not in grid.trail:
        raise ValueError(f"grid must be the outcome of grid_search (it carries the solves and {key}s)")


def _check_finite(result: Result, alpha: Tensor, index: Tensor) -> None:
    """Raise if a solve diverged: row ``j`` of ``result.x`` (sample ``index[j]`` at ``alpha[j]``)
    holds NaN or Inf. A rule must not rank, or return, a diverged solve."""
    bad = (~torch.isfinite(result.x.reshape(result.x.shape[0], -1)).all(dim=1)).nonzero().flatten().cpu()
    if bad.numel():
        j = int(bad[0])
        raise ValueError(f"the solve diverged for {bad.numel()} of {result.x.shape[0]} problems, first for sample "
                         f"{int(index[j])} at alpha={float(alpha[j]):g} (its iterate holds NaN or Inf; "
                         f"{result.message}); use smaller step sizes or another range of alpha")


def _metric_values(metric: Callable[[Tensor, Tensor], Tensor], x: Tensor, reference: Tensor,
                   grid: Tensor, batch: int) -> Tensor:
    """``metric(x, reference)`` of the ``G * B`` grid solves (row ``g * B + b``), checked to be one
    real, non-NaN value per row, as a float64 CPU ``(G, B)`` tensor. A NaN cannot be ranked: it
    raises, naming the sample and grid value of its row."""
    n = x.shape[0]
    with torch.no_grad():
        values = metric(x, reference)
    if not isinstance(values, Tensor) or values.is_complex():
        got = f"dtype {values.dtype}" if isinstance(values, Tensor) else type(values).__name__
        raise TypeError(f"metric must return a real tensor of shape ({n},), one value per solve, got {got}")
    if values.shape != (n,):
        raise ValueError(f"metric must return a tensor of shape ({n},), one value per solve, got shape {tuple(values.shape)}")
    values = values.to(torch.float64).cpu().reshape(grid.numel(), batch)
    nan = torch.isnan(values).nonzero()
    if nan.numel():
        g, b = nan[0].tolist()
        raise ValueError(f"metric returned NaN for {nan.shape[0]} of {n} solves, first for sample {b} at "
                         f"alpha={float(grid[g]):g}: a NaN cannot be ranked against the other grid values")
    return values


def _append(trail_a: list[Tensor], trail_r: list[Tensor], index: Tensor, rows: Tensor,
            alpha: Tensor, residual: Tensor, batch: int) -> None:
    """Write the values of samples ``index`` into trail rows ``rows`` (NaN-padded lists)."""
    for _ in range(len(trail_a), int(rows.max()) + 1):
        trail_a.append(torch.full((batch,), math.nan, dtype=torch.float64))
        trail_r.append(torch.full((batch,), math.nan, dtype=torch.float64))
    for j, (b, row) in enumerate(zip(index.tolist(), rows.tolist())):
        trail_a[row][b] = float(alpha[j])
        trail_r[row][b] = float(residual[j])


def _select(result: Result, rows: Tensor) -> Result:
    """The rows ``rows`` of a batched `Result`, as a new `Result`."""
    rows_cpu = rows.cpu()
    rows_dev = rows.to(result.x.device)
    history = {k: v[:, rows_cpu] for k, v in result.history.items() if v.dim() == 2}
    params = {k: (v[rows_cpu] if isinstance(v, Tensor) and v.dim() == 1 and v.numel() == result.alpha.numel() else v)
              for k, v in result.params.items()}
    return Result(
        x=result.x[rows_dev], aux=[a[rows_dev] for a in result.aux],
        dual=None if result.dual is None else result.dual[rows_dev],
        iterations=result.iterations[rows_cpu], converged=result.converged[rows_cpu],
        message=result.message, history=history, alpha=result.alpha[rows_cpu], params=params,
    )


def _concat(parts: Sequence[Result]) -> Result:
    """Stack batched `Result` objects along the batch axis (histories NaN-padded)."""
    length = {k: max(p.history[k].shape[0] for p in parts if k in p.history)
              for k in parts[0].history if parts[0].history[k].dim() == 2}
    history = {k: torch.cat([_pad(p.history[k], n) for p in parts], dim=1) for k, n in length.items()}
    params = {}
    for k, v in parts[0].params.items():
        if isinstance(v, Tensor) and v.dim() == 1 and v.numel() == parts[0].alpha.numel():
            params[k] = torch.cat([p.params[k] for p in parts])
        else:
            params[k] = v
    first = parts[0]
    return Result(
        x=torch.cat([p.x for p in parts]),
        aux=[torch.cat([p.aux[i] for p in parts]) for i in range(len(first.aux))],
        dual=None if first.dual is None else torch.cat([p.dual for p in parts]),
        iterations=torch.cat([p.iterations for p in parts]),
        converged=torch.cat([p.converged for p in parts]),
        message="; ".join(dict.fromkeys(p.message for p in parts)),
        history=history, alpha=torch.cat([p.alpha for p in parts]), params=params,
    )


def _pad(t: Tensor, length: int) -> Tensor:
    if t.shape[0] == length:
        return t
    pad = torch.full((length - t.shape[0], *t.shape[1:]), math.nan, dtype=t.dtype) if t.is_floating_point() \
        else t[-1:].expand(length - t.shape[0], *t.shape[1:])
    return torch.cat([t, pad])


def _gather(pieces: Sequence[tuple[Tensor, Tensor, Result]], best_row: Tensor, batch: int) -> Result:
    """Assemble, for every sample, its row of the solve at trail row ``best_row[b]``."""
    chosen: list[tuple[int, Result, int]] = []
    for b in range(batch):
        for index, rows, result in pieces:
            hit = ((index == b) & (rows == best_row[b])).nonzero()
            if hit.numel():
                chosen.append((b, result, int(hit[0, 0])))
                break
    return _concat([_select(result, torch.tensor([j])) for _, result, j in chosen])
