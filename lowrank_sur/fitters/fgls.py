"""Feasible GLS: two-step (Zellner) and iterated SUR, with an unrestricted or low-rank Sigma.

``method="fgls"`` with ``rank="full"`` (K < N) is the classic SUR estimator with an
unrestricted Sigma:

* two-step (the default): OLS per equation (least squares with identity weights when
  ``constraints`` are imposed), Sigma-hat from its residuals, one GLS step; Stata's
  ``sureg``, systemfit's ``"SUR"``, linearmodels' ``SUR.fit(method="gls")``;
* ``iterate=True``: the two steps repeated until coefficients and Sigma-hat settle;
  with the ML divisor (``sigma_df="nobs"``) this is the maximum likelihood estimate
  (Stata's ``isure``, linearmodels' ``iterate=True``).

Sigma-hat from the residuals ``r_i`` (:func:`sigma_hat`): ``r_i'r_j / N`` (``"nobs"``),
``r_i'r_j / sqrt((N - p_i)(N - p_j))`` (``"geomean"``, ``debiased=True``; Stata's
``dfk``) or ``r_i'r_j / (N - p_i - p_j + tr(P_i P_j))`` (``"theil"``, systemfit).
The fitted covariance is the Sigma-hat the last GLS step used (Stata's ``e(Sigma)``),
and the coefficient covariance is ``(X'(Sigma-hat^{-1} kron I) X)^{-1}``.

With an integer rank k, ``method="fgls"`` is the low-rank two-step estimator: OLS,
the factor fit of the OLS residuals (:func:`~lowrank_sur.factor.fit_factor`), one
matrix-free GLS step. Iterating it is the ALS fitter (``method="als"``).

The log-likelihood reported for a two-step fit is the Gaussian one at the FGLS
coefficients and the Sigma-hat used: not a maximum.

References
----------
Zellner, A. (1962). An efficient method of estimating seemingly unrelated regressions
and tests for aggregation bias. *Journal of the American Statistical Association* 57,
348-368.

Theil, H. (1971). *Principles of Econometrics*. Wiley, New York.

Henningsen, A. and Hamann, J. D. (2007). systemfit: A package for estimating systems
of simultaneous equations in R. *Journal of Statistical Software* 23(4).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..covariance import DenseCovariance, LowRankCovariance
from ..design import SURDesign
from ..exceptions import ConvergenceWarning, external_stacklevel
from ..factor import FactorOptions, fit_factor
from ..gls import GLSOperator, gls_dense
from ..options import FitOptions
from .common import Start, finish, llf_close, ols_start, whitened_constraints
from .record import FitRecord
from .registry import register_fitter

__all__ = ["fit_fgls", "sigma_hat"]

#: Relative residual of the matrix-free GLS step of the low-rank two-step estimator.
GLS_RTOL = 1e-12


def sigma_hat(design: SURDesign, R: np.ndarray, sigma_df: str = "nobs") -> np.ndarray:
    """Sigma-hat (K x K) from the N x K residuals ``R`` with the divisor ``sigma_df``.

    Parameters
    ----------
    design : SURDesign
        The design (``p_i`` and, for ``"theil"``, the hat matrices through ``Q_i``).
    R : ndarray, shape (N, K)
        Residuals.
    sigma_df : {"nobs", "geomean", "theil"}
        ``N``; ``sqrt((N - p_i)(N - p_j))``; ``N - p_i - p_j + tr(P_i P_j)`` with
        ``tr(P_i P_j) = ||Q_i' Q_j||_F^2``.
    """
    N, p = design.nobs, design.p.astype(float)
    S = R.T @ R
    if sigma_df == "nobs":
        return S / N
    if np.any(N - p <= 0):
        j = int(np.argmin(N - p))
        raise ValueError(
            f"{design.eq_names[j]}: sigma_df={sigma_df!r} divides by N - p_j = "
            f"{N - p[j]:g}; it needs more observations than regressors"
        )
    if sigma_df == "geomean":
        d = np.sqrt(N - p)
        return S / np.outer(d, d)
    if design.shared:
        tr = np.full((design.k_eqs, design.k_eqs), p[0])
    else:
        G = np.einsum("ipn,jqn->ijpq", design.Q, design.Q, optimize=True)
        tr = np.einsum("ijpq,ijpq->ij", G, G)
    return S / (N - p[:, None] - p[None, :] + tr)


def _dense_cov(design: SURDesign, S: np.ndarray) -> DenseCovariance:
    try:
        return DenseCovariance(S)
    except np.linalg.LinAlgError:
        raise ValueError(
            "the residual covariance Sigma-hat is singular (some equations' residuals are "
            f"linearly dependent; K={design.k_eqs}, N={design.nobs}): rank='full' needs "
            "K < N and equations that are not exact linear combinations of each other; "
            "use a low rank instead"
        ) from None


def _change(A0: np.ndarray, A1: np.ndarray, S0: np.ndarray, S1: np.ndarray) -> float:
    """Largest change of coefficients (in error sd) and of Sigma (relative to sd_i sd_j)."""
    sd = np.sqrt(np.diag(S1))
    dcoef = np.max(np.abs(A1 - A0) / sd[:, None]) if A0.size else 0.0
    return float(max(dcoef, np.max(np.abs(S1 - S0) / np.outer(sd, sd))))


def _fit_full(design: SURDesign, Y: np.ndarray, opts: FitOptions) -> FitRecord:
    """Two-step or iterated FGLS with an unrestricted Sigma (see the module notes)."""
    wc = whitened_constraints(design, opts)
    A = design.ols(Y)
    if wc is not None:
        A = wc.project(A)
    R = Y - design.fitted(A)
    cov = _dense_cov(design, sigma_hat(design, R, opts.sigma_divisor))
    history = [cov.loglike(R)]
    iterations, converged = 0, True
    maxiter = opts.maxiter if opts.iterate else 1
    singular = False
    while iterations < maxiter:
        try:
            A_new = gls_dense(design, cov, Y, wc)
        except np.linalg.LinAlgError:
            if not iterations:
                raise
            singular, converged = True, False  # an unbounded likelihood: Sigma-hat collapses
            break
        R = Y - design.fitted(A_new)
        iterations += 1
        history.append(cov.loglike(R))
        if opts.disp or opts.callback is not None:
            _report(opts, iterations, history)
        if not opts.iterate:
            A = A_new
            break
        try:
            new = _dense_cov(design, sigma_hat(design, R, opts.sigma_divisor))
        except ValueError:
            A, singular, converged = A_new, True, False
            break
        change = _change(A, A_new, cov.S, new.S)
        A = A_new
        converged = llf_close(history[-2], history[-1], opts.tol) and change <= opts.ptol
        if converged:
            break
        cov = new
    if singular:
        warnings.warn(
            f"iterated FGLS stopped at iteration {iterations}: Sigma-hat became singular "
            "(some equations' residuals are being made linearly dependent, so the "
            "likelihood has no maximum); the result is the last iterate, not an estimate",
            ConvergenceWarning,
            stacklevel=external_stacklevel(),
        )
    elif not converged:
        warnings.warn(
            f"iterated FGLS did not converge in maxiter={opts.maxiter} iterations; "
            "increase maxiter, or loosen tol and ptol",
            ConvergenceWarning,
            stacklevel=external_stacklevel(),
        )
    ml = opts.iterate and opts.sigma_divisor == "nobs"
    label = ("Iterated FGLS (maximum likelihood)" if ml else
             "Iterated FGLS" if opts.iterate else "Two-step FGLS")
    if opts.sigma_divisor != "nobs":
        label += f", Sigma df: {opts.sigma_divisor}"
    return FitRecord(
        coefs=design.to_coefs(A), cov=cov, llf=float(history[-1]),
        llf_history=[float(v) for v in history], iterations=iterations,
        converged=bool(converged), heywood=np.zeros(0, dtype=int), method=opts.method,
        rank=design.k_eqs, d_floor=np.zeros(design.k_eqs), whitened_coefs=A, label=label,
        constraints=opts.constraints,
    )


def _report(opts: FitOptions, iteration: int, history: list) -> None:
    if opts.disp:
        print(f"FGLS {iteration:5d}  llf {history[-1]: .10e}  "
              f"change {history[-1] - history[-2]:.3e}")
    if opts.callback is not None:
        opts.callback(iteration, history[-1])


def _fit_lowrank(design: SURDesign, Y: np.ndarray, rank: int, opts: FitOptions,
                 start: Start | None) -> FitRecord:
    """OLS, the factor fit of its residuals, one matrix-free GLS step."""
    if opts.iterate:
        raise ValueError(
            f"iterate=True with rank={rank} is the maximum likelihood fit of the low-rank "
            "model: use method='als' (or method='fgls' without iterate for two-step FGLS)"
        )
    if opts.sigma_df is not None:
        raise ValueError(
            f"sigma_df is the divisor of an unrestricted Sigma-hat (rank='full'); at "
            f"rank={rank} Sigma is the factor fit of the OLS residuals"
        )
    st, R = ols_start(design, Y, rank, opts, start)
    wc = whitened_constraints(design, opts)
    if wc is not None:
        st.A = wc.project(st.A)
        R = Y - design.fitted(st.A)
    st.history.append(LowRankCovariance(st.F, st.D).loglike(R))
    fo = FactorOptions(tol=opts.tol * 1e-2, ptol=opts.ptol * 0.1, maxiter=100 * opts.maxiter)
    ff = fit_factor(R, st.F, st.D, st.floor, fo)
    st.F, st.D = ff.F, ff.D
    cov = LowRankCovariance(st.F, st.D)
    op = GLSOperator(design, cov)
    a = op.solve(op.rhs(Y), rtol=GLS_RTOL)
    if wc is not None:
        a = wc.project(a, lambda B: np.column_stack([op.solve(b, rtol=GLS_RTOL) for b in B.T]))
    st.A = a.reshape(design.k_eqs, design.pmax)
    st.history.append(cov.loglike(Y - design.fitted(st.A)))
    st.iterations, st.evaluations, st.cg_iterations = 1, ff.evaluations, op.cg_iterations
    st.converged = ff.converged  # the factor step's own convergence
    rec = finish(design, st, opts)
    rec.label = "Two-step FGLS (factor Sigma)"
    rec.constraints = opts.constraints
    return rec


@register_fitter("fgls", "FGLS", starts=False, full=True)
def fit_fgls(design: SURDesign, Y: np.ndarray, rank: int, opts: FitOptions,
             start: Start | None = None) -> FitRecord:
    """Feasible GLS (see the module notes); ``rank == K`` is an unrestricted Sigma."""
    if rank == design.k_eqs:
        if start is not None:
            raise ValueError("start_params is not used by method='fgls' at rank='full'")
        return _fit_full(design, Y, opts)
    return _fit_lowrank(design, Y, rank, opts, start)
