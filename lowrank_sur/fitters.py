"""Maximum-likelihood fitters for SUR with ``Sigma = F F' + diag(D)``.

Two fitters reach the same maximum:

``als``
    Block coordinate ascent. Each sweep solves the GLS beta step exactly given
    Sigma (matrix-free preconditioned conjugate gradients through the Woodbury
    identity, warm-started) and then maximizes over ``(F, D)`` given the residuals
    (SQUAREM-accelerated PX-EM on the residual matrix). Memory O(N K k); no K x K
    array is ever formed.
``em``
    The textbook EM/ECM reference: one GLS step with the dense K x K
    ``Sigma^{-1}`` and one EM step for the factor model per iteration (optionally
    SQUAREM-accelerated), then ECM sweeps (the same dense GLS step, then the factor
    step solved to convergence) until the ALS stopping rule holds: EM alone crawls
    near Heywood boundaries, where its stopping rule fires far from the maximum.
    Memory O(K^2 + P^2).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import linalg

from .acceleration import squarem
from .covariance import LowRankCovariance
from .design import SURDesign
from .exceptions import (
    ConvergenceWarning,
    HeywoodWarning,
    IdentificationWarning,
    external_stacklevel,
)
from .factor import EM_CYCLES, FactorProblem, fit_factor, start_values
from .gls import GLSOperator, gls_dense

__all__ = ["fit_arrays", "fit_design", "FitRecord", "METHODS", "DEFAULTS"]

METHODS = ("als", "em")

#: Default stopping rule and floor shared by both fitters.
DEFAULTS = {"tol": 1e-10, "ptol": 1e-6, "maxiter": 1000, "d_floor": 1e-6}

_LOG_2PI = float(np.log(2.0 * np.pi))

#: EM fitter: SQUAREM cycles of plain EM before the ECM polishing sweeps take over.
_EM_CYCLES = 100
#: Factor step: EM cycles before L-BFGS when the previous sweep needed L-BFGS.
_EM_CYCLES_AFTER_PROFILE = 2


@dataclass
class FitRecord:
    """What a fitter found.

    Attributes
    ----------
    coefs : list of ndarray
        Coefficients per equation (on the scale of the given regressors).
    F : ndarray, shape (K, k)
        Factor loadings (any rotation; see :func:`canonical_loadings`).
    D : ndarray, shape (K,)
        Idiosyncratic variances.
    llf : float
        Maximized log-likelihood.
    llf_history : list of float
        Log-likelihood at the start and after each iteration (never decreasing).
    iterations : int
        Sweeps (ALS) or EM iterations/cycles plus ECM polishing sweeps (EM).
    converged : bool
        Whether the stopping rule was met before ``maxiter``.
    heywood : ndarray of int
        Indices of equations whose D sits at its floor.
    method : str
        ``"als"`` or ``"em"``.
    rank : int
        Number of factors k.
    d_floor : ndarray, shape (K,)
        The floor used for D (relative floor times each equation's OLS residual variance).
    cg_iterations : int
        Total conjugate-gradient iterations (ALS).
    factor_iterations : int
        Total EM maps and profile-likelihood evaluations spent in the factor step.
    whitened_coefs : ndarray, shape (K, pmax)
        Coefficients on the orthonormalized design (internal, reused for inference).
    """

    coefs: list[np.ndarray]
    F: np.ndarray
    D: np.ndarray
    llf: float
    llf_history: list[float]
    iterations: int
    converged: bool
    heywood: np.ndarray
    method: str
    rank: int
    d_floor: np.ndarray
    cg_iterations: int = 0
    factor_iterations: int = 0
    whitened_coefs: np.ndarray | None = field(default=None, repr=False)

    @property
    def cov(self) -> LowRankCovariance:
        """The fitted covariance as a :class:`LowRankCovariance`."""
        return LowRankCovariance(self.F, self.D)


# ---------------------------------------------------------------- validation
def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_rank(rank, k_eqs: int, nobs: int) -> int:
    """Validate the number of factors against K and N."""
    rank = _check_int("rank", rank, 0)
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


def check_options(method, tol, maxiter) -> tuple[str, float, int]:
    """Validate the fitter options shared by the array and model interfaces."""
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    maxiter = _check_int("maxiter", maxiter, 1)
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.floating)):
        raise TypeError(f"tol must be a positive float, got {tol!r}")
    if not np.isfinite(tol) or tol <= 0:
        raise ValueError(f"tol must be a positive finite number, got {tol!r}")
    return method.lower(), float(tol), maxiter


# ------------------------------------------------------------------ helpers
def _param_change(A0, A1, F0, F1, D0, D1) -> float:
    """Largest standardized change in coefficients and in each equation's variance split."""
    h0 = np.einsum("ij,ij->i", F0, F0)
    h1 = np.einsum("ij,ij->i", F1, F1)
    s = D1 + h1
    dvar = np.max((np.abs(D1 - D0) + np.abs(h1 - h0)) / s)
    dcoef = np.max(np.abs(A1 - A0) / np.sqrt(s)[:, None]) if A0.size else 0.0
    return float(max(dvar, dcoef))


def _llf_close(ll_prev: float, ll: float, tol: float) -> bool:
    return abs(ll - ll_prev) <= tol * max(abs(ll), 1.0)


def _start(design: SURDesign, Y: np.ndarray, rank: int, d_floor: float):
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
    floor = d_floor * s2
    F, D = start_values(R, rank, floor)
    return A, R, F, D, floor


def _finish(design, A, F, D, llf, history, it, converged, method, floor, cg_it, f_it, maxiter):
    heywood = np.flatnonzero(D <= floor * (1.0 + 1e-6))
    if not converged:
        warnings.warn(
            f"{method.upper()} did not converge in maxiter={maxiter} iterations "
            f"(last relative llf change "
            f"{abs(history[-1] - history[-2]) / max(abs(history[-1]), 1.0):.2e}); "
            "increase maxiter or loosen tol",
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
    return FitRecord(
        coefs=design.to_coefs(A),
        F=F,
        D=D,
        llf=float(llf),
        llf_history=[float(v) for v in history],
        iterations=int(it),
        converged=bool(converged),
        heywood=heywood,
        method=method,
        rank=F.shape[1],
        d_floor=floor,
        cg_iterations=int(cg_it),
        factor_iterations=int(f_it),
        whitened_coefs=A,
    )


# ---------------------------------------------------------------------- ALS
def _fit_als(design, Y, rank, *, tol, ptol, maxiter, d_floor, disp, callback):
    A, R, F, D, floor = _start(design, Y, rank, d_floor)
    inner = {"tol": tol * 1e-2, "ptol": ptol * 1e-1}
    history = [LowRankCovariance(F, D).loglike(R)]
    if rank == 0 or design.shared:
        # GLS equals OLS whatever Sigma is: one beta step, then factor analysis of R.
        ff = fit_factor(R, F, D, floor, maxiter=100 * maxiter, **inner)
        history.append(max(ff.llf, history[-1]))
        return _finish(
            design, A, ff.F, ff.D, ff.llf, history, 1, ff.converged, "als", floor, 0,
            ff.maps + ff.profile_evals, maxiter,
        )
    cg_count = [0]

    def beta_step(A, F, D):
        op = GLSOperator(design, LowRankCovariance(F, D))
        a = op.solve(op.rhs(Y), x0=A.ravel(), rtol=min(1e-8, 1e-2 * np.sqrt(tol)))
        cg_count[0] += op.cg_iterations
        return a.reshape(A.shape)

    A, F, D, it, converged, f_it = _sweeps(
        design, Y, beta_step, A, F, D, floor, history, it=0, converged=False, tol=tol,
        ptol=ptol, maxiter=maxiter, disp=disp, callback=callback, name="ALS sweep",
    )
    return _finish(
        design, A, F, D, history[-1], history, it, converged, "als", floor, cg_count[0], f_it,
        maxiter,
    )


def _sweeps(design, Y, beta_step, A, F, D, floor, history, *, it, converged, tol, ptol,
            maxiter, disp, callback, name):
    """Block coordinate ascent: ``beta_step(A, F, D)`` then the factor step, until converged.

    Shared by ALS (matrix-free beta step) and the EM reference's finishing sweeps (dense
    beta step). Appends to ``history``; returns ``A, F, D, it, converged, factor maps``.
    """
    f_it = 0
    em_cycles = EM_CYCLES
    while it < maxiter:
        it += 1
        A_new = beta_step(A, F, D)
        ff = fit_factor(
            Y - design.fitted(A_new), F, D, floor, tol=tol * 1e-2, ptol=ptol * 0.1,
            em_cycles=em_cycles,
        )
        f_it += ff.maps + ff.profile_evals
        # EM crawled in this sweep (near a Heywood boundary): next time go to L-BFGS sooner
        em_cycles = _EM_CYCLES_AFTER_PROFILE if ff.profile_evals else EM_CYCLES
        change = _param_change(A, A_new, F, ff.F, D, ff.D)
        converged = _llf_close(history[-1], ff.llf, tol) and change <= ptol
        A, F, D = A_new, ff.F, ff.D
        history.append(ff.llf)
        if disp:
            print(f"{name} {it:5d}  llf {ff.llf: .10e}  change {history[-1] - history[-2]:.3e}")
        if callback is not None:
            callback(it, ff.llf)
        if converged:
            break
    return A, F, D, it, converged, f_it


# ----------------------------------------------------------------------- EM
def _fit_em(design, Y, rank, *, tol, ptol, maxiter, d_floor, disp, callback, accelerate=True):
    A0, R0, F0, D0, floor = _start(design, Y, rank, d_floor)
    K, pm, n = design.k_eqs, design.pmax, design.nobs
    nA, nF = K * pm, K * rank

    def unpack(x):
        return x[:nA].reshape(K, pm), x[nA : nA + nF].reshape(K, rank), x[nA + nF :]

    def step(x):
        A, F, D = unpack(x)
        # The textbook M-step: dense K x K Sigma and its inverse.
        Sigma = F @ F.T
        Sigma[np.diag_indices(K)] += D
        try:
            c = linalg.cho_factor(Sigma, lower=True)
        except linalg.LinAlgError:
            return x, -np.inf
        Sigma_inv = linalg.cho_solve(c, np.eye(K))
        R = Y - design.fitted(A)
        logdet = 2.0 * np.sum(np.log(np.diag(c[0])))
        llf = -0.5 * n * (K * _LOG_2PI + logdet) - 0.5 * np.einsum(
            "ij,ij->", R @ Sigma_inv, R
        )
        A_new = gls_dense(design, Sigma_inv, Y)
        R_new = Y - design.fitted(A_new)
        prob = FactorProblem(R_new, rank, floor, px=False)
        fd, _ = prob.em_step(prob.pack(F, D))
        return np.concatenate([A_new.ravel(), fd]), float(llf)

    def project(x):
        x = x.copy()
        x[nA + nF :] = np.maximum(x[nA + nF :], floor)
        return x

    count = [0]

    def check(x, Tx, ll_prev, ll):
        count[0] += 1
        if disp:
            print(f"EM iteration {count[0]:5d}  llf {ll: .10e}  change {ll - ll_prev:.3e}")
        if callback is not None:
            callback(count[0], ll)
        if not _llf_close(ll_prev, ll, tol):
            return False
        A, F, D = unpack(x)
        A1, F1, D1 = unpack(Tx)
        return _param_change(A, A1, F, F1, D, D1) <= ptol

    x0 = np.concatenate([A0.ravel(), F0.ravel(), D0])
    # units of each coordinate (sigma_j for coefficients and loadings, sigma_j^2 for D_j):
    # the SQUAREM step length, hence the whole sequence, is then scale-equivariant
    s2 = floor / d_floor
    sd = np.sqrt(s2)
    xscale = np.concatenate([np.repeat(sd, pm), np.repeat(sd, rank), s2])
    res = squarem(
        step, x0, check=check, project=project, maxiter=min(maxiter, _EM_CYCLES),
        accelerate=accelerate, scale=xscale,
    )
    A, F, D = (v.copy() for v in unpack(res.x))
    history, it, f_it = list(res.llf_history), res.cycles, res.maps
    # ECM sweeps: the same GLS step, then the factor step solved to convergence. They
    # confirm the EM stopping point (one sweep) or finish where EM crawls (Heywood cases).
    def beta_step(A, F, D):
        Sigma = F @ F.T
        Sigma[np.diag_indices(K)] += D
        return gls_dense(design, linalg.cho_solve(linalg.cho_factor(Sigma), np.eye(K)), Y)

    A, F, D, it, converged, f_sweeps = _sweeps(
        design, Y, beta_step, A, F, D, floor, history, it=it, converged=res.converged,
        tol=tol, ptol=ptol, maxiter=maxiter, disp=disp, callback=callback, name="ECM sweep",
    )
    f_it += f_sweeps
    return _finish(
        design, A, F, D, history[-1], history, it, converged, "em", floor, 0, f_it, maxiter,
    )


# --------------------------------------------------------------------- API
def fit_design(
    design: SURDesign,
    Y: np.ndarray,
    rank: int,
    *,
    method: str = "als",
    tol: float = DEFAULTS["tol"],
    ptol: float = DEFAULTS["ptol"],
    maxiter: int = DEFAULTS["maxiter"],
    d_floor: float = DEFAULTS["d_floor"],
    accelerate: bool = True,
    disp: bool = False,
    callback: Callable[[int, float], None] | None = None,
) -> FitRecord:
    """Fit on a prepared :class:`~lowrank_sur.design.SURDesign` (see :func:`fit_arrays`)."""
    method, tol, maxiter = check_options(method, tol, maxiter)
    rank = check_rank(rank, design.k_eqs, design.nobs)
    if not (0 < ptol):
        raise ValueError(f"ptol must be positive, got {ptol!r}")
    if not (0 < d_floor < 1):
        raise ValueError(f"d_floor must lie in (0, 1), got {d_floor!r}")
    kw = dict(tol=tol, ptol=ptol, maxiter=maxiter, d_floor=d_floor, disp=disp, callback=callback)
    if method == "als":
        return _fit_als(design, Y, rank, **kw)
    return _fit_em(design, Y, rank, accelerate=accelerate, **kw)


def fit_arrays(
    Xs: Sequence[np.ndarray],
    Y: np.ndarray,
    rank: int,
    *,
    method: str = "als",
    tol: float = DEFAULTS["tol"],
    ptol: float = DEFAULTS["ptol"],
    maxiter: int = DEFAULTS["maxiter"],
    d_floor: float = DEFAULTS["d_floor"],
    accelerate: bool = True,
    disp: bool = False,
    eq_names: Sequence[str] | None = None,
) -> FitRecord:
    """Fit a SUR system with ``Sigma = F F' + diag(D)`` by maximum likelihood.

    Parameters
    ----------
    Xs : sequence of array_like
        K regressor matrices, ``Xs[j]`` of shape (N, p_j); each holds its own
        constant column if one is wanted.
    Y : array_like, shape (N, K)
        Responses, one column per equation.
    rank : int
        Number of factors k, ``0 <= k < K`` and ``k < N``. ``0`` is a diagonal Sigma
        (OLS per equation); ``K - 1`` leaves Sigma unrestricted (iterated SUR).
    method : {"als", "em"}
        ``"als"`` (default): matrix-free block coordinate ascent, O(N K k) memory.
        ``"em"``: the dense EM reference, O(K^2 + P^2) memory.
    tol : float
        Stop when the relative change of the log-likelihood over an iteration is at
        most ``tol`` *and* the largest parameter change is at most ``ptol``.
    ptol : float
        Parameter-change tolerance: coefficients in units of each equation's error
        standard deviation, and ``D_j``, ``||f_j||^2`` relative to ``Sigma_jj``.
    maxiter : int
        Maximum number of sweeps (ALS) or EM cycles; reaching it issues a
        :class:`~statsmodels.tools.sm_exceptions.ConvergenceWarning`.
    d_floor : float
        Floor for ``D_j`` relative to equation j's OLS residual variance. Equations
        that end on the floor (Heywood cases) are reported in ``heywood``.
    accelerate : bool
        EM only: SQUAREM acceleration of the EM map (``False`` is plain EM).
    disp : bool
        Print one line per iteration.
    eq_names : sequence of str, optional
        Equation labels for messages.

    Returns
    -------
    FitRecord
        ``coefs``, ``F``, ``D``, ``llf``, ``llf_history``, ``iterations``,
        ``converged``, ``heywood`` and diagnostics.

    Examples
    --------
    >>> from lowrank_sur import fit_arrays, simulate_sur
    >>> sim = simulate_sur(nobs=200, k_eqs=20, n_exog=3, rank=2, seed=0)
    >>> rec = fit_arrays(sim.Xs, sim.Y, rank=2)
    >>> rec.converged
    True
    """
    names = list(eq_names) if eq_names is not None else None
    Y = np.asarray(Y, dtype=float)
    if Y.ndim != 2:
        raise ValueError(f"Y must be 2-D (N x K), got shape {Y.shape}")
    if len(Xs) != Y.shape[1]:
        raise ValueError(
            f"Xs has {len(Xs)} regressor matrices but Y has {Y.shape[1]} columns; "
            "give one regressor matrix per equation"
        )
    if not np.all(np.isfinite(Y)):
        bad = np.flatnonzero(~np.all(np.isfinite(Y), axis=0))
        label = names[bad[0]] if names else f"equation {bad[0]}"
        raise ValueError(f"{label}: the response contains NaN or inf")
    design = SURDesign(Xs, eq_names=names)
    if Y.shape[0] != design.nobs:
        raise ValueError(f"Y has {Y.shape[0]} rows but the regressors have {design.nobs}")
    if isinstance(rank, (int, np.integer)) and 0 < rank < design.k_eqs:
        if (design.k_eqs - rank) ** 2 < design.k_eqs + rank:
            warnings.warn(
                f"rank={rank} exceeds the Ledermann bound for K={design.k_eqs} equations "
                "((K - k)^2 < K + k): Sigma is identified but F and D separately are not",
                IdentificationWarning,
                stacklevel=2,
            )
    return fit_design(
        design, Y, rank, method=method, tol=tol, ptol=ptol, maxiter=maxiter,
        d_floor=d_floor, accelerate=accelerate, disp=disp,
    )
