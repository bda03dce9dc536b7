"""Warnings and errors raised by lowrank_sur.

Non-convergence uses statsmodels' own :class:`~statsmodels.tools.sm_exceptions.ConvergenceWarning`
so that existing warning filters keep working.
"""

from __future__ import annotations

import os
import sys

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
    "UnboundedLikelihoodWarning",
    "MultipleMaximaWarning",
    "CollinearityError",
    "SpecificationError",
    "external_stacklevel",
]


class HeywoodWarning(EstimationWarning):
    """Some idiosyncratic variances hit their floor (a Heywood case)."""


class IdentificationWarning(ModelWarning):
    """The factor loadings are not identified at the requested rank (Sigma still is)."""


class UnboundedLikelihoodWarning(EstimationWarning):
    """The likelihood at the requested rank is unbounded for these data (no MLE exists)."""


class MultipleMaximaWarning(EstimationWarning):
    """Different starts reached different local maxima of the likelihood."""


class SpecificationError(ValueError):
    """The model specification (equations, data, arguments) is invalid."""


def external_stacklevel() -> int:
    """Return the ``stacklevel`` that points a warning at the first caller outside the package.

    Call it in the function that issues the warning; whatever chain of package
    functions led there (``fit``, rank selection, ``fit_arrays``), the warning is
    attributed to the user's line.
    """
    package = os.path.dirname(os.path.abspath(__file__))
    frame = sys._getframe(1)
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame = frame.f_back
        level += 1
    return level
