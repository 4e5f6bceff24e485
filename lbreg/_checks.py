"""Argument checks shared by every module, so that each error reads the same wherever it comes from.

A wrong *type* (of a number, a flag, a tensor's dtype) raises ``TypeError``; a value of the right
type that is wrong (NaN, an infinity, a bound, a shape, the ``meta`` device) raises
``ValueError``. Every message names the argument.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Iterable, Mapping
from numbers import Integral, Real
from typing import Any

import numpy as np

import torch
from torch import Tensor

__all__ = [
    "check_batch",
    "check_bool",
    "check_exact_tensor",
    "check_finite",
    "check_float_tensor",
    "check_int",
    "check_not_meta",
    "check_positive",
    "check_positive_values",
    "check_real",
    "check_real_tensor",
    "check_seed",
]


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
            ``tensor``, a tensor that does not hold exactly one element.
    """
    if tensor and isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be one number, got a tensor of shape {tuple(value.shape)}")
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must be a real number, got a tensor of dtype {value.dtype}")
        check_not_meta(value, name)
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


def check_positive_values(t: Tensor, name: str, *, allow_zero: bool = False) -> Tensor:
    """``t`` if every entry is finite and > 0 (>= 0 with ``allow_zero``); the message lists the
    entries that are not."""
    check_not_meta(t, name)
    bad = ~torch.isfinite(t) | (t < 0 if allow_zero else t <= 0)
    if bool(bad.any()):
        raise ValueError(f"{name} must be finite and {'>=' if allow_zero else '>'} 0, got {t[bad].tolist()}")
    return t


def check_real_tensor(
    values: Any, name: str, what: str = "real numbers", *, like: Tensor | None = None
) -> Tensor:
    """Real numbers (a number, a sequence of numbers, a NumPy array or a tensor) as a float64
    tensor, or in ``like``'s dtype and on its device (no copy when ``values`` already is);
    TypeError, saying that ``name`` must be ``what``, for a string, a bool (also inside a
    sequence, where ``torch.as_tensor`` would read True as 1) or complex values."""
    if isinstance(values, Tensor):
        check_not_meta(values, name)
    elif isinstance(values, (list, tuple)) and not _entries_are_real(values, name):
        raise TypeError(f"{name} must be {what}, got {reprlib.repr(values)}")
    try:
        kind = torch.as_tensor(values).dtype
    except (TypeError, ValueError, RuntimeError):
        kind = None
    if kind is None or kind == torch.bool or kind.is_complex:
        raise TypeError(f"{name} must be {what}, got {reprlib.repr(values)}")
    if like is not None:
        return torch.as_tensor(values, dtype=like.dtype, device=like.device)
    return torch.as_tensor(values, dtype=torch.float64)  # Python floats straight to float64


def _entries_are_real(values: list | tuple, name: str) -> bool:
    """Every entry of a (nested) list real: torch.as_tensor would read True inside a list as 1."""
    for v in values:
        if isinstance(v, (list, tuple)):
            if not _entries_are_real(v, name):
                return False
        elif isinstance(v, Tensor):
            check_not_meta(v, name)
            if v.dtype == torch.bool or v.is_complex():
                return False
        elif isinstance(v, bool) or not isinstance(v, Real):
            return False
    return True


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
    if not -(2**63) <= seed < 2**64:  # the range of torch.Generator.manual_seed
        raise ValueError(f"{name} must lie in [-2**63, 2**64) to seed a torch.Generator, got {seed}")
    return int(seed)


def check_bool(value: Any, name: str, meaning: str = "") -> bool:
    """A flag as bool: a Python or NumPy bool only (``"no"`` or a tensor would read as true);
    ``meaning`` (e.g. " (True: training split)") follows "must be a bool" in the message."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool{meaning}, got {value!r} ({type(value).__name__})")
    return bool(value)


# --------------------------------------------------------------------------- tensors


def check_float_tensor(t: object, name: str, min_dim: int, layout: str) -> Tensor:
    """``t`` if it is a real floating tensor of at least ``min_dim`` dimensions (``layout``
    describes them in the messages)."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {layout}, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must have a real floating dtype, got {t.dtype}")
    if t.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimension{'s' if min_dim > 1 else ''} {layout}, "
                         f"got shape {tuple(t.shape)}")
    return t


def check_not_meta(t: Tensor, name: str) -> None:
    """Raise unless ``t`` holds values (the ``meta`` device holds shapes only)."""
    if t.device.type == "meta":
        raise ValueError(f"{name} is on the 'meta' device, which holds shapes but no values: "
                         "move it to a real device (cpu, cuda, ...)")


def nonfinite_message(t: Tensor, name: str) -> str | None:
    """``'<name> contains NaN or infinite entries (k of n)'`` if ``t`` has any, else None (one
    host read); ``t`` must not be on the ``meta`` device."""
    check_not_meta(t, name)
    n_bad = int((~torch.isfinite(t)).sum())
    return f"{name} contains NaN or infinite entries ({n_bad} of {t.numel()})" if n_bad else None


def check_finite(t: Tensor, name: str) -> None:
    """Raise unless every entry of ``t`` is finite (and known: not on the ``meta`` device)."""
    message = nonfinite_message(t, name)
    if message is not None:
        raise ValueError(message)


def check_exact_tensor(t: object, name: str, shape: tuple[int, ...], *, dtype: torch.dtype | None = None,
                       context: str = "", hint: str = "") -> Tensor:
    """``t``, checked to be a finite floating tensor of exactly ``shape`` (and ``dtype`` if given);
    ``context`` and ``hint`` frame the message of a wrong shape."""
    check_float_tensor(t, name, 0, str(shape))
    if dtype is not None and t.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {t.dtype}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{context}{name} must have shape {shape}, got {tuple(t.shape)}{hint}")
    check_finite(t, name)
    return t


def check_batch(t: object, name: str, *, min_dim: int = 1, layout: str = "(B, ...)") -> Tensor:
    """``t``, checked to be a finite floating tensor of at least ``min_dim`` dimensions whose
    leading batch axis holds at least one sample."""
    check_float_tensor(t, name, min_dim, layout)
    if t.dim() == 0 or t.shape[0] == 0:
        raise ValueError(f"{name} holds no samples (batch size 0), got shape {tuple(t.shape)}")
    check_finite(t, name)
    return t


def check_series(values: Any, name: str, *, keys: Iterable[str] = ()) -> Mapping:
    """``values`` if it is a non-empty mapping label -> data holding every label of ``keys``
    (a plot with nothing in it, or a label looked up and missing, is an error naming ``name``)."""
    if not isinstance(values, Mapping):
        raise TypeError(f"{name} must be a mapping label -> data (e.g. a dict), got {type(values).__name__}")
    missing = [k for k in keys if k not in values]
    if missing:
        raise ValueError(f"{name} has no entry for {missing}")
    if not values:
        raise ValueError(f"{name} is empty: nothing to plot")
    return values
