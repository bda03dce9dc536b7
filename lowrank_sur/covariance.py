"""The cross-equation error covariance Sigma: the only module that knows its algebra.

Two implementations of one small protocol (:class:`Covariance`):

* :class:`LowRankCovariance`, ``Sigma = F F' + diag(D)`` kept in factored form.
  Everything costs O(N K k) time and O(K k) memory except :meth:`~Covariance.to_dense`
  and :meth:`~Covariance.inv_dense`, which build a K x K array on purpose and refuse
  to do so past :data:`DENSE_MAX_K` unless asked explicitly.
* :class:`DenseCovariance`, an unrestricted K x K Sigma through its Cholesky factor
  (small K: the EM reference fitter, unrestricted and full-Sigma fits, benchmarks).

Both give the solves ``R Sigma^{-1}`` (rows are K-vectors, N x K) and
``Sigma^{-1} M`` (K x N, the layout of the GLS operator), ``log|Sigma|``, the quadratic
forms and the Gaussian log-likelihood, which is written once, in :func:`gaussian_llf`.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

__all__ = [
    "Covariance",
    "LowRankCovariance",
    "DenseCovariance",
    "DENSE_MAX_K",
    "LOG_2PI",
    "gaussian_llf",
    "canonical_loadings",
]

#: Largest K for which :meth:`Covariance.to_dense` works without ``force=True``.
DENSE_MAX_K = 5000

#: ``log(2 pi)``.
LOG_2PI = float(np.log(2.0 * np.pi))


def gaussian_llf(nobs, k_eqs: int, logdet: float, quad):
    """Log-likelihood of ``nobs`` independent N(0, Sigma) K-vectors.

    Parameters
    ----------
    nobs : int or float
        Number of rows N (1 for per-row contributions).
    k_eqs : int
        Dimension K.
    logdet : float
        ``log|Sigma|``.
    quad : float or ndarray
        ``sum_t r_t' Sigma^{-1} r_t`` (or per-row values with ``nobs = 1``).

    Returns
    -------
    float or ndarray
        ``-(N/2)(K log 2 pi + log|Sigma|) - quad / 2``.
    """
    return -0.5 * (nobs * (k_eqs * LOG_2PI + logdet) + quad)


class Covariance:
    """Protocol shared by the covariance implementations (a K x K positive definite Sigma).

    Subclasses provide ``k_eqs``, :meth:`logdet`, :meth:`solve`, :meth:`solve_t`,
    :meth:`matvec`, :meth:`diag`, :meth:`inv_diag`, :meth:`quad_form_obs`,
    :meth:`to_dense`, :meth:`inv_dense` and :meth:`sample`; the log-likelihood and
    the correlation matrix are defined here once for all.
    """

    __slots__ = ()

    k_eqs: int

    # ----------------------------------------------------------- abstract
    def logdet(self) -> float:  # pragma: no cover - interface
        """Return ``log|Sigma|``."""
        raise NotImplementedError

    def solve(self, R: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        """Return ``R Sigma^{-1}`` for an N x K ``R`` (or ``Sigma^{-1} r`` for a K-vector)."""
        raise NotImplementedError

    def solve_t(self, MT: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        """Return ``Sigma^{-1} MT`` for a K x N ``MT`` (the transposed layout of :meth:`solve`)."""
        raise NotImplementedError

    def matvec(self, R: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        """Return ``R Sigma`` for an N x K matrix (or ``Sigma r`` for a K-vector)."""
        raise NotImplementedError

    def diag(self) -> np.ndarray:  # pragma: no cover - interface
        """Return the diagonal of Sigma (length K)."""
        raise NotImplementedError

    def inv_diag(self) -> np.ndarray:  # pragma: no cover - interface
        """Return the diagonal of ``Sigma^{-1}`` (length K)."""
        raise NotImplementedError

    def quad_form_obs(self, R: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        """Return ``r_t' Sigma^{-1} r_t`` for each row of an N x K ``R`` (length N)."""
        raise NotImplementedError

    def to_dense(self, force: bool = False) -> np.ndarray:  # pragma: no cover - interface
        """Return Sigma as a dense K x K array."""
        raise NotImplementedError

    def inv_dense(self, force: bool = False) -> np.ndarray:  # pragma: no cover - interface
        """Return ``Sigma^{-1}`` as a dense K x K array."""
        raise NotImplementedError

    def sample(self, n: int, rng=None) -> np.ndarray:  # pragma: no cover - interface
        """Draw an N x K matrix whose rows are independent N(0, Sigma) vectors."""
        raise NotImplementedError

    # ------------------------------------------------------------ shared
    def quad_form_sum(self, R: np.ndarray) -> float:
        """Return ``tr(R Sigma^{-1} R') = sum_t r_t' Sigma^{-1} r_t`` for N x K ``R``."""
        return float(np.sum(self.quad_form_obs(R)))

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
        return float(gaussian_llf(R.shape[0], self.k_eqs, self.logdet(), self.quad_form_sum(R)))

    def loglikeobs(self, R: np.ndarray) -> np.ndarray:
        """Per-row Gaussian log-likelihood contributions (length N)."""
        R = np.asarray(R, dtype=float)
        return gaussian_llf(1, self.k_eqs, self.logdet(), self.quad_form_obs(R))

    def to_corr(self, force: bool = False) -> np.ndarray:
        """Return the dense K x K correlation matrix implied by Sigma."""
        S = self.to_dense(force)
        s = np.sqrt(np.diag(S))
        return S / np.outer(s, s)

    def _check_dense(self, force: bool) -> None:
        if self.k_eqs > DENSE_MAX_K and not force:
            gb = self.k_eqs**2 * 8 / 1e9
            raise MemoryError(
                f"A dense {self.k_eqs} x {self.k_eqs} covariance needs {gb:.1f} GB; "
                "work with the factored form (solve, inv_diag, loglike) or pass force=True."
            )


class LowRankCovariance(Covariance):
    """Covariance matrix ``Sigma = F F' + diag(D)`` kept in factored form.

    Parameters
    ----------
    F : array_like, shape (K, k)
        Factor loadings. ``k = 0`` (an empty second axis) gives a diagonal Sigma.
    D : array_like, shape (K,)
        Idiosyncratic (diagonal) variances, all strictly positive.
    validate : bool
        Check shapes and values (default). The fitters' inner loops pass ``False``
        for arrays they built themselves; ``I + F' D^{-1} F`` that is not numerically
        positive definite then raises :class:`numpy.linalg.LinAlgError`.

    Notes
    -----
    With ``M = I_k + F' D^{-1} F = L L'`` and ``W = D^{-1} F L^{-T}`` (K x k),
    the Woodbury identity gives ``Sigma^{-1} = D^{-1} - W W'`` and the
    determinant lemma gives ``log|Sigma| = sum(log D) + 2 sum(log diag(L))``.
    Only ``F``, ``D``, ``W`` and the k x k factor ``L`` are stored.
    """

    __slots__ = ("F", "D", "_L", "_Linv", "_W", "_logdet")

    def __init__(self, F: np.ndarray, D: np.ndarray, *, validate: bool = True) -> None:
        if validate:
            F, D = self._validated(F, D)
        self.F = F
        self.D = D
        k = F.shape[1]
        Fd = F / D[:, None]
        if k:
            M = Fd.T @ F
            M[np.diag_indices(k)] += 1.0
            # numpy's Cholesky and solve: k x k work, called thousands of times on small
            # problems, where scipy's argument checks would dominate
            L = np.linalg.cholesky(M)
            # W = D^{-1} F L^{-T}  <=>  L W' = Fd'
            W = np.linalg.solve(L, Fd.T).T
        else:
            L, W = np.zeros((0, 0)), Fd
        self._L = L
        self._Linv = None
        self._W = W
        self._logdet = float(np.sum(np.log(D)) + 2.0 * np.sum(np.log(np.diag(L))))

    @staticmethod
    def _validated(F, D) -> tuple[np.ndarray, np.ndarray]:
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
        return F, D

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

    @property
    def L(self) -> np.ndarray:
        """Lower Cholesky factor of ``M = I + F' D^{-1} F`` (k x k)."""
        return self._L

    @property
    def L_inv(self) -> np.ndarray:
        """``L^{-1}`` (k x k; computed on first use)."""
        if self._Linv is None:
            self._Linv = np.linalg.solve(self._L, np.eye(self.rank))
        return self._Linv

    def m_inv(self) -> np.ndarray:
        """Return ``M^{-1} = (I + F' D^{-1} F)^{-1}`` (k x k; ``I - F' Sigma^{-1} F``)."""
        return self.L_inv.T @ self.L_inv

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

    def solve_t(self, MT: np.ndarray) -> np.ndarray:
        """Return ``Sigma^{-1} MT`` for a K x N matrix ``MT`` (contiguous K x N layout)."""
        out = MT / self.D[:, None]
        if self.rank:
            out -= self._W @ (self._W.T @ MT)
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

    def quad_form_sum(self, R: np.ndarray, *, col_ss=None, RW=None) -> float:
        """Return ``tr(R Sigma^{-1} R') = sum_t r_t' Sigma^{-1} r_t`` for N x K ``R``.

        Parameters
        ----------
        R : ndarray, shape (N, K)
            The rows.
        col_ss : ndarray, shape (K,), optional
            Column sums of squares of ``R``, when the caller has them.
        RW : ndarray, shape (N, k), optional
            ``R @ W``, when the caller has it.
        """
        if col_ss is None:
            R = np.asarray(R, dtype=float)
            total = float(np.einsum("ij,ij->", R, R / self.D))
        else:
            total = float(np.sum(col_ss / self.D))
        if self.rank:
            RW = R @ self._W if RW is None else RW
            total -= float(np.einsum("ij,ij->", RW, RW))
        return total

    def quad_form_obs(self, R: np.ndarray) -> np.ndarray:
        """Return ``r_t' Sigma^{-1} r_t`` for each row of ``R`` (length N)."""
        R = np.asarray(R, dtype=float)
        q = np.einsum("ij,ij->i", R, R / self.D)
        if self.rank:
            RW = R @ self._W
            q -= np.einsum("ij,ij->i", RW, RW)
        return q

    def loglike_accurate(self, R: np.ndarray) -> float:
        """Log-likelihood of the rows of ``R`` without the cancellation of :meth:`loglike`.

        ``r' Sigma^{-1} r = ||D^{-1/2} (r - F z)||^2 + ||z||^2`` at the posterior mean
        ``z = M^{-1} F' D^{-1} r``: non-negative terms, and the error in ``z`` only
        enters at second order. :meth:`loglike` computes ``sum r^2 / D - ||R W||^2``,
        whose two terms are of order ``N S_jj / D_j``, i.e. ``1e6 N`` for a ``D_j``
        a millionth of the equation's variance. By blocks of rows (no N x K
        temporary), O(N K k).
        """
        n, K = R.shape
        if not self.rank:
            return self.loglike(R)
        Fd = self.F / self.D[:, None]
        quad = 0.0
        step = max(1, min(n, 2**20 // max(K, 1)))
        for i in range(0, n, step):
            Rc = R[i : i + step]
            Z = linalg.cho_solve((self._L, True), (Rc @ Fd).T, check_finite=False).T
            E = Rc - Z @ self.F.T
            quad += float(np.einsum("ij,ij->", E / self.D, E) + np.einsum("ij,ij->", Z, Z))
        return float(gaussian_llf(n, K, self._logdet, quad))

    # ------------------------------------------------------------- dense
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

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """Draw an N x K matrix whose rows are independent N(0, Sigma) vectors."""
        rng = np.random.default_rng(rng)
        E = rng.standard_normal((n, self.k_eqs)) * np.sqrt(self.D)
        if self.rank:
            E += rng.standard_normal((n, self.rank)) @ self.F.T
        return E

    def __repr__(self) -> str:
        return f"LowRankCovariance(K={self.k_eqs}, k={self.rank})"


class DenseCovariance(Covariance):
    """An unrestricted K x K covariance, kept with its Cholesky factor.

    Parameters
    ----------
    S : array_like, shape (K, K)
        Symmetric positive definite matrix (symmetrized as ``(S + S') / 2``).

    Raises
    ------
    numpy.linalg.LinAlgError
        When ``S`` is not numerically positive definite.
    """

    __slots__ = ("S", "_L", "_logdet")

    def __init__(self, S: np.ndarray) -> None:
        S = np.asarray(S, dtype=float)
        if S.ndim != 2 or S.shape[0] != S.shape[1]:
            raise ValueError(f"S must be a square K x K matrix, got shape {S.shape}")
        if not np.all(np.isfinite(S)):
            raise ValueError("S must be finite")
        self.S = 0.5 * (S + S.T)
        self._L = np.linalg.cholesky(self.S)
        self._logdet = 2.0 * float(np.sum(np.log(np.diag(self._L))))

    @property
    def k_eqs(self) -> int:
        """Dimension K."""
        return self.S.shape[0]

    @property
    def L(self) -> np.ndarray:
        """Lower Cholesky factor of Sigma."""
        return self._L

    def logdet(self) -> float:
        """Return ``log|Sigma|``."""
        return self._logdet

    def solve_t(self, MT: np.ndarray) -> np.ndarray:
        """Return ``Sigma^{-1} MT`` for a K x N (or length-K) ``MT``."""
        return linalg.cho_solve((self._L, True), MT, check_finite=False)

    def solve(self, R: np.ndarray) -> np.ndarray:
        """Return ``R Sigma^{-1}`` for an N x K matrix (or ``Sigma^{-1} r`` for a K-vector)."""
        R = np.asarray(R, dtype=float)
        return self.solve_t(R.T).T

    def matvec(self, R: np.ndarray) -> np.ndarray:
        """Return ``R Sigma`` for an N x K matrix (or ``Sigma r`` for a K-vector)."""
        return np.asarray(R, dtype=float) @ self.S

    def diag(self) -> np.ndarray:
        """Return the diagonal of Sigma."""
        return np.diag(self.S).copy()

    def inv_diag(self) -> np.ndarray:
        """Return the diagonal of ``Sigma^{-1}``."""
        Linv = linalg.solve_triangular(self._L, np.eye(self.k_eqs), lower=True)
        return np.einsum("ij,ij->j", Linv, Linv)

    def quad_form_obs(self, R: np.ndarray) -> np.ndarray:
        """Return ``r_t' Sigma^{-1} r_t`` for each row of ``R`` (length N)."""
        R = np.atleast_2d(np.asarray(R, dtype=float))
        Z = linalg.solve_triangular(self._L, R.T, lower=True, check_finite=False)
        return np.einsum("ij,ij->j", Z, Z)

    def to_dense(self, force: bool = False) -> np.ndarray:
        """Return Sigma (a copy)."""
        return self.S.copy()

    def inv_dense(self, force: bool = False) -> np.ndarray:
        """Return ``Sigma^{-1}``."""
        return self.solve_t(np.eye(self.k_eqs))

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """Draw an N x K matrix whose rows are independent N(0, Sigma) vectors."""
        rng = np.random.default_rng(rng)
        return rng.standard_normal((n, self.k_eqs)) @ self._L.T

    def __repr__(self) -> str:
        return f"DenseCovariance(K={self.k_eqs})"


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
