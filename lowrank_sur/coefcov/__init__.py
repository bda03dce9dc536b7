"""Covariances of the coefficients, registered by ``cov_type`` (see :mod:`.registry`).

``nonrobust``
    GLS at the MLE, ``(X'(Sigma^{-1} kron I) X)^{-1}``, without P x P or K x K
    arrays (:mod:`lowrank_sur.coefcov.nonrobust`).
"""

from . import nonrobust  # noqa: F401  (registry line: importing registers the estimator)
from .registry import CoefCovEstimator, available_cov_types, get_cov_type, register_cov_type

__all__ = ["CoefCovEstimator", "available_cov_types", "get_cov_type", "register_cov_type"]
