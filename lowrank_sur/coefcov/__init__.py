"""Covariances of the coefficients, registered by ``cov_type`` (see :mod:`.registry`).

``nonrobust``
    GLS at the MLE, ``(X'(Sigma^{-1} kron I) X)^{-1}``, without P x P or K x K
    arrays (:mod:`lowrank_sur.coefcov.nonrobust`).
``bootstrap``
    Parametric bootstrap: the covariance of the coefficients refitted on draws from
    the fitted model, which includes the estimation of Sigma
    (:mod:`lowrank_sur.coefcov.bootstrap`).

``debiased=True`` (Stata's ``dfk``) scales the error covariance every estimator
receives (:mod:`lowrank_sur.coefcov.smallsample`).
"""

from . import bootstrap, nonrobust  # noqa: F401  (registry line: importing registers them)
from .registry import CoefCovEstimator, available_cov_types, get_cov_type, register_cov_type

__all__ = ["CoefCovEstimator", "available_cov_types", "get_cov_type", "register_cov_type"]
