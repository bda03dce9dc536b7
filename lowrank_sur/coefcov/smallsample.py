"""Small-sample scaling of the error covariance: Stata's ``dfk`` (``debiased=True``).

Stata's ``sureg, dfk`` (systemfit's "geomean", linearmodels' ``debiased``) divides
the cross products of the residuals by ``sqrt((N - p_i)(N - p_j))`` instead of N:
``Sigma_ij N / sqrt((N - p_i)(N - p_j))`` for the ML ``Sigma_ij``. With
``s_j = sqrt(N / (N - p_j))`` this is ``S Sigma S``, ``S = diag(s)``, which keeps a
factor covariance in factored form: ``(S F)(S F)' + diag(s^2 D)``. One function for
both kinds of error covariance (the factor fitters' ``LowRankCovariance`` and the
dense ``DenseCovariance``), so every fitter reads ``options.debiased`` the same way.

References
----------
StataCorp. *Stata Base Reference Manual*: ``sureg``, option ``dfk``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..covariance import Covariance, DenseCovariance, LowRankCovariance

__all__ = ["dfk_scale", "debiased_cov", "debiased_record"]


def dfk_scale(nobs: int, k_params_per_eq) -> np.ndarray:
    """``s_j = sqrt(N / (N - p_j))`` per equation (raises when some ``p_j >= N``)."""
    p = np.asarray(k_params_per_eq, dtype=float)
    if np.any(p >= nobs):
        j = int(np.argmax(p >= nobs))
        raise ValueError(
            f"debiased=True needs N - p_j > 0 for every equation; equation {j} has "
            f"p_j = {int(p[j])} regressors and N = {nobs} observations"
        )
    return np.sqrt(nobs / (nobs - p))


def debiased_cov(cov: Covariance, scale: np.ndarray) -> Covariance:
    """``S Sigma S`` with ``S = diag(scale)``, in the same representation as ``cov``."""
    if isinstance(cov, LowRankCovariance):
        return LowRankCovariance(cov.F * scale[:, None], cov.D * scale**2)
    if isinstance(cov, DenseCovariance):
        return DenseCovariance(cov.S * np.outer(scale, scale))
    raise TypeError(f"cannot debias an error covariance of type {type(cov).__name__}")


def debiased_record(record, design):
    """A copy of a fit record whose error covariance carries the ``dfk`` scaling."""
    scale = dfk_scale(design.nobs, design.p)
    return dataclasses.replace(record, cov=debiased_cov(record.cov, scale))
