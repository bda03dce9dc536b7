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
    ValueWarning,
)

from .design import CollinearityError

__all__ = [
    "ConvergenceWarning",
    "HeywoodWarning",
    "IdentificationWarning",
    "UnboundedLikelihoodWarning",
    "MultipleMaximaWarning",
    "RankSelectionWarning",
    "CollinearityError",
    "SpecificationError",
    "DataRemovedError",
    "data_removed_message",
    "DroppedRowsWarning",
    "PerformanceWarning",
    "PicklingWarning",
    "external_stacklevel",
]


class HeywoodWarning(EstimationWarning):
    """Some idiosyncratic variances hit their floor (a Heywood case)."""


class IdentificationWarning(ModelWarning):
    """The factor loadings are not identified at the requested rank (Sigma still is)."""


class UnboundedLikelihoodWarning(EstimationWarning):
    """The likelihood at the requested rank is unbounded for these data (no MLE exists)."""


class RankSelectionWarning(EstimationWarning):
    """Automatic rank selection excluded some candidate ranks (``results.rank_selection``)."""


class MultipleMaximaWarning(EstimationWarning):
    """Different starts reached different local maxima of the likelihood."""


class SpecificationError(ValueError):
    """The model specification (equations, data, arguments) is invalid."""


class DroppedRowsWarning(ValueWarning):
    """Rows are dropped because a formula's transforms produced missing values."""


class PerformanceWarning(UserWarning):
    """The requested computation will be slow or need much memory; a cheaper one exists."""


class PicklingWarning(UserWarning):
    """Part of a model (a formula design) cannot be pickled and is left out."""


class DataRemovedError(RuntimeError):
    """A method needs the estimation data, which ``remove_data()`` dropped."""


def data_removed_message(what: str) -> str:
    """The one message for anything that needs the data after ``remove_data()``."""
    return (
        f"{what} needs the estimation data, which remove_data() dropped from this "
        "model; refit the model on the data to compute it. Without the data, params, "
        "bse, conf_int(), summary(), factor_summary(), lr_test_diagonal(), "
        "breusch_pagan() and predict(new data) still work"
    )


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
