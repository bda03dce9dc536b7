"""The low-rank plus diagonal covariance ``Sigma = F F' + diag(D)``.

Everything here costs O(N K k) time and O(K k) memory except :meth:`to_dense`
and :meth:`inv_dense`, which build a K x K array on purpose and refuse to do so
past :data:`DENSE_MAX_K` unless asked explicitly.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

__all__ = ["LowRankCovariance", "DENSE_MAX_K", "canonical_loadings"]

#: Largest K for which :meth:`LowRankCovariance.to_dense` works without ``force=True``.
DENSE_MAX_K = 5000

_LOG_2PI = float(np.log(2.0 * np.pi))


class LowRankCovariance:
    """Covariance matrix ``Sigma = F F' + diag(D)`` kept in factored form.

    Parameters
    ----------
    F : array_like, shape (K, k)
        Factor loadings. ``k = 0`` (an empty second axis) gives a diagonal Sigma.
    D : array_like, shape (K,)
        Idiosyncratic (diagonal) variances, all strictly positive.

    Notes
    -----
    With ``M = I_k + F' D^{-1} F = L L'`` and ``W = D^{-1} F L^{-T}`` (K x k),
    the Woodbury identity gives ``Sigma^{-1} = D^{-1} - W W'`` and the
    determinant lemma gives ``log|Sigma| = sum(log D) + 2 sum(log diag(L))``.
    Only ``F``, ``D``, ``W`` and the k x k factor ``L`` are stored.
    """

    __slots__ = ("F", "D", "_L", "_W", "_logdet")

    def __init__(self, F: np.ndarray, D: np.ndarray) -> None:
        D = np.asarray(D, dtype=float)
        if D.ndim != 1:
            raise ValueError(f"D must be one-dimensional, got shape {D.shape}")
        F = np.asarray(F, dtype=float)
        if F.ndim == 1 and F.size == 0:
            F = F.reshape(D.shape[0], 0)
        if F.ndim != 2 or F.shape[0] != D.shape[0]:
            raise ValueError(
                f"F must have shape (K, k) with K = len(D) = {D.shape[0]}, got {F.shape}"
            )
        if not np.all(np.isfinite(D)) or np.any(D <= 0):
            raise ValueError("D must be finite and strictly positive")
        if not np.all(np.isfinite(F)):
            raise ValueError("F must be finite")
        self.F = F
        self.D = D
        k = F.shape[1]
        Fd = F / D[:, None]
        M = Fd.T @ F
        M[np.diag_indices(k)] += 1.0
        L = linalg.cholesky(M, lower=True) if k else np.zeros((0, 0))
        self._L = L
        # W = D^{-1} F L^{-T}  <=>  W L' = Fd  <=>  L W' = Fd'
        self._W = linalg.solve_triangular(L, Fd.T, lower=True).T if k else Fd
        self._logdet = float(np.sum(np.log(D)) + 2.0 * np.sum(np.log(np.diag(L))))

    # ------------------------------------------------------------------ shape
    @property
    def k_eqs(self) -> int:
        """Number of equations K."""
        return self.D.shape[0]

    @property
    def rank(self) -> int:
        """Number of factors k."""
        return self.F.shape[1]

    @property
    def W(self) -> np.ndarray:
        """K x k matrix with ``Sigma^{-1} = diag(1/D) - W W'``."""
        return self._W

    # ------------------------------------------------------------ algebra
    def logdet(self) -> float:
        """Return ``log|Sigma|``."""
        return self._logdet

    def solve(self, R: np.ndarray) -> np.ndarray:
        """Return ``R Sigma^{-1}`` for an N x K matrix (or ``Sigma^{-1} r`` for a K-vector).

        Parameters
        ----------
        R : ndarray, shape (N, K) or (K,)
            Rows are K-vectors (for example residuals of the K equations).

        Returns
        -------
        ndarray
            Same shape as ``R``.
        """
        R = np.asarray(R, dtype=float)
        out = R / self.D
        if self.rank:
            out -= (R @ self._W) @ self._W.T
        return out

    def matvec(self, R: np.ndarray) -> np.ndarray:
        """Return ``R Sigma`` for an N x K matrix (or ``Sigma r`` for a K-vector)."""
        R = np.asarray(R, dtype=float)
        out = R * self.D
        if self.rank:
            out += (R @ self.F) @ self.F.T
        return out

    def inv_diag(self) -> np.ndarray:
        """Return the diagonal of ``Sigma^{-1}`` (length K)."""
        return 1.0 / self.D - np.einsum("ij,ij->i", self._W, self._W)

    def diag(self) -> np.ndarray:
        """Return the diagonal of Sigma (length K)."""
        return self.D + np.einsum("ij,ij->i", self.F, self.F)

    def quad_form_sum(self, R: np.ndarray) -> float:
        """Return ``tr(R Sigma^{-1} R') = sum_t r_t' Sigma^{-1} r_t`` for N x K ``R``."""
        R = np.asarray(R, dtype=float)
        total = float(np.einsum("ij,ij->", R, R / self.D))
        if self.rank:
            RW = R @ self._W
            total -= float(np.einsum("ij,ij->", RW, RW))
        return total

    def loglike(self, R: np.ndarray) -> float:
        """Gaussian log-likelihood of the rows of ``R`` as N(0, Sigma) draws.

        Parameters
        ----------
        R : ndarray, shape (N, K)
            Residual matrix.

        Returns
        -------
        float
            ``-(N/2)(K log 2 pi + log|Sigma|) - tr(R Sigma^{-1} R') / 2``.
        """
        R = np.asarray(R, dtype=float)
        n = R.shape[0]
        return -0.5 * n * (self.k_eqs * _LOG_2PI + self._logdet) - 0.5 * self.quad_form_sum(R)

    def loglikeobs(self, R: np.ndarray) -> np.ndarray:
        """Per-row Gaussian log-likelihood contributions (length N)."""
        R = np.asarray(R, dtype=float)
        q = np.einsum("ij,ij->i", R, R / self.D)
        if self.rank:
            RW = R @ self._W
            q -= np.einsum("ij,ij->i", RW, RW)
        return -0.5 * (self.k_eqs * _LOG_2PI + self._logdet) - 0.5 * q

    # ------------------------------------------------------------- dense
    def _check_dense(self, force: bool) -> None:
        if self.k_eqs > DENSE_MAX_K and not force:
            gb = self.k_eqs**2 * 8 / 1e9
            raise MemoryError(
                f"A dense {self.k_eqs} x {self.k_eqs} covariance needs {gb:.1f} GB; "
                "work with the factored form (solve, inv_diag, loglike) or pass force=True."
            )

    def to_dense(self, force: bool = False) -> np.ndarray:
        """Return Sigma as a dense K x K array (for small K only).

        Parameters
        ----------
        force : bool
            Build it even when ``K > DENSE_MAX_K``.
        """
        self._check_dense(force)
        S = self.F @ self.F.T
        S[np.diag_indices(self.k_eqs)] += self.D
        return S

    def inv_dense(self, force: bool = False) -> np.ndarray:
        """Return ``Sigma^{-1}`` as a dense K x K array (for small K only)."""
        self._check_dense(force)
        S = -(self._W @ self._W.T)
        S[np.diag_indices(self.k_eqs)] += 1.0 / self.D
        return S

    def to_corr(self, force: bool = False) -> np.ndarray:
        """Return the dense K x K correlation matrix implied by Sigma."""
        S = self.to_dense(force)
        s = np.sqrt(np.diag(S))
        return S / np.outer(s, s)

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """Draw an N x K matrix whose rows are independent N(0, Sigma) vectors."""
        rng = np.random.default_rng(rng)
        E = rng.standard_normal((n, self.k_eqs)) * np.sqrt(self.D)
        if self.rank:
            E += rng.standard_normal((n, self.rank)) @ self.F.T
        return E

    def __repr__(self) -> str:
        return f"LowRankCovariance(K={self.k_eqs}, k={self.rank})"


def canonical_loadings(F: np.ndarray, D: np.ndarray) -> np.ndarray:
    """Rotate ``F`` so that ``F' D^{-1} F`` is diagonal and decreasing, signs fixed.

    Parameters
    ----------
    F : ndarray, shape (K, k)
        Loadings in any rotation.
    D : ndarray, shape (K,)
        Idiosyncratic variances.

    Returns
    -------
    ndarray, shape (K, k)
        ``F Q`` for the orthogonal ``Q`` that diagonalizes ``F' D^{-1} F`` with
        decreasing entries; each column is multiplied by -1 if needed so that its
        largest absolute loading is positive.
    """
    k = F.shape[1]
    if k == 0:
        return F.copy()
    Fs = F / np.sqrt(D)[:, None]
    evals, Q = np.linalg.eigh(Fs.T @ Fs)
    Q = Q[:, np.argsort(evals)[::-1]]
    G = F @ Q
    idx = np.argmax(np.abs(G), axis=0)
    signs = np.sign(G[idx, np.arange(k)])
    signs[signs == 0] = 1.0
    return G * signs
