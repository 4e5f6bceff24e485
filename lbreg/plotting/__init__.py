"""Figures shared by the chapters (matplotlib; labelled axes, units, colourbars)."""

from .curves import *  # noqa: F401,F403
from .images import *  # noqa: F401,F403
from .noise import *  # noqa: F401,F403
