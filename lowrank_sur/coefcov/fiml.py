"""Coefficient covariance at the MLE with missing responses (``missing="fiml"``).

The Gaussian information of the coefficients is still block diagonal against
``(F, D)`` under missing at random (the observed-data score of ``b`` is linear in the
residuals), and its coefficient block is

    A = sum_t X_{t,o}' Sigma_oo^{-1} X_{t,o}.

On the whitened design (``Q_j`` zero in the unobserved rows, ``Q_j'Q_j = I``) and with
``Sigma_oo^{-1} = D_o^{-1} - W_{t,o} W_{t,o}'``, ``W_t = D^{-1} F L_t^{-T}`` (``L_t`` the
Cholesky factor of row t's ``M_t``, :mod:`lowrank_sur.missing`),

    A~ = blockdiag(I_{p_j} / d_j) - U'U,    U[r N + t, (j, c)] = (W_t)_{jr} Q_j[c, t],

the complete-data structure with one ``W`` per row. :class:`FIMLNonrobustCovariance`
is therefore :class:`~lowrank_sur.coefcov.nonrobust.NonrobustCovariance` with that
``U`` (the same dense P x P or N k x N k Woodbury routes, chosen by flop count) and the
incomplete-data normal-equation operator for restrictions (conjugate gradients): no
P x P array when P is large.

References
----------
Little, R. J. A. and Rubin, D. B. (2002). *Statistical Analysis with Missing Data*,
2nd ed. Wiley, sec. 11.2 (the observed information of the mean parameters).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import blas, lapack

from ..missing import MissingGLSOperator, ObservedCovariance
from .nonrobust import NonrobustCovariance

__all__ = ["FIMLNonrobustCovariance"]


class FIMLNonrobustCovariance(NonrobustCovariance):
    """``Cov(b) = (sum_t X_{t,o}' Sigma_oo^{-1} X_{t,o})^{-1}`` for a fit with missing cells.

    Parameters
    ----------
    design : SURDesign
        The whitened design with its ``observed`` mask.
    Y : ndarray or None
        The responses (not needed).
    record : FitRecord
        The fit; its ``LowRankCovariance`` is used.
    """

    note = ("Standard errors are GLS standard errors at the MLE of Sigma, from the "
            "incomplete-data information (missing responses by FIML).")

    def __init__(self, design, Y=None, record=None) -> None:
        self.design = design
        self.cov = record.cov
        obs = ObservedCovariance(self.cov.F, self.cov.D, design.observed)
        self._op = MissingGLSOperator(design, obs)
        self._Wt = obs.row_weights() if self.cov.rank else None  # (K, k, N)
        self._blocks = None

    def _shared_columns(self) -> int:
        """No column is shared: each equation's ``Q_j`` has its own zero rows."""
        return 0

    def _U_chunk(self, lo: int, hi: int, scale: np.ndarray | None = None,
                 first: int = 0) -> np.ndarray:
        """Columns of ``U`` for equations lo..hi (N k x (hi-lo) * (pmax - first)), per-row W."""
        d = self.design
        Wt = self._Wt[lo:hi]  # (m, k, N)
        if scale is not None:
            Wt = Wt * scale[lo:hi, None, None]
        UT = Wt[:, None, :, :] * d.Q[lo:hi, first:, None, :]  # (m, c, r, t)
        return UT.reshape((hi - lo) * (d.pmax - first), self.cov.rank * d.nobs).T

    def _blocks_woodbury(self) -> np.ndarray:
        """``d_j I + d_j^2 U_j' C^{-1} U_j``, ``C = I - U B U'`` (N k x N k), ``B = diag(d)``.

        The complete-data route forms only the k (k + 1) / 2 distinct N x N blocks of
        ``C``, which needs ``U_j = w_j kron Q_j`` with one ``W`` for all rows; here
        every row has its own ``W_t``, so ``C`` is accumulated from the columns of ``U``
        (``dsyrk``) and each equation's Gram of ``L^{-1} U_j`` (``dtrmm``) taken in
        chunks. Memory: ``C`` and one chunk.
        """
        d, D = self.design, self.cov.D
        nk = d.nobs * self.cov.rank
        C = np.zeros((nk, nk), order="F")
        sqrt_d = np.sqrt(D)
        for lo, hi in self._eq_chunks():
            C = blas.dsyrk(-1.0, self._U_chunk(lo, hi, scale=sqrt_d), beta=1.0, c=C,
                           lower=1, overwrite_c=1)
        C[np.diag_indices(nk)] += 1.0
        L = self._cholesky(C, overwrite=True)
        L, info = lapack.dtrtri(L, lower=1, overwrite_c=1)
        if info != 0:
            raise np.linalg.LinAlgError("the Woodbury system of the coefficient covariance "
                                        "is not positive definite")
        out = np.empty((d.k_eqs, d.pmax, d.pmax))
        for lo, hi in self._eq_chunks():
            Z = blas.dtrmm(1.0, L, self._U_chunk(lo, hi), lower=1, overwrite_b=1)
            Z3 = np.ascontiguousarray(Z.T).reshape(hi - lo, d.pmax, nk)
            out[lo:hi] = np.matmul(Z3, Z3.transpose(0, 2, 1))
        out *= (D**2)[:, None, None]
        out[:, np.arange(d.pmax), np.arange(d.pmax)] += D[:, None]
        return out
