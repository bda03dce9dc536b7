"""Start values for the fitters: OLS coefficients and a principal-component factor start."""

from __future__ import annotations

import itertools

import numpy as np
from scipy import linalg
from scipy.sparse.linalg import svds

from .threads import single_threaded

__all__ = ["start_values", "heywood_start", "floor_set_coefficients", "pc_loadings", "GRAM_MAX"]

#: Largest ``min(N, K)`` for which the top singular pairs come from the eigen-decomposition
#: of the smaller Gram matrix (``min(N, K)`` squared, at most 0.7 MB); above it, ARPACK.
GRAM_MAX = 300


def _top_singular_pairs(Rs: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``rank`` singular values and right singular vectors of ``Rs`` (N x K).

    From the eigen-decomposition of ``Rs Rs'`` (N x N) or ``Rs' Rs`` (K x K), whichever
    is smaller: one product and a small ``eigh`` instead of a full SVD. The squared
    condition number costs nothing for the leading pairs, which is all a start needs.
    """
    n, K = Rs.shape
    G = Rs @ Rs.T if n < K else Rs.T @ Rs
    m = G.shape[0]
    top = min(rank, m)
    # only the top eigenpairs (LAPACK's MRRR driver), largest first
    lam, V = linalg.eigh(G, subset_by_index=[m - top, m - 1], driver="evr",
                         check_finite=False)
    lam, V = lam[::-1], V[:, ::-1]
    s = np.sqrt(np.maximum(lam, 0.0))
    if n < K:
        vt = (V.T @ Rs) / np.where(s > 0, s, 1.0)[:, None]
    else:
        vt = V.T
    return s, vt


@single_threaded
def start_values(R: np.ndarray, rank: int, floor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Principal-component start: F from the top-k singular pairs of the standardized residuals.

    The principal components of the correlation matrix of ``R``: the singular pairs of
    ``R_j / (sqrt(N) sd_j)``, with the loadings put back on each equation's scale. The
    start is equivariant to the units of each response (scaling response j by c scales
    ``F_j`` by c and ``D_j`` by c squared), as the likelihood is.

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
    # on each response's own scale, so that the start (and so the maximum the fit
    # reaches) does not depend on the units of one response
    sd = np.sqrt(np.where(var > 0, var, 1.0))
    Rs = R / (np.sqrt(n) * sd)
    m = min(n, K)
    if m > GRAM_MAX and rank < m - 1:
        v0 = np.ones(m) / np.sqrt(m)
        _, s, vt = svds(Rs, k=rank, v0=v0, random_state=0)
        order = np.argsort(s)[::-1]
        s, vt = s[order], vt[order]
    else:
        s, vt = _top_singular_pairs(Rs, rank)
    return pc_loadings(s, vt, var, floor, sd)


def pc_loadings(s: np.ndarray, vt: np.ndarray, var: np.ndarray, floor: np.ndarray,
                sd: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The start ``(F, D)`` of :func:`start_values` from the top singular pairs.

    The pairs are those of ``R_j / (sqrt(N) sd_j)`` (or of ``R / sqrt(N)`` when ``sd``
    is None); the loadings are put back on each equation's scale.

    Parameters
    ----------
    s : ndarray, shape (k,)
        Singular values, largest first.
    vt : ndarray, shape (k, K)
        Right singular vectors (rows).
    var : ndarray, shape (K,)
        Mean squares of the residual columns.
    floor : ndarray, shape (K,)
        Lower bounds for D.
    sd : ndarray, shape (K,), optional
        The scales the residual columns were divided by.
    """
    F = vt.T * s
    if sd is not None:
        F = F * sd[:, None]
    D = np.maximum(np.maximum(var - np.einsum("ij,ij->i", F, F), var / 20.0), floor)
    # shrink the loadings so that the start's diagonal matches the sample variances
    h = np.einsum("ij,ij->i", F, F)
    scale = np.sqrt(np.clip((var - D) / np.where(h > 0, h, 1.0), 0.0, 1.0))
    return F * scale[:, None], D


@single_threaded
def heywood_start(R: np.ndarray, rank: int, floor: np.ndarray,
                  at_floor) -> tuple[np.ndarray, np.ndarray]:
    """A start with the equations ``at_floor`` on the floor (a Heywood start).

    At a Heywood point the factors span the residuals of the equations on the floor.
    The start takes those residuals (whitened) as the first ``len(at_floor)`` factors,
    and the principal components (:func:`start_values`) of what they leave in the
    other equations as the rest.

    Parameters
    ----------
    R : ndarray, shape (N, K)
        Residuals.
    rank : int
        Number of factors k.
    floor : ndarray, shape (K,)
        Lower bounds for D.
    at_floor : sequence of int
        At most ``rank`` equations to put on the floor.

    Returns
    -------
    F : ndarray, shape (K, k)
    D : ndarray, shape (K,)
        ``D_j`` is the floor for the equations ``at_floor``.
    """
    n, K = R.shape
    S = np.asarray(sorted(at_floor), dtype=int)
    if not 0 < S.size <= rank:
        raise ValueError(f"at_floor must hold 1 to rank={rank} equations, got {S.size}")
    var = np.einsum("ij,ij->j", R, R) / n
    sd = np.sqrt(np.where(var > 0, var, 1.0))
    Rs = R / sd  # each equation on its own scale
    # whitened residuals of S: orthonormal (Z'Z / n = I) scores spanning them
    Q, _ = np.linalg.qr(Rs[:, S])
    Z = Q * np.sqrt(n)
    F1 = Rs.T @ Z / n
    rest = np.setdiff1d(np.arange(K), S)
    F = np.zeros((K, rank))
    F[:, : S.size] = F1
    if rank > S.size and rest.size:
        E = Rs[:, rest] - Z @ F1[rest].T
        F2, _ = start_values(E, rank - S.size, np.zeros(rest.size))
        F[rest, S.size:] = F2
    F *= sd[:, None]
    h = np.einsum("ij,ij->i", F, F)
    D = np.maximum(np.maximum(var - h, var / 20.0), floor)
    scale = np.sqrt(np.clip((var - D) / np.where(h > 0, h, 1.0), 0.0, 1.0))
    F[rest] *= scale[rest, None]
    D[S] = floor[S]
    return F, D


def _relaxed_fit(Ys: np.ndarray, bases: list, S: tuple, t: int) -> np.ndarray | None:
    """Fitted values of the equations ``S`` whose residuals best explain equation ``t``.

    The least-squares fit of ``y_t`` on ``[X_t, y_S, X_S]`` with coefficients
    ``(b_t, a_S, g_S)``; with every ``a_j != 0`` it is ``y_t = X_t b_t + sum_j a_j
    (y_j - X_j b_j)`` for ``b_j = -g_j / a_j`` (the relaxation is exact). Only the parts
    of ``X_S`` outside ``col(X_t)`` enter (the rest is absorbed by ``b_t``); along the
    directions of ``b_j`` that stay inside ``col(X_t)`` the OLS values are kept.
    Returns ``None`` when some ``a_j`` vanishes.
    """
    Qt = bases[t]
    outside = [bases[j] - Qt @ (Qt.T @ bases[j]) for j in S]
    M = np.column_stack([Qt, Ys[:, S]] + outside)
    coef = np.linalg.lstsq(M, Ys[:, t], rcond=None)[0]
    a = coef[Qt.shape[1]: Qt.shape[1] + len(S)]
    if np.any(np.abs(a) <= 1e-8 * max(np.abs(a).max(), np.finfo(float).tiny)):
        return None
    g = np.split(coef[Qt.shape[1] + len(S):], np.cumsum([bases[j].shape[1] for j in S])[:-1])
    fits = []
    for i, j in enumerate(S):
        c = -g[i] / a[i]
        _, sv, vt = np.linalg.svd(outside[i], full_matrices=True)
        sv = np.concatenate([sv, np.zeros(vt.shape[0] - sv.size)])
        null = vt[sv <= 1e-10]  # directions of b_j inside col(X_t)
        c = c + null.T @ (null @ (bases[j].T @ Ys[:, j]))
        fits.append(bases[j] @ c)
    return np.column_stack(fits)


def _floor_profile(Ys: np.ndarray, bases: list, S: tuple, RS: np.ndarray) -> float:
    """``-2 llf / N`` (up to a constant) in the limit ``D_S -> 0`` with ``len(S) = k``.

    The residuals ``R_S`` are then the factors: ``log|R_S'R_S / N|`` for their
    (unrestricted) covariance, plus, for every other equation, the log mean square of
    its regression on its regressors and ``R_S`` (its error given the factors is its
    own).
    """
    n = Ys.shape[0]
    value = np.linalg.slogdet(RS.T @ RS / n)[1]
    for t in range(Ys.shape[1]):
        if t in S:
            continue
        q, _ = np.linalg.qr(np.column_stack([bases[t], RS]))
        r = Ys[:, t] - q @ (q.T @ Ys[:, t])
        value += np.log(max(r @ r / n, np.finfo(float).tiny))
    return float(value)


def floor_set_coefficients(Y: np.ndarray, bases: list, rank: int, n_best: int,
                           max_pairs: int = 400) -> list[tuple[tuple, np.ndarray]]:
    """Coefficients for Heywood starts with ``rank`` equations on the floor.

    At a Heywood point with a set S of k equations on the floor, their residuals
    ``R_S`` are the factors, and the other equations are regressed on them. The
    highest such point often needs coefficients of S far from OLS (few observations:
    ``R_S`` chosen so that it explains another equation's response nearly exactly),
    which the alternating fitters cannot reach from OLS because, with ``D_S`` on the
    floor, any move of ``b_S`` leaves the factors behind. For every set S of k
    equations and every other equation t, :func:`_relaxed_fit` gives the coefficients
    of S whose residuals best explain ``y_t``; the pairs are ranked by the exact
    log-likelihood in the limit ``D_S -> 0`` (:func:`_floor_profile`).

    Parameters
    ----------
    Y : ndarray, shape (N, K)
        Responses.
    bases : list of ndarray
        Orthonormal bases (N x p_j) of each equation's regressors.
    rank : int
        Number of factors k (the size of the sets).
    n_best : int
        How many starts to return.
    max_pairs : int, default 400
        No starts when there are more (set, equation) pairs than this.

    Returns
    -------
    list of (tuple, ndarray)
        The set S and the N x K fitted values (OLS outside S), best first.
    """
    n, K = Y.shape
    if rank < 1 or rank >= K:
        return []
    sets = itertools.combinations(range(K), rank)
    n_sets = int(np.prod([K - i for i in range(rank)]) // np.prod(range(1, rank + 1)))
    if n_sets * (K - rank) > max_pairs:
        return []
    ols = np.column_stack([bases[j] @ (bases[j].T @ Y[:, j]) for j in range(K)])
    r0 = Y - ols
    sd = np.sqrt(np.einsum("ij,ij->j", r0, r0) / n)
    if np.any(sd <= 0):
        return []
    Ys = Y / sd
    scored = []
    for S in sets:
        for t in (t for t in range(K) if t not in S):
            fit = _relaxed_fit(Ys, bases, S, t)
            if fit is None:
                continue
            RS = Ys[:, S] - fit
            scored.append((_floor_profile(Ys, bases, S, RS), S, fit))
    scored.sort(key=lambda e: e[0])
    out = []
    for _, S, fit in scored[:n_best]:
        fits = ols.copy()
        fits[:, S] = fit * sd[list(S)]
        out.append((S, fits))
    return out
