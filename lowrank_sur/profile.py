"""The profile likelihood of the factor model in ``log D``: the factor step's second stage.

With ``S = R'R / N``, ``Psi = diag(D)`` and ``lambda_i``, ``u_i`` the top-k eigenpairs of
``Psi^{-1/2} S Psi^{-1/2}`` (the squared singular values and right singular vectors of
``R Psi^{-1/2} / sqrt(N)``), the best ``F`` given ``Psi`` is
``Psi^{1/2} U (Lambda - I)_+^{1/2}`` and, with ``theta_j = log(D_j / S_jj)``,

    -2 llf / N = K log(2 pi) + sum_j log S_jj
                 + sum_j (theta_j + exp(-theta_j)) + sum_{i <= k} phi(lambda_i),

    phi(lambda) = log(lambda) - lambda + 1 for lambda > 1, else 0.

Its gradient in ``theta_j`` is ``1 - exp(-theta_j) + sum_i u_ji^2 (lambda_i - 1)_+``,
which equals ``D_j [Sigma^{-1} - Sigma^{-1} S Sigma^{-1}]_jj`` at the best ``F``.

:func:`profile_stage` minimizes it with L-BFGS-B under ``log D_j >= log floor_j``
(Joreskog 1967; what R's ``factanal`` does) and finishes with a few projected
Newton-CG steps (:func:`newton_polish`; Hessian-vector products from differences of
the analytic gradient), which still make progress where the decrease of the
objective is below its rounding and L-BFGS-B stops.

References
----------
Joreskog, K. G. (1967). Some contributions to maximum likelihood factor analysis.
Psychometrika 32, 443-482.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import linalg, optimize

__all__ = ["ProfileLikelihood", "newton_polish", "profile_stage", "curvature",
           "stationarity_D", "DENSE_SVD_MAX", "AT_FLOOR"]

#: Largest ``min(N, K)`` for which the profile likelihood uses a thin SVD of the
#: N x K matrix; above it, warm-started subspace iteration (O(N K k) per step).
DENSE_SVD_MAX = 100

#: Largest side of the Gram matrix ``Z Z'`` (N x N, N <= K) used for the top eigenpairs when
#: subspace iteration converges slowly (small eigengap: weak factors) ...
GRAM_EIG_MAX = 2000

#: ... and the largest K for which the K x K Gram ``Z'Z`` is used when K < N (0.7 MB).
GRAM_K_MAX = 300

#: Largest estimated eigenvector error (``eps ||G|| / gap``) accepted from the Gram route.
GRAM_ANGLE_TOL = 1e-11

#: Relative tolerance for "D_j sits at its floor" in the projected gradient.
AT_FLOOR = 1e-9


def curvature(rho: np.ndarray, b: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Fisher information of ``log D_j`` per observation with ``f_j`` profiled out.

    With ``rho_j = D_j [Sigma^{-1}]_jj``, ``b_j = sqrt(D_j) [Sigma^{-1} F]_j`` and
    ``P = F' Sigma^{-1} F`` (all dimensionless), the information of
    ``(log D_j, f_j)`` is ``[[rho_j^2 / 2, rho_j b_j'], [rho_j b_j, rho_j P + b_j b_j']]``
    (in units of ``sqrt(D_j)`` for ``f_j``); return its Schur complement.
    """
    k = b.shape[1]
    h = 0.5 * rho * rho
    if k:
        # b_j' (rho_j P + eps I + b_j b_j')^{-1} b_j = q_j / (1 + q_j) (Sherman-Morrison),
        # q_j = b_j' (rho_j P + eps I)^{-1} b_j through one eigen-decomposition of P: no
        # K small solves. eps = 1e-12 keeps zero columns of F harmless.
        lam, V = np.linalg.eigh(0.5 * (P + P.T))
        Bv = b @ V
        q = np.einsum("ji,ji->j", Bv * Bv,
                      1.0 / (rho[:, None] * np.maximum(lam, 0.0)[None, :] + 1e-12))
        h = h - rho * rho * q / (1.0 + q)
    return np.maximum(h, 1e-3 * 0.5 * rho * rho)


def stationarity_D(gD: np.ndarray, curv: np.ndarray, dist: np.ndarray):
    """``(gmax, gain, step)`` of :meth:`FactorProblem.stationarity` for the D part."""
    down = gD < 0
    pg = np.where(down & (dist <= AT_FLOOR), 0.0, gD)
    step = np.abs(pg) / np.maximum(curv, np.finfo(float).tiny)
    step = np.where(down, np.minimum(step, dist), step)
    out = (float(np.max(np.abs(pg))), float(np.sum(np.abs(pg) * step)), float(np.max(step)))
    return out if all(np.isfinite(out)) else (np.inf, np.inf, np.inf)


class ProfileLikelihood:
    """Profile likelihood in ``theta = log(D / S_jj)`` (see the module notes)."""

    def __init__(self, prob, V0: np.ndarray | None = None) -> None:
        self.prob = prob
        n, K, k = prob.n, prob.K, prob.k
        self.lb = np.log(prob.floor / prob.s)
        # Every stationary point has theta_j <= 0 (the gradient condition gives
        # exp(-theta_j) = 1 + ||f_j||^2 / D_j): an upper bound above 0 excludes none and
        # keeps quasi-Newton extrapolations along flat ridges finite.
        self.ub = np.full(prob.K, np.log(2.0))
        self.dense = min(n, K) <= DENSE_SVD_MAX
        self.evaluations = 0
        self.best: tuple[float, np.ndarray] | None = None
        self.last: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._V = None
        # the Gram route, once subspace iteration has been slow (see eig)
        self._gram_side = n if n <= K and n <= GRAM_EIG_MAX else (K if K <= GRAM_K_MAX else 0)
        self._use_gram = False
        if not self.dense:
            b = min(k + max(k, 4), min(n, K))
            rng = np.random.default_rng(0)
            extra = rng.standard_normal((K, b - k))
            V = np.hstack([V0, extra]) if V0 is not None else rng.standard_normal((K, b))
            self._V = linalg.qr(V, mode="economic")[0]

    def _weights(self, theta: np.ndarray) -> np.ndarray:
        # columns of R D^{-1/2} / sqrt(N)
        return 1.0 / (self.prob.sd * np.exp(0.5 * theta) * np.sqrt(self.prob.n))

    def eig(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Top-k eigenpairs of ``D^{-1/2} S D^{-1/2}`` (``D = S_jj e^theta``).

        Returns
        -------
        lam : ndarray, shape (k,)
            Largest eigenvalues, decreasing.
        U : ndarray, shape (K, k)
            Their eigenvectors.
        rest : float
            Sum of the other eigenvalues, computed directly (not as the trace minus
            ``sum(lam)``, which cancels badly when some ``D_j`` is near its floor).
        """
        w = self._weights(theta)
        k = self.prob.k
        self.evaluations += 1
        if not self.dense:
            out = None if self._use_gram else self._subspace(w)
            if out is None and self._gram_side:
                # slow subspace convergence (small eigengap: weak factors)
                out = self._gram(w)
                self._use_gram = out is not None
            if out is not None:
                return out
        # thin SVD: small min(N, K), or slow subspace convergence and an inaccurate Gram
        _, sv, vt = np.linalg.svd(self.prob.R * w, full_matrices=False)
        if not self.dense:
            self._V = vt[: self._V.shape[1]].T.copy()
        lam = sv * sv
        return lam[:k], vt[:k].T, float(np.sum(lam[k:]))

    def _subspace(self, w: np.ndarray, rtol: float = 1e-13, maxit: int = 40):
        """Block subspace iteration with Rayleigh-Ritz, warm-started from the last basis."""
        R, k = self.prob.R, self.prob.k
        V = self._V
        worst = []
        for it in range(maxit):
            ZV = R @ (V * w[:, None])
            Y = (R.T @ ZV) * w[:, None]  # Z'Z V, Z = R diag(w)
            H = V.T @ Y
            ev, Q = linalg.eigh(0.5 * (H + H.T))
            ev, Q = ev[::-1], Q[:, ::-1]
            V, Y = V @ Q, Y @ Q
            E = Y[:, :k] - V[:, :k] * ev[:k]
            res = np.sqrt(np.einsum("ij,ij->j", E, E))
            if np.all(res <= rtol * ev[0]):
                self._V = V
                Vk = V[:, :k]
                return ev[:k], Vk, self._residual_ss(w, Vk, ZV @ Q[:, :k])
            V = linalg.qr(Y, mode="economic")[0]
            # give up early when the linear rate cannot reach rtol within maxit
            worst.append(float(np.max(res)) / (rtol * ev[0]))
            if it >= 6:
                rate = (worst[-1] / worst[-5]) ** 0.25
                if rate >= 1.0 or np.log(worst[-1]) > -np.log(rate) * (maxit - it - 1):
                    break
        self._V = V
        return None

    def _gram(self, w: np.ndarray):
        """Top-k eigenpairs from the smaller Gram matrix of ``Z = R diag(w)``.

        ``Z Z'`` (N x N) by blocks of columns (no N x K temporary), or ``Z'Z`` when K is
        tiny; then its top k + 1 eigenpairs (LAPACK's MRRR driver). None when the
        estimated eigenvector error ``eps lambda_1 / (lambda_k - lambda_k+1)`` exceeds
        :data:`GRAM_ANGLE_TOL` (a D_j near its floor makes ``lambda_1`` huge: the thin
        SVD is then the accurate route).
        """
        R, k = self.prob.R, self.prob.k
        n, K = R.shape
        left = self._gram_side == n and n <= K
        if left:
            G = np.zeros((n, n))
            step = max(1, 2**20 // max(n, 1))
            for i in range(0, K, step):
                Zb = R[:, i : i + step] * w[i : i + step]
                G += Zb @ Zb.T
        else:
            G = (R.T @ R) * np.outer(w, w)
        m = G.shape[0]
        top = min(k + 1, m)
        lam, V = linalg.eigh(G, subset_by_index=[m - top, m - 1], driver="evr",
                             check_finite=False)
        lam, V = lam[::-1], V[:, ::-1]
        gap = lam[k - 1] - (lam[k] if top > k else 0.0)
        if not (gap > 0 and np.finfo(float).eps * lam[0] <= GRAM_ANGLE_TOL * gap):
            return None
        lam = lam[:k]
        # the other eigenvalues' sum: trace minus the top ones when that cancels little,
        # else directly from the residual of the projection
        trace = float(np.sum(self.prob.colss * w * w))
        if left:
            # right singular vectors of Z: Z' v / sqrt(lambda)
            U = (R.T @ V[:, :k]) * w[:, None] / np.sqrt(np.maximum(lam, np.finfo(float).tiny))
        else:
            U = V[:, :k]
        if np.sum(lam) <= 0.75 * trace:
            return lam, U, trace - float(np.sum(lam))
        return lam, U, self._residual_ss(w, U, R @ (U * w[:, None]))

    def _residual_ss(self, w: np.ndarray, Vk: np.ndarray, ZVk: np.ndarray) -> float:
        """``||Z - Z V V'||_F^2`` by blocks of rows (no N x K temporary)."""
        R = self.prob.R
        n = R.shape[0]
        step = max(1, min(n, 2**20 // max(R.shape[1], 1)))
        total = 0.0
        for i in range(0, n, step):
            E = R[i : i + step] * w - ZVk[i : i + step] @ Vk.T
            total += float(np.einsum("ij,ij->", E, E))
        return total

    def fg(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """Profile objective ``-2 llf / N`` (up to a constant) and its gradient in theta.

        ``f = sum_j theta_j + sum_{i > k} lambda_i + sum_{i <= k} psi(lambda_i)`` with
        ``psi(lambda) = log(lambda) + 1`` for ``lambda > 1``, else ``lambda``.
        """
        lam, U, rest = self.eig(theta)
        big = lam > 1.0
        top = np.where(big, np.log(np.where(big, lam, 1.0)) + 1.0, lam)
        f = float(np.sum(theta) + rest + np.sum(top))
        U2 = U * U
        g = 1.0 - np.exp(-theta) + U2 @ np.maximum(lam - 1.0, 0.0)
        # at the best F: M = diag(max(lambda, 1)), F' Sigma^{-1} F = I - M^{-1},
        # sqrt(D_j) [Sigma^{-1} F]_j = u_j (lambda - 1)_+^{1/2} / max(lambda, 1) and
        # D_j [Sigma^{-1}]_jj = 1 - sum_i u_ji^2 (1 - 1/lambda_i)_+
        lp = np.maximum(lam, 1.0)
        rho = 1.0 - U2 @ (1.0 - 1.0 / lp)
        curv = curvature(rho, U * (np.sqrt(lp - 1.0) / lp), np.diag(1.0 - 1.0 / lp))
        self.last = (theta.copy(), g, curv)
        if np.isfinite(f) and (self.best is None or f < self.best[0]):
            self.best = (f, theta.copy())
        return f, g

    def stationarity(self, theta: np.ndarray) -> tuple[float, float, float] | None:
        """:meth:`FactorProblem.stationarity` at the last evaluated ``theta`` (else None)."""
        if self.last is None or not np.array_equal(self.last[0], theta):
            return None
        _, g, rho = self.last
        return stationarity_D(-0.5 * g, rho, np.maximum(theta - self.lb, 0.0))

    def point(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The best ``(F, D)`` for ``theta``."""
        lam, U, _ = self.eig(theta)
        D = np.maximum(self.prob.s * np.exp(theta), self.prob.floor)
        F = np.sqrt(D)[:, None] * U * np.sqrt(np.maximum(lam - 1.0, 0.0))
        return F, D


def _free_set(theta: np.ndarray, lb: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Coordinates not held at their lower bound by a gradient pointing below it."""
    return ~((theta - lb <= AT_FLOOR) & (g > 0))


def _pgnorm(theta: np.ndarray, lb: np.ndarray, g: np.ndarray) -> float:
    return float(np.max(np.abs(np.where(_free_set(theta, lb, g), g, 0.0))))


def _newton_direction(hv: Callable[[np.ndarray], np.ndarray], gf: np.ndarray,
                      maxcg: int) -> np.ndarray:
    """Conjugate gradients for ``H d = -gf`` (``hv`` applies H on the free set)."""
    d = np.zeros_like(gf)
    r = -gf
    q = r.copy()
    rr = rr0 = float(r @ r)
    for _ in range(maxcg):
        Hq = hv(q)
        qHq = float(q @ Hq)
        if qHq <= 0.0:
            return d if np.any(d) else -gf
        alpha = rr / qHq
        d += alpha * q
        r -= alpha * Hq
        rr_new = float(r @ r)
        if rr_new <= 1e-8 * rr0:
            break
        q = r + (rr_new / rr) * q
        rr = rr_new
    return d


def _hessian_vector(prof: ProfileLikelihood, theta: np.ndarray, free: np.ndarray):
    """``v -> H v`` on the free set by central differences of the analytic gradient."""

    def hv(v: np.ndarray) -> np.ndarray:
        eps = 1e-5 / max(float(np.max(np.abs(v))), np.finfo(float).tiny)
        gp = prof.fg(theta + eps * v)[1]
        gm = prof.fg(theta - eps * v)[1]
        return np.where(free, (gp - gm) / (2.0 * eps), 0.0)

    return hv


def newton_polish(prof: ProfileLikelihood, theta: np.ndarray, stol: float, gain_tol: float,
                  maxit: int = 8, maxcg: int = 25) -> tuple[np.ndarray, bool]:
    """Projected Newton-CG on the profile likelihood from ``theta`` (a point near the maximum).

    Hessian-vector products are central differences of the analytic gradient, so the
    method keeps going where the objective's decrease is below its rounding (a weakly
    identified direction with a tiny gradient): there L-BFGS-B, whose first step from a
    restart is a plain gradient step, stops. A step is accepted when the objective
    decreases, or when it stays within rounding and the projected gradient decreases.
    Returns the final ``theta`` and whether the Newton step (largest entry) is at most
    ``stol`` and the Newton decrement (the gain in ``llf / N``) at most ``gain_tol``.
    """
    lb = prof.lb
    f, g = prof.fg(theta)
    for _ in range(maxit):
        free = _free_set(theta, lb, g)
        gf = np.where(free, g, 0.0)
        if not np.any(gf):
            return theta, True
        d = _newton_direction(_hessian_vector(prof, theta, free), gf,
                              min(maxcg, int(free.sum())))
        # Newton decrement of llf / N (f = -2 llf / N + const) and step
        if -0.25 * float(gf @ d) <= gain_tol and float(np.max(np.abs(d))) <= stol:
            return theta, True
        noise = 1e-13 * (1.0 + abs(f))
        for t in (1.0, 0.5, 0.25):
            trial = np.clip(theta + t * d, lb, prof.ub)
            f_new, g_new = prof.fg(trial)
            if f_new < f or (f_new <= f + noise
                             and _pgnorm(trial, lb, g_new) < _pgnorm(theta, lb, g)):
                theta, f, g = trial, f_new, g_new
                break
        else:
            break
    return theta, False


@dataclass
class ProfileOutcome:
    """What :func:`profile_stage` found.

    Attributes
    ----------
    F, D : ndarray
        The best ``(F, D)`` for the final ``theta``.
    iterations : int
        L-BFGS-B iterations.
    evaluations : int
        Profile-likelihood evaluations (each one top-k eigen-decomposition).
    converged : bool
        Whether the Newton-CG polish met its step and decrement tolerances.
    budget_hit : bool
        Whether L-BFGS-B stopped on its iteration or evaluation limit.
    """

    F: np.ndarray
    D: np.ndarray
    iterations: int
    evaluations: int
    converged: bool
    budget_hit: bool


def profile_stage(prob, F: np.ndarray, D: np.ndarray, done: Callable, *, stol: float,
                  gain_tol: float, maxiter: int) -> ProfileOutcome:
    """L-BFGS-B on the profile ``-2 llf / N`` in ``theta = log(D / S_jj)``, then Newton-CG.

    Parameters
    ----------
    prob : FactorProblem
        The residual matrix, rank and floor.
    F, D : ndarray
        The point to start from (the EM stage's last point).
    done : callable
        ``done((gmax, gain, step))``: the convergence rule, checked after each
        L-BFGS-B iteration.
    stol, gain_tol : float
        Tolerances of the Newton-CG polish.
    maxiter : int
        L-BFGS-B iteration cap (and half its evaluation cap).
    """
    prof = ProfileLikelihood(prob, F / np.sqrt(D)[:, None])
    theta0 = np.clip(np.log(D / prob.s), prof.lb, prof.ub)

    def callback(intermediate_result):
        stat = prof.stationarity(intermediate_result.x)
        if stat is not None and done(stat):
            raise StopIteration

    opt = optimize.minimize(
        prof.fg,
        theta0,
        jac=True,
        method="L-BFGS-B",
        bounds=optimize.Bounds(prof.lb, prof.ub),
        callback=callback,
        # no gradient or f-change stopping inside L-BFGS-B: the callback decides, or
        # the line search fails at rounding level
        options={"maxiter": maxiter, "maxfun": 2 * maxiter, "ftol": 0.0, "gtol": 0.0,
                 "maxcor": 20},
    )
    theta = prof.best[1] if prof.best is not None else theta0
    theta, newton_ok = newton_polish(prof, theta, stol, gain_tol)
    F2, D2 = prof.point(theta)
    return ProfileOutcome(F2, D2, int(opt.nit), prof.evaluations, newton_ok, opt.status == 1)
