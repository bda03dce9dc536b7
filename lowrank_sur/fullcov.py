"""The coefficient covariance of fits the registered estimators do not cover yet.

:func:`coefficient_covariance` is what the model calls after a fit: the registered
``cov_type`` estimator, except

* for an unrestricted Sigma (``rank="full"``, a
  :class:`~lowrank_sur.covariance.DenseCovariance`), where ``"nonrobust"`` is
  :class:`DenseNonrobustCovariance`: ``(X'(Sigma^{-1} kron I) X)^{-1}`` through the dense
  P x P normal matrix (K < N, small systems);
* for a fit with missing responses (``missing="fiml"``), where ``"nonrobust"`` is
  :class:`~lowrank_sur.coefcov.fiml.FIMLNonrobustCovariance` (the incomplete-data
  information) and the other types raise ``NotImplementedError``;
* for a fit with constraints imposed, where the covariance is the restricted one
  (:class:`~lowrank_sur.constraints.ConstrainedCoefCov`).

The sandwich types (``HC0``/``HC1``, ``HAC``, ``cluster``) work with an unrestricted
Sigma as they are (they need only the :class:`~lowrank_sur.covariance.Covariance`
protocol); with constraints imposed they raise ``NotImplementedError`` (the restricted
sandwich is not built yet).
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

from .coefcov import get_cov_type
from .coefcov.fiml import FIMLNonrobustCovariance
from .coefcov.nonrobust import NonrobustCovariance
from .constraints import ConstrainedCoefCov
from .covariance import DenseCovariance
from .gls import dense_normal_matrix

__all__ = ["DenseNonrobustCovariance", "coefficient_covariance", "check_missing_cov_type"]


def check_missing_cov_type(estimator: type, cov_type: str) -> None:
    """Refuse the covariance types not built yet for missing responses (``missing="fiml"``)."""
    if estimator is not NonrobustCovariance:
        raise NotImplementedError(
            f"cov_type={cov_type!r} is not available yet with missing responses "
            "(missing='fiml'); use cov_type='nonrobust' (the incomplete-data information), "
            "or missing='drop'"
        )


class DenseNonrobustCovariance(NonrobustCovariance):
    """``(X'(Sigma^{-1} kron I) X)^{-1}`` for an unrestricted (dense) Sigma.

    The whitened normal matrix ``A~`` is formed (P x P) and factored once; standard
    errors, restrictions and the full matrix come from its inverse.
    """

    name = "nonrobust"
    note = ("Standard errors are GLS standard errors at the estimated (unrestricted) "
            "Sigma.")

    def __init__(self, design, Y=None, record=None) -> None:
        super().__init__(design, Y, record)
        self._ainv: np.ndarray | None = None

    def route(self) -> str:
        """Always ``"dense"``."""
        return "dense"

    def _dense_white_inv(self) -> np.ndarray:
        if self._ainv is None:
            A = dense_normal_matrix(self.design, self.cov.inv_dense())
            self._ainv = linalg.cho_solve(linalg.cho_factor(A, lower=True), np.eye(A.shape[0]))
        return self._ainv

    def _block_array(self) -> np.ndarray:
        if self._blocks is None:
            d = self.design
            A = np.zeros((d.k_eqs, d.pmax, d.pmax))
            for j, B in enumerate(self._blocks_dense()):
                A[j, : d.p[j], : d.p[j]] = B
            self._blocks = A
        return self._blocks

    def _white_solve(self, Zw: np.ndarray, rtol: float) -> np.ndarray:
        idx = self.design.packed_index()
        X = np.zeros((Zw.shape[1], Zw.shape[0]))
        X[idx] = self._dense_white_inv() @ Zw[:, idx].T
        return X


def coefficient_covariance(cov_type: str, design, Y, record, cov_kwds: dict):
    """The coefficient-covariance estimator of a finished fit (see the module notes)."""
    estimator = get_cov_type(cov_type)
    if getattr(design, "observed", None) is not None:
        check_missing_cov_type(estimator, cov_type)
        return FIMLNonrobustCovariance(design, Y, record)
    if record.constraints is not None and estimator is not NonrobustCovariance:
        raise NotImplementedError(
            f"cov_type={cov_type!r} is not available yet for fits with constraints imposed "
            "in estimation; use cov_type='nonrobust'"
        )
    if isinstance(record.cov, DenseCovariance) and estimator is NonrobustCovariance:
        base = DenseNonrobustCovariance(design, Y, record, **cov_kwds)
    else:
        base = estimator(design, Y, record, **cov_kwds)
    if record.constraints is not None:
        return ConstrainedCoefCov(base, record.constraints[0])
    return base
