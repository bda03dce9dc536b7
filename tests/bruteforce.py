"""Brute-force reference for the SUR likelihood with Sigma = F F' + diag(D).

Written from the model (the project's reference notes, math.md: the model, the
log-likelihood, "Invariances" and "When the likelihood is bounded"), independently of
``lowrank_sur``: nothing here imports the package.

- :func:`dense_loglike` is the exact Gaussian log-likelihood with a dense K x K Sigma
  (Cholesky), for any coefficients, F and D.
- :func:`maximize` maximizes it over all parameters at once (every coefficient, F and
  log D, with log D bounded below by the log of the floor) with a generic optimizer,
  L-BFGS-B on the analytic gradient, from many random starts, and polishes the best.
- :func:`is_bounded_bruteforce` decides numerically whether the likelihood is bounded
  (as the floor goes to zero) by maximizing at decreasing floors; :func:`degenerate_sets`
  and :func:`generic_unbounded` are the algebraic conditions.

The floor follows the package's convention: ``d_floor`` times each equation's OLS residual
variance ``SSR_j / N``.

Internally each response is divided by its OLS residual standard deviation ``s_j`` and
each equation's regressors are replaced by an orthonormal basis of their column space
(scaled by sqrt(N)); both are exact reparametrizations (math.md, "Invariances": a
per-equation scale multiplies Sigma by diag(s) on both sides, which keeps the form
F F' + diag(D), and changes the llf by -N sum log s_j), and they make one set of
optimizer tolerances fit every problem.
"""

from __future__ import annotations

import functools
import itertools
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import solve_triangular
from scipy.linalg.lapack import dpotrf, dpotri
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

LOG2PI = float(np.log(2.0 * np.pi))

__all__ = [
    "dense_loglike",
    "BruteResult",
    "StandardizedProblem",
    "maximize",
    "BoundednessCheck",
    "is_bounded_bruteforce",
    "degenerate_sets",
    "generic_unbounded",
    "climb",
]


# --------------------------------------------------------------------------- the likelihood


def dense_loglike(Xs, Y, coefs, F, D) -> float:
    """Exact Gaussian log-likelihood with the dense ``Sigma = F F' + diag(D)``.

    ``llf = -(N/2) (K log 2 pi + log|Sigma|) - (1/2) tr(R Sigma^-1 R')`` with
    ``R = Y - [X_1 b_1, ..., X_K b_K]``.
    """
    Y = np.asarray(Y, dtype=float)
    N, K = Y.shape
    R = Y - np.column_stack([np.asarray(X, float) @ np.asarray(b, float)
                             for X, b in zip(Xs, coefs)])
    F = np.asarray(F, dtype=float).reshape(K, -1)
    Sigma = F @ F.T + np.diag(np.asarray(D, dtype=float))
    L = np.linalg.cholesky(Sigma)
    logdet = 2.0 * np.sum(np.log(np.diag(L)))
    W = solve_triangular(L, R.T, lower=True)  # L^-1 R'
    return float(-0.5 * N * (K * LOG2PI + logdet) - 0.5 * np.sum(W * W))


def _basis(X: np.ndarray) -> np.ndarray:
    """Orthonormal basis (N x r) of the column space of X (SVD, relative rank tolerance)."""
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    if X.shape[1] == 0:
        return np.zeros((X.shape[0], 0))
    U, s, _ = np.linalg.svd(X, full_matrices=False)
    tol = max(X.shape) * np.finfo(float).eps * s[0] * 1e3
    return U[:, s > tol]


# ------------------------------------------------------------------ the standardized problem


class StandardizedProblem:
    """The system on the standardized scale, and the objective ``-llf / N`` with its gradient.

    Parameters are packed as ``x = [c (sum_j r_j), vec(F) (K k, row-major), log D (K)]``
    where ``c_j`` are the coefficients on ``Z_j = sqrt(N) U_j`` (``U_j`` an orthonormal basis
    of ``col(X_j)``), on the scale of ``Y_j / s_j``.
    """

    def __init__(self, Xs, Y, rank: int):
        Y = np.asarray(Y, dtype=float)
        self.N, self.K = N, K = Y.shape
        self.k = int(rank)
        self.Xs = [np.asarray(X, dtype=float).reshape(N, -1) for X in Xs]
        bases = [_basis(X) for X in self.Xs]
        self.r = np.array([U.shape[1] for U in bases], dtype=int)
        # OLS residual variances (the floor's reference) and the scale s_j
        ols_resid = np.column_stack([Y[:, j] - bases[j] @ (bases[j].T @ Y[:, j])
                                     for j in range(K)])
        self.s2 = np.einsum("ij,ij->j", ols_resid, ols_resid) / N
        if np.any(self.s2 <= 0):
            raise ValueError("an equation's regressors fit its response exactly")
        self.s = np.sqrt(self.s2)
        self.Yt = Y / self.s
        self.Z = np.sqrt(N) * np.hstack(bases) if self.r.sum() else np.zeros((N, 0))
        self.eqcol = np.repeat(np.arange(K), self.r)
        self.P = int(self.r.sum())
        self.E = (self.eqcol[:, None] == np.arange(K)[None, :]).astype(float)  # P x K
        # block-diagonal design on vec(R') (equation-major): vec(fitted') = Zbig c
        self.Zbig = np.zeros((K * N, self.P))
        for j in range(K):
            cols = np.flatnonzero(self.eqcol == j)
            self.Zbig[j * N : (j + 1) * N, cols] = self.Z[:, cols]
        self.YtT = np.ascontiguousarray(self.Yt.T)
        self.nF = K * self.k
        # c_ols_j = Z_j' y_j / N (Z_j'Z_j = N I)
        self.c_ols = np.einsum("np,np->p", self.Z, self.Yt[:, self.eqcol]) / N
        self.offset = -N * float(np.sum(np.log(self.s)))  # llf(Y) = llf(Y / s) + offset
        self.nfev = 0

    # ---- packing
    @property
    def size(self) -> int:
        return self.P + self.nF + self.K

    def unpack(self, x):
        c = x[: self.P]
        F = x[self.P : self.P + self.nF].reshape(self.K, self.k)
        return c, F, x[self.P + self.nF :]

    def pack(self, c, F, logD):
        return np.concatenate([np.ravel(c), np.ravel(F), np.ravel(logD)])

    def fitted(self, c):
        return (self.Z * c) @ self.E

    def residuals(self, c):
        return self.Yt - self.fitted(c)

    # ---- objective
    def objective(self, x):
        """``f = -llf_std / N`` and its gradient (analytic).

        With ``S = R'R / N``: ``f = (K log 2 pi + log|Sigma| + tr(Sigma^-1 S)) / 2``,
        ``df/dSigma = H = (Sigma^-1 - Sigma^-1 S Sigma^-1) / 2``, ``df/dF = 2 H F``,
        ``df/dlog d_j = H_jj d_j``, ``df/dc_j = -Z_j' (R Sigma^-1)_j / N``.
        ``log|Sigma|`` and ``Sigma^-1`` come from the Cholesky factor of the K x K Sigma
        (LAPACK potrf / potri).
        """
        self.nfev += 1
        N, K, P = self.N, self.K, self.P
        F = x[P : P + self.nF].reshape(K, self.k)
        D = np.exp(x[P + self.nF :])
        Rt = self.YtT - (self.Zbig @ x[:P]).reshape(K, N)  # residuals, transposed (K x N)
        Sigma = F @ F.T
        Sigma.flat[:: K + 1] += D
        L, info = dpotrf(Sigma, lower=1)  # Sigma = L L'
        if info:
            return np.inf, np.zeros_like(x)
        logdet = 2.0 * np.log(L.diagonal()).sum()
        Sinv, info = dpotri(L, lower=1)  # lower triangle of Sigma^-1 (upper is zero)
        Sinv = Sinv + Sinv.T
        Sinv.flat[:: K + 1] *= 0.5
        SRt = Sinv @ Rt
        f = 0.5 * (K * LOG2PI + logdet + (SRt * Rt).sum() / N)
        H = 0.5 * (Sinv - SRt @ SRt.T / N)  # Sigma^-1 S Sigma^-1 = (Sinv R')(Sinv R')' / N
        g = np.empty_like(x)
        g[:P] = (SRt.ravel() @ self.Zbig) / -N
        g[P : P + self.nF] = (2.0 * H @ F).ravel()
        g[P + self.nF :] = H.diagonal() * D
        return float(f), g

    def llf(self, x) -> float:
        """Log-likelihood on the original scale at packed parameters ``x``."""
        f, _ = self.objective(x)
        return -self.N * f + self.offset

    def pack_original(self, coefs, F, D) -> np.ndarray:
        """Coefficients (on the given regressors), F and D packed on the standardized scale."""
        c = np.concatenate([
            self.Z[:, self.eqcol == j].T @ (np.asarray(X, float) @ np.asarray(b, float))
            / (self.s[j] * self.N)
            for j, (X, b) in enumerate(zip(self.Xs, coefs))
        ])
        F = np.asarray(F, dtype=float).reshape(self.K, self.k)
        return self.pack(c, F / self.s[:, None], np.log(np.asarray(D, float) / self.s2))

    # ---- back to the original scale
    def original(self, x):
        """Coefficients (list, on the given regressors), F and D on the original scale."""
        c, F, logD = self.unpack(x)
        coefs = []
        for j in range(self.K):
            cols = self.eqcol == j
            fit_j = self.s[j] * (self.Z[:, cols] @ c[cols])
            coefs.append(np.linalg.lstsq(self.Xs[j], fit_j, rcond=None)[0])
        return coefs, self.s[:, None] * F, self.s2 * np.exp(logD)


# ----------------------------------------------------------------------------- the maximizer


@dataclass
class BruteResult:
    """The best point found by :func:`maximize` (original scale)."""

    llf: float
    coefs: list
    F: np.ndarray
    D: np.ndarray
    floor: np.ndarray
    heywood: np.ndarray
    start_llfs: np.ndarray  # after the first-stage run of every start, sorted decreasing
    hits: int  # first-stage starts within 1e-6 (relative) of the final best
    n_starts: int
    nfev: int
    seconds: float
    x: np.ndarray = field(repr=False)
    problem: StandardizedProblem = field(repr=False)


def _run(prob, x0, lower, ftol, gtol, maxiter):
    bounds = [(None, None)] * (prob.P + prob.nF) + [(lo, np.log(1e4)) for lo in lower]
    x0 = x0.copy()
    x0[prob.P + prob.nF :] = np.clip(x0[prob.P + prob.nF :], lower, np.log(1e4))
    res = minimize(prob.objective, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"ftol": ftol, "gtol": gtol, "maxiter": maxiter, "maxcor": 30,
                            "maxfun": 4 * maxiter})
    return res.x, float(res.fun)


def random_starts(prob: StandardizedProblem, n_starts: int, rng, log_floor: float):
    """Start points (standardized scale): OLS coefficients or perturbed ones, random F, D.

    - ``D ~ U(0.1, 1)`` (the standardized OLS residual variance is 1), ``F ~ N(0, a^2)``
      with ``a ~ U(0.2, 1)``;
    - every third start perturbs the OLS coefficients by ``N(0, 0.5^2)`` (residual sd units);
    - every fourth start puts a random set of 1 .. k+1 equations at the floor, so that
      boundary points (Heywood or degenerate) are reached from the start;
    - the first start is the principal-factor start of the OLS residuals.
    """
    K, k = prob.K, prob.k
    out = []
    R0 = prob.residuals(prob.c_ols)
    if k:
        _, sv, Vt = np.linalg.svd(R0 / np.sqrt(prob.N), full_matrices=False)
        F0 = Vt[:k].T * sv[:k]
        D0 = np.maximum(1.0 - np.sum(F0 ** 2, axis=1), 0.05)
    else:
        F0, D0 = np.zeros((K, 0)), np.ones(K)
    out.append(prob.pack(prob.c_ols, F0, np.log(D0)))
    for i in range(1, n_starts):
        c = prob.c_ols.copy()
        if i % 3 == 2:
            c = c + rng.normal(0.0, 0.5, size=c.shape)
        F = rng.normal(0.0, rng.uniform(0.2, 1.0), size=(K, k))
        logD = np.log(rng.uniform(0.1, 1.0, size=K))
        if i % 4 == 3 and k:
            m = rng.integers(1, min(k + 1, K) + 1)
            logD[rng.choice(K, size=m, replace=False)] = log_floor
        out.append(prob.pack(c, F, logD))
    return out


def _one_blas_thread(fn):
    """Run ``fn`` with one BLAS thread (threadpoolctl).

    L-BFGS-B makes thousands of tiny BLAS calls; with OpenBLAS's default threads on a
    busy 2-core machine each one waits for the threads to wake (seed 155: 3.1 s with two
    threads, 0.11 s with one).
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)
    return wrapper


@_one_blas_thread
def maximize(Xs, Y, rank: int, d_floor: float = 1e-6, n_starts: int = 24, seed: int = 0,
             n_polish: int = 3, x0s=None, stage1=(1e-10, 1e-7, 300)) -> BruteResult:
    """Maximize the dense likelihood from many random starts with L-BFGS-B.

    Every start runs with moderate tolerances (``stage1 = (ftol, gtol, maxiter)``); the
    ``n_polish`` best distinct end points are then polished with tight tolerances
    (``ftol=1e-15``, ``gtol=1e-11``, then once more from the best) and the best polished
    point is returned. ``x0s`` adds packed standardized start points (warm starts). The
    random starts are drawn in sequence from ``seed``, so the first n of a larger run are
    the n of a smaller one. ``log D`` is bounded by ``log(d_floor)`` below and by ``log 1e4``
    above (the standardized OLS residual variance is 1).
    """
    t0 = time.perf_counter()
    prob = StandardizedProblem(Xs, Y, rank)
    rng = np.random.default_rng(seed)
    log_floor = float(np.log(d_floor))
    lower = np.full(prob.K, log_floor)
    starts = random_starts(prob, n_starts, rng, log_floor)
    if x0s is not None:
        starts = list(x0s) + starts
    ends = [_run(prob, x0, lower, *stage1) for x0 in starts]
    ends.sort(key=lambda e: e[1])
    chosen = []
    for x, f in ends:
        if len(chosen) >= n_polish:
            break
        if all(abs(f - g) > 1e-9 * max(1.0, abs(f)) for _, g in chosen):
            chosen.append((x, f))
    polished = [_run(prob, x, lower, 1e-15, 1e-11, 20000) for x, _ in chosen]
    # a second polish from the best (L-BFGS-B may stop on its memory, not on the gradient)
    xb, fb = min(polished, key=lambda e: e[1])
    xb2, fb2 = _run(prob, xb, lower, 1e-16, 1e-12, 20000)
    if fb2 <= fb:
        xb, fb = xb2, fb2
    N = prob.N
    best_llf = -N * fb + prob.offset
    start_llfs = np.array([-N * f + prob.offset for _, f in ends])
    hits = int(np.sum(start_llfs >= best_llf - 1e-6 * max(1.0, abs(best_llf))))
    coefs, F, D = prob.original(xb)
    floor = d_floor * prob.s2
    return BruteResult(
        llf=float(best_llf), coefs=coefs, F=F, D=D, floor=floor,
        heywood=np.flatnonzero(D <= floor * (1.0 + 1e-4)),
        start_llfs=start_llfs, hits=hits, n_starts=len(starts), nfev=prob.nfev,
        seconds=time.perf_counter() - t0, x=xb, problem=prob,
    )


@_one_blas_thread
def climb(Xs, Y, rank: int, coefs, F, D, d_floor: float = 1e-6) -> float:
    """The llf L-BFGS-B reaches on the dense likelihood started at ``(coefs, F, D)``.

    Tight tolerances (those of :func:`maximize`'s polish), the same floor; a point that
    is a local maximum stays (up to the optimizer's tolerance).
    """
    prob = StandardizedProblem(Xs, Y, rank)
    x0 = prob.pack_original(coefs, F, D)
    lower = np.full(prob.K, float(np.log(d_floor)))
    x, f = _run(prob, x0, lower, 1e-15, 1e-11, 20000)
    return float(max(-prob.N * f + prob.offset, prob.llf(x0)))


# --------------------------------------------------------------------------- boundedness


@dataclass
class BoundednessCheck:
    """Result of :func:`is_bounded_bruteforce`."""

    bounded: bool
    floors: tuple
    llfs: list  # best llf at each floor
    rate: float  # llf gain per decade of floor over the last interval
    threshold: float  # gain per decade above which the likelihood is called unbounded
    seconds: float


def is_bounded_bruteforce(Xs, Y, rank: int, floors=(1e-4, 1e-6, 1e-8), n_starts: int = 24,
                          seed: int = 0) -> BoundednessCheck:
    """Decide numerically whether the likelihood stays bounded as the floor on D goes to 0.

    Maximize at each floor (a multi-start; at each lower floor also warm-started from the
    previous floor's best point). A degenerate
    direction (k+1 equations whose residuals can be made linearly dependent) makes the
    llf grow like ``-(N/2) log(floor)``, i.e. ``(N/2) log 10`` per decade at least; a
    proper (interior or Heywood) maximum levels off. The likelihood is called unbounded
    when the gain per decade over the last interval exceeds a quarter of ``(N/2) log 10``.
    """
    t0 = time.perf_counter()
    llfs, warm = [], None
    for i, fl in enumerate(floors):
        res = maximize(Xs, Y, rank, d_floor=fl, n_starts=n_starts, seed=seed + i, x0s=warm)
        llfs.append(res.llf)
        warm = [res.x]
    N = np.asarray(Y).shape[0]
    decades = np.log10(floors[-2] / floors[-1])
    rate = (llfs[-1] - llfs[-2]) / decades
    threshold = 0.25 * 0.5 * N * np.log(10.0)
    return BoundednessCheck(bool(rate <= threshold), tuple(floors), llfs, float(rate),
                            float(threshold), time.perf_counter() - t0)


def degenerate_sets(Xs, Y, rank: int, rtol: float = 1e-9) -> list[tuple[int, ...]]:
    """Sets T of at most k+1 equations whose residuals can be made linearly dependent.

    T qualifies when some ``a`` with every ``a_j != 0`` (j in T) has ``Y_T a`` in the span
    of the regressors of T (then ``sum_j a_j (y_j - X_j b_j) = 0`` for suitable b). The
    likelihood at rank k >= 1 is unbounded exactly when such a set exists (math.md: some
    k+1 equations can have linearly dependent residuals; a dependence with a zero weight is
    one of a smaller set). Exact, not only generic: it catches duplicate and linearly
    dependent responses. Returns the minimal such sets.
    """
    Y = np.asarray(Y, dtype=float)
    N, K = Y.shape
    if rank == 0:
        return []
    found: list[tuple[int, ...]] = []
    for m in range(1, min(rank + 1, K) + 1):
        for T in itertools.combinations(range(K), m):
            if any(set(f) <= set(T) for f in found):
                continue
            XT = np.hstack([np.asarray(Xs[j], float).reshape(N, -1) for j in T])
            Q = _basis(XT)
            YT = Y[:, T]
            M = YT - Q @ (Q.T @ YT)  # the part of Y_T outside col(X_T)
            _, s, Vt = np.linalg.svd(M, full_matrices=True)
            scale = np.linalg.norm(YT)
            s_full = np.zeros(m)
            s_full[: s.size] = s
            null = Vt[s_full <= rtol * scale]  # rows: basis of {a : Y_T a in col(X_T)}
            if null.shape[0] and np.all(np.linalg.norm(null, axis=0) > 1e-8):
                found.append(T)
    return found


def generic_unbounded(Xs, rank: int, nobs: int) -> list[tuple[int, ...]]:
    """Sets S of k+1 equations with ``rank([X_j, j in S]) + k + 1 > N`` (math.md, generic)."""
    K = len(Xs)
    if rank == 0 or rank + 1 > K:
        return []
    out = []
    for S in itertools.combinations(range(K), rank + 1):
        XS = np.hstack([np.asarray(Xs[j], float).reshape(nobs, -1) for j in S])
        if _basis(XS).shape[1] + rank + 1 > nobs:
            out.append(S)
    return out
