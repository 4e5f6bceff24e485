"""The solvers' shared pieces: `Result`, argument checks, and the batched iteration loop.

Every solver of `lbreg.solvers` runs the same loop: each sample of the batch carries an
*active* flag; an iteration updates only the active samples (a finished sample stops
changing); per-sample stopping tests are evaluated on the device every iteration (`admm`'s,
which cost a few passes over the data, only every ``check_every`` iterations), and the host
asks "is any sample still active?" only once every ``check_every`` iterations, so that a GPU
is never synchronised per iteration.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, Callable, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._checks import check_bool, check_exact_tensor, check_positive, check_positive_values, check_real
from ..network import LiftedNetwork
from ..regularizers import TV, Regularizer

__all__ = ["Result", "IterationLog"]


@dataclass
class Result:
    """Outcome of a solver, shaped like SciPy's ``OptimizeResult``.

    Attributes:
        x: the recovered input, shape ``(B, *input_shape)``, dtype and device of the data.
        aux: auxiliary variables ``[x_1, ..., x_{L-1}]`` of the lifted problem (3)
            (empty for single-layer solvers).
        dual: the dual variable ``z`` of the saddle problem (12), or ``None``.
        iterations: per-sample number of iterations performed, ``(B,)`` int64 on CPU.
        converged: per-sample flag, ``(B,)`` bool on CPU: the stopping test fired before
            ``max_iter``.
        message: one line saying what stopped the solver.
        history: per-iteration records, each a CPU tensor of shape ``(K, B)`` (row ``k`` holds
            the value at iterate ``k``; `admm` records only at its stopping tests, row ``j``
            then holding iterate ``iteration[j]``, with ``"iteration"`` ``(K,)`` in its
            history), plus ``"time"``: seconds since the start at each host check, shape
            ``(C,)``, with ``"time_iteration"`` the iterations they refer to. The batch
            iterates until its last sample stops: a finished sample's rows from
            ``iterations[b]`` on describe steps it did not take (its iterate stays frozen), so
            read its record as ``history[key][:iterations[b], b]`` (for `admm`, the rows whose
            ``iteration`` is at most ``iterations[b]``). For `pdhg`, `lifted_cd` and `landweber`
            that record ends at iterate ``iterations[b] - 1``, one before the returned ``x``
            (pdhg's ``"gap"`` also holds the returned iterate); `admm`'s ends at the returned
            iterate.
        alpha: the regularisation parameter(s) used, ``(B,)`` on CPU.
        params: step sizes and settings actually used.
    """

    x: Tensor
    aux: list[Tensor]
    dual: Tensor | None
    iterations: Tensor
    converged: Tensor
    message: str
    history: dict[str, Tensor]
    alpha: Tensor
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        """True when every sample converged."""
        return bool(self.converged.all())

    def __repr__(self) -> str:
        its = self.iterations.tolist()
        return (
            f"Result(batch={self.x.shape[0]}, converged={self.converged.tolist()}, "
            f"iterations={its}, message={self.message!r})"
        )


# --------------------------------------------------------------------------- argument checks


def check_network(network: Any, *, name: str = "network") -> LiftedNetwork:
    """Raise TypeError unless ``network`` is a `LiftedNetwork`."""
    if not isinstance(network, LiftedNetwork):
        raise TypeError(
            f"{name} must be a lbreg.network.LiftedNetwork (build one with "
            f"LiftedNetwork.from_module(module, input_shape)), got {type(network).__name__}"
        )
    return network


def check_perceptron(network: Any, solver: str) -> LiftedNetwork:
    """Raise unless ``network`` is a depth-1 `LiftedNetwork` (the perceptron problem (6))."""
    network = check_network(network)
    if network.depth != 1:
        raise ValueError(
            f"network must have depth 1 for {solver} (the perceptron problem (6)); it has depth "
            f"{network.depth}: use lifted_cd for deeper networks"
        )
    return network


def check_regularizer(reg: Any, network: LiftedNetwork) -> Regularizer:
    """``reg`` (``None``: `TV()`), checked to be a `Regularizer` that acts on the network's inputs."""
    reg = TV() if reg is None else reg
    if not isinstance(reg, Regularizer):
        raise TypeError(f"reg must be a lbreg.regularizers.Regularizer, got {type(reg).__name__}")
    reg.dual_shape(network.input_shape)  # raises for inputs the regulariser cannot act on
    return reg


def check_discrepancy_factor(value: Any, name: str) -> float:
    r"""Morozov's factor :math:`\tau` of :math:`\|\mathcal N(x)-y^\delta\|\le\tau\delta` as float;
    TypeError if not a real number, ValueError unless finite and >= 1."""
    try:
        return check_real(value, name, minimum=1.0)
    except ValueError as err:  # one message for 0, 0.5 and NaN alike
        raise ValueError(f"{err} (Morozov's discrepancy principle)") from None


def check_alpha(alpha: Any, batch: int, like: Tensor, *, name: str = "alpha",
                allow_zero: bool = False) -> Tensor:
    """Per-sample regularisation parameters ``(B,)`` on ``like``'s device and dtype.

    ``alpha`` is a positive number (shared by all samples) or a tensor of ``B`` positive values
    (non-negative with ``allow_zero``), each positive one a normal number of ``like``'s dtype
    (so that it neither underflows to 0 nor overflows there).
    """
    fin = torch.finfo(like.dtype)

    def check_range(values: Tensor) -> None:
        positive = values > 0
        if bool((positive & ((values < fin.tiny) | (values > fin.max))).any()):
            raise ValueError(
                f"{name} must lie between {fin.tiny:.3g} and {fin.max:.3g} to be represented in "
                f"{like.dtype}, the data's dtype, got {values.tolist()}"
            )

    if isinstance(alpha, Tensor):
        if alpha.dim() == 0:
            alpha = alpha.reshape(1)
        if alpha.dim() != 1 or alpha.shape[0] not in (1, batch):
            raise ValueError(
                f"{name} must be a number or a tensor of shape ({batch},) (one per sample), "
                f"got shape {tuple(alpha.shape)}"
            )
        if not torch.is_floating_point(alpha):
            raise TypeError(f"{name} must be a floating tensor, got {alpha.dtype}")
        check_positive_values(alpha, name, allow_zero=allow_zero)
        check_range(alpha.detach().cpu().double())
        return alpha.to(device=like.device, dtype=like.dtype).expand(batch).clone()
    if not isinstance(alpha, (Real, str, bytes)) and hasattr(alpha, "__len__"):  # a list, a tuple, a NumPy array
        raise TypeError(f"{name} must be a number or a torch tensor of shape ({batch},) (one per sample), "
                        f"got {type(alpha).__name__}: pass torch.tensor({name})")
    value = check_positive(alpha, name, allow_zero=allow_zero)
    check_range(torch.tensor([value], dtype=torch.float64))
    return torch.full((batch,), value, device=like.device, dtype=like.dtype)


def check_delta(delta: Any, batch: int, like: Tensor) -> Tensor | None:
    r"""The noise levels :math:`\delta` of the discrepancy principle as ``(B,)`` on ``like``'s device
    and dtype (``None`` stays ``None``): a number >= 0, or a floating tensor of 1 or ``B`` values
    >= 0 in any shape (e.g. ``(B, 1)`` from a norm with ``keepdim``), detached; see `check_alpha`."""
    if delta is None:
        return None
    if isinstance(delta, Tensor):
        if delta.numel() not in (1, batch):
            raise ValueError(f"delta must be a number or hold one value per sample ({batch}), "
                             f"got shape {tuple(delta.shape)}")
        delta = delta.detach().reshape(-1)
    return check_alpha(delta, batch, like, name="delta", allow_zero=True)


def check_data(network: LiftedNetwork, y: Any, *, name: str = "y") -> Tensor:
    """Validate noisy data ``y`` (float32 or float64, finite, right shape, inside dom Ψ_L); reshape
    to ``(B, *output_shape)``. The solvers run in ``y``'s dtype."""
    if not isinstance(y, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, *{network.output_shape}), got {type(y).__name__}")
    network.check_output(y, name=name)
    if y.dtype not in (torch.float32, torch.float64):
        raise TypeError(
            f"{name} must be float32 or float64, got {y.dtype}: the solvers run in the data's dtype, "
            f"and half precision (about 3 significant digits) cannot reach their default tolerances; "
            f"pass {name}.float()"
        )
    if y.shape[0] == 0:
        raise ValueError(f"{name} holds no samples (batch size 0); pass at least one, shape (B, *{network.output_shape})")
    y = y.reshape(y.shape[0], *network.output_shape)
    network.layers[-1].activation.check_domain(y, name=name)
    return y


def check_start(network: LiftedNetwork, x0: Tensor | None, y: Tensor, *, name: str = "x0") -> Tensor:
    """The starting point: zeros (the paper's choice) or a validated copy of ``x0``."""
    shape = (y.shape[0], *network.input_shape)
    if x0 is None:
        return torch.zeros(shape, device=y.device, dtype=y.dtype)
    if not isinstance(x0, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {shape}, got {type(x0).__name__}")
    network.check_input(x0, name=name)
    if x0.shape[0] != y.shape[0]:
        raise ValueError(f"{name} must have the batch size of y ({y.shape[0]}), got shape {tuple(x0.shape)}")
    return x0.reshape(shape).to(device=y.device, dtype=y.dtype).clone(memory_format=torch.contiguous_format)


def check_iterate(t: Any, name: str, sample_shape: Sequence[int], batch: int | None = None) -> Tensor:
    """An iterate handed to a single-step function (`pdhg_step`, `aux_step`) or a start
    (``aux0``): a real floating, finite tensor of shape ``(batch, *sample_shape)``; ``batch``
    defaults to ``t``'s leading size."""
    if batch is None:
        batch = t.shape[0] if isinstance(t, Tensor) and t.dim() else 0
    return check_exact_tensor(t, name, (batch, *sample_shape))


def bview(values: Tensor, like: Tensor) -> Tensor:
    """Reshape per-sample ``values`` ``(B,)`` to broadcast against ``like`` ``(B, ...)``."""
    return values.reshape(values.shape[0], *([1] * (like.dim() - 1)))


def sample_norm(t: Tensor) -> Tensor:
    """Per-sample Euclidean norm ``(B,)`` of a ``(B, ...)`` tensor (``B = 0`` included)."""
    return torch.linalg.vector_norm(t.reshape(t.shape[0], math.prod(t.shape[1:])), dim=1)


def freeze(active: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """``new`` for active samples, ``old`` for finished ones (a finished sample stops changing)."""
    return torch.where(bview(active, new), new, old)


def freeze_(active: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """`freeze` written into ``new`` (a tensor the caller owns), and returned."""
    return torch.where(bview(active, new), new, old, out=new)


# --------------------------------------------------------------------------- the loop


class IterationLog:
    """Per-sample bookkeeping of a batched iteration: active flags, counts, history, progress.

    A solver calls `record` once per iteration with per-sample values (kept on the device),
    then `update(done)` with the per-sample stopping test, and asks `keep_going(k)` for the
    loop condition; the host is synchronised only on check iterations.
    """

    def __init__(
        self,
        batch: int,
        like: Tensor,
        *,
        max_iter: int,
        check_every: int,
        progress: bool,
        desc: str,
        callback: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable (or None), got {type(callback).__name__}")
        self.active = torch.ones(batch, dtype=torch.bool, device=like.device)
        self.iterations = torch.zeros(batch, dtype=torch.int64, device=like.device)
        self.max_iter = max_iter
        self.check_every = max(1, check_every)
        self.callback = callback
        self._records: dict[str, list[Tensor]] = {}
        self._start = time.perf_counter()
        self._times: list[float] = []
        self._time_its: list[int] = []
        self._record_its: list[int] = []
        self.stopped_by_callback = False
        self._bar = tqdm(total=max_iter, desc=desc, disable=not check_bool(progress, "progress"), leave=False)
        self._bar_pos = 0

    def record(self, at: int | None = None, **values: Tensor) -> None:
        """Store per-sample values ``(B,)`` of the current iterate (on the device, detached).

        ``at``: the iterate's index, for a solver that records only some iterations (then at
        every call); `finish` returns these indices as ``history["iteration"]``.
        """
        if at is not None:
            self._record_its.append(at)
        for key, value in values.items():
            self._records.setdefault(key, []).append(value.detach())

    def record_rows(self, **blocks: Tensor) -> None:
        """Store the values of several consecutive iterations at once: one row ``(B,)`` each of a
        ``(n, B)`` block (a solver that evaluates a history entry for a block of iterations)."""
        for key, block in blocks.items():
            self._records.setdefault(key, []).extend(block.detach().unbind(0))

    def update(self, done: Tensor) -> None:
        """Count one iteration for active samples, then deactivate those whose test fired."""
        self.count()
        self.deactivate(done)

    def count(self) -> None:
        """Count one iteration for the active samples."""
        self.iterations.add_(self.active)

    def deactivate(self, done: Tensor) -> None:
        """Mark the samples whose stopping test fired as finished."""
        self.active.masked_fill_(done, False)

    def keep_going(self, k: int, state: dict[str, Any] | None = None) -> bool:
        """Loop condition after iteration ``k`` (1-based count of iterations done)."""
        if self.callback is not None and state is not None:
            if self.callback({"iteration": k, "active": self.active, **state}) is True:
                self.stopped_by_callback = True
                return False
        if k >= self.max_iter:
            self._tick(k)
            return False
        if k % self.check_every == 0:
            self._tick(k)
            return bool(self.active.any())  # the only host synchronisation
        return True

    def _tick(self, k: int) -> None:
        """Advance the progress bar and time the iterations done (a stopping test or the last)."""
        self._bar.update(k - self._bar_pos)
        self._bar_pos = k
        self._times.append(time.perf_counter() - self._start)
        self._time_its.append(k)

    def last(self, key: str) -> Tensor:
        """The latest recorded value of ``key``, ``(B,)``, on the device (no host transfer)."""
        return self._records[key][-1]

    def finish(self, solver: str, tol: float, x: Tensor | None = None) -> tuple[Tensor, Tensor, str, dict[str, Tensor]]:
        """Close the progress bar; return (iterations, converged, message, history) on CPU.

        ``x``: the returned iterates ``(B, ...)``; a sample whose iterate is not finite (the
        steps diverged) counts as not converged, and the message says so, as does a
        ``RuntimeWarning``.
        """
        iterations, converged, message, diverged, history = self._finish(solver, tol, x)
        return iterations, converged, _with_divergence(message, diverged), history

    def _finish(self, solver: str, tol: float,
                x: Tensor | None) -> tuple[Tensor, Tensor, str, str, dict[str, Tensor]]:
        """`finish` without the warning: the message and, apart, the report of the diverged
        samples ("" if none)."""
        self._bar.close()
        converged = (~self.active).cpu()
        finite = None if x is None else torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1).cpu()
        if finite is not None:
            converged &= finite
        iterations = self.iterations.cpu()
        n_conv = int(converged.sum())
        batch = converged.numel()
        if self.stopped_by_callback:
            message = f"{solver}: stopped by the callback; {n_conv}/{batch} samples had converged"
        elif n_conv == batch:
            message = f"{solver}: all {batch} samples met the stopping test (tol={tol:g})"
        else:
            message = (
                f"{solver}: {batch - n_conv}/{batch} samples reached max_iter={self.max_iter} "
                f"before the stopping test (tol={tol:g})"
            )
        diverged = ""
        if finite is not None and not bool(finite.all()):
            bad = (~finite).nonzero().flatten().tolist()
            diverged = (f"; {len(bad)}/{batch} samples diverged (their iterate holds NaN or Inf; "
                        f"samples {bad[:10]}{', ...' if len(bad) > 10 else ''}): are the step sizes too large?")
        history = {key: torch.stack(vals).cpu() for key, vals in self._records.items()}
        history["time"] = torch.tensor(self._times, dtype=torch.float64)
        history["time_iteration"] = torch.tensor(self._time_its, dtype=torch.int64)
        if self._record_its:
            history["iteration"] = torch.tensor(self._record_its, dtype=torch.int64)
        return iterations, converged, message, diverged, history

    def finish_discrepancy(
        self, solver: str, level: Tensor | None, name: str, factor: float, max_iter: int,
        x: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, str, dict[str, Tensor]]:
        r"""`finish` for a solver stopped by the discrepancy principle
        :math:`\|\mathcal N(x)-y^\delta\|\le` ``factor`` :math:`\cdot\,\delta`.

        Without a noise level (``level is None``) there is no stopping test: no sample counts
        as converged and the message says that the whole budget of ``max_iter`` iterations ran
        (unless a callback stopped the run, which the message then says). ``x``: as for `finish`.
        """
        iterations, converged, message, diverged, history = self._finish(solver, factor, x)
        if level is None and not self.stopped_by_callback:
            message, converged = f"{solver}: no delta given, ran {max_iter} iterations", torch.zeros_like(converged)
        else:
            message = message.replace("stopping test (tol=", f"discrepancy principle ({name}=")
        return iterations, converged, _with_divergence(message, diverged), history


def _with_divergence(message: str, diverged: str) -> str:
    """``message`` followed by ``diverged``, the report of diverged samples; if that is not
    empty, also a ``RuntimeWarning`` with the whole, attributed to the first caller outside
    lbreg and torch (the solvers run inside ``torch.no_grad`` wrappers)."""
    message += diverged
    if diverged:
        level, frame = 2, sys._getframe(1)  # stacklevel 2: the caller of this function
        while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in ("lbreg", "torch"):
            level, frame = level + 1, frame.f_back
        warnings.warn(message, RuntimeWarning, stacklevel=level)
    return message
