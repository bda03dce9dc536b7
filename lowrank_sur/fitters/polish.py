"""A joint quasi-Newton step on all parameters, for where the alternating sweeps crawl.

Block coordinate ascent between the coefficients and ``(F, D)`` converges linearly,
slowly when the two blocks are strongly coupled (few observations per equation).
:func:`joint_polish` maximizes the log-likelihood over everything at once with
L-BFGS-B and the exact gradient, in dimensionless coordinates: the whitened
coefficients and the loadings of equation j divided by its residual standard
deviation, and ``log D_j`` (bounded below by the floor). Per evaluation: the
residuals, ``R Sigma^{-1}`` through Woodbury and the factor-step gradient
(:meth:`~lowrank_sur.factor.FactorProblem.gradient`), O(N K (p + k)); no K x K array.
The sweeps then resume from its point (which confirms the maximum).

References
----------
Byrd, R. H., Lu, P., Nocedal, J. and Zhu, C. (1995). A limited memory algorithm for
bound constrained optimization. SIAM Journal on Scientific Computing 16, 1190-1208.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from ..covariance import LowRankCovariance
from ..design import SURDesign
from ..factor import FactorProblem
from .common import Progress

__all__ = ["joint_polish"]


class _Joint:
    """``-llf / N`` and its gradient in the packed dimensionless coordinates."""

    def __init__(self, design: SURDesign, Y: np.ndarray, st: Progress, sd: np.ndarray,
                 constraints=None) -> None:
        self.design, self.Y, self.floor, self.sd = design, Y, st.floor, sd
        self.K, self.k, self.n = design.k_eqs, st.F.shape[1], design.nobs
        self.idx = design.packed_index()
        self.nA, self.nF = self.idx.size, self.K * self.k
        self.best: tuple[float, np.ndarray] | None = None
        self.Rx = None
        if constraints is not None:
            # R~ a = q in the packed dimensionless coordinates x_A = a / sd
            self.Rx = constraints.Rw[:, self.idx] * np.repeat(sd, design.pmax)[self.idx]
            self.q = constraints.q
            self.RRt = self.Rx @ self.Rx.T

    def project(self, x: np.ndarray, direction: bool = False) -> np.ndarray:
        """``x`` (or a gradient, with ``direction``) projected onto the constraints."""
        if self.Rx is None:
            return x
        x = x.copy()
        r = self.Rx @ x[: self.nA] - (0.0 if direction else self.q)
        x[: self.nA] -= self.Rx.T @ np.linalg.solve(self.RRt, r)
        return x

    def pack(self, A, F, D) -> np.ndarray:
        a = (A / self.sd[:, None]).ravel()[self.idx]
        return np.concatenate([a, (F / self.sd[:, None]).ravel(), np.log(D)])

    def unpack(self, x):
        K, pm = self.K, self.design.pmax
        A = np.zeros(K * pm)
        A[self.idx] = x[: self.nA]
        A = A.reshape(K, pm) * self.sd[:, None]
        F = x[self.nA : self.nA + self.nF].reshape(K, self.k) * self.sd[:, None]
        return A, F, np.exp(x[self.nA + self.nF :])

    def fg(self, x):
        x = self.project(x)
        A, F, D = self.unpack(x)
        R = self.Y - self.design.fitted(A)
        try:
            cov = LowRankCovariance(F, D, validate=False)
        except np.linalg.LinAlgError:
            return np.inf, np.zeros_like(x)
        f = -cov.loglike(R) / self.n
        gA = self.design.rmul(cov.solve(R)) * (self.sd[:, None] / self.n)
        gF, gD = FactorProblem(R, self.k, self.floor).gradient(F, D)
        g = self.project(-np.concatenate([gA.ravel()[self.idx], gF.ravel(), gD]),
                         direction=True)
        if np.isfinite(f) and (self.best is None or f < self.best[0]):
            self.best = (f, x.copy())
        return f, g


def joint_polish(design: SURDesign, Y: np.ndarray, st: Progress, maxiter: int = 500,
                 constraints=None) -> bool:
    """Maximize over (coefficients, F, log D) jointly from the current point.

    Updates ``st`` (A, F, D, the history, one iteration and the evaluations) and
    returns whether the log-likelihood rose. With ``constraints``
    (:class:`~lowrank_sur.constraints.WhitenedConstraints`) the coefficients stay on
    ``R~ a = q``: every point is projected onto it and the gradient along it.
    """
    if st.F.shape[1] == 0:
        return False
    prob = _Joint(design, Y, st, np.sqrt(st.D + np.einsum("ij,ij->i", st.F, st.F)),
                  constraints)
    x0 = prob.pack(st.A, st.F, st.D)
    lb = np.full(x0.size, -np.inf)
    lb[prob.nA + prob.nF :] = np.log(st.floor)
    f0, _ = prob.fg(x0)
    opt = optimize.minimize(prob.fg, x0, jac=True, method="L-BFGS-B",
                            bounds=optimize.Bounds(lb, np.inf),
                            options={"maxiter": maxiter, "maxcor": 30, "ftol": 1e-15,
                                     "gtol": 1e-12})
    f_best, x_best = prob.best
    st.iterations += 1
    st.evaluations += int(opt.nfev)
    improved = f_best < f0
    if improved:
        st.A, st.F, st.D = prob.unpack(prob.project(x_best))
    st.history.append(max(-f_best * design.nobs, st.history[-1]))
    return bool(improved)
