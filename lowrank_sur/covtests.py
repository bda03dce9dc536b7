"""Tests of the error-covariance structure: LR tests of the rank and Breusch-Pagan.

Every test returns a :class:`CovStructureTest`. A test with nothing to test (a
diagonal Sigma tested against rank 0, Breusch-Pagan with one equation, two saturated
ranks, an unrestricted Sigma whose maximum does not exist for these data) returns
one with ``is_valid=False``, NaN statistic and p-value, and the ``reason`` (as
linearmodels' ``InvalidTestStatistic``), never a number that looks like a result.

The likelihood-ratio statistic of rank k against rank k + 1 has no chi2 limit: under
the null the extra factor's loadings are not identified (Davies 1977, 1987), and the
chi2 reference with the difference in free parameters was measured to reject a true
rank-k null in 60-100% of draws at 5%. The valid reference is the parametric
bootstrap (:mod:`lowrank_sur.bootstrap`); the chi2 p-value is given only on request,
labelled as not valid. The fast double bootstrap (``method="fdb"``, Davidson and
MacKinnon 2007) is available at about twice the cost; in the Monte Carlo of
``docs/calibration.md`` it did not hold the size better than the single bootstrap
(it is noisier and, where K > N, larger), so the single bootstrap stays the default.

References
----------
Bartlett, M. S. (1954). A note on the multiplying factors for various chi2
approximations. JRSS B 16, 296-298.
Davies, R. B. (1987). Hypothesis testing when a nuisance parameter is present only
under the alternative. Biometrika 74, 33-43.
Anderson, T. W. (2003). *An Introduction to Multivariate Statistical Analysis*, 3rd
ed., Wiley: section 8.4 (the residual Wishart with N - p degrees of freedom) and
section 14.3 (the LR test of the number of factors).
Davidson, R. and MacKinnon, J. G. (2007). Improving the reliability of bootstrap tests
with the fast double bootstrap. *Computational Statistics & Data Analysis* 51,
3259-3281.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from .bootstrap import (
    check_n_boot,
    fast_double_bootstrap_statistics,
    fdb_pvalue,
    monte_carlo_pvalue,
)
from .bounded import check_bounded
from .covariance import DenseCovariance, LowRankCovariance, gaussian_llf
from .design import SURDesign
from .exceptions import IdentificationWarning
from .fitters import fit_design
from .selection import n_cov_params

__all__ = [
    "CovStructureTest",
    "invalid_test",
    "lr_test_diagonal",
    "lr_test_nested",
    "lr_test_unrestricted",
    "unrestricted_unavailable",
    "bootstrap_lr",
    "breusch_pagan",
    "diagonal_llf",
    "unrestricted_llf",
    "LR_METHODS",
]

#: Reference distributions accepted by the likelihood-ratio tests' ``method=``:
#: the parametric bootstrap, the fast double bootstrap and chi2.
LR_METHODS = ("bootstrap", "fdb", "chi2")

#: Other spellings of ``method=`` and the name they stand for.
LR_METHOD_ALIASES = {"fast_double_bootstrap": "fdb", "parametric_bootstrap": "bootstrap"}

#: The bootstrap methods (they refit on draws).
BOOTSTRAP_METHODS = ("bootstrap", "fdb")

#: Note on the chi2 reference for nested factor ranks.
CHI2_NOT_VALID = (
    "chi2 reference NOT VALID for nested factor ranks: under the null the extra "
    "factor is not identified, so the LR statistic has no chi2 limit (the p-value is "
    "far too small); use method='fdb' or 'bootstrap'"
)


@dataclass
class CovStructureTest:
    """Outcome of a test of the covariance structure.

    Attributes
    ----------
    name : str
        Name of the test.
    stat : float
        Test statistic (NaN for an invalid test).
    df : int
        Degrees of freedom of the chi2 reference (0 for an invalid test).
    pvalue : float
        Upper-tail p-value from the reference distribution (NaN for an invalid test).
    null : str
        The null hypothesis in words.
    alternative : str
        The alternative in words.
    notes : list of str
        Caveats (boundary issues, corrections applied).
    reason : str
        Why the test is not valid (empty for a valid test).
    method : str
        Reference distribution: ``"chi2"``, ``"bootstrap"`` (parametric bootstrap) or
        ``"fdb"`` (fast double bootstrap).
    n_boot : int
        Bootstrap draws whose statistic was computed (0 for chi2).
    boot_stats : ndarray or None
        The (first-level) bootstrap statistics.
    boot_stats2 : ndarray or None
        The second-level statistics of the fast double bootstrap (one per first-level
        draw).
    """

    name: str
    stat: float
    df: int
    pvalue: float
    null: str
    alternative: str = ""
    notes: list[str] = field(default_factory=list)
    reason: str = ""
    method: str = "chi2"
    n_boot: int = 0
    boot_stats: np.ndarray | None = field(default=None, repr=False)
    boot_stats2: np.ndarray | None = field(default=None, repr=False)

    @property
    def is_valid(self) -> bool:
        """False when the test has nothing to test (see :attr:`reason`)."""
        return not self.reason

    @property
    def pval(self) -> float:
        """The p-value (linearmodels' name)."""
        return self.pvalue

    @property
    def dist(self) -> str:
        """Reference distribution."""
        if not self.is_valid:
            return "none (invalid test)"
        if self.method == "bootstrap":
            return f"parametric bootstrap ({self.n_boot} draws)"
        if self.method == "fdb":
            return f"fast double bootstrap ({self.n_boot} draws, one second-level each)"
        return f"chi2({self.df})"

    def __str__(self) -> str:
        if not self.is_valid:
            return "\n".join([f"Invalid test statistic: {self.name}", self.reason])
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
        if not self.is_valid:
            return f"CovStructureTest(name={self.name!r}, invalid: {self.reason!r})"
        return (
            f"CovStructureTest(name={self.name!r}, stat={self.stat:.4f}, df={self.df}, "
            f"pvalue={self.pvalue:.4g}, method={self.method!r})"
        )


def invalid_test(name: str, reason: str, null: str = "") -> CovStructureTest:
    """A test with nothing to test: NaN statistic and p-value, and the reason."""
    return CovStructureTest(name, float("nan"), 0, float("nan"), null, reason=reason)


def _chi2(name, stat, df, null, alternative="", notes=None) -> CovStructureTest:
    stat = float(max(stat, 0.0))
    return CovStructureTest(
        name, stat, int(df), float(stats.chi2.sf(stat, df)), null, alternative, notes or []
    )


def _with_bootstrap(test: CovStructureTest, boot_stats, boot_stats2=None) -> CovStructureTest:
    """``test`` with its p-value from the bootstrap statistics (chi2 kept in a note).

    With ``boot_stats2`` (second-level statistics) the p-value is the fast double
    bootstrap's (:func:`~lowrank_sur.bootstrap.fdb_pvalue`) and the single bootstrap's
    is kept in a note.
    """
    if boot_stats is None:
        return test
    boot = np.asarray(boot_stats, dtype=float)
    ok = np.isfinite(boot)
    test.notes.append(f"chi2({test.df}) p-value, for comparison only: {test.pvalue:.4g}")
    if not np.all(ok):
        test.notes.append(f"{int(np.sum(~ok))} bootstrap draw(s) could not be refitted "
                          "and were left out")
    test.pvalue = monte_carlo_pvalue(test.stat, boot)
    test.method, test.n_boot, test.boot_stats = "bootstrap", int(np.sum(ok)), boot
    if boot_stats2 is not None:
        boot2 = np.asarray(boot_stats2, dtype=float)
        test.notes.append(f"single parametric bootstrap p-value: {test.pvalue:.4g}")
        bad = int(np.sum(~np.isfinite(boot2)))
        if bad:
            test.notes.append(f"{bad} second-level draw(s) could not be refitted and "
                              "were left out")
        test.pvalue = fdb_pvalue(test.stat, boot, boot2)
        test.method, test.boot_stats2 = "fdb", boot2
    return test


def check_lr_method(method: str) -> str:
    """Validate ``method=`` of a likelihood-ratio test (aliases: ``LR_METHOD_ALIASES``)."""
    name = method.lower() if isinstance(method, str) else method
    name = LR_METHOD_ALIASES.get(name, name)
    if name not in LR_METHODS:
        raise ValueError(f"method must be one of {LR_METHODS} (or "
                         f"{tuple(LR_METHOD_ALIASES)}), got {method!r}")
    return name


def unrestricted_unavailable(design: SURDesign, Y: np.ndarray) -> str:
    """Why the unrestricted maximum does not exist for these data ("" when it exists).

    The unrestricted Sigma is the rank ``K - 1`` factor model; its likelihood is
    unbounded when the residual matrix can be made rank-deficient, generically when
    ``K + rank([X_1 ... X_K]) > N`` (:func:`lowrank_sur.bounded.check_bounded`).
    """
    n, K = Y.shape
    if K < 2:
        return "with one equation there is no cross-equation covariance to restrict"
    if K >= n:
        return (f"an unrestricted Sigma needs K < N (K={K}, N={n}): its MLE is singular")
    check = check_bounded(design, Y, K - 1)
    if check.bounded:
        return ""
    return (
        "the unrestricted maximum does not exist for these data (the likelihood of an "
        f"unrestricted Sigma is unbounded: equations {check.equations[:8]}: "
        f"{check.reason}); generically it needs K + rank([X_1 ... X_K]) <= N"
    )


def unrestricted_llf(design: SURDesign, Y: np.ndarray, **fit_options) -> tuple[float, int]:
    """Maximized log-likelihood with a free Sigma (iterated SUR).

    Any positive definite Sigma is ``F F' + diag(D)`` with ``K - 1`` factors, so the
    rank ``K - 1`` fit reaches the iterated-SUR coefficients; the log-likelihood is
    then concentrated exactly at ``Sigma = R'R / N``. Returns the llf and the
    number of sweeps. Raises ``ValueError`` when the maximum does not exist
    (:func:`unrestricted_unavailable`).
    """
    reason = unrestricted_unavailable(design, Y)
    if reason:
        raise ValueError(reason)
    n, K = Y.shape
    with warnings.catch_warnings():  # rank K - 1 is past the Ledermann bound on purpose
        warnings.simplefilter("ignore", IdentificationWarning)
        rec = fit_design(design, Y, K - 1, **fit_options)
    R = Y - design.fitted(rec.whitened_coefs)
    # concentrated at Sigma = R'R / N, where the quadratic form is N K
    llf = gaussian_llf(n, K, DenseCovariance(R.T @ R / n).logdet(), n * K)
    return float(max(llf, rec.llf)), rec.iterations


def lr_test_diagonal(llf: float, llf_diag: float, k_eqs: int, rank: int,
                     boot_stats=None, boot_stats2=None) -> CovStructureTest:
    """LR test of rank k against a diagonal Sigma (rank 0).

    Invalid at rank 0 (nothing to test). With ``boot_stats`` the p-value is the
    parametric bootstrap one (draws from the diagonal fit); with ``boot_stats2`` too,
    the fast double bootstrap one.
    """
    name = f"LR test: diagonal Sigma vs rank-{rank} factor structure"
    if rank == 0:
        return invalid_test(name, "the fit has rank 0: it is the diagonal model itself, so "
                            "there is nothing to test; fit a rank >= 1 or use "
                            "breusch_pagan()")
    df = n_cov_params(k_eqs, rank) - n_cov_params(k_eqs, 0)
    test = _chi2(
        name,
        2.0 * (llf - llf_diag),
        df,
        "Sigma is diagonal (no cross-equation correlation)",
        f"Sigma = F F' + diag(D) with {rank} factor(s)",
        ["k = 0 lies on the boundary of the parameter space; the chi2 reference "
         "distribution is conservative"] if boot_stats is None else [],
    )
    return _with_bootstrap(test, boot_stats, boot_stats2)


def lr_test_nested(
    llf_small: float, rank_small: int, llf_big: float, rank_big: int, k_eqs: int,
    method: str = "bootstrap", boot_stats=None, boot_stats2=None,
) -> CovStructureTest:
    """LR test of rank ``rank_small`` against ``rank_big`` (same data and regressors).

    Parameters
    ----------
    llf_small, rank_small, llf_big, rank_big : float, int
        The two fits.
    k_eqs : int
        Number of equations.
    method : {"bootstrap", "fdb", "chi2"}
        ``"bootstrap"`` needs ``boot_stats`` (the statistic on draws from the small
        fit), ``"fdb"`` also ``boot_stats2`` (the second-level statistics of the fast
        double bootstrap); ``"chi2"`` uses chi2 with the difference in free parameters
        and is labelled as not valid (see the module notes).
    boot_stats, boot_stats2 : array_like, optional
        Bootstrap statistics.
    """
    name = f"LR test: rank {rank_small} vs rank {rank_big}"
    df = n_cov_params(k_eqs, rank_big) - n_cov_params(k_eqs, rank_small)
    null = f"{rank_small} factor(s) suffice"
    if df <= 0:
        return invalid_test(
            name, f"ranks {rank_small} and {rank_big} both leave Sigma unrestricted for "
            f"K={k_eqs} equations (at or past the Ledermann bound they have the same "
            f"{n_cov_params(k_eqs, None)} free covariance parameters): the models are the "
            "same, so there is nothing to test", null)
    test = _chi2(name, 2.0 * (llf_big - llf_small), df, null, f"{rank_big} factors")
    method = check_lr_method(method)
    if method == "chi2":
        test.notes.append(CHI2_NOT_VALID)
        return test
    if boot_stats is None or (method == "fdb" and boot_stats2 is None):
        raise ValueError(f"method={method!r} needs the bootstrap statistics"
                         + (" of both levels" if method == "fdb" else ""))
    return _with_bootstrap(test, boot_stats, boot_stats2 if method == "fdb" else None)


def bartlett_factor(nobs: int, k_eqs: int, rank: int, n_regressors: float) -> float:
    """Bartlett's multiplier for the LR test of k factors on regression residuals.

    ``(N - p - (2 K + 5) / 6 - 2 k / 3) / N``. For a sample covariance of N
    observations about their mean the residual cross-product is Wishart with
    ``N - 1`` degrees of freedom and the factor is Bartlett's (1954)
    ``N - 1 - (2K + 5)/6 - 2k/3``; residuals of p shared regressors are Wishart
    with ``N - p`` (Anderson 2003, section 8.4), so ``N - 1`` becomes ``N - p``
    (p = 1 is the mean). With different regressors per equation ``p`` is their mean
    number, an approximation.
    """
    return (nobs - n_regressors - (2 * k_eqs + 5) / 6.0 - 2.0 * rank / 3.0) / nobs


def lr_test_unrestricted(
    llf: float, llf_unres: float, nobs: int, k_eqs: int, rank: int,
    n_regressors: float = 1.0, boot_stats=None, reason: str = "", boot_stats2=None,
) -> CovStructureTest:
    """Bartlett-corrected LR test of rank k against an unrestricted Sigma.

    Parameters
    ----------
    llf, llf_unres : float
        The rank-k and the unrestricted (iterated SUR) log-likelihoods.
    nobs, k_eqs, rank : int
        N, K, k.
    n_regressors : float
        Regressors per equation (their mean when they differ), for
        :func:`bartlett_factor`.
    boot_stats : array_like, optional
        Bootstrap statistics (Bartlett-corrected as the statistic); the p-value is
        then the bootstrap one.
    boot_stats2 : array_like, optional
        Second-level statistics: the p-value is then the fast double bootstrap one.
    reason : str
        Why the unrestricted maximum does not exist (:func:`unrestricted_unavailable`):
        the test is then invalid.
    """
    name = f"LR test: rank-{rank} factor structure vs unrestricted Sigma"
    null = f"Sigma = F F' + diag(D) with {rank} factor(s)"
    if reason:
        return invalid_test(name, reason, null)
    df = n_cov_params(k_eqs, None) - n_cov_params(k_eqs, rank)
    if df <= 0:
        return invalid_test(
            name, f"rank {rank} with K={k_eqs} equations leaves no degrees of freedom "
            f"((K - k)^2 - (K + k) = {(k_eqs - rank) ** 2 - (k_eqs + rank)} <= 0): the "
            "factor model is not a restriction of an unrestricted Sigma", null)
    factor = bartlett_factor(nobs, k_eqs, rank, n_regressors)
    lr = 2.0 * (llf_unres - llf)
    test = _chi2(
        name, factor * lr, df, null, "Sigma unrestricted",
        [f"Bartlett correction factor {factor:.4f} (N - p with p = {n_regressors:g} "
         f"regressors per equation) applied to LR = {lr:.4f}"],
    )
    return _with_bootstrap(test, boot_stats, boot_stats2)


def bootstrap_lr(design: SURDesign, whitened_coefs: np.ndarray, cov, refit: Callable,
                 n_boot: int, seed, method: str = "bootstrap",
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """The LR statistic on ``n_boot`` draws from the null fit ``(whitened_coefs, cov)``.

    Parameters
    ----------
    design : SURDesign
        The fitted model's design.
    whitened_coefs, cov
        The fit under the null.
    refit : callable
        ``refit(Y) -> (stat, null_coefs, null_cov)``: refits both models on one draw
        and returns the statistic and the null refit (for the second level of the
        fast double bootstrap).
    n_boot : int
        First-level draws.
    seed : int or Generator
        Seed of the draws (the first-level draws are the same for both methods).
    method : {"bootstrap", "fdb"}
        ``"fdb"`` adds one second-level draw per first-level draw
        (:func:`~lowrank_sur.bootstrap.fast_double_bootstrap_statistics`).

    Returns
    -------
    boot, boot2 : ndarray and ndarray or None
        First- and (for ``"fdb"``) second-level statistics; NaN where a draw could not
        be refitted (left out of the p-value). Warnings of the refits are silenced.
    """
    n_boot = check_n_boot(n_boot)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fast_double_bootstrap_statistics(
            design, whitened_coefs, cov, refit, n_boot, seed,
            double=check_lr_method(method) == "fdb")


def diagonal_null(design: SURDesign, Y: np.ndarray) -> tuple[np.ndarray, LowRankCovariance]:
    """The diagonal-Sigma fit: OLS coefficients and ``D = SSR / N``."""
    A = design.ols(Y)
    R = Y - design.fitted(A)
    d = np.einsum("ij,ij->j", R, R) / _rows_per_equation(design)
    return A, LowRankCovariance(np.zeros((Y.shape[1], 0)), d)


def _rows_per_equation(design: SURDesign):
    """N, or each equation's observed rows with missing responses (``missing="fiml"``)."""
    obs = getattr(design, "observed", None)
    return design.nobs if obs is None else obs.sum(axis=0)


def diagonal_llf(design: SURDesign, Y: np.ndarray) -> float:
    """Maximized log-likelihood with a diagonal Sigma (OLS per equation, D = SSR / N)."""
    R = Y - design.fitted(design.ols(Y))
    n, K = R.shape
    if getattr(design, "observed", None) is not None:  # each equation on its own rows
        nj = design.observed.sum(axis=0)
        d = np.einsum("ij,ij->j", R, R) / nj
        return float(-0.5 * np.sum(nj * (np.log(2.0 * np.pi) + np.log(d) + 1.0)))
    d = np.einsum("ij,ij->j", R, R) / n
    # at D = diag(R'R / N) the quadratic form is N K
    return float(gaussian_llf(n, K, np.sum(np.log(d)), n * K))


def breusch_pagan(design: SURDesign, Y: np.ndarray) -> CovStructureTest:
    """Breusch-Pagan LM test of a diagonal Sigma on OLS residual correlations.

    ``LM = N sum_{j<l} rho_jl^2``, chi2 with K(K-1)/2 df. Computed through the
    smaller of the K x K and N x N Gram matrices. Invalid with one equation.
    """
    if getattr(design, "observed", None) is not None:
        raise NotImplementedError(
            "breusch_pagan is not available yet with missing responses (missing='fiml'); "
            "use lr_test_diagonal"
        )
    R = Y - design.fitted(design.ols(Y))
    n, K = R.shape
    null = "Sigma is diagonal (all cross-equation error correlations are zero)"
    if K < 2:
        return invalid_test("Breusch-Pagan LM test", "the system has one equation: there "
                            "is no cross-equation correlation to test", null)
    Z = R - R.mean(axis=0)
    Z = Z / np.linalg.norm(Z, axis=0)
    G = Z.T @ Z if K <= n else Z @ Z.T
    sum_sq = float(np.einsum("ij,ij->", G, G))  # ||Z'Z||_F^2 = ||Z Z'||_F^2
    lm = n * (sum_sq - K) / 2.0
    return _chi2(
        "Breusch-Pagan LM test",
        lm,
        K * (K - 1) // 2,
        null,
        "some cross-equation error correlation is non-zero",
    )
