"""The ALS fitter: GLS beta step (matrix-free CG), then the factor step; O(N K k).

Block coordinate ascent. Each sweep solves the GLS beta step given Sigma
(matrix-free preconditioned conjugate gradients through the Woodbury identity,
warm-started; :class:`~lowrank_sur.gls.GLSOperator`) and then maximizes over
``(F, D)`` given the residuals (:func:`~lowrank_sur.factor.fit_factor`). No K x K
array is ever formed.

The solve stops at the residual ``cg_rtol ||c~||`` of the normal equations (exact), or,
when the previous solves showed that one CG iteration reduces the residual at least
:data:`CG_FORCING`-fold (a well-conditioned system: many equations, weak coupling), at
``CG_FORCING`` times the warm-start residual if that is larger: the forcing term of an
inexact Newton method (Dembo, Eisenstat and Steihaug 1982); not under linear
constraints, whose projection step assumes the exact solution. Every CG iterate from
the warm start lowers the GLS objective, so each sweep still raises the log-likelihood; a
fixed point has a zero residual, so the maxima are those of the exact iteration; and in
the last sweeps, whose warm-start residual is below ``cg_rtol ||c~|| / CG_FORCING``, the
solve is the exact one. On K = 5000, N = 300, k = 4 it took a fit from 17 CG iterations
to 10 (the same 7 sweeps, log-likelihood equal to 3e-15). Where CG converges slowly
(Munnell's 48 equations with N = 17: about 10 iterations a solve) the steps stay exact:
inexact ones were measured to lengthen the sweeps there (40 to 55-86).

References
----------
Dembo, R. S., Eisenstat, S. C. and Steihaug, T. (1982). Inexact Newton methods. SIAM
Journal on Numerical Analysis 19, 400-408.
"""

from __future__ import annotations

import numpy as np

from ..covariance import LowRankCovariance
from ..design import SURDesign
from ..factor import FactorOptions, fit_factor
from ..gls import GLSOperator
from ..options import FitOptions
from .common import Start, finish, ols_start, whitened_constraints
from .record import FitRecord
from .registry import register_fitter
from .sweeps import run_sweeps

__all__ = ["fit_als"]

#: Relative residual of the conjugate-gradient solves ``A~^{-1} R~'`` of a constrained step.
CONSTRAINT_RTOL = 1e-10

#: Forcing term of the inexact beta step (see the module notes).
CG_FORCING = 1e-2


@register_fitter("als", "ALS (maximum likelihood)")
def fit_als(design: SURDesign, Y: np.ndarray, rank: int, opts: FitOptions,
           start: Start | None = None) -> FitRecord:
    """Fit by alternating GLS and factor steps (see the module notes)."""
    st, R = ols_start(design, Y, rank, opts, start)
    wc = whitened_constraints(design, opts)
    if wc is not None:  # start from the least-squares point that satisfies them
        st.A = wc.project(st.A)
        R = Y - design.fitted(st.A)
    st.history.append(LowRankCovariance(st.F, st.D).loglike(R))
    if (rank == 0 or design.shared) and wc is None:
        # GLS equals OLS whatever Sigma is: one beta step, then factor analysis of R.
        st.A = design.ols(Y)
        R = Y - design.fitted(st.A)
        fo = FactorOptions(tol=opts.tol * 1e-2, ptol=opts.ptol * 0.1, maxiter=100 * opts.maxiter)
        ff = fit_factor(R, st.F, st.D, st.floor, fo)
        st.history.append(max(ff.llf, st.history[-1]))
        st.F, st.D, st.converged = ff.F, ff.D, ff.converged
        st.iterations, st.evaluations = 1, ff.evaluations
        return finish(design, st, opts, llf=ff.llf)

    QtY = design.ols(Y)  # Q_j' y_j, which every right-hand side uses
    YT = np.ascontiguousarray(Y.T)
    # the residuals of a point the sweeps did not compute them for (an extrapolated
    # one) go into one K x N buffer kept for the fit: fresh pages cost more than the pass
    buffer: list[np.ndarray] = []
    # whether one CG iteration reduces the residual CG_FORCING-fold (None: not known)
    cg_fast: list = [None]

    def beta_step(A: np.ndarray, F: np.ndarray, D: np.ndarray,
                  R: np.ndarray | None) -> np.ndarray:
        # CG on the correction from the current coefficients, from the residuals R at
        # A (those the last factor step used, when known): stopping rule
        # ||c~ - A~ a|| <= cg_rtol ||c~|| as for a warm-started solve of A~ a = c~
        op = GLSOperator(design, LowRankCovariance(F, D, validate=False))
        if R is None:
            if not buffer:
                buffer.append(np.empty_like(YT))
            R = design.residuals(YT, A, out=buffer[0])
        r0, c_norm = op.residual_system(QtY, A, Y, R)
        # exact under constraints: projecting an inexact solution need not raise the llf
        delta = _solve(op, r0, opts.cg_rtol * c_norm, cg_fast if wc is None else [False])
        A1 = A + delta.reshape(A.shape)
        if wc is not None:  # constrained GLS: q more solves with the same operator
            A1 = wc.project(A1, lambda B: np.column_stack(
                [op.solve(b, rtol=CONSTRAINT_RTOL) for b in B.T]))
        st.cg_iterations += op.cg_iterations
        return A1

    return finish(design, run_sweeps(design, Y, beta_step, st, opts, "ALS sweep"), opts)



def _solve(op: GLSOperator, r0: np.ndarray, exact_atol: float, fast: list) -> np.ndarray:
    """The correction ``A~^{-1} r0``, inexact while CG is known to be fast (module notes).

    ``fast[0]`` is None until an exact solve has had to reduce the residual at least
    :data:`CG_FORCING`-fold; it then records whether that took at most one iteration per
    such reduction. A forced solve that needs more than one iteration turns it off for
    the rest of the fit.
    """
    r_norm = float(np.linalg.norm(r0))
    forced = fast[0] is True and CG_FORCING * r_norm > exact_atol
    atol = CG_FORCING * r_norm if forced else exact_atol
    before = op.cg_iterations
    delta = op.solve(r0, rtol=0.0, atol=atol)
    its = op.cg_iterations - before
    if forced:
        fast[0] = its <= 1
    elif fast[0] is None and its and atol <= CG_FORCING * r_norm:
        # the residual fell by atol / |r0| in `its` iterations
        fast[0] = (atol / r_norm) ** (1.0 / its) <= CG_FORCING
    return delta
