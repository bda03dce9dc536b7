"""Warnings and errors raised by lowrank_sur.

Non-convergence uses statsmodels' own :class:`~statsmodels.tools.sm_exceptions.ConvergenceWarning`
so that existing warning filters keep working.
"""

from __future__ import annotations

from statsmodels.tools.sm_exceptions import (
    ConvergenceWarning,
    EstimationWarning,
    ModelWarning,
)

from .design import CollinearityError

__all__ = [
    "ConvergenceWarning",
    "HeywoodWarning",
    "IdentificationWarning",
    "CollinearityError",
    "SpecificationError",
]


class HeywoodWarning(EstimationWarning):
    """Some idiosyncratic variances hit their floor (a Heywood case)."""


class IdentificationWarning(ModelWarning):
    """The factor loadings are not identified at the requested rank (Sigma still is)."""


class SpecificationError(ValueError):
    """The model specification (equations, data, arguments) is invalid."""
