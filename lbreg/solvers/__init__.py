"""Solvers of the lifted Bregman inversion problem; each is a plain function returning `Result`.

- `landweber`: nonlinear Landweber with the discrepancy principle (the paper's baseline).
- `pdhg`: generalised PDHG for the single-layer problem, eq. (14); `primal_dual_gap` certifies
  its iterates.
- `admm`: over-relaxed ADMM for the same single-layer problem, the fast solver (its exact
  x-update in `lbreg.solvers.xupdate`, its u-update `bregman_prox`).
- `lifted_cd`: coordinate descent for any depth, eqs. (15)-(17); ``x0_solver="admm"`` uses
  `admm` for the x_0 sub-problem.
"""

from .admm import admm, bregman_prox
from .landweber import landweber
from .lifted_cd import aux_step, lifted_cd
from .pdhg import default_steps, pdhg, pdhg_step, primal_dual_gap
from .result import Result

__all__ = ["Result", "landweber", "pdhg", "pdhg_step", "default_steps", "primal_dual_gap", "lifted_cd",
           "aux_step", "admm", "bregman_prox"]
