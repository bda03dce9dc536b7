"""The factor report: ordered loadings, their correlation scale, the per-equation table, scree.

* :func:`report_loadings`: the canonical rotation (``F' D^{-1} F`` diagonal, largest
  loading of each factor positive; :func:`~lowrank_sur.covariance.canonical_loadings`)
  with the factors ordered by their share of the total error variance, largest first.
* :func:`factor_table`: one row per equation, the loadings on the covariance and on the
  correlation scale (divided by the equation's error standard deviation
  ``sqrt(Sigma_jj)``, so that equations of different sizes are comparable), uniqueness,
  communality, error variance and common share; the factor shares in ``attrs``.
* :func:`residual_correlation_eigenvalues`: eigenvalues of the residual correlation
  matrix from the singular values of the standardized residuals (N x K; no K x K array),
  for a scree plot.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .covariance import canonical_loadings

__all__ = ["report_loadings", "factor_table", "residual_correlation_eigenvalues"]


def report_loadings(F: np.ndarray, D: np.ndarray) -> np.ndarray:
    """Canonical loadings with the factors ordered by decreasing share of error variance.

    Parameters
    ----------
    F : ndarray, shape (K, k)
        Loadings in any rotation.
    D : ndarray, shape (K,)
        Idiosyncratic variances.

    Returns
    -------
    ndarray, shape (K, k)
        ``F Q`` with ``F' D^{-1} F`` diagonal (a permutation of its columns keeps it so),
        columns in decreasing ``||F_r||^2``.
    """
    G = canonical_loadings(F, D)
    order = np.argsort(-np.einsum("ij,ij->j", G, G), kind="stable")
    return G[:, order]


def factor_table(L: pd.DataFrame, D: np.ndarray) -> pd.DataFrame:
    """The per-equation factor structure (see ``LowRankSURResults.factor_summary``).

    Parameters
    ----------
    L : DataFrame, shape (K, k)
        Loadings, columns ``factor_1`` ...
    D : ndarray, shape (K,)
        Idiosyncratic variances.

    Returns
    -------
    DataFrame
        Columns: the loadings, ``std_factor_r`` (the loadings over ``sqrt(Sigma_jj)``:
        correlations of the errors with the factors), ``uniqueness``, ``communality``,
        ``error_var`` and ``common_share``; ``attrs["factor_share"]``.
    """
    F = L.to_numpy()
    D = np.asarray(D, dtype=float)
    h = np.einsum("ij,ij->i", F, F)
    sigma = np.sqrt(h + D)
    std = pd.DataFrame(F / sigma[:, None], index=L.index,
                       columns=[f"std_{c}" for c in L.columns])
    out = pd.concat([L, std], axis=1)
    out["uniqueness"] = D
    out["communality"] = h
    out["error_var"] = h + D
    out["common_share"] = h / (h + D)
    out.attrs["factor_share"] = pd.Series(np.sum(F**2, axis=0) / float(np.sum(h + D)),
                                          index=L.columns, name="factor_share")
    return out


def residual_correlation_eigenvalues(R: np.ndarray) -> np.ndarray:
    """Eigenvalues of the correlation matrix of the columns of ``R``, decreasing.

    Parameters
    ----------
    R : ndarray, shape (N, K)
        Residuals.

    Returns
    -------
    ndarray
        The ``min(N, K)`` largest eigenvalues (the rest are zero); they sum to K when
        ``N >= K``. Computed from the singular values of the centred, scaled residuals.
    """
    R = np.asarray(R, dtype=float)
    Z = R - R.mean(axis=0)
    scale = np.sqrt(np.einsum("ij,ij->j", Z, Z))
    if np.any(scale == 0):
        raise ValueError("a residual column is constant: its correlations are undefined")
    s = np.linalg.svd(Z / scale, compute_uv=False)
    return s**2
