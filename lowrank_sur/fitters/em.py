"""The EM reference fitter: the textbook EM/ECM with the dense K x K ``Sigma^{-1}``.

One GLS step with the dense ``Sigma^{-1}`` and one EM step for the factor model per
iteration (optionally SQUAREM-accelerated), then ECM sweeps (the same dense GLS
step, then the factor step solved to convergence) until the ALS stopping rule
holds: EM alone crawls near Heywood boundaries, where its stopping rule fires far
from the maximum. Memory O(K^2 + P^2).

References
----------
Rubin, D. B. and Thayer, D. T. (1982). EM algorithms for ML factor analysis.
Psychometrika 47, 69-76.

Meng, X.-L. and Rubin, D. B. (1993). Maximum likelihood estimation via the ECM
algorithm: a general framework. Biometrika 80, 267-278.
"""

from __future__ import annotations

import numpy as np

from ..acceleration import squarem
from ..covariance import DenseCovariance, LowRankCovariance
from ..design import SURDesign
from ..factor import FactorProblem
from ..gls import gls_dense
from ..options import FitOptions
from .common import Start, finish, llf_close, ols_start, param_change, report, whitened_constraints
from .record import FitRecord
from .registry import register_fitter
from .sweeps import run_sweeps

__all__ = ["fit_em"]

#: SQUAREM cycles of plain EM before the ECM polishing sweeps take over. Plain EM for
#: the factor model crawls where the coefficients and the covariance are coupled
#: (Munnell ranks 1 and 2: 100 cycles did not converge, and the ECM sweeps and their
#: joint polish did the rest, 122-146 iterations in all); with 10, EM converges there in
#: 29 iterations to the same maximum.
EM_CYCLES = 10


def _dense(F: np.ndarray, D: np.ndarray) -> DenseCovariance:
    """The textbook M-step's dense K x K Sigma (with its Cholesky factor)."""
    return DenseCovariance(LowRankCovariance(F, D, validate=False).to_dense(force=True))


class _EMMap:
    """The joint EM map on ``x = (A, F, D)``: dense GLS step, then one factor EM step."""

    def __init__(self, design: SURDesign, Y: np.ndarray, rank: int, floor: np.ndarray,
                 constraints=None):
        self.design, self.Y, self.rank, self.floor = design, Y, rank, floor
        self.constraints = constraints
        K, pm = design.k_eqs, design.pmax
        self.nA, self.nF = K * pm, K * rank

    def unpack(self, x):
        K, d = self.design.k_eqs, self.design
        nA, nF = self.nA, self.nF
        return x[:nA].reshape(K, d.pmax), x[nA : nA + nF].reshape(K, self.rank), x[nA + nF :]

    def step(self, x):
        A, F, D = self.unpack(x)
        try:
            cov = _dense(F, D)
        except np.linalg.LinAlgError:
            return x, -np.inf
        llf = cov.loglike(self.Y - self.design.fitted(A))
        A_new = gls_dense(self.design, cov, self.Y, self.constraints)
        prob = FactorProblem(self.Y - self.design.fitted(A_new), self.rank, self.floor, px=False)
        fd, _ = prob.em_step(prob.pack(F, D))
        return np.concatenate([A_new.ravel(), fd]), float(llf)

    def project(self, x):
        x = x.copy()
        x[self.nA + self.nF :] = np.maximum(x[self.nA + self.nF :], self.floor)
        return x


@register_fitter("em", "EM (maximum likelihood)", dense=True)
def fit_em(design: SURDesign, Y: np.ndarray, rank: int, opts: FitOptions,
           start: Start | None = None) -> FitRecord:
    """Fit by EM with the dense ``Sigma^{-1}``, finished by ECM sweeps (see the module notes)."""
    st, _ = ols_start(design, Y, rank, opts, start)
    wc = whitened_constraints(design, opts)
    if wc is not None:  # start from the least-squares point that satisfies them
        st.A = wc.project(st.A)
    em = _EMMap(design, Y, rank, st.floor, wc)
    count = [0]

    def check(x, Tx, ll_prev, ll):
        count[0] += 1
        report(opts, "EM iteration", count[0], ll, ll - ll_prev)
        if not llf_close(ll_prev, ll, opts.tol):
            return False
        (A, F, D), (A1, F1, D1) = em.unpack(x), em.unpack(Tx)
        return param_change(A, A1, F, F1, D, D1) <= opts.ptol

    x0 = np.concatenate([st.A.ravel(), st.F.ravel(), st.D])
    # units of each coordinate (sigma_j for coefficients and loadings, sigma_j^2 for D_j):
    # the SQUAREM step length, hence the whole sequence, is then scale-equivariant
    s2 = st.floor / opts.d_floor
    sd = np.sqrt(s2)
    xscale = np.concatenate([np.repeat(sd, design.pmax), np.repeat(sd, rank), s2])
    res = squarem(em.step, x0, check=check, project=em.project,
                  maxiter=min(opts.maxiter, EM_CYCLES), accelerate=opts.accelerate,
                  scale=xscale)
    st.A, st.F, st.D = (v.copy() for v in em.unpack(res.x))
    st.resid = None  # the OLS residuals no longer match st.A
    st.history = list(res.llf_history)
    st.iterations, st.evaluations, st.converged = res.iterations, res.evaluations, res.converged

    # ECM sweeps: the same GLS step, then the factor step solved to convergence. They
    # confirm the EM stopping point (one sweep) or finish where EM crawls (Heywood cases).
    def beta_step(A: np.ndarray, F: np.ndarray, D: np.ndarray, R=None) -> np.ndarray:
        return gls_dense(design, _dense(F, D), Y, wc)

    return finish(design, run_sweeps(design, Y, beta_step, st, opts, "ECM sweep"), opts)
