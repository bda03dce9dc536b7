"""The ALS fitter: exact GLS beta step (matrix-free CG), then the factor step; O(N K k).

Block coordinate ascent. Each sweep solves the GLS beta step exactly given Sigma
(matrix-free preconditioned conjugate gradients through the Woodbury identity,
warm-started; :class:`~lowrank_sur.gls.GLSOperator`) and then maximizes over
``(F, D)`` given the residuals (:func:`~lowrank_sur.factor.fit_factor`). No K x K
array is ever formed.
"""

from __future__ import annotations

import numpy as np

from ..covariance import LowRankCovariance
from ..design import SURDesign
from ..factor import FactorOptions, fit_factor
from ..gls import GLSOperator
from ..options import FitOptions
from .common import Progress, finish, ols_start, run_sweeps
from .record import FitRecord
from .registry import register_fitter

__all__ = ["fit_als"]


@register_fitter("als", "ALS (maximum likelihood)")
def fit_als(design: SURDesign, Y: np.ndarray, rank: int, opts: FitOptions) -> FitRecord:
    """Fit by alternating GLS and factor steps (see the module notes)."""
    st, R = ols_start(design, Y, rank, opts)
    st.history.append(LowRankCovariance(st.F, st.D).loglike(R))
    if rank == 0 or design.shared:
        # GLS equals OLS whatever Sigma is: one beta step, then factor analysis of R.
        fo = FactorOptions(tol=opts.tol * 1e-2, ptol=opts.ptol * 0.1, maxiter=100 * opts.maxiter)
        ff = fit_factor(R, st.F, st.D, st.floor, fo)
        st.history.append(max(ff.llf, st.history[-1]))
        st.F, st.D, st.converged = ff.F, ff.D, ff.converged
        st.iterations, st.evaluations = 1, ff.evaluations
        return finish(design, st, opts, llf=ff.llf)

    QtY = st.A.copy()  # the OLS start is Q_j' y_j, which every right-hand side uses

    def beta_step(st: Progress) -> np.ndarray:
        # CG on the correction from the current coefficients, whose residuals the last
        # factor step used: stopping rule ||c~ - A~ a|| <= cg_rtol ||c~|| as for a
        # warm-started solve of A~ a = c~
        op = GLSOperator(design, LowRankCovariance(st.F, st.D, validate=False))
        r0, c_norm = op.residual_system(QtY, st.A, Y, st.resid)
        delta = op.solve(r0, rtol=0.0, atol=opts.cg_rtol * c_norm)
        st.cg_iterations += op.cg_iterations
        return st.A + delta.reshape(st.A.shape)

    return finish(design, run_sweeps(design, Y, beta_step, st, opts, "ALS sweep"), opts)
