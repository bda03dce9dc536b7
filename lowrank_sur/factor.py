"""The factor step: maximum-likelihood ``(F, D)`` given a residual matrix, in O(N K k).

Given residuals ``R`` (N x K), maximize the Gaussian log-likelihood of the rows of
``R`` over ``Sigma = F F' + diag(D)``. This is Gaussian factor analysis of ``R``
with a known (zero) mean. The map iterated here is the EM algorithm of Rubin and
Thayer (1982) written on ``R`` itself, never on the K x K sample covariance,
optionally in its parameter-expanded form (PX-EM, Liu, Rubin and Wu 1998), and
accelerated by SQUAREM.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg
from scipy.sparse.linalg import svds

from .acceleration import squarem

__all__ = ["FactorProblem", "FactorFit", "fit_factor", "start_values"]

_LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass
class FactorFit:
    """Result of :func:`fit_factor`."""

    F: np.ndarray
    D: np.ndarray
    llf: float
    iterations: int
    maps: int
    converged: bool


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

    # ------------------------------------------------------------------- map
    def em_step(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """One EM (or PX-EM) update; also returns the log-likelihood at ``x``."""
        F, D = self.unpack(x)
        n, k = self.n, self.k
        if k == 0:
            D_new = np.maximum(self.colss / n, self.floor)
            return D_new, self._llf_diag(D)
        Fd = F / D[:, None]
        M = Fd.T @ F
        M[np.diag_indices(k)] += 1.0
        try:
            L = linalg.cholesky(M, lower=True)
        except linalg.LinAlgError:
            return x, -np.inf
        RFd = self.R @ Fd  # N x k
        T = linalg.solve_triangular(L, RFd.T, lower=True)  # k x N = L^{-1} F'D^{-1} R'
        logdet = float(np.sum(np.log(D)) + 2.0 * np.sum(np.log(np.diag(L))))
        quad = float(np.sum(self.colss / D) - np.einsum("ij,ij->", T, T))
        llf = -0.5 * n * (self.K * _LOG_2PI + logdet) - 0.5 * quad
        Minv = linalg.cho_solve((L, True), np.eye(k))
        Ez = RFd @ Minv  # N x k posterior means
        Szz = n * Minv + Ez.T @ Ez
        G = self.R.T @ Ez  # K x k
        try:
            Lz = linalg.cholesky(Szz, lower=True)
        except linalg.LinAlgError:
            return x, llf
        F_new = linalg.cho_solve((Lz, True), G.T).T
        D_new = (self.colss - np.einsum("ij,ij->i", F_new, G)) / n
        D_new = np.maximum(D_new, self.floor)
        if self.px:
            F_new = F_new @ (Lz / np.sqrt(n))
        return self.pack(F_new, D_new), llf

    def _llf_diag(self, D: np.ndarray) -> float:
        return -0.5 * self.n * (self.K * _LOG_2PI + np.sum(np.log(D))) - 0.5 * float(
            np.sum(self.colss / D)
        )

    def loglike(self, F: np.ndarray, D: np.ndarray) -> float:
        """Log-likelihood of the residuals under ``F F' + diag(D)``."""
        return self.em_step(self.pack(F, D))[1]


def _factor_check(problem: FactorProblem, tol: float, ptol: float):
    K, k = problem.K, problem.k

    def check(x: np.ndarray, Tx: np.ndarray, ll_prev: float, ll: float) -> bool:
        if abs(ll - ll_prev) > tol * max(abs(ll), 1.0):
            return False
        D0, D1 = x[K * k :], Tx[K * k :]
        if k:
            F0 = x[: K * k].reshape(K, k)
            F1 = Tx[: K * k].reshape(K, k)
            h0 = np.einsum("ij,ij->i", F0, F0)
            h1 = np.einsum("ij,ij->i", F1, F1)
        else:
            h0 = h1 = 0.0
        total = D0 + h0
        change = np.max((np.abs(D1 - D0) + np.abs(h1 - h0)) / total)
        return bool(change <= ptol)

    return check


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
        Stop when the relative change of the log-likelihood over a cycle is below
        ``tol`` and the largest relative change in ``D_j + ||f_j||^2`` is below ``ptol``.
    ptol : float
        See ``tol``.
    maxiter : int
        Maximum number of SQUAREM cycles.
    px : bool
        Use parameter-expanded EM.
    accelerate : bool
        Use SQUAREM.

    Returns
    -------
    FactorFit
    """
    k = F0.shape[1]
    prob = FactorProblem(R, k, floor, px=px)
    if k == 0:
        D = np.maximum(prob.colss / prob.n, floor)
        return FactorFit(F0, D, prob._llf_diag(D), 1, 1, True)
    res = squarem(
        prob.em_step,
        prob.pack(F0, np.maximum(D0, floor)),
        check=_factor_check(prob, tol, ptol),
        project=prob.project,
        maxiter=maxiter,
        accelerate=accelerate,
    )
    F, D = prob.unpack(res.x)
    return FactorFit(F.copy(), D.copy(), res.llf, res.cycles, res.maps, res.converged)


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
