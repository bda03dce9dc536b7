"""Covariance of the GLS coefficients at the MLE, without P x P or K x K arrays.

At the MLE the Gaussian information matrix is block diagonal between the
coefficients and ``(F, D)``, so ``Cov(b) = A^{-1}`` with
``A = X'(Sigma^{-1} kron I_N) X``. On the whitened design (``X_j = Q_j R_j``)
``A = T' A~ T`` with ``T = blockdiag(R_j)`` and

    A~ = blockdiag(I_{p_j} / d_j) - U'U,    U = [w_{jr} Q_j]  (N k x P),

where ``Sigma^{-1} = D^{-1} - W W'``. Woodbury turns this into one N k x N k
system ``C = I - U B^{-1} U'``, from which every diagonal block of ``A~^{-1}``
follows; when ``P <= N k`` the P x P matrix ``A~`` itself is the smaller object and is
factored instead. Restrictions ``R b`` use matrix-free conjugate-gradient solves.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

from ..design import SURDesign
from ..gls import GLSOperator
from .registry import CoefCovEstimator, register_cov_type

__all__ = ["NonrobustCovariance"]

#: Equations processed per chunk when assembling the N k x N k system.
_CHUNK_BYTES = 8 * 2**20


@register_cov_type("nonrobust", aliases=("unadjusted", "homoskedastic"))
class NonrobustCovariance(CoefCovEstimator):
    """``Cov(b) = (X'(Sigma^{-1} kron I) X)^{-1}`` for a fitted system: GLS at the MLE.

    Parameters
    ----------
    design : SURDesign
        The whitened design.
    Y : ndarray or None
        The responses (not needed).
    record : FitRecord
        The fit; its error covariance (a ``LowRankCovariance``) is used.
    """

    note = ("Standard errors are GLS standard errors at the MLE of Sigma; "
            "p-values use the normal distribution.")

    def __init__(self, design: SURDesign, Y=None, record=None) -> None:
        self.design = design
        self.cov = record.cov
        self._op = GLSOperator(design, self.cov)
        self._blocks: list[np.ndarray] | None = None

    # ------------------------------------------------------------ helpers
    def _to_white(self, Rm: np.ndarray) -> np.ndarray:
        """Map rows of a P-column restriction matrix to whitened space: ``Rm T^{-1}``."""
        d = self.design
        if Rm.shape[1] != d.k_params:
            raise ValueError(
                f"restriction matrix has {Rm.shape[1]} columns, expected {d.k_params}"
            )
        out = np.zeros((Rm.shape[0], d.k_eqs * d.pmax))
        cols = np.flatnonzero(np.any(Rm != 0, axis=0))
        for j in np.unique(np.searchsorted(d.offsets, cols, side="right") - 1):
            lo, hi = d.offsets[j], d.offsets[j + 1]
            out[:, j * d.pmax : j * d.pmax + (hi - lo)] = Rm[:, lo:hi] @ d.rinv(j)
        return out

    def _white_solve(self, Zw: np.ndarray, rtol: float) -> np.ndarray:
        """``A~^{-1} Zw'`` (K pmax x q) by one conjugate-gradient solve per row."""
        X = np.zeros((Zw.shape[1], Zw.shape[0]))
        for i, z in enumerate(Zw):
            if np.any(z):
                X[:, i] = self._op.solve(z, rtol=rtol)
        return X

    def _eq_chunks(self):
        d = self.design
        per_eq = d.nobs * max(self.cov.rank, 1) * d.pmax * 8
        step = max(1, int(_CHUNK_BYTES // max(per_eq, 1)))
        for start in range(0, d.k_eqs, step):
            yield start, min(d.k_eqs, start + step)

    def _U_chunk(self, lo: int, hi: int, scale: np.ndarray | None = None) -> np.ndarray:
        """Columns of ``U`` for equations lo..hi (N k x (hi-lo) * pmax), padded columns zero.

        With ``scale``, column block j is multiplied by ``scale[j]``.
        """
        d = self.design
        W = self.cov.W[lo:hi]  # (m, k)
        if scale is not None:
            W = W * scale[lo:hi, None]
        Q = d.Q if not d.shared else np.broadcast_to(d.Q, (d.k_eqs,) + d.Q.shape[1:])
        Qc = Q[lo:hi]  # (m, pmax, N)
        # U[r*N + t, j*pmax + c] = W[j, r] * Q[j, c, t]
        U = np.einsum("jr,jct->rtjc", W, Qc, optimize=False)
        return U.reshape(self.cov.rank * d.nobs, (hi - lo) * d.pmax)

    # --------------------------------------------------------- diag blocks
    def whitened_blocks(self) -> list[np.ndarray]:
        """Diagonal blocks of ``A~^{-1}`` (p_j x p_j each, whitened scale)."""
        if self._blocks is not None:
            return self._blocks
        d, cov = self.design, self.cov
        k, n, P = cov.rank, d.nobs, d.k_params
        D = cov.D
        if k == 0:
            blocks = [D[j] * np.eye(d.p[j]) for j in range(d.k_eqs)]
        elif P <= n * k:
            blocks = self._blocks_dense()
        else:
            # C = I - U B^{-1} U' with B^{-1} = blockdiag(d_j I)
            C = np.eye(n * k)
            for lo, hi in self._eq_chunks():
                U = self._U_chunk(lo, hi, scale=np.sqrt(D))
                C -= U @ U.T
            L = linalg.cholesky(C, lower=True, overwrite_a=True)
            blocks = []
            for lo, hi in self._eq_chunks():
                U = self._U_chunk(lo, hi)
                Z = linalg.solve_triangular(L, U, lower=True, overwrite_b=True)  # L^{-1} U_j
                for i, j in enumerate(range(lo, hi)):
                    p = d.p[j]
                    Zj = Z[:, i * d.pmax : i * d.pmax + p]
                    blocks.append(D[j] * np.eye(p) + D[j] ** 2 * (Zj.T @ Zj))
        self._blocks = blocks
        return blocks

    def _dense_white_inv(self) -> np.ndarray:
        """``A~^{-1}`` as a dense P x P array (packed, no padding)."""
        d, D = self.design, self.cov.D
        idx = d.packed_index()
        A = np.zeros((d.k_params, d.k_params))
        if self.cov.rank:
            U = np.hstack([self._U_chunk(lo, hi) for lo, hi in self._eq_chunks()])[:, idx]
            A -= U.T @ U
        A[np.diag_indices_from(A)] += np.repeat(1.0 / D, d.p)
        return linalg.cho_solve(linalg.cho_factor(A, lower=True), np.eye(A.shape[0]))

    def _blocks_dense(self) -> list[np.ndarray]:
        Ainv = self._dense_white_inv()
        d = self.design
        return [Ainv[lo:hi, lo:hi].copy() for lo, hi in zip(d.offsets[:-1], d.offsets[1:])]

    def blocks(self) -> list[np.ndarray]:
        """Diagonal blocks of ``Cov(b)`` on the scale of the original regressors."""
        d = self.design
        out = []
        for j, B in enumerate(self.whitened_blocks()):
            Ri = d.rinv(j)
            out.append(Ri @ B @ Ri.T)
        return out

    def bse(self) -> np.ndarray:
        """Standard errors of all P coefficients."""
        return np.sqrt(np.concatenate([np.diag(B) for B in self.blocks()]))

    # ------------------------------------------------------- restrictions
    def solve(self, Rm: np.ndarray, rtol: float = 1e-11) -> np.ndarray:
        """Return ``A^{-1} Rm'`` (P x q) by conjugate-gradient solves, one per row."""
        d = self.design
        Rm = np.atleast_2d(np.asarray(Rm, dtype=float))
        X = self._white_solve(self._to_white(Rm), rtol).reshape(d.k_eqs, d.pmax, -1)
        out = np.empty((d.k_params, Rm.shape[0]))
        for j in range(d.k_eqs):  # back to the original scale: b_j = R_j^{-1} a_j
            p = d.p[j]
            out[d.offsets[j] : d.offsets[j + 1]] = d.rinv(j) @ X[j, :p]
        return out

    def restricted(self, Rm: np.ndarray, other: np.ndarray | None = None,
                   rtol: float = 1e-11) -> np.ndarray:
        """Return ``Rm A^{-1} Rm'`` (or ``other A^{-1} Rm'``) without forming ``A^{-1}``."""
        Rm = np.atleast_2d(np.asarray(Rm, dtype=float))
        Zw = self._to_white(Rm)
        X = self._white_solve(Zw, rtol)
        if other is not None:
            return self._to_white(np.atleast_2d(np.asarray(other, dtype=float))) @ X
        V = Zw @ X
        return 0.5 * (V + V.T)

    def full(self) -> np.ndarray:
        """The full P x P covariance ``T^{-1} A~^{-1} T^{-T}``."""
        d = self.design
        Tinv = linalg.block_diag(*[d.rinv(j) for j in range(d.k_eqs)])
        V = Tinv @ self._dense_white_inv() @ Tinv.T
        return 0.5 * (V + V.T)
