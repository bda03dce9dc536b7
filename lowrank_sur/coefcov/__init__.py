"""Covariances of the coefficients, registered by ``cov_type`` (see :mod:`.registry`).

``nonrobust``
    GLS at the MLE, ``(X'(Sigma^{-1} kron I) X)^{-1}``, without P x P or K x K
    arrays (:mod:`lowrank_sur.coefcov.nonrobust`).
``HC0`` / ``HC1`` (``robust``), ``HAC`` (``kernel``), ``cluster`` (``clustered``)
    Sandwiches from the per-observation scores ``X_t' Sigma^{-1} r_t``, without
    P x P, NK x P or K x K arrays (:mod:`lowrank_sur.coefcov.robust`,
    :mod:`lowrank_sur.coefcov.sandwich`).
``bootstrap``
    Parametric bootstrap: the covariance of the coefficients refitted on draws from
    the fitted model, which includes the estimation of Sigma
    (:mod:`lowrank_sur.coefcov.bootstrap`).

``debiased=True`` (Stata's ``dfk``) scales the error covariance every estimator
receives (:mod:`lowrank_sur.coefcov.smallsample`).
"""

from . import bootstrap, nonrobust, robust  # noqa: F401  (registry line: importing registers them)
from .registry import CoefCovEstimator, available_cov_types, get_cov_type, register_cov_type

__all__ = ["CoefCovEstimator", "available_cov_types", "get_cov_type", "register_cov_type"]
