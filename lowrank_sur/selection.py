"""Model selection: the default rank, free-parameter counts, identification and criteria.

Used by the model (``rank=None`` and ``rank="aic"``, ``"bic"``, ``"ic_p1"``,
``"ic_p2"``, ``"er"``), the results (``aic``, ``bic``, ``df_ic``) and the fitters (the
Ledermann warning); it imports neither.

Rank selection never chooses a rank whose estimate is not a maximum: the candidate
set stops at the Ledermann bound and at the largest rank whose likelihood is bounded
for these data (:func:`lowrank_sur.bounded.check_bounded`), and a fitted candidate
that did not converge or is degenerate is excluded; :func:`exclusion_before_fit` and
:func:`exclusion_after_fit` give the reasons kept in ``results.rank_selection``.

Besides AIC and BIC (from the likelihood), the criteria of the large-panel factor
literature are computed on the OLS residuals, standardized per equation, from their
singular values (O(N K min(N, K)), no K x K array): Bai and Ng's (2002)
``IC_p1``/``IC_p2`` and Ahn and Horenstein's (2013) eigenvalue ratio.

References
----------
Bai, J. and Ng, S. (2002). Determining the number of factors in approximate factor
models. Econometrica 70, 191-221.
Ahn, S. C. and Horenstein, A. R. (2013). Eigenvalue ratio test for the number of
factors. Econometrica 81, 1203-1227.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .exceptions import IdentificationWarning, external_stacklevel

__all__ = [
    "default_rank",
    "n_free_params",
    "n_cov_params",
    "ledermann_ok",
    "warn_if_unidentified",
    "information_criteria",
    "CRITERIA",
    "ledermann_max_rank",
    "residual_eigenvalues",
    "factor_criteria",
    "exclusion_before_fit",
    "exclusion_after_fit",
    "choose_rank",
]

#: Criteria accepted by ``rank=`` for automatic selection.
CRITERIA = ("aic", "bic", "ic_p1", "ic_p2", "er")

#: Criteria that are maximized (the others are minimized).
MAXIMIZED = ("er",)


def default_rank(k_eqs: int, nobs: int) -> int:
    """Default number of factors: ``min(8, ceil(K / 10))``, kept below K and N.

    The same rule as alsgls; choose ``rank="bic"`` to let the data decide.
    """
    return int(max(0, min(8, math.ceil(k_eqs / 10), k_eqs - 1, nobs - 1)))


def n_cov_params(k_eqs: int, rank: int | None) -> int:
    """Free parameters of Sigma: ``min(K k - k (k - 1) / 2 + K, K (K + 1) / 2)``.

    Loadings up to rotation plus D, capped at the ``K (K + 1) / 2`` parameters of an
    unrestricted Sigma: past the Ledermann bound (``(K - k)^2 < K + k``) the count
    ``K k - k (k - 1) / 2 + K`` exceeds the dimension of the set of covariance matrices,
    and a factor model cannot have more free parameters than the saturated one (the
    model then imposes no restriction on Sigma). ``rank=None`` counts an unrestricted
    Sigma, ``K (K + 1) / 2``.

    References
    ----------
    Anderson, T. W. and Rubin, H. (1956). Statistical inference in factor analysis.
    Proceedings of the Third Berkeley Symposium 5, 111-150.
    """
    saturated = int(k_eqs * (k_eqs + 1) // 2)
    if rank is None:
        return saturated
    return min(int(k_eqs * rank - rank * (rank - 1) // 2 + k_eqs), saturated)


def n_free_params(k_params: int, k_eqs: int, rank: int | None) -> int:
    """Free parameters ``P + min(K k - k (k - 1) / 2 + K, K (K + 1) / 2)``.

    Coefficients, loadings up to rotation and D, never more than the saturated
    ``P + K (K + 1) / 2`` of the unrestricted SUR (see :func:`n_cov_params`). For
    Kmenta's two-equation system (P = 7) every rank gives 10, the ``df`` of
    systemfit's ``logLik`` for the unrestricted SUR.
    """
    return int(k_params) + n_cov_params(k_eqs, rank)


def ledermann_ok(k_eqs: int, rank: int) -> bool:
    """Whether ``(K - k)^2 >= K + k``: at or below the Ledermann bound, F and D are identified."""
    return (k_eqs - rank) ** 2 >= k_eqs + rank


def warn_if_unidentified(k_eqs: int, rank: int) -> None:
    """Issue an :class:`IdentificationWarning` when ``rank`` exceeds the Ledermann bound."""
    if 0 < rank < k_eqs and not ledermann_ok(k_eqs, rank):
        warnings.warn(
            f"rank={rank} exceeds the Ledermann bound for K={k_eqs} equations "
            "((K - k)^2 < K + k): Sigma is identified but the loadings F are not (nor D "
            "separately); interpret factor_loadings with care",
            IdentificationWarning,
            stacklevel=external_stacklevel(),
        )


def information_criteria(llf: float, df: int, nobs: int) -> dict[str, float]:
    """AIC and BIC for a log-likelihood with ``df`` free parameters and ``nobs`` rows.

    Returns
    -------
    dict
        ``{"aic": -2 llf + 2 df, "bic": -2 llf + log(nobs) df}``.
    """
    return {"aic": -2.0 * llf + 2.0 * df, "bic": -2.0 * llf + float(np.log(nobs)) * df}


def ledermann_max_rank(k_eqs: int) -> int:
    """The largest k with ``(K - k)^2 >= K + k`` (0 for K <= 2)."""
    k = 0
    while k + 1 < k_eqs and ledermann_ok(k_eqs, k + 1):
        k += 1
    return k


def residual_eigenvalues(R: np.ndarray) -> np.ndarray:
    """Eigenvalues of ``Z'Z / (N K)`` for the standardized residuals Z, in decreasing order.

    Computed as the squared singular values of the N x K matrix Z (no K x K array);
    there are ``min(N, K)`` of them. Columns with no variance are left at zero.
    """
    n, K = R.shape
    Z = R - R.mean(axis=0)
    sd = np.sqrt(np.einsum("ij,ij->j", Z, Z) / n)
    Z = Z / np.where(sd > 0, sd, 1.0)
    s = np.linalg.svd(Z, compute_uv=False)
    return s**2 / (n * K)


def factor_criteria(eigs: np.ndarray, nobs: int, k_eqs: int, ranks) -> dict[str, np.ndarray]:
    """Bai-Ng ``IC_p1``, ``IC_p2`` (minimized) and Ahn-Horenstein ``ER`` (maximized).

    With ``V(k) = sum_{i > k} mu_i`` the residual variance after k principal
    components (``mu`` from :func:`residual_eigenvalues`), cross-section size K and
    time dimension N:

    * ``IC_p1(k) = log V(k) + k (N + K) / (N K) log(N K / (N + K))``
    * ``IC_p2(k) = log V(k) + k (N + K) / (N K) log(min(N, K))``
    * ``ER(k) = mu_k / mu_{k+1}``, with Ahn and Horenstein's mock eigenvalue
      ``mu_0 = sum_i mu_i / log(min(N, K))`` so that k = 0 can be chosen.

    Ranks with too few eigenvalues get NaN.
    """
    ranks = np.asarray(list(ranks), dtype=int)
    m = eigs.size
    total = float(np.sum(eigs))
    tail = total - np.concatenate([[0.0], np.cumsum(eigs)])  # V(k), k = 0..m
    nk, spread = nobs * k_eqs, (nobs + k_eqs) / (nobs * k_eqs)
    out = {"ic_p1": np.full(ranks.size, np.nan), "ic_p2": np.full(ranks.size, np.nan),
           "er": np.full(ranks.size, np.nan)}
    mu = np.concatenate([[total / np.log(max(min(nobs, k_eqs), 2))], eigs])
    for i, k in enumerate(ranks):
        if k < m and tail[k] > 0:
            logv = np.log(tail[k])
            out["ic_p1"][i] = logv + k * spread * np.log(nk / (nobs + k_eqs))
            out["ic_p2"][i] = logv + k * spread * np.log(min(nobs, k_eqs))
        if k + 1 < mu.size and mu[k + 1] > 0:
            out["er"][i] = mu[k] / mu[k + 1]
    return out


def exclusion_before_fit(rank: int, k_eqs: int, bounded) -> str:
    """Why ``rank`` is not a candidate for these data ("" when it is).

    Parameters
    ----------
    rank, k_eqs : int
        The rank and the number of equations.
    bounded : Boundedness
        :func:`lowrank_sur.bounded.check_bounded` at this rank.
    """
    if rank > 0 and not ledermann_ok(k_eqs, rank):
        return (f"past the Ledermann bound ((K - k)^2 < K + k for K={k_eqs}): the "
                "loadings are not identified and the model has as many parameters as "
                "an unrestricted Sigma")
    if not bounded.bounded:
        eqs = ", ".join(str(j) for j in bounded.equations[:5])
        more = ", ..." if len(bounded.equations) > 5 else ""
        return (f"likelihood unbounded for these data (equations {eqs}{more}: "
                f"{bounded.reason}); no maximum exists")
    return ""


def exclusion_after_fit(record) -> str:
    """Why a fitted candidate is not eligible ("" when it is): not converged, degenerate."""
    if record.degenerate:
        return ("degenerate: the likelihood keeps rising as D goes to its floor (not a "
                "maximum)")
    if not record.converged:
        return f"did not converge in {record.iterations} iterations (not a maximum)"
    return ""


def choose_rank(table, crit: str) -> int:
    """The eligible rank (``excluded == ""``) best by ``crit``; rank 0 when none is."""
    ok = table[(table["excluded"] == "") & table[crit].notna()]
    if ok.empty:
        return 0
    return int(ok[crit].idxmax() if crit in MAXIMIZED else ok[crit].idxmin())
