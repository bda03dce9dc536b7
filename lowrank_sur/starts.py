"""Start values for the fitters: OLS coefficients and a principal-component factor start."""

from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import svds

__all__ = ["start_values"]


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
