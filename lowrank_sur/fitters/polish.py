"""A joint quasi-Newton step on all parameters, for where the alternating sweeps crawl.

Block coordinate ascent between the coefficients and ``(F, D)`` converges linearly,
slowly when the two blocks are strongly coupled (few observations per equation).
:func:`joint_polish` maximizes the log-likelihood over everything at once with
L-BFGS-B and the exact gradient, in coordinates scaled by the diagonal of the Hessian
at the starting point (:func:`_unit_scales`: whitened coefficients, loadings in the
canonical rotation, ``log D_j`` bounded below by the floor), then finishes with a few
projected Newton-CG steps (Hessian-vector products from differences of the exact
gradient, preconditioned by L-BFGS-B's inverse Hessian), because L-BFGS-B stops where
the decrease of the objective is below its rounding, short of the maximum along the
weakly determined directions. Per evaluation: the residuals, ``R Sigma^{-1}`` through
Woodbury and the factor-step gradient
(:meth:`~lowrank_sur.factor.FactorProblem.gradient`), O(N K (p + k)); no K x K array.
The sweeps then resume from its point (which confirms the maximum).

References
----------
Nocedal, J. and Wright, S. J. (2006). Numerical Optimization, 2nd ed., chapter 7
(inexact Newton-CG). Springer.

Byrd, R. H., Lu, P., Nocedal, J. and Zhu, C. (1995). A limited memory algorithm for
bound constrained optimization. SIAM Journal on Scientific Computing 16, 1190-1208.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import optimize
from scipy.sparse.linalg import LinearOperator, cg

from ..bounded import is_degenerate
from ..covariance import canonical_loadings
from ..design import SURDesign
from ..factor import FactorProblem
from .common import Progress

__all__ = ["joint_polish"]


#: Largest ``S_jj / D_j`` for which the sweeps and the polish use the ordinary (Woodbury)
#: llf; beyond it its rounding (``1e-16 N max_j S_jj / D_j``) hides the last gains, and
#: :meth:`~lowrank_sur.covariance.LowRankCovariance.loglike_accurate` is used.
ACCURATE_LLF_RATIO = 1e4

#: Largest scale of a ``log D_j`` coordinate (an equation near its floor has a flat
#: direction there; the bound, not the scale, then holds it).
LOG_D_SCALE_MAX = 10.0

#: Largest entry of the Newton step (unit-curvature coordinates) at which the Newton-CG
#: finish stops, by default.
NEWTON_STEP_TOL = 1e-8

#: L-BFGS-B iterations between the checks for a degenerate point (see :func:`joint_polish`).
DEGENERATE_CHECK_EVERY = 20

#: Newton iterations of that finish, and conjugate-gradient iterations of each.
NEWTON_ITERATIONS = 8
NEWTON_CG_ITERATIONS = 20


def _unit_scales(F: np.ndarray, D: np.ndarray, n: int):
    """Units of ``(a_j, F_jr, log D_j)`` in which ``-llf / N`` has curvature about 1.

    The diagonal of the Hessian at a maximum, from the canonical loadings
    (``F' D^{-1} F = diag(lambda)``): ``[Sigma^{-1}]_jj / N`` for each whitened
    coefficient (the regressors are orthonormal), ``[Sigma^{-1}]_jj lambda_r /
    (1 + lambda_r) + [Sigma^{-1} F]_jr^2`` for a loading and ``(D_j
    [Sigma^{-1}]_jj)^2 / 2`` for ``log D_j``. A diagonal preconditioner: the
    dimensionless coordinates of the first version (coefficients and loadings in units
    of ``sigma_j``) left curvatures from ``1 / N`` to ``S_jj / D_j`` and L-BFGS-B
    used its 500 iterations on Munnell at rank 2 without converging.
    """
    lam = np.einsum("ij,ij->j", F / D[:, None], F)
    SiF = (F / D[:, None]) / (1.0 + lam)
    si = 1.0 / D - np.einsum("ij,ij->i", SiF, F / D[:, None])
    si = np.maximum(si, 1e-300)
    cA = np.sqrt(n / si)
    cF = 1.0 / np.sqrt(si[:, None] * (lam / (1.0 + lam))[None, :] + SiF * SiF)
    cD = np.minimum(np.sqrt(2.0) / np.maximum(D * si, 1e-300), LOG_D_SCALE_MAX)
    return cA, cF, cD


class _Joint:
    """``-llf / N`` and its gradient in packed, preconditioned coordinates.

    ``x = (a / cA, F / cF, log D / cD)`` with the units of :func:`_unit_scales` at
    the starting point (loadings in its canonical rotation).
    """

    def __init__(self, design: SURDesign, Y: np.ndarray, st: Progress, constraints=None) -> None:
        self.design, self.Y, self.floor = design, Y, st.floor
        self.K, self.k, self.n = design.k_eqs, st.F.shape[1], design.nobs
        self.idx = design.packed_index()
        self.nA, self.nF = self.idx.size, self.K * self.k
        cA, self.cF, self.cD = _unit_scales(st.F, st.D, self.n)
        self.cA = np.repeat(cA, design.pmax)[self.idx]
        self.best: tuple[float, np.ndarray] | None = None
        self.nfev = 0
        self.Rx = None
        if constraints is not None:
            # R~ a = q in the packed coordinates x_A = a / cA
            self.Rx = constraints.Rw[:, self.idx] * self.cA
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
        a = A.ravel()[self.idx] / self.cA
        return np.concatenate([a, (F / self.cF).ravel(), np.log(D) / self.cD])

    def unpack(self, x):
        K, pm = self.K, self.design.pmax
        A = np.zeros(K * pm)
        A[self.idx] = x[: self.nA] * self.cA
        F = x[self.nA : self.nA + self.nF].reshape(K, self.k) * self.cF
        return A.reshape(K, pm), F, np.exp(x[self.nA + self.nF :] * self.cD)

    def without_rotations(self, x: np.ndarray, d: np.ndarray) -> np.ndarray:
        """``d`` without its components along the rotations of the loadings at ``x``.

        The likelihood depends on ``F`` only through ``F F'``: ``F -> F exp(S)`` (``S``
        skew) leaves it unchanged, so the Hessian is singular along ``F S`` and a
        Newton step's component there is arbitrary (it would hide a converged step).
        """
        if self.k < 2:
            return d
        _, F, _ = self.unpack(x)
        T = []
        for r, c in itertools.combinations(range(self.k), 2):
            t = np.zeros(x.size)
            dF = np.zeros_like(F)
            dF[:, r], dF[:, c] = F[:, c], -F[:, r]
            t[self.nA : self.nA + self.nF] = (dF / self.cF).ravel()
            T.append(t)
        Q, _ = np.linalg.qr(np.column_stack(T))
        return d - Q @ (Q.T @ d)

    def fg(self, x):
        self.nfev += 1
        x = self.project(x)
        A, F, D = self.unpack(x)
        R = self.Y - self.design.fitted(A)
        fp = FactorProblem(R, self.k, self.floor)
        f = -fp.loglike(F, D) / self.n  # one EM map, which the gradient reuses
        cov = fp.covariance(F, D)
        if cov is None or not np.isfinite(f):
            return np.inf, np.zeros_like(x)
        if np.max(fp.s / D) > ACCURATE_LLF_RATIO:  # near the floor: no cancellation
            f = -cov.loglike_accurate(R) / self.n
        gA = self.design.rmul(cov.solve(R)).ravel()[self.idx] * (self.cA / self.n)
        gF, gD = fp.gradient(F, D)  # in units of sigma_j = fp.sd for F, log D for D
        gF = gF * (self.cF / fp.sd[:, None])
        g = self.project(-np.concatenate([gA, gF.ravel(), gD * self.cD]), direction=True)
        if np.isfinite(f) and (self.best is None or f < self.best[0]):
            self.best = (f, x.copy())
        return f, g


def _newton_direction(prob: _Joint, x: np.ndarray, g: np.ndarray, free: np.ndarray,
                      hess_inv) -> np.ndarray:
    """Preconditioned CG for ``H d = -g`` on the ``free`` coordinates, rotations removed."""
    n = x.size

    def hv(v):
        v = np.where(free, v, 0.0)
        h = 1e-6 / max(float(np.max(np.abs(v))), np.finfo(float).tiny)
        return np.where(free, (prob.fg(x + h * v)[1] - g) / h, 0.0)

    def precondition(v):
        return np.where(free, hess_inv.matvec(np.where(free, v, 0.0)), 0.0)

    d, _ = cg(LinearOperator((n, n), matvec=hv), -np.where(free, g, 0.0), rtol=1e-3,
              maxiter=NEWTON_CG_ITERATIONS, M=LinearOperator((n, n), matvec=precondition))
    return prob.without_rotations(x, d)


def _newton_finish(prob: _Joint, x: np.ndarray, f: float, lb: np.ndarray, hess_inv,
                   step_tol: float, maxit: int = NEWTON_ITERATIONS) -> tuple[np.ndarray, float]:
    """Projected Newton-CG steps from ``x`` until the step is at most ``step_tol``.

    Hessian-vector products are forward differences of the exact gradient on the
    coordinates not held at their bound; the conjugate gradients
    (:data:`NEWTON_CG_ITERATIONS` at most) are preconditioned with ``hess_inv``. A step
    is kept when ``f`` decreases, or stays within its rounding while the projected
    gradient decreases. Returns the point and its ``f``.
    """
    noise = 1e-13 * (1.0 + abs(f))
    _, g = prob.fg(x)
    for _ in range(maxit):
        free = ~((x - lb <= 1e-9) & (g > 0))
        gf = np.where(free, g, 0.0)
        d = _newton_direction(prob, x, g, free, hess_inv)
        if not np.all(np.isfinite(d)) or float(gf @ d) >= 0.0:
            d = -gf
        if float(np.max(np.abs(d))) <= step_tol:
            break
        for t in (1.0, 0.25):
            trial = np.maximum(x + t * d, lb)
            f_new, g_new = prob.fg(trial)
            pg_new = np.max(np.abs(np.where(trial - lb > 1e-9, g_new, np.minimum(g_new, 0))))
            if f_new < f or (f_new <= f + noise and pg_new < np.max(np.abs(gf))):
                x, f, g = trial, min(f, f_new), g_new
                break
        else:
            break
    return x, f


def joint_polish(design: SURDesign, Y: np.ndarray, st: Progress, maxiter: int = 200,
                 constraints=None, step_tol: float = NEWTON_STEP_TOL,
                 scale: np.ndarray | None = None) -> tuple[bool, bool]:
    """Maximize over (coefficients, F, log D) jointly from the current point.

    Updates ``st`` (A, F, D, the history, one iteration and the evaluations) and
    returns whether the log-likelihood rose and whether the L-BFGS-B point is
    degenerate (:func:`~lowrank_sur.bounded.is_degenerate` with each equation's
    residual variance ``scale``; never without ``scale``). At a degenerate point the
    Newton finish is skipped: the point is not a maximum, and refining it costs
    hundreds of evaluations (N=4, K=5, p=3). With ``constraints``
    (:class:`~lowrank_sur.constraints.WhitenedConstraints`) the coefficients stay on
    ``R~ a = q``: every point is projected onto it and the gradient along it.
    ``step_tol``: the Newton-CG finish stops when its step (unit-curvature
    coordinates, :func:`_unit_scales`) is at most this (infinite: no Newton finish).
    """
    if st.F.shape[1] == 0:
        return False, False
    st.F = canonical_loadings(st.F, st.D)
    prob = _Joint(design, Y, st, constraints)
    x0 = prob.pack(st.A, st.F, st.D)
    lb = np.full(x0.size, -np.inf)
    lb[prob.nA + prob.nF :] = np.log(st.floor) / prob.cD
    f0, _ = prob.fg(x0)
    seen = {"iterations": 0, "degenerate": False}

    def callback(intermediate_result):
        # a degenerate point is not worth polishing: stop as soon as it shows
        seen["iterations"] += 1
        if scale is not None and seen["iterations"] % DEGENERATE_CHECK_EVERY == 0:
            seen["degenerate"] = _degenerate(prob, intermediate_result.x, scale)
            if seen["degenerate"]:
                raise StopIteration

    opt = optimize.minimize(prob.fg, x0, jac=True, method="L-BFGS-B",
                            bounds=optimize.Bounds(lb, np.inf), callback=callback,
                            options={"maxiter": maxiter, "maxcor": 30, "ftol": 1e-15,
                                     "gtol": 1e-12})
    f_best, x_best = prob.best
    # L-BFGS-B stops where the decrease of f is below its rounding, short of the
    # maximum in the weakly determined directions (Munnell rank 1: the sweeps from its
    # point still moved coefficients by 1e-6 sigma_j a sweep); Newton-CG on differences
    # of the exact gradient, preconditioned by L-BFGS-B's inverse Hessian, goes on.
    degenerate = seen["degenerate"] or (scale is not None and _degenerate(prob, x_best, scale))
    if np.isfinite(step_tol) and not degenerate:
        x_best, f_best = _newton_finish(prob, x_best, f_best, lb, opt.hess_inv, step_tol)
    st.iterations += 1
    st.evaluations += prob.nfev
    st.polish_evaluations += prob.nfev
    improved = f_best < f0
    if improved:
        st.A, st.F, st.D = prob.unpack(prob.project(x_best))
    st.history.append(max(-f_best * design.nobs, st.history[-1]))
    return bool(improved), bool(degenerate)


def _degenerate(prob: _Joint, x: np.ndarray, scale: np.ndarray) -> bool:
    """Whether the point ``x`` of ``prob`` runs to the floor on a rising likelihood."""
    A, F, D = prob.unpack(prob.project(x))
    heywood = np.flatnonzero(D <= prob.floor * (1.0 + 1e-6))
    if heywood.size == 0:
        return False
    return is_degenerate(prob.Y - prob.design.fitted(A), F, D, prob.floor, heywood, scale=scale)
