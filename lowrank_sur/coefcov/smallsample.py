"""Small-sample scaling of the error covariance: Stata's ``dfk`` (``debiased=True``).

Stata's ``sureg, dfk`` (systemfit's "geomean", linearmodels' ``debiased``) divides
the cross products of the residuals by ``sqrt((N - p_i)(N - p_j))`` instead of N:
``Sigma_ij N / sqrt((N - p_i)(N - p_j))`` for the ML ``Sigma_ij``. With
``s_j = sqrt(N / (N - p_j))`` this is ``S Sigma S``, ``S = diag(s)``; the dense
``DenseCovariance`` of an unrestricted Sigma is scaled so.

The analogue for the factor model ``Sigma = F F' + diag(D)``: the common part is
scaled as above, ``(S F)(S F)'``, and the idiosyncratic variance by
``N / (N - p_j - k)``: ``D_j`` is the variance of what is left of equation j after its
``p_j`` regressors *and* the k common factors, whose scores the fit in effect
estimates per observation (with K large relative to N the ML ``D_j`` is biased down
by about ``(N - p_j - k) / N``, as the residual variance of a regression on
``p_j + k`` regressors). With k = 0 both are Stata's dfk. The result stays in
factored form. One function serves both kinds of error covariance, so every fitter
reads ``options.debiased`` the same way.

References
----------
StataCorp. *Stata Base Reference Manual*: ``sureg``, option ``dfk``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..covariance import Covariance, DenseCovariance, LowRankCovariance

__all__ = ["dfk_scale", "debiased_cov", "debiased_record"]


def dfk_scale(nobs, k_params_per_eq) -> np.ndarray:
    """``s_j = sqrt(N_j / (N_j - p_j))`` per equation (raises when some ``p_j >= N_j``).

    ``nobs`` is N, or the observations ``N_j`` of each equation (``missing="fiml"``).
    """
    p = np.asarray(k_params_per_eq, dtype=float)
    n = np.broadcast_to(np.asarray(nobs, dtype=float), p.shape)
    if np.any(p >= n):
        j = int(np.argmax(p >= n))
        raise ValueError(
            f"debiased=True needs N - p_j > 0 for every equation; equation {j} has "
            f"p_j = {int(p[j])} regressors and N = {int(n[j])} observations"
        )
    return np.sqrt(n / (n - p))


def debiased_cov(cov: Covariance, scale: np.ndarray,
                 d_scale: np.ndarray | None = None) -> Covariance:
    """``S Sigma S`` with ``S = diag(scale)``, in the same representation as ``cov``.

    For a ``LowRankCovariance``, ``d_scale`` (default ``scale**2``) multiplies D
    instead: ``(S F)(S F)' + diag(d_scale D)``.
    """
    if isinstance(cov, LowRankCovariance):
        d_scale = scale**2 if d_scale is None else d_scale
        return LowRankCovariance(cov.F * scale[:, None], cov.D * d_scale)
    if isinstance(cov, DenseCovariance):
        return DenseCovariance(cov.S * np.outer(scale, scale))
    raise TypeError(f"cannot debias an error covariance of type {type(cov).__name__}")


def debiased_record(record, design):
    """A copy of a fit record whose error covariance carries the ``dfk`` scaling.

    Factor fits also scale D by ``N / (N - p_j - k)`` (see the module notes). With
    missing responses (``missing="fiml"``) each equation's observed rows ``N_j`` take
    the place of N.
    """
    p = np.asarray(design.p, dtype=float)
    observed = getattr(design, "observed", None)
    n = design.nobs if observed is None else observed.sum(axis=0)
    scale = dfk_scale(n, p)
    d_scale = None
    if isinstance(record.cov, LowRankCovariance):
        d_scale = dfk_scale(n, p + record.cov.rank) ** 2
    return dataclasses.replace(record, cov=debiased_cov(record.cov, scale, d_scale))
