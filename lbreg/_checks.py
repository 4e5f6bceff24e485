"""Checks of scalar arguments, shared by every module so that each error reads the same.

A wrong *type* raises ``TypeError``; a value of the right type that is out of range (NaN, an
infinity, below a bound) raises ``ValueError``. Every message names the argument.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import torch
from torch import Tensor

__all__ = ["check_int", "check_positive", "check_real", "check_seed"]


def check_real(value: Any, name: str, *, minimum: float | None = None, strict: bool = False,
               tensor: bool = False) -> float:
    """``value`` as a finite float.

    Args:
        value: a real number (NumPy's included; a bool is not); with ``tensor`` also a
            one-element real tensor.
        name: the argument's name, for the messages.
        minimum: the smallest value allowed (``None``: any finite value).
        strict: ``value`` must exceed ``minimum`` (not equal it).
        tensor: accept a one-element real tensor.

    Raises:
        TypeError: not a real number (nor, with ``tensor``, a one-element real tensor).
        ValueError: NaN or infinite; below ``minimum`` (or equal to it with ``strict``); with
            ``tensor``, a tensor of more than one element.
    """
    if tensor and isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be one number, got a tensor of shape {tuple(value.shape)}")
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must be a real number, got a tensor of dtype {value.dtype}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    bound = "" if minimum is None else f" and {'>' if strict else '>='} {minimum:g}"
    low = minimum is not None and (value <= minimum if strict else value < minimum)
    if low or not math.isfinite(value):
        raise ValueError(f"{name} must be finite{bound}, got {value}")
    return value


def check_positive(value: Any, name: str, *, allow_zero: bool = False, tensor: bool = False) -> float:
    """``value`` as float, finite and > 0 (>= 0 with ``allow_zero``); see :func:`check_real`."""
    return check_real(value, name, minimum=0.0, strict=not allow_zero, tensor=tensor)


def check_int(value: Any, name: str, *, minimum: int = 0) -> int:
    """``value`` as int; TypeError if not an integer (a bool is not), ValueError below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_seed(seed: Any, name: str = "seed", expected: str = "an int") -> int:
    """A random seed as int: an integer (NumPy's included), not a bool; TypeError otherwise,
    saying that ``name`` must be ``expected``."""
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise TypeError(f"{name} must be {expected}, got {type(seed).__name__}")
    return int(seed)
