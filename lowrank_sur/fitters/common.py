"""What the factor fitters share: the OLS start, the sweep loop and the finished record.

A sweep is the beta step (a GLS solve given Sigma, supplied by the fitter) followed
by the factor step (:func:`~lowrank_sur.factor.fit_factor` on the new residuals),
until the log-likelihood and the parameters stop changing.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..covariance import LowRankCovariance
from ..design import SURDesign
from ..exceptions import ConvergenceWarning, HeywoodWarning, external_stacklevel
from ..factor import EM_CYCLES, fit_factor
from ..options import FitOptions
from ..starts import start_values
from .record import FitRecord

__all__ = ["Progress", "ols_start", "run_sweeps", "finish", "param_change", "llf_close"]

#: Factor step: EM cycles before L-BFGS when the previous sweep needed L-BFGS.
EM_CYCLES_AFTER_PROFILE = 2


@dataclass
class Progress:
    """The state of a fit between iterations.

    Attributes
    ----------
    A : ndarray, shape (K, pmax)
        Whitened coefficients.
    F, D : ndarray
        Loadings and idiosyncratic variances.
    floor : ndarray
        The floor on D.
    history : list of float
        Log-likelihood after each iteration.
    iterations, evaluations, cg_iterations : int
        Outer iterations, factor-step evaluations, conjugate-gradient iterations.
    converged : bool
        Whether the stopping rule held at the last iteration.
    resid : ndarray, shape (N, K), optional
        The residuals at ``A`` (None when not known); a view of a buffer that the
        next sweep overwrites.
    """

    A: np.ndarray
    F: np.ndarray
    D: np.ndarray
    floor: np.ndarray
    history: list
    iterations: int = 0
    evaluations: int = 0
    cg_iterations: int = 0
    converged: bool = False
    resid: np.ndarray | None = None


def param_change(A0, A1, F0, F1, D0, D1) -> float:
    """Largest standardized change in coefficients and in each equation's variance split."""
    h0 = np.einsum("ij,ij->i", F0, F0)
    h1 = np.einsum("ij,ij->i", F1, F1)
    s = D1 + h1
    dvar = np.max((np.abs(D1 - D0) + np.abs(h1 - h0)) / s)
    dcoef = np.max(np.abs(A1 - A0) / np.sqrt(s)[:, None]) if A0.size else 0.0
    return float(max(dvar, dcoef))


def llf_close(ll_prev: float, ll: float, tol: float) -> bool:
    """Whether the relative change of the log-likelihood is at most ``tol``."""
    return abs(ll - ll_prev) <= tol * max(abs(ll), 1.0)


def report(opts: FitOptions, name: str, iteration: int, llf: float, change: float) -> None:
    """Print (``disp``) and call back (``callback``) after an iteration."""
    if opts.disp:
        print(f"{name} {iteration:5d}  llf {llf: .10e}  change {change:.3e}")
    if opts.callback is not None:
        opts.callback(iteration, llf)


def ols_start(design: SURDesign, Y: np.ndarray, rank: int,
              opts: FitOptions) -> tuple[Progress, np.ndarray]:
    """OLS coefficients, the floor on D and a principal-component start for ``(F, D)``.

    Returns the start and the OLS residuals. Raises when an equation's regressors fit
    its response exactly (the likelihood is then unbounded).
    """
    A = design.ols(Y)
    R = Y - design.fitted(A)
    s2 = np.einsum("ij,ij->j", R, R) / design.nobs
    # A fit is exact when the residuals are at rounding level relative to the response.
    ynorm2 = np.einsum("ij,ij->j", Y, Y) / design.nobs
    exact = s2 <= (1e-10) ** 2 * np.maximum(ynorm2, np.finfo(float).tiny)
    if np.any(exact):
        bad = [design.eq_names[j] for j in np.flatnonzero(exact)]
        raise ValueError(
            f"{', '.join(bad)}: the regressors fit the response exactly (residuals at "
            "rounding level), so the likelihood is unbounded; drop the equation, or the "
            "regressors that reproduce the response"
        )
    floor = opts.d_floor * s2
    F, D = start_values(R, rank, floor)
    return Progress(A, F, D, floor, [], resid=R), R


def run_sweeps(design: SURDesign, Y: np.ndarray, beta_step: Callable[[Progress], np.ndarray],
               st: Progress, opts: FitOptions, name: str) -> Progress:
    """Block coordinate ascent: ``beta_step(st)`` then the factor step, until converged.

    Shared by ALS (matrix-free beta step) and the EM reference's finishing sweeps
    (dense beta step). Updates and returns ``st``.
    """
    em_cycles = EM_CYCLES
    # residuals in the K x N layout of the design, one buffer reused by every sweep
    YT = np.ascontiguousarray(Y.T)
    buf = np.empty_like(YT)
    while st.iterations < opts.maxiter:
        st.iterations += 1
        A_new = beta_step(st)
        R = design.residuals(YT, A_new, out=buf)
        ff = fit_factor(R, st.F, st.D, st.floor, opts.factor_options(em_cycles))
        st.evaluations += ff.evaluations
        # EM crawled in this sweep (near a Heywood boundary): next time go to L-BFGS sooner
        em_cycles = EM_CYCLES_AFTER_PROFILE if ff.profile_evaluations else EM_CYCLES
        change = param_change(st.A, A_new, st.F, ff.F, st.D, ff.D)
        st.converged = llf_close(st.history[-1], ff.llf, opts.tol) and change <= opts.ptol
        st.A, st.F, st.D, st.resid = A_new, ff.F, ff.D, R
        st.history.append(ff.llf)
        report(opts, name, st.iterations, ff.llf, st.history[-1] - st.history[-2])
        if st.converged:
            break
    return st


def _warn(design: SURDesign, st: Progress, heywood: np.ndarray, opts: FitOptions) -> None:
    if not st.converged:
        h = st.history
        last = abs(h[-1] - h[-2]) / max(abs(h[-1]), 1.0) if len(h) > 1 else float("nan")
        warnings.warn(
            f"{opts.method.upper()} did not converge in maxiter={opts.maxiter} iterations "
            f"(last relative llf change {last:.2e}); increase maxiter or loosen tol",
            ConvergenceWarning,
            stacklevel=external_stacklevel(),
        )
    if heywood.size:
        names = [design.eq_names[j] for j in heywood[:10]]
        more = f" and {heywood.size - 10} more" if heywood.size > 10 else ""
        warnings.warn(
            f"Heywood case: the idiosyncratic variance of {', '.join(names)}{more} hit its "
            "floor (the factors explain nearly all of its error variance); consider a "
            "lower rank",
            HeywoodWarning,
            stacklevel=external_stacklevel(),
        )


def finish(design: SURDesign, st: Progress, opts: FitOptions,
           llf: float | None = None) -> FitRecord:
    """Warn (non-convergence, Heywood cases) and build the :class:`FitRecord`."""
    heywood = np.flatnonzero(st.D <= st.floor * (1.0 + 1e-6))
    _warn(design, st, heywood, opts)
    return FitRecord(
        coefs=design.to_coefs(st.A),
        cov=LowRankCovariance(st.F, st.D),
        llf=float(st.history[-1] if llf is None else llf),
        llf_history=[float(v) for v in st.history],
        iterations=int(st.iterations),
        converged=bool(st.converged),
        heywood=heywood,
        method=opts.method,
        rank=st.F.shape[1],
        d_floor=st.floor,
        cg_iterations=int(st.cg_iterations),
        evaluations=int(st.evaluations),
        whitened_coefs=st.A,
    )
