"""Seemingly Unrelated Regressions with a low-rank plus diagonal error covariance.

The error covariance of the K equations is ``Sigma = F F' + diag(D)`` with ``F``
of shape K x k. Estimation is by maximum likelihood with two fitters: ``"als"``
(matrix-free, O(N K k) memory) and ``"em"`` (the dense reference).
"""

from .covariance import DenseCovariance, LowRankCovariance
from .design import SURDesign
from .exceptions import (
    CollinearityError,
    ConvergenceWarning,
    DataRemovedError,
    DroppedRowsWarning,
    HeywoodWarning,
    IdentificationWarning,
    PerformanceWarning,
    PicklingWarning,
    RankSelectionWarning,
    SpecificationError,
)
from .fitters import FitRecord, fit_arrays
from .model import LowRankSUR
from .options import FitOptions
from .results import LowRankSURResults
from .simulate import SimulatedSUR, simulate_sur

__version__ = "0.1.0"

__all__ = [
    "LowRankSUR",
    "LowRankSURResults",
    "LowRankCovariance",
    "DenseCovariance",
    "FitOptions",
    "SURDesign",
    "FitRecord",
    "fit_arrays",
    "simulate_sur",
    "SimulatedSUR",
    "CollinearityError",
    "ConvergenceWarning",
    "DataRemovedError",
    "DroppedRowsWarning",
    "HeywoodWarning",
    "IdentificationWarning",
    "PerformanceWarning",
    "PicklingWarning",
    "RankSelectionWarning",
    "SpecificationError",
    "__version__",
]
