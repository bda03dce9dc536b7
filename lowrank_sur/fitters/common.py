"""What the factor fitters share: the start, the stopping rule and the finished record.

The sweep loop itself is :mod:`lowrank_sur.fitters.sweeps`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..constraints import WhitenedConstraints
from ..covariance import LowRankCovariance
from ..design import SURDesign
from ..exceptions import ConvergenceWarning, HeywoodWarning, external_stacklevel
from ..options import FitOptions
from ..starts import start_values
from .record import FitRecord

__all__ = ["Start", "Progress", "ols_start", "finish", "param_change", "llf_close", "report",
           "join_equations", "whitened_constraints"]


@dataclass
class Start:
    """A starting point: whitened coefficients (K x pmax, or None for OLS), F and D."""

    A: np.ndarray | None
    F: np.ndarray
    D: np.ndarray
    label: str = "user"


#: OLS residual variances the fit can work with: squares and products of the variances
#: (and their inverses) must stay inside double precision.
VARIANCE_RANGE = (1e-100, 1e100)


def join_equations(names: list[str]) -> str:
    """``"equation 'a'"`` for one name, ``"equations 'a', 'b'"`` for several."""
    prefix = "equation "
    if len(names) > 1 and all(n.startswith(prefix) for n in names):
        return "equations " + ", ".join(n[len(prefix):] for n in names)
    return ", ".join(names)


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
        Outer iterations, factor-step evaluations (with those of the joint polish),
        conjugate-gradient iterations.
    polish_evaluations : int
        Log-likelihood and gradient evaluations of the joint polish
        (:func:`~lowrank_sur.fitters.polish.joint_polish`), included in ``evaluations``.
    stopped_degenerate : bool
        The sweeps stopped at a degenerate point (the log-likelihood rises as some
        ``D_j`` run to the floor: not a maximum; :func:`~lowrank_sur.bounded.is_degenerate`).
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
    last_change: float | None = None
    polish_evaluations: int = 0
    stopped_degenerate: bool = False
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


def ols_start(design: SURDesign, Y: np.ndarray, rank: int, opts: FitOptions,
              start: Start | None = None) -> tuple[Progress, np.ndarray]:
    """The floor on D and the starting point: OLS and principal components, or ``start``.

    Returns the start and its residuals. Raises when an equation's regressors fit
    its response exactly (the likelihood is then unbounded).
    """
    A = design.ols(Y)
    R = Y - design.fitted(A)
    # Sums of squares on each response's own scale, so that huge or tiny responses do not
    # overflow or underflow; a fit is exact when the residuals are at rounding level.
    scale = np.max(np.abs(Y), axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    ss_res = np.einsum("ij,ij->j", R / scale, R / scale)
    ss_y = np.einsum("ij,ij->j", Y / scale, Y / scale)
    exact = ss_res <= (1e-10) ** 2 * ss_y
    if np.any(exact):
        raise ValueError(
            f"{join_equations([design.eq_names[j] for j in np.flatnonzero(exact)])}: the "
            "regressors fit the response exactly (residuals at rounding level), so the "
            "likelihood is unbounded; drop the equation, or the regressors that reproduce "
            "the response"
        )
    with np.errstate(over="ignore", under="ignore"):
        s2 = ss_res / design.nobs * scale**2
    extreme = ~((s2 >= VARIANCE_RANGE[0]) & (s2 <= VARIANCE_RANGE[1]))
    if np.any(extreme):
        j = int(np.flatnonzero(extreme)[0])
        order = np.log10(ss_res[j] / design.nobs) + 2.0 * np.log10(scale[j])
        raise ValueError(
            f"{design.eq_names[j]}: the residual variance of the response is of order "
            f"1e{order:+.0f}, outside what the fit can represent ({VARIANCE_RANGE[0]:g} to "
            f"{VARIANCE_RANGE[1]:g}); rescale the response, e.g. divide it by "
            f"1e{np.log10(scale[j]):+.0f}"
        )
    floor = opts.d_floor * s2
    if start is None:
        F, D = start_values(R, rank, floor)
        return Progress(A, F, D, floor, []), R
    if start.A is not None:
        A = np.array(start.A, dtype=float)
        R = Y - design.fitted(A)
    return Progress(A, np.array(start.F, dtype=float), np.maximum(start.D, floor), floor, []), R


def whitened_constraints(design: SURDesign, opts: FitOptions) -> WhitenedConstraints | None:
    """The constraints of ``opts`` on the whitened coefficients (None without any)."""
    if opts.constraints is None:
        return None
    return WhitenedConstraints(design, *opts.constraints)


def _convergence_advice(st: Progress, opts: FitOptions) -> str:
    """Which tolerance held the fit back, and what to change."""
    h = st.history
    last = abs(h[-1] - h[-2]) / max(abs(h[-1]), 1.0) if len(h) > 1 else float("nan")
    text = f"last relative llf change {last:.2e} against tol={opts.tol:g}"
    if st.last_change is None:
        return text + "); increase maxiter, or loosen tol and ptol"
    text += f", largest parameter change {st.last_change:.2e} against ptol={opts.ptol:g}"
    if last <= opts.tol:
        return text + "); the log-likelihood had settled: increase maxiter or loosen ptol"
    if st.last_change <= opts.ptol:
        return text + "); the parameters had settled: increase maxiter or loosen tol"
    return text + "); increase maxiter, or loosen tol and ptol"


def _warn(design: SURDesign, st: Progress, heywood: np.ndarray, opts: FitOptions) -> None:
    if st.stopped_degenerate:
        names = join_equations([design.eq_names[j] for j in heywood[:10]])
        warnings.warn(
            f"{opts.method.upper()} stopped after {st.iterations} iterations at a degenerate "
            f"point, not a maximum: the log-likelihood keeps rising as the idiosyncratic "
            f"variances of {names} go to their floor (results.degenerate); the likelihood "
            "is unbounded at this rank for these data: use a lower rank, or more observations",
            ConvergenceWarning,
            stacklevel=external_stacklevel(),
        )
    elif not st.converged:
        warnings.warn(
            f"{opts.method.upper()} did not converge in maxiter={opts.maxiter} iterations "
            f"({_convergence_advice(st, opts)}",
            ConvergenceWarning,
            stacklevel=external_stacklevel(),
        )
    if heywood.size:
        names = join_equations([design.eq_names[j] for j in heywood[:10]])
        more = f" and {heywood.size - 10} more" if heywood.size > 10 else ""
        one = heywood.size == 1
        warnings.warn(
            f"Heywood case: the idiosyncratic variance{'' if one else 's'} of {names}{more} "
            f"hit {'its' if one else 'their'} floor (the factors explain nearly all of "
            f"{'its' if one else 'their'} error variance); consider a lower rank",
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
        polish_evaluations=int(st.polish_evaluations),
        whitened_coefs=st.A,
    )
