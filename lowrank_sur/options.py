"""Fitting options: one object with the defaults, the validation and the inner tolerances.

:class:`FitOptions` is what :func:`~lowrank_sur.fit_arrays`,
:func:`~lowrank_sur.fitters.fit_design` and :meth:`LowRankSUR.fit
<lowrank_sur.LowRankSUR.fit>` accept (as keywords) and what every registered fitter
receives.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .factor import EM_CYCLES, FactorOptions
from .registry import FITTERS

__all__ = ["FitOptions", "check_rank", "check_int", "check_constraint_arrays", "SIGMA_DF"]


def check_int(name: str, value, minimum: int) -> int:
    """Validate an integer argument (``bool`` is refused) against a minimum."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_positive(name: str, value, upper: float = np.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a positive float, got {value!r}")
    if not np.isfinite(value) or value <= 0 or value >= upper:
        where = "a positive finite number" if upper == np.inf else f"in (0, {upper:g})"
        raise ValueError(f"{name} must be {where}, got {value!r}")
    return float(value)


def check_rank(rank, k_eqs: int, nobs: int) -> int:
    """Validate the number of factors against K and N."""
    rank = check_int("rank", rank, 0)
    if rank >= k_eqs:
        raise ValueError(
            f"rank={rank} must be smaller than the number of equations K={k_eqs}; "
            f"rank={k_eqs - 1} already allows any covariance"
        )
    if rank >= nobs:
        raise ValueError(
            f"rank={rank} must be smaller than the number of observations N={nobs}"
        )
    return rank


#: Divisors of Sigma-hat for ``method="fgls"`` (see :class:`FitOptions`).
SIGMA_DF = ("nobs", "geomean", "theil")


#: Degrees of freedom of the t and F references with ``use_t=True``.
T_DF = ("system", "equation")


def _check_sigma_df(value, debiased: bool) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in SIGMA_DF:
        raise ValueError(f"sigma_df must be one of {SIGMA_DF} or None, got {value!r}")
    value = value.lower()
    if debiased and value != "geomean":
        raise ValueError(
            f"debiased=True is sigma_df='geomean' but sigma_df={value!r} was given; "
            "give one of them"
        )
    return value


def check_constraint_arrays(constraints) -> tuple[np.ndarray, np.ndarray]:
    """``(R, q)`` as float arrays: R 2-D (q x P) and q of length q, finite."""
    if not isinstance(constraints, tuple) or len(constraints) != 2:
        raise TypeError(
            "constraints must be a pair (R, q) of a q x P matrix and a length-q vector "
            f"(or, in LowRankSUR.fit, a string), got {type(constraints).__name__}"
        )
    R = np.atleast_2d(np.asarray(constraints[0], dtype=float))
    q = np.atleast_1d(np.asarray(constraints[1], dtype=float)).ravel()
    if R.ndim != 2 or q.shape != (R.shape[0],):
        raise ValueError(
            f"constraints: R has shape {R.shape} and q {q.shape}; q needs one value per row "
            "of R"
        )
    if not (np.all(np.isfinite(R)) and np.all(np.isfinite(q))):
        raise ValueError("constraints: R and q must be finite")
    return R, q


@dataclass(frozen=True)
class FitOptions:
    """Options of a fit, validated on construction.

    Parameters
    ----------
    method : str
        A registered fitter (:data:`lowrank_sur.registry.FITTERS`):
        ``"als"`` (default; matrix-free, O(N K k) memory) or ``"em"`` (the dense EM
        reference, O(K^2 + P^2) memory).
    tol : float
        Stop when the relative change of the log-likelihood over an iteration is at
        most ``tol`` *and* the largest parameter change is at most ``ptol``.
    ptol : float
        Parameter-change tolerance: coefficients in units of each equation's error
        standard deviation, and ``D_j``, ``||f_j||^2`` relative to ``Sigma_jj``; the
        step is divided by one minus the observed convergence rate (a step of a slowly
        converging fit is far from the fixed point). Default 1e-7: ALS then stops as
        close to the maximum as EM and linearmodels' iterated GLS (Grunfeld, unrestricted
        Sigma: 3e-8 standard errors).
    maxiter : int
        Maximum number of sweeps (ALS) or EM cycles; reaching it issues a
        :class:`~statsmodels.tools.sm_exceptions.ConvergenceWarning`.
    d_floor : float
        Floor for ``D_j`` relative to equation j's OLS residual variance, in (0, 1).
        Equations that end on the floor (Heywood cases) are reported.
    accelerate : bool
        EM only: SQUAREM acceleration of the EM map (``False`` is plain EM).
    disp : bool
        Print one line per iteration.
    callback : callable, optional
        ``callback(iteration, llf)`` after every iteration.
    n_starts : int or "auto"
        Number of starting points (:mod:`lowrank_sur.fitters.multistart`). ``"auto"`` (default)
        fits from the principal-component start and, when that fit ends on the
        floor of D, without converging, or on a degenerate point, or the system is tiny
        (N K <= 300), tries more starts (released Heywood equations, the rank k-1
        solution plus a new factor, seeded random ones), each run a short way and the
        best polished to convergence; with few observations per parameter
        (N < 5 (max p_j + k)) it always adds two (the grown and one random start). On
        tiny systems a search over which equations are on the floor follows; its starts
        come on top of ``n_starts``.
    seed : int
        Seed of the random starts (the fit is deterministic given it).
    use_t : bool
        Inference with t and F reference distributions (statsmodels' ``use_t``)
        instead of the normal and chi2, with ``results.df_resid_inference`` degrees
        of freedom (see ``t_df``): ``t(df)`` for every coefficient and ``F(r, df)``
        for a ``wald_test`` of r restrictions.
    debiased : bool
        Small-sample scaling of the error covariance used for the coefficient
        covariance, Stata's ``dfk`` (linearmodels' ``debiased``): ``Sigma_ij`` times
        ``N / sqrt((N - p_i)(N - p_j))``; for ``Sigma = F F' + diag(D)`` its
        analogue, loadings ``f_j sqrt(N / (N - p_j))`` and ``D_j N / (N - p_j - k)``
        (D is what is left after the regressors and the k factors;
        :mod:`lowrank_sur.coefcov.smallsample`), still low-rank. The coefficients
        (the MLE) and ``results.error_cov`` are unchanged. For ``method="fgls"`` at
        ``rank="full"`` the divisor is part of the estimator instead: Sigma-hat is
        ``r_i'r_j / sqrt((N - p_i)(N - p_j))`` in the GLS step and in the coefficient
        covariance (Stata's ``sureg, dfk``, systemfit's ``"geomean"``, linearmodels'
        ``debiased``), the same as ``sigma_df="geomean"``.
    iterate : bool
        ``method="fgls"`` only: iterate the FGLS steps to convergence (Stata's ``isure``,
        linearmodels' ``iterate=True``); with ``sigma_df="nobs"`` this is the maximum
        likelihood estimate. ``False`` (default) is two-step FGLS.
    sigma_df : {None, "nobs", "geomean", "theil"}
        ``method="fgls"`` only: the divisor of Sigma-hat from the residuals ``r_i``:
        ``"nobs"`` (``r_i'r_j / N``, maximum likelihood, the default), ``"geomean"``
        (``r_i'r_j / sqrt((N - p_i)(N - p_j))``; what ``debiased=True`` selects) or
        ``"theil"`` (``r_i'r_j / (N - p_i - p_j + tr(P_i P_j))`` with ``P_i`` the hat
        matrix of equation i; systemfit's ``"Theil"``). None follows ``debiased``.
    constraints : tuple of (ndarray, ndarray), optional
        Linear restrictions ``R b = q`` imposed in estimation (``R`` is q x P in the order
        of the parameters, ``q`` of length q); :meth:`LowRankSUR.fit
        <lowrank_sur.LowRankSUR.fit>` also takes them as a string of equations in the
        parameter names (:mod:`lowrank_sur.constraints`).

    t_df : {"system", "equation"}
        With ``use_t=True``, the degrees of freedom of the t and F references:
        ``"system"`` (default) ``N K - P + q``, the system's residual degrees of freedom
        with q restrictions imposed in estimation (``results.df_resid``; what Stata's
        ``sureg, small`` and statsmodels' ``use_t`` and ``fit_constrained`` use;
        linearmodels 7.1 keeps ``N K - P`` with constraints), or ``"equation"``
        ``N - max_j p_j``, the residual degrees of freedom of the equation with the
        most regressors, the small-sample choice when K is large relative to N
        (``docs/calibration.md``). ``cov_type="cluster"`` uses ``G - 1`` (its
        ``df_correction``).

    References
    ----------
    Theil, H. (1971). *Principles of Econometrics*. Wiley, New York (the ``"theil"``
    divisor, as in systemfit).

    Zellner, A. (1962). An efficient method of estimating seemingly unrelated regressions
    and tests for aggregation bias. *Journal of the American Statistical Association* 57,
    348-368.
    """

    method: str = "als"
    tol: float = 1e-10
    ptol: float = 1e-7
    maxiter: int = 1000
    d_floor: float = 1e-6
    accelerate: bool = True
    disp: bool = False
    callback: Callable[[int, float], None] | None = None
    n_starts: int | str = "auto"
    seed: int = 0
    use_t: bool = False
    debiased: bool = False
    iterate: bool = False
    sigma_df: str | None = None
    constraints: tuple | None = None
    t_df: str = "system"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "method", FITTERS.canonical(self.method))
        set_(self, "maxiter", check_int("maxiter", self.maxiter, 1))
        set_(self, "tol", _check_positive("tol", self.tol))
        set_(self, "ptol", _check_positive("ptol", self.ptol))
        set_(self, "d_floor", _check_positive("d_floor", self.d_floor, upper=1.0))
        for name in ("accelerate", "disp", "use_t", "debiased", "iterate"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not (isinstance(self.n_starts, str) and self.n_starts == "auto"):
            set_(self, "n_starts", check_int("n_starts", self.n_starts, 1))
        set_(self, "seed", check_int("seed", self.seed, 0))
        if self.callback is not None and not callable(self.callback):
            raise TypeError(f"callback must be callable, got {self.callback!r}")
        set_(self, "sigma_df", _check_sigma_df(self.sigma_df, self.debiased))
        for name, used in (("iterate", self.iterate), ("sigma_df", self.sigma_df is not None)):
            if used and self.method != "fgls":
                raise ValueError(
                    f"{name} is an option of method='fgls' (feasible GLS); method="
                    f"{self.method!r} would ignore it"
                )
        if self.constraints is not None:
            set_(self, "constraints", check_constraint_arrays(self.constraints))
        if self.t_df not in T_DF:
            raise ValueError(f"t_df must be one of {T_DF}, got {self.t_df!r}")

    @classmethod
    def from_kwargs(cls, options: FitOptions | None = None, **kwargs) -> FitOptions:
        """Build options from keywords (overriding ``options``); unknown names raise TypeError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise TypeError(
                f"unexpected fit option(s) {unknown}; the options are {sorted(names)}"
            )
        base = options if options is not None else cls()
        return dataclasses.replace(base, **kwargs) if kwargs else base

    @property
    def sigma_divisor(self) -> str:
        """The divisor of Sigma-hat: ``sigma_df``, or what ``debiased`` selects."""
        if self.sigma_df is not None:
            return self.sigma_df
        return "geomean" if self.debiased else "nobs"

    # ------------------------------------------------------- inner tolerances
    @property
    def cg_rtol(self) -> float:
        """Relative residual tolerance of the conjugate-gradient beta step."""
        return min(1e-10, 1e-2 * float(np.sqrt(self.tol)))

    def factor_options(self, em_cycles: int = EM_CYCLES) -> FactorOptions:
        """Options of the factor step inside a sweep (tighter than the sweep's own)."""
        return FactorOptions(tol=self.tol * 1e-2, ptol=self.ptol * 0.1, em_cycles=em_cycles)
