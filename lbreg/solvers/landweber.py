"""Nonlinear Landweber iteration with early stopping by the discrepancy principle."""

from __future__ import annotations

from typing import Any, Callable, Literal

import torch
from torch import Tensor

from .._checks import check_int, check_positive
from ..network import LiftedNetwork
from .result import (
    IterationLog,
    Result,
    check_data,
    check_delta,
    check_discrepancy_factor,
    check_network,
    check_start,
    freeze,
    sample_norm,
)

__all__ = ["landweber"]


@torch.no_grad()
def landweber(
    network: LiftedNetwork,
    y: Tensor,
    delta: float | Tensor | None = None,
    *,
    eta: float = 1.0,
    step: float | None = None,
    variant: Literal["bregman", "classical"] = "bregman",
    max_iter: int = 10_000,
    x0: Tensor | None = None,
    check_every: int = 10,
    progress: bool = False,
    callback: Callable[[dict[str, Any]], Any] | None = None,
) -> Result:
    r"""Nonlinear Landweber iteration, stopped by Morozov's discrepancy principle.

    The paper's baseline (PAPER_MATH §4.1): eq. (14a) with :math:`\alpha = 0`,

    .. math::
        x^{k+1} = x^k - \tau\, W^\top\big(\sigma(Wx^k+b) - y^\delta\big),
        \qquad \tau = 1/\|W\|^2,\; x^0 = 0,

    i.e. gradient descent on :math:`B_\Psi(y^\delta, Wx+b)` (``variant="bregman"``). The
    ``"classical"`` variant descends :math:`\tfrac12\|\mathcal N(x) - y^\delta\|^2` through the
    network's Jacobian, :math:`x^{k+1} = x^k - \tau J_{\mathcal N}(x^k)^\top(\mathcal N(x^k)-y^\delta)`
    (for ReLU: the residual masked by :math:`\mathbf 1[Wx^k+b>0]`); it is the only variant for
    networks of depth > 1, with default :math:`\tau = 1/\prod_l\|W_l\|^2`.

    A sample stops at the first :math:`K` with
    :math:`\|\mathcal N(x^K) - y^\delta\| \le \eta\,\delta` (discrepancy principle), when
    ``delta`` is given; otherwise it runs ``max_iter`` iterations.

    Args:
        network: a `LiftedNetwork`.
        y: noisy data :math:`y^\delta`, ``(B, *output_shape)``.
        delta: noise level :math:`\|y^\delta - y\|`, a number or a floating tensor of one value
            per sample (``(B,)``, ``(B, 1)``, ...), each >= 0.
        eta: discrepancy factor :math:`\eta \ge 1`, the :math:`\tau` of
            `lbreg.parameter_choice.discrepancy_principle` (PAPER_MATH §5 item 5: 1).
        step: step size :math:`\tau`; default as above.
        variant: ``"bregman"`` (the paper's, depth 1 only) or ``"classical"``.
        max_iter: iteration budget.
        x0: starting point (default zeros).
        check_every: how often the host checks whether any sample is still running.
        progress: show a tqdm progress bar.
        callback: called after each iteration with a dict (``iteration``, ``x``, ``active``);
            returning ``True`` stops the solver.

    Returns:
        `Result`; ``converged`` means the discrepancy principle stopped the sample,
        ``history`` holds ``discrepancy`` :math:`\|\mathcal N(x^k)-y^\delta\|` and ``change``.
        Tensors without autograd history: the solver runs under ``torch.no_grad()``, so
        data or weights that require grad are constants to it.
    """
    network = check_network(network)
    if variant not in ("bregman", "classical"):
        raise ValueError(f"variant must be 'bregman' or 'classical', got {variant!r}")
    if variant == "bregman" and network.depth != 1:
        raise ValueError(
            f"variant='bregman' needs a network of depth 1 (it has depth {network.depth}); "
            "use variant='classical' for deeper networks"
        )
    max_iter = check_int(max_iter, "max_iter")
    check_every = check_int(check_every, "check_every", minimum=1)
    eta = check_discrepancy_factor(eta, "eta")
    y = check_data(network, y)
    network = network.to(device=y.device, dtype=y.dtype)
    batch = y.shape[0]
    level = check_delta(delta, batch, y)
    if step is None:
        lip = 1.0
        for layer in network.layers:
            lip *= layer.affine.norm() ** 2
        if lip == 0.0:
            raise ValueError("a layer's weight is zero (the norms multiply to 0): the network's output "
                             "does not depend on x, and the default step 1/prod ||W_l||^2 is undefined")
        step = 1.0 / lip
    step = check_positive(step, "step")

    x = check_start(network, x0, y)
    log = IterationLog(batch, y, max_iter=max_iter, check_every=check_every, progress=progress,
                       desc="landweber", callback=callback)
    k = 0
    while True:
        # Discrepancy at the current iterate x^k: a sample stops at the first K that meets it.
        grad, out = _gradient(network, variant, x, y)
        discrepancy = sample_norm(out - y)
        if level is not None:
            log.deactivate(discrepancy <= eta * level)
        if k == max_iter:
            break
        x_new = x - step * grad
        log.record(discrepancy=discrepancy, change=sample_norm(x_new - x))
        x = freeze(log.active, x_new, x)
        log.count()
        k += 1
        if not log.keep_going(k, {"x": x}) and not (k == max_iter and level is not None):
            break
    iterations, converged, message, history = log.finish_discrepancy("landweber", level, "eta", eta, max_iter, x)
    return Result(
        x=x, aux=[], dual=None, iterations=iterations, converged=converged, message=message,
        history=history, alpha=torch.zeros(batch, dtype=torch.float64),
        params={"step": step, "eta": eta, "variant": variant,
                "delta": None if level is None else level.cpu()},
    )


def _gradient(network: LiftedNetwork, variant: str, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Landweber direction and network output at ``x``."""
    if variant == "bregman":
        layer = network.layers[0]
        out = layer.activation(layer.affine.forward(x))
        return layer.affine.adjoint(out - y), out
    out, vjp = torch.func.vjp(network.forward, x)
    return vjp(out - y)[0], out
