"""The factor step: maximum-likelihood ``(F, D)`` given a residual matrix, in O(N K k).

Given residuals ``R`` (N x K), maximize the Gaussian log-likelihood of the rows of
``R`` over ``Sigma = F F' + diag(D)``. This is Gaussian factor analysis of ``R``
with a known (zero) mean. Nothing here forms a K x K array (no ``R'R``, no dense
Sigma); the work per step is a few products of ``R`` with K x k or N x k blocks.

Two stages:

1. The EM algorithm of Rubin and Thayer (1982) written on ``R`` itself, optionally
   in its parameter-expanded form (PX-EM, Liu, Rubin and Wu 1998), accelerated by
   SQUAREM. On regular problems it converges in a few cycles.
2. When EM has not converged after ``EM_CYCLES`` cycles (weakly identified
   problems, Heywood cases where some ``D_j`` heads to its floor: EM then converges
   sub-linearly and its steps are tiny far from the maximum), a quasi-Newton
   method (L-BFGS-B) on the profile likelihood in ``log D`` (Joreskog 1967; what
   R's ``factanal`` does), with ``log D_j >= log floor_j`` as bounds, finished by a
   few projected Newton-CG steps (Hessian-vector products from differences of the
   analytic gradient), which still make progress where the decrease of the
   objective is below its rounding and L-BFGS-B stops.

"Converged" is judged from the gradient, not from the size of a step (EM's steps
are tiny far from the maximum near a boundary): the projected gradient of
``llf / N`` in ``log D_j`` and in the standardized loadings ``F_j / sigma_j``
(``sigma_j^2 = ||R_j||^2 / N``) is small, and so are the estimated Newton step in
``log D`` and the estimated gain in ``llf / N`` (:meth:`FactorProblem.stationarity`;
after the Newton-CG steps, their exact values). All of it is dimensionless, and the
SQUAREM step length is computed in the same units, so the iterates are
scale-equivariant (``R -> c R`` gives ``F -> c F``, ``D -> c^2 D`` up to rounding).
Results are deterministic (no random starts; the subspace iteration starts from a
fixed basis).

The profile likelihood. With ``S = R'R / N``, ``Psi = diag(D)`` and ``lambda_i``,
``u_i`` the top-k eigenpairs of ``Psi^{-1/2} S Psi^{-1/2}`` (the squared singular
values and right singular vectors of ``R Psi^{-1/2} / sqrt(N)``), the best ``F``
given ``Psi`` is ``Psi^{1/2} U (Lambda - I)_+^{1/2}`` and, with
``theta_j = log(D_j / S_jj)``,

    -2 llf / N = K log(2 pi) + sum_j log S_jj
                 + sum_j (theta_j + exp(-theta_j)) + sum_{i <= k} phi(lambda_i),

    phi(lambda) = log(lambda) - lambda + 1 for lambda > 1, else 0.

Its gradient in ``theta_j`` is ``1 - exp(-theta_j) + sum_i u_ji^2 (lambda_i - 1)_+``,
which equals ``D_j [Sigma^{-1} - Sigma^{-1} S Sigma^{-1}]_jj`` at the best ``F``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg, optimize
from scipy.sparse.linalg import svds

from .acceleration import squarem

__all__ = ["FactorProblem", "FactorFit", "fit_factor", "start_values"]

_LOG_2PI = float(np.log(2.0 * np.pi))

#: Largest ``min(N, K)`` for which the profile likelihood uses a thin SVD of the
#: N x K matrix; above it, warm-started subspace iteration (O(N K k) per step).
DENSE_SVD_MAX = 100

#: SQUAREM cycles of stage 1 before switching to the profile-likelihood stage.
EM_CYCLES = 30

#: Relative tolerance for "D_j sits at its floor" in the projected gradient.
_AT_FLOOR = 1e-9


@dataclass
class FactorFit:
    """Result of :func:`fit_factor`.

    Attributes
    ----------
    F : ndarray, shape (K, k)
        Loadings.
    D : ndarray, shape (K,)
        Idiosyncratic variances.
    llf : float
        Log-likelihood of the residuals at ``(F, D)``.
    iterations : int
        SQUAREM cycles plus L-BFGS-B iterations.
    maps : int
        EM maps evaluated.
    converged : bool
        Whether the convergence rule of :func:`fit_factor` holds at ``(F, D)``.
    profile_evals : int
        Profile-likelihood evaluations (each one top-k eigen-decomposition, O(N K k)
        or a thin SVD of an N x K matrix with ``min(N, K) <= DENSE_SVD_MAX``).
    grad : float
        Largest entry of the scale-free projected gradient at ``(F, D)``
        (see :meth:`FactorProblem.stationarity`).
    stage : str
        ``"start"`` (the start was already converged), ``"em"`` or ``"profile"``:
        which stage produced the returned point.
    """

    F: np.ndarray
    D: np.ndarray
    llf: float
    iterations: int
    maps: int
    converged: bool
    profile_evals: int = 0
    grad: float = float("nan")
    stage: str = "em"


class FactorProblem:
    """Factor analysis of a fixed residual matrix.

    Parameters
    ----------
    R : ndarray, shape (N, K)
        Residuals.
    rank : int
        Number of factors k.
    floor : ndarray, shape (K,)
        Lower bounds for D.
    px : bool
        Use the parameter-expanded EM map.
    """

    def __init__(self, R: np.ndarray, rank: int, floor: np.ndarray, px: bool = True) -> None:
        self.R = R
        self.n, self.K = R.shape
        self.k = rank
        self.floor = floor
        self.px = px
        self.colss = np.einsum("ij,ij->j", R, R)
        #: per-equation mean square ``S_jj`` (the unit of D_j) and its square root
        self.s = np.maximum(self.colss / self.n, np.finfo(float).tiny)
        self.sd = np.sqrt(self.s)
        self._cache = None  # (x, T(x), llf(x), gradient parts at x) of the last map

    # ---------------------------------------------------------------- packing
    def pack(self, F: np.ndarray, D: np.ndarray) -> np.ndarray:
        """Flatten ``(F, D)`` into one vector."""
        return np.concatenate([F.ravel(), D])

    def unpack(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inverse of :meth:`pack`."""
        Kk = self.K * self.k
        return x[:Kk].reshape(self.K, self.k), x[Kk:]

    def project(self, x: np.ndarray) -> np.ndarray:
        """Clip D at its floor."""
        x = x.copy()
        x[self.K * self.k :] = np.maximum(x[self.K * self.k :], self.floor)
        return x

    def scale(self) -> np.ndarray:
        """Units of the packed coordinates: ``sigma_j`` for row j of F, ``sigma_j^2`` for D_j."""
        return self.pack(np.repeat(self.sd[:, None], self.k, axis=1), self.s)

    # ------------------------------------------------------------------- map
    def em_step(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """One EM (or PX-EM) update; also returns the log-likelihood at ``x``.

        The result of the last call is kept, with what :meth:`gradient` needs at
        ``x`` (calling again with the same ``x`` costs nothing, and the gradient at
        ``x`` then costs O(K k^2 + N k^2)).
        """
        c = self._cache
        if c is None or not np.array_equal(c[0], x):
            self._cache = c = [np.array(x, dtype=float), *self._em(x)]
        return c[1], c[2]

    def _em(self, x: np.ndarray):
        F, D = self.unpack(x)
        n, k = self.n, self.k
        if k == 0:
            D_new = np.maximum(self.colss / n, self.floor)
            grad = (np.zeros((self.K, 0)), -0.5 * (1.0 - self.colss / (n * D)),
                    np.full(self.K, 0.5))
            return D_new, self._llf_diag(D), grad
        # k x k algebra without scipy's input checks (finite by construction): this
        # map runs thousands of times on small problems, where that overhead dominates
        Fd = F / D[:, None]
        M = Fd.T @ F
        M[np.diag_indices(k)] += 1.0
        try:
            L = np.linalg.cholesky(M)
        except np.linalg.LinAlgError:
            return x, -np.inf, None
        RFd = self.R @ Fd  # N x k
        # k x N = L^{-1} F'D^{-1} R' = (R W)'
        T = linalg.solve_triangular(L, RFd.T, lower=True, check_finite=False)
        logdet = float(np.sum(np.log(D)) + 2.0 * np.sum(np.log(np.diag(L))))
        quad = float(np.sum(self.colss / D) - np.einsum("ij,ij->", T, T))
        llf = -0.5 * n * (self.K * _LOG_2PI + logdet) - 0.5 * quad
        Linv = linalg.solve_triangular(L, np.eye(k), lower=True, check_finite=False)
        Minv = Linv.T @ Linv
        Ez = RFd @ Minv  # N x k posterior means
        Szz = n * Minv + Ez.T @ Ez
        G = self.R.T @ Ez  # K x k
        grad = (F, D, Fd, L, Minv, T, G)  # evaluated on demand by _gradient_parts
        try:
            Lz = np.linalg.cholesky(Szz)
        except np.linalg.LinAlgError:
            return x, llf, grad
        F_new = linalg.cho_solve((Lz, True), G.T, check_finite=False).T
        D_new = (self.colss - np.einsum("ij,ij->i", F_new, G)) / n
        D_new = np.maximum(D_new, self.floor)
        if self.px:
            F_new = F_new @ (Lz / np.sqrt(n))
        return self.pack(F_new, D_new), llf, grad

    def _gradient_from_em(self, F, D, Fd, L, Minv, T, G):
        """Gradient at ``(F, D)`` from the EM quantities, in O(K k^2 + N k^2).

        ``Sigma^{-1} = D^{-1} - W W'`` with ``W = D^{-1} F L^{-T}``,
        ``Sigma^{-1} F = D^{-1} F M^{-1}``, ``R' R Sigma^{-1} F = R' E[z] = G``,
        ``R' R W = G L`` and ``(R W)'(R W) = T T'``.
        """
        n = self.n
        W = linalg.solve_triangular(L, Fd.T, lower=True, check_finite=False).T
        gF = ((G / D[:, None] - W @ (W.T @ G)) * (1.0 / n) - Fd @ Minv) * self.sd[:, None]
        # D_j [Sigma^{-1}]_jj and D_j [Sigma^{-1} S Sigma^{-1}]_jj, all terms dimensionless
        rho = 1.0 - D * np.einsum("ij,ij->i", W, W)
        q = (
            self.colss / (n * D)
            - (2.0 / n) * np.einsum("ij,ij->i", G @ L, W)
            + D * np.einsum("ij,ij->i", W @ ((T @ T.T) * (1.0 / n)), W)
        )
        gD = -0.5 * (rho - q)
        # sqrt(D_j) [Sigma^{-1} F]_j and F' Sigma^{-1} F = I - M^{-1}, for the curvature
        b = (Fd @ Minv) * np.sqrt(D)[:, None]
        P = -Minv
        P[np.diag_indices(self.k)] += 1.0
        return gF, gD, (rho, b, P)

    def _llf_diag(self, D: np.ndarray) -> float:
        return -0.5 * self.n * (self.K * _LOG_2PI + np.sum(np.log(D))) - 0.5 * float(
            np.sum(self.colss / D)
        )

    def loglike(self, F: np.ndarray, D: np.ndarray) -> float:
        """Log-likelihood of the residuals under ``F F' + diag(D)``."""
        return self.em_step(self.pack(F, D))[1]

    def loglike_accurate(self, F: np.ndarray, D: np.ndarray) -> float:
        """Log-likelihood without the cancellation of :meth:`loglike` (for comparisons).

        ``r' Sigma^{-1} r = ||D^{-1/2} (r - F z)||^2 + ||z||^2`` at the posterior mean
        ``z = M^{-1} F' D^{-1} r``: non-negative terms, and the error in ``z`` only
        enters at second order. :meth:`loglike` computes ``sum r^2 / D - ||T||^2``,
        whose two terms are of order ``N S_jj / D_j``, i.e. ``1e6 N`` for an equation
        on its floor. By blocks of rows (no N x K temporary), O(N K k).
        """
        n, K, k = self.n, self.K, self.k
        if k == 0:
            return self._llf_diag(D)
        Fd = F / D[:, None]
        M = Fd.T @ F
        M[np.diag_indices(k)] += 1.0
        try:
            L = linalg.cholesky(M, lower=True)
        except linalg.LinAlgError:
            return -np.inf
        quad = 0.0
        step = max(1, min(n, 2**20 // max(K, 1)))
        for i in range(0, n, step):
            Rc = self.R[i : i + step]
            Z = linalg.cho_solve((L, True), (Rc @ Fd).T).T
            E = Rc - Z @ F.T
            quad += float(np.einsum("ij,ij->", E / D, E) + np.einsum("ij,ij->", Z, Z))
        logdet = float(np.sum(np.log(D)) + 2.0 * np.sum(np.log(np.diag(L))))
        return -0.5 * n * (K * _LOG_2PI + logdet) - 0.5 * quad

    # -------------------------------------------------------------- gradient
    def gradient(self, F: np.ndarray, D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gradient of ``llf / N`` in standardized coordinates, in O(N K k).

        Parameters
        ----------
        F : ndarray, shape (K, k)
            Loadings.
        D : ndarray, shape (K,)
            Idiosyncratic variances.

        Returns
        -------
        gF : ndarray, shape (K, k)
            Derivative with respect to ``F_jr / sigma_j``:
            ``-sigma_j [Sigma^{-1} (Sigma - S) Sigma^{-1} F]_jr``.
        gD : ndarray, shape (K,)
            Derivative with respect to ``log D_j``:
            ``-(D_j / 2) [Sigma^{-1} - Sigma^{-1} S Sigma^{-1}]_jj``.

        Notes
        -----
        Computed with one EM map (see :meth:`em_step`), never with a K x K or an
        N x K temporary: ``[Sigma^{-1} S Sigma^{-1}]_jj`` is expanded through
        ``R' (R W)`` and ``(R W)'(R W)``. Both outputs are dimensionless
        (invariant to ``R -> c R``). Infinite if ``I + F' D^{-1} F`` is not
        numerically positive definite.
        """
        gF, gD, _ = self._gradient_parts(F, D)
        return gF, gD

    def _gradient_parts(self, F: np.ndarray, D: np.ndarray):
        """``(gF, gD, curvature)``; the curvature may be the tuple of its inputs."""
        self.em_step(self.pack(F, D))
        grad = self._cache[3]
        if grad is None:
            return np.full_like(F, np.inf), np.full_like(D, np.inf), np.full_like(D, 0.5)
        if len(grad) != 3:
            self._cache[3] = grad = self._gradient_from_em(*grad)
        return grad

    def stationarity(
        self, F: np.ndarray, D: np.ndarray, gtol: float = np.inf
    ) -> tuple[float, float, float]:
        """Scale-free distance to a maximum: largest gradient and estimated remaining gain.

        Returns
        -------
        gmax : float
            Largest entry of the projected gradient of ``llf / N``: the row norms
            ``||gF_j||`` (rotation invariant) and ``|gD_j|`` (zero when ``D_j`` sits at
            its floor and the gradient points below it), with ``gF, gD`` from
            :meth:`gradient`.
        gain : float
            Estimated increase of ``llf / N`` still available in D: the sum over
            equations of ``|gD_j|`` times a diagonal Newton step ``|gD_j| / h_j`` in
            ``log D_j``, capped by the distance ``log(D_j / floor_j)`` when it points
            to the floor. ``h_j`` is the Fisher information of ``log D_j`` per
            observation after profiling out equation j's own loadings ``f_j`` (a
            (k+1) x (k+1) Schur complement; close to the diagonal of the Hessian of
            the profile likelihood). Near a Heywood boundary the gradient in
            ``log D_j`` shrinks like ``D_j`` while the gain left stays about
            ``|gD_j|``; this term catches that case, in which a small gradient (or a
            small EM step) says nothing about the distance.
        step : float
            Largest of those Newton steps: the estimated distance to the maximum in
            ``log D``.

        Parameters
        ----------
        F, D : ndarray
            The point.
        gtol : float
            If ``gmax > gtol``, skip the curvature and return infinite ``gain`` and
            ``step``.
        """
        gF, gD, curv = self._gradient_parts(F, D)
        dist = np.log(np.maximum(D / self.floor, 1.0))
        gmax = float(np.max(np.abs(np.where((gD < 0) & (dist <= _AT_FLOOR), 0.0, gD))))
        if self.k:
            gmax = max(gmax, float(np.max(np.sqrt(np.einsum("ij,ij->i", gF, gF)))))
        if not np.isfinite(gmax):
            return np.inf, np.inf, np.inf
        if gmax > gtol:
            return gmax, np.inf, np.inf
        if isinstance(curv, tuple):
            curv = _curvature(*curv)
        return gmax, *_stationarity_D(gD, curv, dist)[1:]


def _curvature(rho: np.ndarray, b: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Fisher information of ``log D_j`` per observation with ``f_j`` profiled out.

    With ``rho_j = D_j [Sigma^{-1}]_jj``, ``b_j = sqrt(D_j) [Sigma^{-1} F]_j`` and
    ``P = F' Sigma^{-1} F`` (all dimensionless), the information of
    ``(log D_j, f_j)`` is ``[[rho_j^2 / 2, rho_j b_j'], [rho_j b_j, rho_j P + b_j b_j']]``
    (in units of ``sqrt(D_j)`` for ``f_j``); return its Schur complement.
    """
    k = b.shape[1]
    h = 0.5 * rho * rho
    if k:
        A = rho[:, None, None] * P + b[:, :, None] * b[:, None, :]
        A[:, np.arange(k), np.arange(k)] += 1e-12  # zero columns of F
        c = np.linalg.solve(A, b[:, :, None])[:, :, 0]
        h = h - rho * rho * np.einsum("ij,ij->i", b, c)
    return np.maximum(h, 1e-3 * 0.5 * rho * rho)


def _stationarity_D(gD: np.ndarray, curv: np.ndarray, dist: np.ndarray):
    """``(gmax, gain, step)`` of :meth:`FactorProblem.stationarity` for the D part."""
    down = gD < 0
    pg = np.where(down & (dist <= _AT_FLOOR), 0.0, gD)
    step = np.abs(pg) / np.maximum(curv, np.finfo(float).tiny)
    step = np.where(down, np.minimum(step, dist), step)
    out = (float(np.max(np.abs(pg))), float(np.sum(np.abs(pg) * step)), float(np.max(step)))
    return out if all(np.isfinite(out)) else (np.inf, np.inf, np.inf)


class _Profile:
    """Profile likelihood in ``theta = log(D / S_jj)`` (see the module notes)."""

    def __init__(self, prob: FactorProblem, V0: np.ndarray | None = None) -> None:
        self.prob = prob
        n, K, k = prob.n, prob.K, prob.k
        self.lb = np.log(prob.floor / prob.s)
        # Every stationary point has theta_j <= 0 (the gradient condition gives
        # exp(-theta_j) = 1 + ||f_j||^2 / D_j): an upper bound above 0 excludes none and
        # keeps quasi-Newton extrapolations along flat ridges finite.
        self.ub = np.full(prob.K, np.log(2.0))
        self.dense = min(n, K) <= DENSE_SVD_MAX
        self.evals = 0
        self.best: tuple[float, np.ndarray] | None = None
        self.last: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._V = None
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
        self.evals += 1
        if not self.dense:
            out = self._subspace(w)
            if out is not None:
                return out
        # thin SVD: small min(N, K), or slow subspace convergence (small eigengap)
        _, sv, vt = np.linalg.svd(self.prob.R * w, full_matrices=False)
        if not self.dense:
            self._V = vt[: self._V.shape[1]].T.copy()
        lam = sv * sv
        return lam[:k], vt[:k].T, float(np.sum(lam[k:]))

    def _subspace(self, w: np.ndarray, rtol: float = 1e-13, maxit: int = 40):
        """Block subspace iteration with Rayleigh-Ritz, warm-started from the last basis."""
        R, k = self.prob.R, self.prob.k
        V = self._V
        for _ in range(maxit):
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
        self._V = V
        return None

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
        curv = _curvature(rho, U * (np.sqrt(lp - 1.0) / lp), np.diag(1.0 - 1.0 / lp))
        self.last = (theta.copy(), g, curv)
        if np.isfinite(f) and (self.best is None or f < self.best[0]):
            self.best = (f, theta.copy())
        return f, g

    def stationarity(self, theta: np.ndarray) -> tuple[float, float, float] | None:
        """:meth:`FactorProblem.stationarity` at the last evaluated ``theta`` (else None)."""
        if self.last is None or not np.array_equal(self.last[0], theta):
            return None
        _, g, rho = self.last
        return _stationarity_D(-0.5 * g, rho, np.maximum(theta - self.lb, 0.0))

    def point(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The best ``(F, D)`` for ``theta``."""
        lam, U, _ = self.eig(theta)
        D = np.maximum(self.prob.s * np.exp(theta), self.prob.floor)
        F = np.sqrt(D)[:, None] * U * np.sqrt(np.maximum(lam - 1.0, 0.0))
        return F, D


def _newton_polish(prof: _Profile, theta: np.ndarray, stol: float, gain_tol: float,
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

    def pgnorm(theta, g):
        return float(np.max(np.abs(np.where((theta - lb <= _AT_FLOOR) & (g > 0), 0.0, g))))

    for _ in range(maxit):
        free = ~((theta - lb <= _AT_FLOOR) & (g > 0))
        gf = np.where(free, g, 0.0)
        if not np.any(gf):
            return theta, True

        def hv(v, theta=theta, free=free):
            eps = 1e-5 / max(float(np.max(np.abs(v))), np.finfo(float).tiny)
            gp = prof.fg(theta + eps * v)[1]
            gm = prof.fg(theta - eps * v)[1]
            return np.where(free, (gp - gm) / (2.0 * eps), 0.0)

        # conjugate gradients for H d = -g on the free set
        d = np.zeros_like(theta)
        r = -gf
        q = r.copy()
        rr = float(r @ r)
        rr0 = rr
        for _ in range(min(maxcg, int(free.sum()))):
            Hq = hv(q)
            qHq = float(q @ Hq)
            if qHq <= 0.0:
                if not np.any(d):
                    d = -gf
                break
            alpha = rr / qHq
            d += alpha * q
            r -= alpha * Hq
            rr_new = float(r @ r)
            if rr_new <= 1e-8 * rr0:
                break
            q = r + (rr_new / rr) * q
            rr = rr_new
        # Newton decrement of llf / N (f = -2 llf / N + const) and step
        if -0.25 * float(gf @ d) <= gain_tol and float(np.max(np.abs(d))) <= stol:
            return theta, True
        accepted = False
        noise = 1e-13 * (1.0 + abs(f))
        for t in (1.0, 0.5, 0.25):
            trial = np.clip(theta + t * d, lb, prof.ub)
            f_new, g_new = prof.fg(trial)
            if f_new < f or (f_new <= f + noise and pgnorm(trial, g_new) < pgnorm(theta, g)):
                theta, f, g, accepted = trial, f_new, g_new, True
                break
        if not accepted:
            break
    return theta, False


def fit_factor(
    R: np.ndarray,
    F0: np.ndarray,
    D0: np.ndarray,
    floor: np.ndarray,
    *,
    tol: float = 1e-12,
    ptol: float = 1e-7,
    maxiter: int = 2000,
    px: bool = True,
    accelerate: bool = True,
    gtol: float | None = None,
    polish: bool = True,
    em_cycles: int = EM_CYCLES,
) -> FactorFit:
    """Maximize the log-likelihood of ``R`` over ``(F, D)`` from a starting point.

    Parameters
    ----------
    R : ndarray, shape (N, K)
        Residuals.
    F0, D0 : ndarray
        Starting loadings (K x k) and variances (K,).
    floor : ndarray, shape (K,)
        Lower bounds for D.
    tol : float
        Convergence asks for the estimated log-likelihood gain still available
        (:meth:`FactorProblem.stationarity`, per observation) to be at most
        ``tol * K``: a scale-free version of a relative tolerance on the llf
        (``|llf| / N`` is of order K).
    ptol : float
        ... and for the estimated Newton step in ``log D`` (the relative distance of
        D to the maximum) to be at most ``ptol``.
    maxiter : int
        Maximum number of SQUAREM cycles, and of L-BFGS-B iterations.
    px : bool
        Use parameter-expanded EM.
    accelerate : bool
        Use SQUAREM.
    gtol : float, optional
        ... and for the largest entry of the projected gradient of ``llf / N`` in
        ``log D_j`` and in ``F_j / sigma_j`` to be at most ``gtol`` (default
        ``ptol``). The rule is checked after every EM cycle at almost no cost (the
        gradient is a by-product of the EM map); the size of the EM step is not
        used, as it says little about the distance to the maximum where EM crawls.
        After the profile stage, the exact Newton step and decrement of the
        Newton-CG polish decide; if rounding stops the polish first, the gain
        condition alone decides.
    polish : bool
        Allow the profile-likelihood stage. If False, only EM is run (up to
        ``maxiter`` cycles).
    em_cycles : int
        SQUAREM cycles before switching to the profile-likelihood stage.

    Returns
    -------
    FactorFit
        Never worse than the start: EM is monotone, and the profile point is only
        returned if its log-likelihood (computed by
        :meth:`FactorProblem.loglike_accurate`) is at least those of the start
        and of the EM point.

    Notes
    -----
    The start is returned as it is when it already meets the convergence rule
    (warm starts in later sweeps of the ALS fitter). Otherwise SQUAREM-accelerated
    (PX-)EM runs until the rule is met or for ``em_cycles`` cycles; in the latter
    case L-BFGS-B minimizes the profile ``-2 llf / N`` over
    ``theta_j = log(D_j / S_jj) >= log(floor_j / S_jj)`` from the EM point, with the
    top-k eigenpairs from a thin SVD (``min(N, K) <= DENSE_SVD_MAX``) or from block
    subspace iteration warm-started from the previous basis, and stops as soon as
    the rule is met; projected Newton-CG steps follow. Everything is deterministic.
    """
    k = F0.shape[1]
    prob = FactorProblem(R, k, floor, px=px)
    gtol = ptol if gtol is None else gtol
    stol = ptol
    gain_tol = tol * prob.K
    D0 = np.maximum(D0, floor)
    if k == 0:
        D = np.maximum(prob.colss / prob.n, floor)
        return FactorFit(F0, D, prob._llf_diag(D), 1, 1, True, 0, 0.0, "em")
    F0 = np.array(F0, dtype=float)

    def done(stat) -> bool:
        return stat[0] <= gtol and stat[1] <= gain_tol and stat[2] <= stol

    stat = prob.stationarity(F0, D0, gtol)  # one EM map, reused by SQUAREM
    gmax = stat[0]
    if done(stat):
        return FactorFit(F0, D0.copy(), prob.loglike(F0, D0), 0, 1, True, 0, gmax, "start")
    state: dict = {"stat": (np.inf, np.inf, np.inf)}

    Kk = prob.K * k

    def check(x: np.ndarray, Tx: np.ndarray, ll_prev: float, ll: float) -> bool:
        # The EM step is a lower bound on the distance to the fixed point (up to a
        # factor 1 + rate): a step much larger than ptol cannot be converged.
        D_, D1 = x[Kk:], Tx[Kk:]
        h0 = np.einsum("ij,ij->i", x[:Kk].reshape(-1, k), x[:Kk].reshape(-1, k))
        h1 = np.einsum("ij,ij->i", Tx[:Kk].reshape(-1, k), Tx[:Kk].reshape(-1, k))
        if np.max((np.abs(D1 - D_) + np.abs(h1 - h0)) / (D_ + h0)) > 10.0 * stol:
            return False
        # nearly free: em_step(x) was the last map evaluated
        state["stat"] = prob.stationarity(*prob.unpack(x), gtol)
        return done(state["stat"])

    res = squarem(
        prob.em_step,
        prob.pack(F0, D0),
        check=check,
        project=prob.project,
        maxiter=min(maxiter, em_cycles) if polish else maxiter,
        accelerate=accelerate,
        scale=prob.scale(),
    )
    F, D = prob.unpack(res.x)
    F, D = F.copy(), D.copy()
    if res.converged or not polish:
        gmax = state["stat"][0]
        return FactorFit(F, D, res.llf, res.cycles, res.maps, res.converged, 0, gmax, "em")

    # ---- stage 2: L-BFGS-B on the profile likelihood in theta = log(D / S_jj)
    prof = _Profile(prob, F / np.sqrt(D)[:, None])
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
    theta, newton_ok = _newton_polish(prof, theta, stol, gain_tol)
    F2, D2 = prof.point(theta)
    llf2 = prob.loglike(F2, D2)
    iterations = res.cycles + int(opt.nit)
    budget = opt.status == 1  # iteration or evaluation limit
    # Compare with the accurate llf (the usual one has rounding errors of order
    # 1e-16 N S_jj / D_j, ~1e-8 when some D_j is on its floor: more than what is at
    # stake here); never go below the start.
    acc = prob.loglike_accurate
    if acc(F2, D2) >= max(acc(F, D), acc(F0, D0)):
        F, D, llf, stage = F2, D2, llf2, "profile"
    else:
        llf, stage = res.llf, "em"
    gmax, gain, step = prob.stationarity(F, D)
    converged = bool(
        (stage == "profile" and newton_ok)
        or (gain <= gain_tol and ((gmax <= gtol and step <= stol) or not budget))
    )
    return FactorFit(F, D, llf, iterations, res.maps, converged, prof.evals, gmax, stage)


def start_values(R: np.ndarray, rank: int, floor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Principal-component start: F from the top-k singular pairs of ``R / sqrt(N)``.

    Parameters
    ----------
    R : ndarray, shape (N, K)
        Residuals (typically OLS residuals).
    rank : int
        Number of factors k.
    floor : ndarray, shape (K,)
        Lower bounds for D.

    Returns
    -------
    F : ndarray, shape (K, k)
    D : ndarray, shape (K,)
        ``max(var(R_j) - ||f_j||^2, var(R_j) / 20, floor_j)``; the middle term keeps the
        start away from the Heywood boundary.
    """
    n, K = R.shape
    var = np.einsum("ij,ij->j", R, R) / n
    if rank == 0:
        return np.zeros((K, 0)), np.maximum(var, floor)
    Rs = R / np.sqrt(n)
    if min(n, K) > 300 and rank < min(n, K) - 1:
        v0 = np.ones(min(n, K)) / np.sqrt(min(n, K))
        _, s, vt = svds(Rs, k=rank, v0=v0, random_state=0)
        order = np.argsort(s)[::-1]
        s, vt = s[order], vt[order]
    else:
        _, s, vt = np.linalg.svd(Rs, full_matrices=False)
        s, vt = s[:rank], vt[:rank]
    F = vt.T * s
    D = np.maximum(np.maximum(var - np.einsum("ij,ij->i", F, F), var / 20.0), floor)
    # shrink the loadings so that the start's diagonal matches the sample variances
    h = np.einsum("ij,ij->i", F, F)
    scale = np.sqrt(np.clip((var - D) / np.where(h > 0, h, 1.0), 0.0, 1.0))
    return F * scale[:, None], D
