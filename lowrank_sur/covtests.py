"""Tests of the error-covariance structure: LR tests of the rank and Breusch-Pagan."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from .covariance import DenseCovariance, gaussian_llf
from .design import SURDesign
from .exceptions import IdentificationWarning
from .fitters import fit_design
from .selection import n_cov_params

__all__ = [
    "CovStructureTest",
    "lr_test_diagonal",
    "lr_test_nested",
    "lr_test_unrestricted",
    "breusch_pagan",
    "diagonal_llf",
    "unrestricted_llf",
]


@dataclass
class CovStructureTest:
    """Outcome of a test of the covariance structure.

    Attributes
    ----------
    name : str
        Name of the test.
    stat : float
        Test statistic (chi-squared under the null).
    df : int
        Degrees of freedom.
    pvalue : float
        Upper-tail chi-squared p-value.
    null : str
        The null hypothesis in words.
    alternative : str
        The alternative in words.
    notes : list of str
        Caveats (boundary issues, corrections applied).
    """

    name: str
    stat: float
    df: int
    pvalue: float
    null: str
    alternative: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def dist(self) -> str:
        """Reference distribution."""
        return f"chi2({self.df})"

    def __str__(self) -> str:
        lines = [
            self.name,
            f"H0: {self.null}",
        ]
        if self.alternative:
            lines.append(f"H1: {self.alternative}")
        lines.append(f"Statistic: {self.stat:.4f}")
        lines.append(f"P-value: {self.pvalue:.4g}")
        lines.append(f"Distribution: {self.dist}")
        lines.extend(f"Note: {n}" for n in self.notes)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"CovStructureTest(name={self.name!r}, stat={self.stat:.4f}, df={self.df}, "
            f"pvalue={self.pvalue:.4g})"
        )


def _chi2(name, stat, df, null, alternative="", notes=None) -> CovStructureTest:
    stat = float(max(stat, 0.0))
    return CovStructureTest(
        name, stat, int(df), float(stats.chi2.sf(stat, df)), null, alternative, notes or []
    )


def diagonal_llf(design: SURDesign, Y: np.ndarray) -> float:
    """Maximized log-likelihood with a diagonal Sigma (OLS per equation, D = SSR / N)."""
    R = Y - design.fitted(design.ols(Y))
    n, K = R.shape
    d = np.einsum("ij,ij->j", R, R) / n
    # at D = diag(R'R / N) the quadratic form is N K
    return float(gaussian_llf(n, K, np.sum(np.log(d)), n * K))


def unrestricted_llf(design: SURDesign, Y: np.ndarray, **fit_options) -> tuple[float, int]:
    """Maximized log-likelihood with a free Sigma (iterated SUR), which needs K < N.

    Any positive definite Sigma is ``F F' + diag(D)`` with ``K - 1`` factors, so the
    rank ``K - 1`` fit reaches the iterated-SUR coefficients; the log-likelihood is
    then concentrated exactly at ``Sigma = R'R / N``. Returns the llf and the
    number of sweeps.
    """
    n, K = Y.shape
    if K >= n:
        raise ValueError(
            f"an unrestricted Sigma needs K < N (K={K}, N={n}): its MLE is singular"
        )
    with warnings.catch_warnings():  # rank K - 1 is past the Ledermann bound on purpose
        warnings.simplefilter("ignore", IdentificationWarning)
        rec = fit_design(design, Y, K - 1, **fit_options)
    R = Y - design.fitted(rec.whitened_coefs)
    # concentrated at Sigma = R'R / N, where the quadratic form is N K
    llf = gaussian_llf(n, K, DenseCovariance(R.T @ R / n).logdet(), n * K)
    return float(max(llf, rec.llf)), rec.iterations


def lr_test_diagonal(llf: float, llf_diag: float, k_eqs: int, rank: int) -> CovStructureTest:
    """LR test of rank k against a diagonal Sigma (rank 0)."""
    df = n_cov_params(k_eqs, rank) - n_cov_params(k_eqs, 0)
    return _chi2(
        f"LR test: diagonal Sigma vs rank-{rank} factor structure",
        2.0 * (llf - llf_diag),
        df,
        "Sigma is diagonal (no cross-equation correlation)",
        f"Sigma = F F' + diag(D) with {rank} factor(s)",
        ["k = 0 lies on the boundary of the parameter space; the chi2 reference "
         "distribution is conservative"],
    )


def lr_test_nested(
    llf_small: float, rank_small: int, llf_big: float, rank_big: int, k_eqs: int
) -> CovStructureTest:
    """LR test of rank ``rank_small`` against ``rank_big`` (same data and regressors)."""
    return _chi2(
        f"LR test: rank {rank_small} vs rank {rank_big}",
        2.0 * (llf_big - llf_small),
        n_cov_params(k_eqs, rank_big) - n_cov_params(k_eqs, rank_small),
        f"{rank_small} factor(s) suffice",
        f"{rank_big} factors",
        ["standard regularity conditions fail at reduced rank; treat the p-value as "
         "approximate"],
    )


def lr_test_unrestricted(
    llf: float, llf_unres: float, nobs: int, k_eqs: int, rank: int
) -> CovStructureTest:
    """Bartlett-corrected LR test of rank k against an unrestricted Sigma (K < N)."""
    df = n_cov_params(k_eqs, None) - n_cov_params(k_eqs, rank)
    if df <= 0:
        raise ValueError(
            f"rank {rank} with K={k_eqs} equations leaves no degrees of freedom "
            f"((K - k)^2 - (K + k) = {2 * df} <= 0): the "
            "factor model is not a restriction of an unrestricted Sigma"
        )
    factor = (nobs - 1 - (2 * k_eqs + 5) / 6.0 - 2.0 * rank / 3.0) / nobs
    lr = 2.0 * (llf_unres - llf)
    return _chi2(
        f"LR test: rank-{rank} factor structure vs unrestricted Sigma",
        factor * lr,
        df,
        f"Sigma = F F' + diag(D) with {rank} factor(s)",
        "Sigma unrestricted",
        [f"Bartlett correction factor {factor:.4f} applied to LR = {lr:.4f}"],
    )


def breusch_pagan(design: SURDesign, Y: np.ndarray) -> CovStructureTest:
    """Breusch-Pagan LM test of a diagonal Sigma on OLS residual correlations.

    ``LM = N sum_{j<l} rho_jl^2``, chi2 with K(K-1)/2 df. Computed through the
    smaller of the K x K and N x N Gram matrices.
    """
    R = Y - design.fitted(design.ols(Y))
    n, K = R.shape
    Z = R - R.mean(axis=0)
    Z = Z / np.linalg.norm(Z, axis=0)
    G = Z.T @ Z if K <= n else Z @ Z.T
    sum_sq = float(np.einsum("ij,ij->", G, G))  # ||Z'Z||_F^2 = ||Z Z'||_F^2
    lm = n * (sum_sq - K) / 2.0
    return _chi2(
        "Breusch-Pagan LM test",
        lm,
        K * (K - 1) // 2,
        "Sigma is diagonal (all cross-equation error correlations are zero)",
        "some cross-equation error correlation is non-zero",
    )
