"""Solvers of the lifted Bregman inversion problem; each is a plain function returning `Result`.

- `landweber`: nonlinear Landweber with the discrepancy principle (the paper's baseline).
- `pdhg`: generalised PDHG for the single-layer problem, eq. (14).
- `lifted_cd`: coordinate descent for any depth, eqs. (15)-(17).
"""

from .admm import admm
from .landweber import landweber
from .lifted_cd import aux_step, lifted_cd
from .pdhg import default_steps, pdhg, pdhg_step
from .result import Result

__all__ = ["Result", "landweber", "pdhg", "pdhg_step", "default_steps", "lifted_cd", "aux_step", "admm"]
