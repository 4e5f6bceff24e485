r"""Competing inversion methods, for comparison with the lifted Bregman inversion.

Each is a plain, batched, seeded function:

- `decoder`: the autoencoder's decoder applied to the code, :math:`D(y^\delta)` (the paper's
  comparison).
- `autograd_tv`: :math:`\min_x \tfrac12\|\mathcal N(x) - y^\delta\|^2 + \alpha\,\mathrm{TV}_\varepsilon(x)`
  by a standard torch optimiser, differentiating through the activations (the style of
  Mahendran & Vedaldi, 2015).
- `deep_image_prior`: a two-layer network :math:`g_\theta(u)` with a smooth activation, trained
  by gradient descent so that :math:`\mathcal N(g_\theta(u))` matches :math:`y^\delta`, stopped by
  the discrepancy principle (the setting of Buskulic, Quéau & Fadili, 2023).

The solvers return a `lbreg.solvers.Result`, like the lifted solvers, so that the chapters can
treat every method alike.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Literal

import torch
from torch import Tensor, nn

from ._checks import check_batch, check_finite, check_float_tensor, check_int, check_positive
from .data import as_generator
from .network import LiftedNetwork, _as_shape
from .operators import grad2d
from .solvers.result import IterationLog, Result, bview, check_alpha, check_delta, freeze

__all__ = ["decoder", "autograd_tv", "deep_image_prior", "tv_smooth"]

Forward = LiftedNetwork | nn.Module | Callable[[Tensor], Tensor]


# --------------------------------------------------------------------------- checks


def _forward_map(network: Any, input_shape: Any) -> tuple[Callable[[Tensor], Tensor], tuple[int, ...]]:
    """The map :math:`x\\mapsto\\mathcal N(x)` and the input shape (without batch axis)."""
    if isinstance(network, LiftedNetwork):
        return network.forward, tuple(network.input_shape)
    if not callable(network):
        raise TypeError(
            f"network must be a LiftedNetwork, a torch.nn.Module or a callable, got {type(network).__name__}"
        )
    if input_shape is None:
        raise ValueError("input_shape must be given when network is not a LiftedNetwork")
    return network, _as_shape(input_shape, "input_shape")


def _check_module_like(network: Any, y: Tensor, name: str = "network") -> None:
    """A torch module must compute in ``y``'s dtype on its device (a `LiftedNetwork` is converted
    instead): a TypeError naming both, not torch's 'mat1 and mat2 must have the same dtype'."""
    param = next(network.parameters(), None) if isinstance(network, nn.Module) else None
    if param is not None and (param.dtype, param.device) != (y.dtype, y.device):
        raise TypeError(f"{name}'s parameters are {param.dtype} on {param.device} but y is {y.dtype} on {y.device}: "
                        f"convert one to the other ({name}.to(y.device, y.dtype), or y.to({param.dtype}))")


def _check_x0(x0: Any, shape: tuple[int, ...], y: Tensor) -> Tensor:
    full = (y.shape[0], *shape)
    if x0 is None:
        return torch.zeros(full, dtype=y.dtype, device=y.device)
    check_float_tensor(x0, "x0", 1, str(full))
    if tuple(x0.shape) not in (full, (y.shape[0], math.prod(shape))):
        raise ValueError(f"x0 must have shape {full} (or {(y.shape[0], math.prod(shape))}), got {tuple(x0.shape)}")
    check_finite(x0, "x0")  # also refuses the meta device
    return x0.detach().reshape(full).to(dtype=y.dtype, device=y.device).clone(memory_format=torch.contiguous_format)


def _residual(forward: Callable[[Tensor], Tensor], x: Tensor, y: Tensor) -> Tensor:
    """Per-sample :math:`\\mathcal N(x) - y^\\delta`, flattened to ``(B, m)``; ``y`` must hold as
    many values per sample as the network's output (a shape check only, no host synchronisation)."""
    out = forward(x)
    if out.shape[0] != y.shape[0] or out[0].numel() != y[0].numel():
        raise ValueError(f"y must have the shape of the network's output, {(y.shape[0], *out.shape[1:])} "
                         f"(or its per-sample flattening), got {tuple(y.shape)}")
    return out.reshape(y.shape[0], -1) - y.reshape(y.shape[0], -1)


# --------------------------------------------------------------------------- decoder


def decoder(model: nn.Module | Callable[[Tensor], Tensor], y: Tensor) -> Tensor:
    r"""The autoencoder's reconstruction from a (noisy) code, :math:`D(y^\delta)`.

    The paper's comparison for the inversion (Figures 4–7): no optimisation, one pass of the
    trained decoder.

    Args:
        model: an autoencoder with a ``decoder`` attribute (`lbreg.models.DenseAutoencoder`,
            `ConvAutoencoder`), or the decoder itself (any callable on ``(B, code_dim)``).
        y: codes ``(B, code_dim)``, in the dtype of the decoder's parameters and on their device.

    Returns:
        The decoded images, ``(B, *image_shape)``, without gradient.

    Raises:
        TypeError: ``y`` is not a real floating tensor, ``model`` is not callable, or its
            parameters have another dtype or device than ``y``.
        ValueError: ``y`` is not a batch of finite codes of the model's ``code_dim``.
    """
    y = check_batch(y, "y", min_dim=2)
    dec = getattr(model, "decoder", model)
    if not callable(dec):
        raise TypeError(
            f"model must be an autoencoder with a decoder or a callable, got {type(model).__name__}"
        )
    code_dim = getattr(model, "code_dim", None)
    if isinstance(code_dim, int) and tuple(y.shape[1:]) != (code_dim,):
        raise ValueError(f"y must hold codes of shape (B, {code_dim}) for this autoencoder, got shape {tuple(y.shape)}")
    _check_module_like(dec, y, "model.decoder" if dec is not model else "model")
    with torch.no_grad():
        return dec(y)


# --------------------------------------------------------------------------- autograd TV


def tv_smooth(x: Tensor, eps: float) -> Tensor:
    r"""Smoothed isotropic total variation per sample.

    .. math::
        \mathrm{TV}_\varepsilon(x) = \sum_{i,j}\Big(\sqrt{\|(\nabla x)_{i,j}\|_2^2 + \varepsilon^2}
            - \varepsilon\Big),

    with the forward-difference gradient of `lbreg.operators.grad2d`. It is differentiable
    for :math:`\varepsilon > 0`, and
    :math:`\mathrm{TV}(x) - n\varepsilon \le \mathrm{TV}_\varepsilon(x) \le \mathrm{TV}(x)`
    (:math:`n` pixels), so it tends to `lbreg.operators.tv` as :math:`\varepsilon\to0`.

    Args:
        x: images ``(B, ..., H, W)``.
        eps: smoothing :math:`\varepsilon \ge 0`.

    Returns:
        ``(B,)``.
    """
    check_float_tensor(x, "x", 3, "(B, ..., H, W)")
    eps = check_positive(eps, "eps", allow_zero=True)
    g = grad2d(x)
    pix = torch.sqrt(g[..., 0, :, :].square() + g[..., 1, :, :].square() + eps * eps) - eps
    return pix.reshape(x.shape[0], -1).sum(dim=1)


def autograd_tv(
    network: Forward,
    y: Tensor,
    alpha: float | Tensor,
    *,
    eps: float = 1e-3,
    optimizer: Literal["lbfgs", "adam"] = "lbfgs",
    lr: float | None = None,
    max_iter: int = 500,
    tol: float = 1e-7,
    x0: Tensor | None = None,
    input_shape: tuple[int, ...] | None = None,
    check_every: int = 10,
    progress: bool = False,
) -> Result:
    r"""Invert a network by smoothed-TV regularised least squares through autograd.

    Minimises, per sample,

    .. math::
        f(x) = \tfrac12\|\mathcal N(x) - y^\delta\|^2 + \alpha\,\mathrm{TV}_\varepsilon(x)

    (`tv_smooth`) with a standard torch optimiser, the gradient being back-propagated through
    the network, its activations included (Mahendran & Vedaldi, 2015). Unlike the lifted
    objective :math:`B_\Psi(y^\delta, Wx+b)`, the data term is not convex in :math:`x` for a
    ReLU network, and a ReLU that is off passes no gradient. For an `Identity` activation the
    two data terms coincide, and as :math:`\varepsilon\to0` the minimiser tends to that of
    `lbreg.solvers.pdhg` / `admm`.

    ``optimizer="lbfgs"`` (default): `torch.optim.LBFGS` with strong-Wolfe line search on the
    sum of the per-sample objectives. The samples are independent, so the minimiser is the
    per-sample one, but the iterates and the stop are joint: the run ends when every sample's
    relative decrease of :math:`f` over ``check_every`` iterations is below ``tol``.
    ``optimizer="adam"``: `torch.optim.Adam` (step ``lr``, default 0.01), elementwise, hence
    independent per sample; a sample stops (and stops changing) when its relative decrease
    over ``check_every`` iterations is below ``tol``.

    Args:
        network: a `LiftedNetwork`, or any differentiable `torch.nn.Module` / callable on
            ``(B, *input_shape)`` (then ``input_shape`` is required).
        y: data :math:`y^\delta` ``(B, ...)``.
        alpha: :math:`\alpha \ge 0`, a number or ``(B,)``.
        eps: TV smoothing :math:`\varepsilon > 0`.
        optimizer: ``"lbfgs"`` or ``"adam"``.
        lr: step (Adam) or initial step (L-BFGS, default 1).
        max_iter: iteration budget (L-BFGS iterations, each with its line search, or Adam steps).
        tol: relative-decrease threshold of the stopping test.
        x0: starting point, default zeros.
        input_shape: input shape without batch axis, for a network that is not a `LiftedNetwork`.
        check_every: iterations between stopping tests.
        progress: tqdm progress bar.

    Returns:
        `Result` with ``x``; ``history`` holds ``objective`` :math:`f(x^k)` and ``discrepancy``
        :math:`\|\mathcal N(x^k) - y^\delta\|` per iteration; ``params`` the settings.
    """
    forward, shape = _forward_map(network, input_shape)
    if len(shape) < 2:  # TV needs image axes; on a vector, grad2d would difference the samples
        raise ValueError(f"input_shape must end in the image axes (..., H, W) for TV, got {shape}")
    y = check_batch(y, "y", min_dim=2).detach()
    batch = y.shape[0]
    alpha_t = check_alpha(alpha, batch, y, allow_zero=True)
    eps = check_positive(eps, "eps")
    if optimizer not in ("lbfgs", "adam"):
        raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
    lr = (1.0 if optimizer == "lbfgs" else 1e-2) if lr is None else check_positive(lr, "lr")
    max_iter = check_int(max_iter, "max_iter", minimum=0)
    tol = check_positive(tol, "tol", allow_zero=True)
    check_every = check_int(check_every, "check_every", minimum=1)
    _check_module_like(network, y)
    if isinstance(network, LiftedNetwork):
        network = network.to(device=y.device, dtype=y.dtype)
        forward = network.forward

    x = _check_x0(x0, shape, y).requires_grad_(True)

    def per_sample(xv: Tensor) -> tuple[Tensor, Tensor]:
        r = _residual(forward, xv, y)
        return 0.5 * r.square().sum(dim=1) + alpha_t * tv_smooth(xv, eps), r.norm(dim=1)

    if optimizer == "lbfgs":
        # One iteration per step() call (so that each is logged), with a full line search:
        # max_eval must be set, its default 1.25 * max_iter would allow one evaluation.
        opt = torch.optim.LBFGS([x], lr=lr, max_iter=1, max_eval=25, history_size=20,
                                line_search_fn="strong_wolfe", tolerance_grad=0.0, tolerance_change=0.0)
    else:
        opt = torch.optim.Adam([x], lr=lr)

    def closure() -> Tensor:
        # the gradient with respect to x only: nothing accumulates in the caller's parameters or y
        loss = per_sample(x)[0].sum()
        (x.grad,) = torch.autograd.grad(loss, x)
        return loss.detach()

    log = IterationLog(batch, y, max_iter=max(max_iter, 1), check_every=check_every, progress=progress,
                       desc=f"autograd_tv ({optimizer})")
    with torch.no_grad():
        f_ref = per_sample(x)[0]
    k = 0
    while k < max_iter:
        with torch.no_grad():
            f, disc = per_sample(x)
        x_old = x.detach().clone()
        opt.step(closure)
        if optimizer == "adam":
            with torch.no_grad():
                x.copy_(freeze(log.active, x, x_old))
        log.record(objective=f, discrepancy=disc)
        k += 1
        done = torch.zeros_like(log.active)
        if k % check_every == 0:
            with torch.no_grad():
                f_now = per_sample(x)[0]
            done = (f_ref - f_now) <= tol * f_ref.abs().clamp(min=1e-30)
            if optimizer == "lbfgs":  # joint iterates: stop all samples together
                done = done.all().expand_as(done).clone()
            f_ref = f_now
        log.update(done)
        if not log.keep_going(k):
            break
    x = x.detach()
    iterations, converged, message, history = log.finish("autograd_tv", tol, x)
    if max_iter == 0:
        iterations, converged = torch.zeros_like(iterations), torch.zeros_like(converged)
    return Result(
        x=x, aux=[], dual=None, iterations=iterations, converged=converged, message=message,
        history=history, alpha=alpha_t.detach().cpu(),
        params={"optimizer": optimizer, "lr": lr, "eps": eps, "max_iter": max_iter, "tol": tol},
    )


# --------------------------------------------------------------------------- deep image prior

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softplus": nn.functional.softplus,
}


def _lipschitz(network: Any) -> float | None:
    """:math:`\\prod_l\\|W_l\\|` for a `LiftedNetwork` with 1-Lipschitz activations, else None."""
    if not isinstance(network, LiftedNetwork):
        return None
    lip = 1.0
    for layer in network.layers:
        lip *= layer.affine.norm()
    return lip


def deep_image_prior(
    network: Forward,
    y: Tensor,
    delta: float | Tensor | None = None,
    *,
    tau: float = 1.0,
    width: int = 1024,
    input_dim: int = 64,
    activation: Literal["tanh", "sigmoid", "softplus"] = "tanh",
    scale: float = 1.0,
    lr: float | None = None,
    max_iter: int = 2_000,
    generator: torch.Generator | int = 0,
    input_shape: tuple[int, ...] | None = None,
    check_every: int = 10,
    progress: bool = False,
) -> Result:
    r"""Deep (inverse) image prior with a two-layer network, stopped by the discrepancy principle.

    The setting of Buskulic, Quéau & Fadili (2023): a generator with one hidden layer of
    ``width`` :math:`k` and a smooth activation :math:`\varphi`,

    .. math::
        g_\theta(u) = \tfrac{s}{\sqrt k}\,V\varphi(Wu),\qquad u\in\mathbb S^{d-1},\;
        W\in\mathbb R^{k\times d},\; V\in\mathbb R^{n\times k},

    with the input :math:`u` drawn uniformly on the unit sphere and fixed, :math:`W` and
    :math:`V` drawn i.i.d. :math:`N(0,1)`, :math:`s` = ``scale`` (1 in the paper; a smaller
    :math:`s` starts from a quieter image :math:`g_{\theta_0}(u)`), and the hidden weights
    :math:`W` trained by plain gradient descent on

    .. math:: L(W) = \tfrac12\|\mathcal N(g_\theta(u)) - y^\delta\|^2

    while :math:`V` stays fixed (the two-layer case analysed there; our reading). Each sample
    has its own trained :math:`W`; the fixed :math:`u` and :math:`V` are drawn once and shared
    by the batch (one matrix product for all samples). With ``delta`` given, a sample stops at
    the first iterate :math:`K` with
    :math:`\|\mathcal N(g_{\theta_K}(u)) - y^\delta\| \le \tau\delta` (Morozov's discrepancy
    principle) and returns :math:`g_{\theta_K}(u)`; without it, every sample runs ``max_iter``
    steps (the fixed-iteration variant). Default step:
    :math:`k/(s^2\,\mathrm{Lip}(\mathcal N)^2\,\|V\|^2)`, with
    :math:`\mathrm{Lip}(\mathcal N)\le\prod_l\|W_l\|` for a `LiftedNetwork` (1-Lipschitz
    activations); for other networks ``lr`` is required.

    Args:
        network: a `LiftedNetwork`, or a differentiable `torch.nn.Module` / callable (then
            ``input_shape`` and ``lr`` are required).
        y: data :math:`y^\delta` ``(B, ...)``, float32 or float64.
        delta: noise level :math:`\|y^\delta - y\|`, a number or a floating tensor of one
            value per sample (``(B,)``, ``(B, 1)``, ...), each >= 0; ``None`` for the
            fixed-iteration variant.
        tau: discrepancy factor :math:`\tau \ge 1` (any :math:`\tau > 0` is accepted).
        width: hidden width :math:`k`.
        input_dim: :math:`d`.
        activation: ``"tanh"``, ``"sigmoid"`` or ``"softplus"``.
        scale: output scale :math:`s > 0`.
        lr: gradient-descent step (default above).
        max_iter: iteration budget.
        generator: seed or `torch.Generator` for :math:`u, W, V` (the global RNG is not used).
        input_shape: image shape without batch axis, for a network that is not a `LiftedNetwork`.
        check_every: iterations between host checks.
        progress: tqdm progress bar.

    Returns:
        `Result` with ``x`` :math:`= g_{\theta_K}(u)`; ``converged`` means the discrepancy
        principle fired; ``history`` holds ``discrepancy``
        :math:`\|\mathcal N(g_{\theta_k}(u)) - y^\delta\|` at every iterate
        :math:`k = 0, 1, \dots` (row :math:`k`); ``params`` holds ``lr``, ``width``,
        ``input_dim``, ``activation``, ``scale``, ``tau``, ``delta``.
    """
    forward, shape = _forward_map(network, input_shape)
    y = check_batch(y, "y", min_dim=2)
    if y.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"y must be float32 or float64, got {y.dtype}")
    batch, dtype, device = y.shape[0], y.dtype, y.device
    level = check_delta(delta, batch, y)
    tau = check_positive(tau, "tau")
    width = check_int(width, "width", minimum=1)
    input_dim = check_int(input_dim, "input_dim", minimum=1)
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    phi = _ACTIVATIONS[activation]
    scale = check_positive(scale, "scale")
    max_iter = check_int(max_iter, "max_iter", minimum=0)
    check_every = check_int(check_every, "check_every", minimum=1)
    _check_module_like(network, y)
    if isinstance(network, LiftedNetwork):
        network = network.to(device=device, dtype=dtype)
        forward = network.forward
    gen = as_generator(generator, device)
    n = math.prod(shape)

    u = torch.randn(input_dim, generator=gen, dtype=dtype, device=device)
    u = u / u.norm()
    V = torch.randn(n, width, generator=gen, dtype=dtype, device=device)
    W = torch.randn(batch, width, input_dim, generator=gen, dtype=dtype, device=device)
    if lr is None:
        lip = _lipschitz(network)
        if lip is None:
            raise ValueError("lr must be given when network is not a LiftedNetwork (no Lipschitz bound)")
        lr = width / (scale**2 * lip**2 * float(torch.linalg.matrix_norm(V, ord=2)) ** 2)
    else:
        lr = check_positive(lr, "lr")

    def image(w: Tensor) -> Tensor:
        return (phi(w @ u) @ V.T).reshape(batch, *shape) * (scale / math.sqrt(width))

    log = IterationLog(batch, y, max_iter=max(max_iter, 1), check_every=check_every, progress=progress,
                       desc="deep_image_prior")
    x_out = torch.zeros((batch, *shape), dtype=dtype, device=device)
    k = 0
    while True:
        w = W.detach().requires_grad_(True)
        x = image(w)
        r = _residual(forward, x, y)
        disc = r.detach().norm(dim=1)
        x_out = freeze(log.active, x.detach(), x_out)
        if level is not None:
            log.deactivate(disc <= tau * level)
        log.record(discrepancy=disc)
        if k == max_iter:
            break
        (grad,) = torch.autograd.grad(0.5 * r.square().sum(), w)
        W = torch.where(bview(log.active, W), W - lr * grad, W)
        log.count()
        k += 1
        if not log.keep_going(k) and not (k == max_iter):
            break
    iterations, converged, message, history = log.finish_discrepancy("deep_image_prior", level, "tau", tau, max_iter, x_out)
    return Result(
        x=x_out, aux=[], dual=None, iterations=iterations, converged=converged, message=message,
        history=history, alpha=torch.zeros(batch, dtype=torch.float64),
        params={"lr": lr, "width": width, "input_dim": input_dim, "activation": activation,
                "scale": scale, "tau": tau, "delta": None if level is None else level.cpu()},
    )
